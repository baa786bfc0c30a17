package tlsutil

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pki is a CA directory plus an output directory, for tests.
type pki struct {
	caDir, out string
}

func newPKI(t *testing.T, cluster string) pki {
	t.Helper()
	p := pki{caDir: filepath.Join(t.TempDir(), "ca"), out: filepath.Join(t.TempDir(), "certs")}
	if err := InitCA(p.caDir, cluster, false); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return p
}

func (p pki) issue(t *testing.T, name string, hosts ...string) Files {
	t.Helper()
	if err := Issue(p.caDir, p.out, name, hosts, 0); err != nil {
		t.Fatalf("Issue %s: %v", name, err)
	}
	c, k := pairPaths(p.out, name)
	return Files{CA: filepath.Join(p.caDir, CACertFile), Cert: c, Key: k}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCertsPEM(data, path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestInitIssueRotateRoundTrip(t *testing.T) {
	p := newPKI(t, "prod")

	ca := readCert(t, filepath.Join(p.caDir, CACertFile))
	if ca.Subject.CommonName != "paceline CA prod" || !ca.IsCA {
		t.Fatalf("CA subject %q IsCA=%v", ca.Subject.CommonName, ca.IsCA)
	}
	if got := ca.NotAfter.Sub(time.Now()); got < CAValidity-time.Hour || got > CAValidity {
		t.Errorf("CA lifetime %v, want about %v", got, CAValidity)
	}
	fi, err := os.Stat(filepath.Join(p.caDir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", fi.Mode().Perm())
	}

	// A second init refuses; --force replaces.
	if err := InitCA(p.caDir, "prod", false); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second InitCA: got %v, want ErrExists mentioning --force", err)
	}
	caKey, _ := os.ReadFile(filepath.Join(p.caDir, CAKeyFile))
	if err := InitCA(p.caDir, "prod", true); err != nil {
		t.Fatalf("InitCA force: %v", err)
	}
	if prev, _ := os.ReadFile(filepath.Join(p.caDir, CAKeyFile+".prev")); string(prev) != string(caKey) {
		t.Error("InitCA --force did not keep the old key as ca.key.prev")
	}

	f := p.issue(t, "node1", "10.0.0.1", "node1.example.com", "10.0.0.1")
	leaf := readCert(t, f.Cert)
	if leaf.Subject.CommonName != "node1" || !slices.Equal(leaf.Subject.Organization, []string{"prod"}) {
		t.Errorf("subject %v", leaf.Subject)
	}
	wantDNS := []string{"localhost", "node1", "node1.paceline", "node1.example.com"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNS SANs %v, want %v", leaf.DNSNames, wantDNS)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.0.0.1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %v, want %v", ips, want)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ext key usage %v, want server and client auth", leaf.ExtKeyUsage)
	}
	if got := leaf.NotAfter.Sub(time.Now()); got < DefaultValidity-time.Hour || got > DefaultValidity {
		t.Errorf("lifetime %v, want about %v", got, DefaultValidity)
	}
	for _, name := range []string{"node1", "node1.paceline", "localhost", "10.0.0.1", "127.0.0.1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%s): %v", name, err)
		}
	}
	if fi, err := os.Stat(f.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode: %v %v", fi.Mode().Perm(), err)
	}
	if _, err := loadFiles(f, time.Now()); err != nil {
		t.Fatalf("issued files do not load: %v", err)
	}

	// Issue refuses to overwrite and points at rotate.
	if err := Issue(p.caDir, p.out, "node1", []string{"10.0.0.9"}, 0); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "paceline tls rotate") {
		t.Errorf("re-Issue: got %v, want ErrExists pointing at rotate", err)
	}

	oldCert, _ := os.ReadFile(f.Cert)
	oldKey, _ := os.ReadFile(f.Key)
	if err := Rotate(p.caDir, p.out, "node1", 48*time.Hour); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	rotated := readCert(t, f.Cert)
	if rotated.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("Rotate kept the serial number")
	}
	if !slices.Equal(rotated.DNSNames, leaf.DNSNames) || len(rotated.IPAddresses) != len(leaf.IPAddresses) {
		t.Errorf("Rotate changed SANs: %v %v -> %v %v", leaf.DNSNames, leaf.IPAddresses, rotated.DNSNames, rotated.IPAddresses)
	}
	for i := range leaf.IPAddresses {
		if !rotated.IPAddresses[i].Equal(leaf.IPAddresses[i]) {
			t.Errorf("IP %d: %v -> %v", i, leaf.IPAddresses[i], rotated.IPAddresses[i])
		}
	}
	if got := rotated.NotAfter.Sub(time.Now()); got > 48*time.Hour || got < 47*time.Hour {
		t.Errorf("rotated lifetime %v, want 48h", got)
	}
	if prev, _ := os.ReadFile(f.Cert + ".prev"); string(prev) != string(oldCert) {
		t.Error("NAME.crt.prev is not the previous certificate")
	}
	if prev, _ := os.ReadFile(f.Key + ".prev"); string(prev) != string(oldKey) {
		t.Error("NAME.key.prev is not the previous key")
	}
	if fi, err := os.Stat(f.Key + ".prev"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.prev mode: %v", err)
	}
	if _, err := loadFiles(f, time.Now()); err != nil {
		t.Fatalf("rotated files do not load: %v", err)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(p.out)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left temp file %s", e.Name())
		}
	}
}

func TestIssueErrors(t *testing.T) {
	p := newPKI(t, "c")
	noCA := filepath.Join(t.TempDir(), "empty")

	err := Issue(noCA, p.out, "n1", nil, 0)
	if !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), "paceline tls init --dir "+noCA) {
		t.Errorf("no CA: %v", err)
	}
	err = Rotate(noCA, p.out, "n1", 0)
	if err == nil || !strings.Contains(err.Error(), "paceline tls issue") {
		t.Errorf("rotate without a cert: %v", err)
	}
	for _, tc := range []struct {
		name  string
		hosts []string
		want  string
	}{
		{"", nil, "--name"},
		{"ca", nil, "reserved"},
		{"a/b", nil, "character"},
		{"10.0.0.1", nil, "IP address"},
		{"n1", []string{"node:8080"}, "without port"},
		{"n1", []string{"bad host"}, "not an IP address or a valid DNS name"},
		{"n1", []string{""}, "empty"},
	} {
		err := Issue(p.caDir, p.out, tc.name, tc.hosts, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Issue(%q, %q): got %v, want error containing %q", tc.name, tc.hosts, err, tc.want)
		}
	}
	if err := Issue(p.caDir, p.out, "n1", nil, time.Second); err == nil {
		t.Error("Issue with a 1s validity succeeded")
	}
	// The CA key is missing: the error names it and says where to run.
	if err := os.Remove(filepath.Join(p.caDir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	err = Issue(p.caDir, p.out, "n1", nil, 0)
	if !strings.Contains(err.Error(), CAKeyFile) || !strings.Contains(err.Error(), "paceline tls init") {
		t.Errorf("missing CA key: %v", err)
	}
}

func TestIssueClampsToCALifetime(t *testing.T) {
	p := newPKI(t, "c")
	f := p.issue(t, "n1")
	_ = f
	if err := Issue(p.caDir, p.out, "n2", nil, 20*CAValidity); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(p.caDir, CACertFile))
	c2, _ := pairPaths(p.out, "n2")
	if got := readCert(t, c2).NotAfter; got.After(ca.NotAfter) {
		t.Errorf("certificate outlives its CA: %v > %v", got, ca.NotAfter)
	}
}

func TestBuildSANsDedup(t *testing.T) {
	dns, ips, err := buildSANs("Node1", []string{"LOCALHOST", "127.0.0.1", "::ffff:127.0.0.1", "*.svc.local"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"localhost", "Node1", "node1.paceline", "*.svc.local"}; !slices.Equal(dns, want) {
		t.Errorf("dns %v, want %v", dns, want)
	}
	if len(ips) != 2 || !ips[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("ips %v", ips)
	}
}
