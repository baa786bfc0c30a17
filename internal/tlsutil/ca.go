package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

const (
	// CACertFile and CAKeyFile are the CA's file names inside a CA directory.
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"

	// CAValidity is the lifetime of a CA made by InitCA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is the lifetime of a certificate when Issue or Rotate
	// is given a zero validity.
	DefaultValidity = 365 * 24 * time.Hour

	// DomainSuffix is appended to a certificate's name for its cluster-internal
	// DNS SAN (node1 → node1.paceline).
	DomainSuffix = ".paceline"

	caCNPrefix = "paceline CA "
	// backdate is subtracted from NotBefore to tolerate clock skew.
	backdate = 5 * time.Minute
)

// certAuthority is a loaded CA: certificate and signing key.
type certAuthority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// InitCA creates ca.crt and ca.key (ECDSA P-256, valid 10 years, CN
// "paceline CA <cluster>", O <cluster>) in dir, creating dir if needed. The
// key is written with mode 0600. It fails with ErrExists if either file
// exists, unless force is set; with force the replaced files are kept as
// ca.crt.prev and ca.key.prev.
func InitCA(dir, cluster string, force bool) error {
	cluster = strings.TrimSpace(cluster)
	if err := validateCluster(cluster); err != nil {
		return err
	}
	if dir == "" {
		return errors.New("init CA: no directory given")
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return &FileError{File: p, Kind: ErrExists,
					Fix: "this directory already holds a CA; pass --force to replace it (every certificate it issued will stop being trusted)"}
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	now := time.Now()
	name := pkix.Name{CommonName: caCNPrefix + cluster, Organization: []string{cluster}}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               name,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	// With force, keep the CA being replaced as ca.crt.prev / ca.key.prev:
	// losing a CA key by a mistyped command is not recoverable otherwise.
	for _, f := range []struct {
		path string
		perm fs.FileMode
	}{{certPath, 0o644}, {keyPath, 0o600}} {
		old, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = writeFileAtomic(f.path+".prev", old, f.perm)
		}
		if err != nil {
			return fmt.Errorf("init CA: keep previous CA: %w", err)
		}
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	if err := writeFileAtomic(certPath, pemEncode(blockCert, der), 0o644); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	return nil
}

// Issue creates NAME.crt and NAME.key in outDir, signed by the CA in caDir.
// The certificate has CN=name, O=<cluster> and is usable both as a TLS server
// and a TLS client certificate. Its SANs are hosts (IP addresses and DNS
// names) plus, always, "localhost", 127.0.0.1, ::1, name and
// name+".paceline". A zero validity means DefaultValidity; the validity is
// cut short so the certificate does not outlive the CA. Issue fails with
// ErrExists rather than overwrite an existing pair: use Rotate to renew one.
func Issue(caDir, outDir, name string, hosts []string, validity time.Duration) error {
	_, err := issue(caDir, outDir, name, hosts, validity)
	return err
}

func issue(caDir, outDir, name string, hosts []string, validity time.Duration) (*x509.Certificate, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	validity, err := checkValidityArg(validity)
	if err != nil {
		return nil, err
	}
	dns, ips, err := buildSANs(name, hosts)
	if err != nil {
		return nil, err
	}
	ca, err := loadCA(caDir)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := pairPaths(outDir, name)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return nil, &FileError{File: p, Kind: ErrExists, Fix: fmt.Sprintf(
				"renew it with `paceline tls rotate --ca-dir %s --out %s --name %s`, or delete %s and %s to issue it with different hosts",
				caDir, outDir, name, certPath, keyPath)}
		}
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, fmt.Errorf("issue %s: %w", name, err)
	}
	leaf, certPEM, keyPEM, err := ca.sign(name, dns, ips, validity)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", name, err)
	}
	if err := writePair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("issue %s: %w", name, err)
	}
	return leaf, nil
}

// Rotate re-issues NAME.crt and NAME.key in outDir from the CA in caDir,
// with the same SANs as the existing certificate (which may be expired or
// from a replaced CA, but must be readable). The previous pair is kept as
// NAME.crt.prev and NAME.key.prev, and each new file replaces the old one
// atomically (temporary file + rename), so a Reloader never reads a
// half-written file. A zero validity means DefaultValidity.
func Rotate(caDir, outDir, name string, validity time.Duration) error {
	_, _, err := rotate(caDir, outDir, name, validity)
	return err
}

func rotate(caDir, outDir, name string, validity time.Duration) (old, cur *x509.Certificate, err error) {
	if err := validateName(name); err != nil {
		return nil, nil, err
	}
	validity, err = checkValidityArg(validity)
	if err != nil {
		return nil, nil, err
	}
	certPath, keyPath := pairPaths(outDir, name)
	oldCert, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &FileError{File: certPath, Err: errors.New("no certificate to rotate"),
			Fix: fmt.Sprintf("issue one first with `paceline tls issue --ca-dir %s --out %s --name %s --host HOST`", caDir, outDir, name)}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("rotate %s: %w", name, err)
	}
	certs, err := parseCertsPEM(oldCert, certPath)
	if err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Fix = fmt.Sprintf("its names cannot be recovered; delete %s and %s and run `paceline tls issue` instead", certPath, keyPath)
		}
		return nil, nil, err
	}
	old = certs[0]
	hosts := make([]string, 0, len(old.DNSNames)+len(old.IPAddresses))
	hosts = append(hosts, old.DNSNames...)
	for _, ip := range old.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	dns, ips, err := buildSANs(name, hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate %s: names in %s: %w", name, certPath, err)
	}
	ca, err := loadCA(caDir)
	if err != nil {
		return nil, nil, err
	}
	cur, certPEM, keyPEM, err := ca.sign(name, dns, ips, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate %s: %w", name, err)
	}
	// Keep the previous pair. The key may be missing (that is one reason
	// to rotate); keep whatever there is.
	if err := writeFileAtomic(certPath+".prev", oldCert, 0o644); err != nil {
		return nil, nil, fmt.Errorf("rotate %s: keep previous: %w", name, err)
	}
	if oldKey, err := os.ReadFile(keyPath); err == nil {
		if err := writeFileAtomic(keyPath+".prev", oldKey, 0o600); err != nil {
			return nil, nil, fmt.Errorf("rotate %s: keep previous: %w", name, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("rotate %s: %w", name, err)
	}
	if err := writePair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, nil, fmt.Errorf("rotate %s: %w", name, err)
	}
	return old, cur, nil
}

// loadCA reads and checks the CA in dir.
func loadCA(dir string) (*certAuthority, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: run `paceline tls init --dir %s --cluster NAME` first", ErrNoCA, dir, dir)
	}
	certPEM, err := readFile(certPath, "CA certificate")
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &FileError{File: keyPath, Err: fmt.Errorf("cannot read CA key: %w", err),
			Fix: "certificates can only be issued where the CA key is; run this on the host that ran `paceline tls init`, or restore ca.key"}
	}
	now := time.Now()
	_, certs, err := parseCAPEM(certPEM, certPath, now)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM, keyPath)
	if err != nil {
		return nil, err
	}
	if !keyMatches(certs[0].PublicKey, key) {
		return nil, &FileError{File: keyPath, Kind: ErrKeyMismatch, Err: fmt.Errorf("it is not the key of %s", certPath),
			Fix: "restore the ca.key that was created with this ca.crt"}
	}
	return &certAuthority{cert: certs[0], key: key}, nil
}

// sign makes a new key and a server+client certificate for it.
func (ca *certAuthority) sign(name string, dns []string, ips []net.IP, validity time.Duration) (*x509.Certificate, []byte, []byte, error) {
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	return ca.signPeriod(name, dns, ips, now.Add(-backdate), notAfter)
}

func (ca *certAuthority) signPeriod(name string, dns []string, ips []net.IP, notBefore, notAfter time.Time) (*x509.Certificate, []byte, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	subject := pkix.Name{CommonName: name}
	if c := clusterOf(ca.cert); c != "" {
		subject.Organization = []string{c}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return leaf, pemEncode(blockCert, der), keyPEM, nil
}

// clusterOf returns the cluster name recorded in a CA certificate.
func clusterOf(ca *x509.Certificate) string {
	if len(ca.Subject.Organization) > 0 {
		return ca.Subject.Organization[0]
	}
	return strings.TrimPrefix(ca.Subject.CommonName, caCNPrefix)
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pemEncode(blockPKCS8, der), nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	b[0] &= 0x7f
	b[0] |= 0x40 // keep it 16 bytes long and positive
	return new(big.Int).SetBytes(b)
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pairPaths(dir, name string) (certPath, keyPath string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// writePair writes the key, then the certificate, each atomically.
func writePair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path, so readers see the old or the new contents, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // persist the rename; best effort
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func checkValidityArg(v time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return DefaultValidity, nil
	case v < time.Minute:
		return 0, fmt.Errorf("validity %s is too short: use at least one minute (or 0 for the default of %d days)", v, DefaultValidity/(24*time.Hour))
	}
	return v, nil
}

func validateCluster(cluster string) error {
	if cluster == "" {
		return errors.New("no cluster name given: pass --cluster NAME")
	}
	for _, r := range cluster {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("cluster name %q has a non-printable character", cluster)
		}
	}
	return nil
}

// validateName checks a certificate name: it becomes a file name and the
// DNS names NAME and NAME.paceline.
func validateName(name string) error {
	if name == "" {
		return errors.New("no certificate name given: pass --name NAME (for example the node name)")
	}
	if name == "ca" {
		return errors.New(`certificate name "ca" is reserved for the CA's own files: choose another --name`)
	}
	if net.ParseIP(name) != nil {
		return fmt.Errorf("certificate name %q is an IP address: use the node name as --name and pass the address with --host", name)
	}
	if err := validDNSName(name, false); err != nil {
		return fmt.Errorf("certificate name %q: %w", name, err)
	}
	return nil
}

// validDNSName checks a host name (letters, digits, '-', '_' in dot-separated
// labels); wildcard allows a leading "*." label.
func validDNSName(s string, wildcard bool) error {
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	if wildcard {
		s = strings.TrimPrefix(s, "*.")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty label (leading, trailing or double dot)")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("label %q has the character %q (allowed: letters, digits, '-', '_')", label, r)
			}
		}
	}
	return nil
}

// buildSANs splits hosts into DNS names and IPs, validates them, adds the
// names every certificate carries, and removes duplicates (keeping order).
func buildSANs(name string, hosts []string) ([]string, []net.IP, error) {
	all := append([]string{"localhost", name, strings.ToLower(name) + DomainSuffix, "127.0.0.1", "::1"}, hosts...)
	var dns []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, h := range all {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, nil, errors.New("empty --host value")
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if k := "ip:" + ip.String(); !seen[k] {
				seen[k] = true
				ips = append(ips, ip)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(h); err == nil || strings.Contains(h, "/") {
			return nil, nil, fmt.Errorf("host %q: give a bare IP address or DNS name, without port or URL parts", h)
		}
		if err := validDNSName(h, true); err != nil {
			return nil, nil, fmt.Errorf("host %q is not an IP address or a valid DNS name: %w", h, err)
		}
		if k := "dns:" + strings.ToLower(h); !seen[k] {
			seen[k] = true
			dns = append(dns, h)
		}
	}
	return dns, ips, nil
}
