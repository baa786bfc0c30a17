package tlsutil

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	blockCert  = "CERTIFICATE"
	blockPKCS8 = "PRIVATE KEY"
	blockEC    = "EC PRIVATE KEY"
	blockRSA   = "RSA PRIVATE KEY"
)

var pemBegin = []byte("-----BEGIN ")

// rotateCmd is the command that re-issues the pair a certificate or key file
// belongs to, guessing the name from the file name (node1.crt → node1).
func rotateCmd(file string) string {
	base := filepath.Base(file)
	name := strings.TrimSuffix(base, filepath.Ext(base))
	return fmt.Sprintf("`paceline tls rotate --ca-dir CA_DIR --out %s --name %s`", filepath.Dir(file), name)
}

// fixFor returns the operator's fix for a broken certificate or key file.
func fixFor(file string) string {
	if strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)) == "ca" {
		return "restore the file from the CA directory"
	}
	return "restore it, or re-issue the pair with " + rotateCmd(file)
}

// readFile reads a PEM file, turning I/O errors into a *FileError.
func readFile(file, what string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		fix := "check the path"
		if errors.Is(err, fs.ErrPermission) {
			fix = "check the file's owner and permissions"
		}
		return nil, &FileError{File: file, Err: fmt.Errorf("cannot read %s: %w", what, err), Fix: fix}
	}
	return data, nil
}

// pemBlocks decodes every PEM block in data, failing if the file holds no
// PEM at all or if any "-----BEGIN" line did not decode (a damaged block).
func pemBlocks(data []byte, file, want string) ([]*pem.Block, error) {
	malformed := func(detail string) error {
		return &FileError{File: file, Kind: ErrMalformed, Err: errors.New(detail), Fix: fixFor(file)}
	}
	var blocks []*pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	begins := bytes.Count(data, pemBegin)
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return nil, malformed("file is empty, expected a " + want)
	case begins == 0:
		return nil, malformed("no PEM data found, expected a " + want + " (a DER file can be converted with `openssl x509 -inform der`)")
	case len(blocks) != begins:
		return nil, malformed("a PEM block is damaged (truncated, edited, or bad base64)")
	}
	return blocks, nil
}

// parseCertsPEM parses a file that must hold one or more certificates.
func parseCertsPEM(data []byte, file string) ([]*x509.Certificate, error) {
	blocks, err := pemBlocks(data, file, "CERTIFICATE block")
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for i, b := range blocks {
		if b.Type != blockCert {
			detail := fmt.Sprintf("block %d is %q, expected %q", i+1, b.Type, blockCert)
			if strings.Contains(b.Type, "PRIVATE KEY") {
				detail += " (are the certificate and key files swapped?)"
			}
			return nil, &FileError{File: file, Kind: ErrMalformed, Err: errors.New(detail), Fix: fixFor(file)}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, &FileError{File: file, Kind: ErrMalformed, Err: fmt.Errorf("block %d: %w", i+1, err), Fix: fixFor(file)}
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// parseKeyPEM parses a file that must hold exactly one unencrypted private
// key (PKCS#8, SEC 1 EC or PKCS#1 RSA). An "EC PARAMETERS" block, as written
// by `openssl ecparam -genkey`, is ignored.
func parseKeyPEM(data []byte, file string) (crypto.Signer, error) {
	blocks, err := pemBlocks(data, file, "PRIVATE KEY block")
	if err != nil {
		return nil, err
	}
	malformed := func(e error) error {
		return &FileError{File: file, Kind: ErrMalformed, Err: e, Fix: fixFor(file)}
	}
	var key crypto.Signer
	for i, b := range blocks {
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if key != nil {
			return nil, malformed(fmt.Errorf("block %d: more than one private key in the file", i+1))
		}
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, malformed(fmt.Errorf("block %d: the key is encrypted; paceline needs an unencrypted key (decrypt it with `openssl pkey`)", i+1))
		}
		var k any
		var err error
		switch b.Type {
		case blockPKCS8:
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case blockEC:
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case blockRSA:
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case blockCert:
			return nil, malformed(fmt.Errorf("block %d is a CERTIFICATE, expected a private key (are the certificate and key files swapped?)", i+1))
		default:
			return nil, malformed(fmt.Errorf("block %d is %q, expected a private key", i+1, b.Type))
		}
		if err != nil {
			return nil, malformed(fmt.Errorf("block %d: %w", i+1, err))
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, malformed(fmt.Errorf("block %d: unsupported key type %T", i+1, k))
		}
		key = s
	}
	if key == nil {
		return nil, malformed(errors.New("no private key in the file"))
	}
	return key, nil
}

// keyMatches reports whether key is the private half of pub.
func keyMatches(pub crypto.PublicKey, key crypto.Signer) bool {
	p, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && p.Equal(pub)
}

// checkValidity reports an expired or not-yet-valid certificate.
func checkValidity(c *x509.Certificate, file string, now time.Time, fix string) error {
	if now.After(c.NotAfter) {
		return &FileError{File: file, Kind: ErrExpired,
			Err: fmt.Errorf("expired at %s (now %s)", c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			Fix: fix}
	}
	if now.Before(c.NotBefore) {
		return &FileError{File: file, Kind: ErrNotYetValid,
			Err: fmt.Errorf("valid from %s (now %s)", c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			Fix: "check this host's clock"}
	}
	return nil
}

func renewFix(file string) string { return "renew it with " + rotateCmd(file) }

// parsePair parses a certificate chain and its key, checking that they
// match and that the leaf is currently valid. It does not check the issuer.
func parsePair(certPEM, keyPEM []byte, certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certs, err := parseCertsPEM(certPEM, certFile)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM, keyFile)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if !keyMatches(leaf.PublicKey, key) {
		return nil, &FileError{File: keyFile, Kind: ErrKeyMismatch,
			Err: fmt.Errorf("it is not the key of %s (serial %s)", certFile, serialHex(leaf)),
			Fix: "use the key file issued with this certificate, or re-issue the pair with " + rotateCmd(certFile)}
	}
	if err := checkValidity(leaf, certFile, now, renewFix(certFile)); err != nil {
		return nil, err
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// parseCAPEM parses a CA bundle: every certificate must be a valid CA.
func parseCAPEM(data []byte, file string, now time.Time) (*x509.CertPool, []*x509.Certificate, error) {
	certs, err := parseCertsPEM(data, file)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, nil, &FileError{File: file, Kind: ErrNotCA,
				Err: fmt.Errorf("%q is not a CA", c.Subject.String()),
				Fix: "point it at the cluster's ca.crt, not a node certificate"}
		}
		if err := checkValidity(c, file, now,
			"the cluster CA must be replaced: `paceline tls init --force`, then re-issue every certificate"); err != nil {
			return nil, nil, err
		}
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// verifyChain checks that chain[0] is signed (via chain[1:]) by a CA in pool.
// dnsName, if set, must match the leaf; usage is the required key usage.
func verifyChain(chain []*x509.Certificate, pool *x509.CertPool, dnsName string, usage x509.ExtKeyUsage, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       dnsName,
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

// verifyKind maps an x509 verification error to one of our sentinels, or nil.
func verifyKind(err error) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return ErrNotSignedByCA
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Reason == x509.Expired {
		return ErrExpired
	}
	return nil
}

// classifyVerify wraps an x509 verification error with its sentinel.
func classifyVerify(err error) error {
	if k := verifyKind(err); k != nil {
		return fmt.Errorf("%w: %w", k, err)
	}
	return err
}

func serialHex(c *x509.Certificate) string {
	return fmt.Sprintf("%x", c.SerialNumber)
}

// loaded is one consistent, verified set of files.
type loaded struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

// loadFiles reads and fully checks f: PEM syntax, key match, validity, and
// that the certificate is signed by the CA.
func loadFiles(f Files, now time.Time) (*loaded, error) {
	caPEM, err := readFile(f.CA, "CA certificate")
	if err != nil {
		return nil, err
	}
	certPEM, err := readFile(f.Cert, "certificate")
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(f.Key, "private key")
	if err != nil {
		return nil, err
	}
	pool, _, err := parseCAPEM(caPEM, f.CA, now)
	if err != nil {
		return nil, err
	}
	tc, err := parsePair(certPEM, keyPEM, f.Cert, f.Key, now)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for _, der := range tc.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil { // already parsed once; cannot happen
			return nil, &FileError{File: f.Cert, Kind: ErrMalformed, Err: err}
		}
		chain = append(chain, c)
	}
	if err := verifyChain(chain, pool, "", x509.ExtKeyUsageAny, now); err != nil {
		return nil, &FileError{File: f.Cert, Kind: verifyKind(err), Err: fmt.Errorf("checked against %s: %w", f.CA, err),
			Fix: "issue it from this cluster's CA with `paceline tls issue`, or point the CA setting at the CA that issued it"}
	}
	return &loaded{cert: tc, pool: pool}, nil
}
