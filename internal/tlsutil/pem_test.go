package tlsutil

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMalformedFiles(t *testing.T) {
	p := newPKI(t, "prod")
	good := p.issue(t, "node1")
	other := p.issue(t, "node2")
	foreign := newPKI(t, "other").issue(t, "node1")
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	certPEM, keyPEM := read(good.Cert), read(good.Key)

	// An expired certificate, signed by the right CA.
	ca, err := loadCA(p.caDir)
	if err != nil {
		t.Fatal(err)
	}
	dns, ips, _ := buildSANs("old", nil)
	_, expiredCert, expiredKey, err := ca.signPeriod("old", dns, ips, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	for _, tc := range []struct {
		name     string
		files    Files
		kind     error  // expected sentinel
		file     string // the file the error must name
		contains string // and a fragment of the explanation or fix
	}{
		{"empty cert", Files{good.CA, write("empty.crt", ""), good.Key}, ErrMalformed, "empty.crt", "empty"},
		{"garbage cert", Files{good.CA, write("junk.crt", "hello\n"), good.Key}, ErrMalformed, "junk.crt", "no PEM data"},
		{"truncated cert", Files{good.CA, write("trunc.crt", certPEM[:len(certPEM)/2]), good.Key}, ErrMalformed, "trunc.crt", "damaged"},
		{"bad base64", Files{good.CA, write("b64.crt", strings.Replace(certPEM, "\n", "\n!!!!\n", 3)), good.Key}, ErrMalformed, "b64.crt", "damaged"},
		{"DER inside PEM is junk", Files{good.CA, write("der.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), good.Key}, ErrMalformed, "der.crt", "block 1"},
		{"key in cert file", Files{good.CA, write("swap.crt", keyPEM), good.Key}, ErrMalformed, "swap.crt", "swapped"},
		{"cert in key file", Files{good.CA, good.Cert, write("swap.key", certPEM)}, ErrMalformed, "swap.key", "swapped"},
		{"encrypted key", Files{good.CA, good.Cert, write("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")}, ErrMalformed, "enc.key", "encrypted"},
		{"two keys", Files{good.CA, good.Cert, write("two.key", keyPEM+keyPEM)}, ErrMalformed, "two.key", "more than one"},
		{"key of another cert", Files{good.CA, good.Cert, other.Key}, ErrKeyMismatch, other.Key, "paceline tls rotate"},
		{"expired", Files{good.CA, write("old.crt", string(expiredCert)), write("old.key", string(expiredKey))}, ErrExpired, "old.crt", "paceline tls rotate"},
		{"other CA", Files{good.CA, foreign.Cert, foreign.Key}, ErrNotSignedByCA, foreign.Cert, "paceline tls issue"},
		{"cert as CA", Files{good.Cert, good.Cert, good.Key}, ErrNotCA, good.Cert, "ca.crt"},
		{"missing key", Files{good.CA, good.Cert, filepath.Join(dir, "nope.key")}, fs.ErrNotExist, "nope.key", "check the path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReloader(tc.files)
			if err == nil {
				t.Fatalf("NewReloader succeeded: %v", r)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("got %v, want %v", err, tc.kind)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("got %T, want *FileError", err)
			}
			if !strings.HasSuffix(fe.File, tc.file) || !strings.HasPrefix(err.Error(), fe.File+": ") {
				t.Errorf("error %q does not start with the file %s", err, tc.file)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestNewReloaderNeedsAllFiles(t *testing.T) {
	if _, err := NewReloader(Files{CA: "ca.crt", Cert: "n.crt"}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("got %v", err)
	}
}

func TestLoadAcceptsOtherKeyEncodings(t *testing.T) {
	// SEC 1 "EC PRIVATE KEY" (openssl ecparam -genkey, with its EC
	// PARAMETERS block) loads like PKCS #8.
	key, _, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + string(pemEncode(blockEC, der))
	got, err := parseKeyPEM([]byte(data), "k.key")
	if err != nil {
		t.Fatal(err)
	}
	if !keyMatches(key.Public(), got) {
		t.Error("parsed a different key")
	}
}

// FuzzLoadPEM feeds arbitrary certificate and key files through the PEM
// loading path: it must return an error or a pair, never panic.
func FuzzLoadPEM(f *testing.F) {
	dir := f.TempDir()
	caDir, out := filepath.Join(dir, "ca"), filepath.Join(dir, "out")
	if err := InitCA(caDir, "fuzz", false); err != nil {
		f.Fatal(err)
	}
	if err := Issue(caDir, out, "n1", nil, 0); err != nil {
		f.Fatal(err)
	}
	c, k := pairPaths(out, "n1")
	certPEM, _ := os.ReadFile(c)
	keyPEM, _ := os.ReadFile(k)
	caPEM, _ := os.ReadFile(filepath.Join(caDir, CACertFile))
	f.Add(certPEM, keyPEM)
	f.Add(keyPEM, certPEM)
	f.Add(caPEM, keyPEM)
	f.Add(certPEM[:len(certPEM)/2], keyPEM[:10])
	f.Add([]byte(""), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN "), []byte("-----BEGIN EC PARAMETERS-----\nAA==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	now := time.Now()
	f.Fuzz(func(t *testing.T, certData, keyData []byte) {
		tc, err := parsePair(certData, keyData, "c.crt", "k.key", now)
		if err == nil && (tc == nil || tc.Leaf == nil || tc.PrivateKey == nil) {
			t.Fatal("nil pair without an error")
		}
		var fe *FileError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error %v is not a *FileError", err)
		}
		_, _, _ = parseCAPEM(certData, "ca.crt", now)
		_, _ = parseKeyPEM(certData, "x")
		_, _ = parseCertsPEM(keyData, "y")
	})
}
