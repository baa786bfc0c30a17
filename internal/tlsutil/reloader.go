package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the three PEM files an agent or client uses.
type Files struct {
	CA   string // the cluster CA certificate (ca.crt)
	Cert string // this node's certificate (NAME.crt)
	Key  string // this node's private key (NAME.key)
}

// NodeFiles returns the conventional Files for certificate name in dir:
// dir/ca.crt, dir/NAME.crt and dir/NAME.key.
func NodeFiles(dir, name string) Files {
	c, k := pairPaths(dir, name)
	return Files{CA: filepath.Join(dir, CACertFile), Cert: c, Key: k}
}

// ReloadInterval is the longest a Reloader goes, while in use, without
// checking whether its files changed.
const ReloadInterval = time.Second

// Reloader serves a certificate and trusts a CA that are re-read from disk
// when the files change. The check (a stat of the three files, comparing
// modification time and size) runs at most once per ReloadInterval, on use
// (a TLS handshake or a call to Leaf). If the new files are broken (for
// instance a rotation seen half-way, with the new key but the old
// certificate), the last good pair is kept and the error is reported by
// LastError and logged; the check is retried on a later use.
//
// A Reloader is safe for concurrent use and has no goroutines to stop.
type Reloader struct {
	files    Files
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration

	cur atomic.Pointer[loaded]

	mu        sync.Mutex // guards the fields below
	lastCheck time.Time
	stamps    [3]stamp
	lastErr   error
}

type stamp struct {
	mod  time.Time
	size int64
}

// ReloaderOption configures a Reloader.
type ReloaderOption func(*Reloader)

// WithLogger makes the Reloader log reloads and reload failures to l.
func WithLogger(l *slog.Logger) ReloaderOption {
	return func(r *Reloader) { r.log = l }
}

// WithClock replaces time.Now, both for rate-limiting checks and for
// validity checks.
func WithClock(now func() time.Time) ReloaderOption {
	return func(r *Reloader) { r.now = now }
}

// NewReloader loads f once, now. A missing or bad file is an error
// (a *FileError) naming the file, what is wrong with it and the fix.
func NewReloader(f Files, opts ...ReloaderOption) (*Reloader, error) {
	for _, p := range []struct{ what, path string }{{"CA", f.CA}, {"certificate", f.Cert}, {"key", f.Key}} {
		if p.path == "" {
			return nil, fmt.Errorf("TLS: no %s file configured", p.what)
		}
	}
	r := &Reloader{
		files:    f,
		log:      slog.New(slog.DiscardHandler),
		now:      time.Now,
		interval: ReloadInterval,
	}
	for _, o := range opts {
		o(r)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.now()
	if err := r.loadLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// Files returns the files the Reloader watches.
func (r *Reloader) Files() Files { return r.files }

// Reload re-reads the files now, whether or not they changed. On error the
// previous pair stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.now()
	return r.loadLocked()
}

// LastError returns the error of the most recent reload attempt, or nil if
// it succeeded (or none was needed).
func (r *Reloader) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Leaf returns the certificate currently served (for example to export its
// expiry as a metric), checking the files first if due.
func (r *Reloader) Leaf() *x509.Certificate {
	return r.current().cert.Leaf
}

// loadLocked loads the files and, on success, makes them current. The
// stamps are taken before reading, so a change during the read is picked up
// by the next check.
func (r *Reloader) loadLocked() error {
	stamps, statErr := r.statLocked()
	var l *loaded
	err := statErr
	if err == nil {
		l, err = loadFiles(r.files, r.now())
	}
	r.lastErr = err
	if err != nil {
		return err
	}
	r.stamps = stamps
	r.cur.Store(l)
	return nil
}

func (r *Reloader) statLocked() ([3]stamp, error) {
	var s [3]stamp
	for i, p := range []string{r.files.CA, r.files.Cert, r.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			_, err = readFile(p, "file") // same *FileError as a read would give
			if err == nil {
				err = fmt.Errorf("%s: file vanished while being checked", p)
			}
			return s, err
		}
		s[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

// current returns the pair in use, first reloading it if a check is due and
// the files changed.
func (r *Reloader) current() *loaded {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastCheck) < r.interval && !now.Before(r.lastCheck) {
		return r.cur.Load()
	}
	r.lastCheck = now
	stamps, err := r.statLocked()
	if err == nil && stamps == r.stamps {
		return r.cur.Load()
	}
	if err == nil {
		err = r.loadLocked()
	}
	prev := r.lastErr
	r.lastErr = err
	if err != nil {
		if prev != nil && prev.Error() == err.Error() {
			return r.cur.Load() // already logged
		}
		r.log.Warn("TLS files changed but cannot be loaded; still serving the previous certificate",
			"cert", r.files.Cert, "err", err)
	} else {
		leaf := r.cur.Load().cert.Leaf
		r.log.Info("TLS certificate reloaded", "cert", r.files.Cert,
			"serial", serialHex(leaf), "not_after", leaf.NotAfter)
	}
	return r.cur.Load()
}

// ServerConfig returns a server configuration that presents the current
// certificate. With requireClientCert (mutual TLS, between agents) every
// client must present a certificate that is valid for client
// authentication and signed by the current CA; otherwise (the HTTP API with
// token auth) client certificates are not requested.
//
// The client certificate is checked in VerifyConnection against the CA as
// reloaded from disk, so a replaced CA takes effect without a restart, and
// resumed sessions are checked again too.
func (r *Reloader) ServerConfig(requireClientCert bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
	}
	if requireClientCert {
		// RequireAnyClientCert makes the client send a certificate and
		// prove it holds the key; the chain is checked just below.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verifyChain(cs.PeerCertificates, r.current().pool, "", x509.ExtKeyUsageClientAuth, r.now()); err != nil {
				return fmt.Errorf("TLS client certificate rejected: %w", classifyVerify(err))
			}
			return nil
		}
	}
	return cfg
}

// ClientConfig returns a client configuration that presents the current
// certificate and accepts only a server whose certificate is signed by the
// current CA and valid for serverName (a DNS name or IP address). If
// serverName is "", the name the connection was dialed with is used; that
// works for DNS names but not for IP addresses (which TLS does not send),
// so pass the host explicitly when dialing an IP.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
		// The built-in verification would pin the CA pool at the time this
		// Config was made; VerifyConnection does the same checks (chain,
		// key usage, host name) against the CA as reloaded from disk. The
		// server's possession of its key is still checked by the handshake.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			name := serverName
			if name == "" {
				name = cs.ServerName
			}
			if name == "" {
				return errors.New("TLS: no server name to verify the server certificate against; pass it to ClientConfig")
			}
			if err := verifyChain(cs.PeerCertificates, r.current().pool, name, x509.ExtKeyUsageServerAuth, r.now()); err != nil {
				return fmt.Errorf("TLS server certificate rejected: %w", classifyVerify(err))
			}
			return nil
		},
	}
}

// PeerClientConfig returns a client configuration for agent-to-agent
// connections: it presents this node's certificate and accepts any server
// whose certificate is signed by the cluster CA and valid for server auth,
// whatever address it was dialed at (agents dial each other by IP, which
// TLS does not carry as a server name). Within one cluster the CA is the
// trust boundary: every certificate it signs belongs to a cluster member.
func (r *Reloader) PeerClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
		InsecureSkipVerify: true, // verified below against the reloaded CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(cs.PeerCertificates, r.current().pool, "", x509.ExtKeyUsageServerAuth, r.now()); err != nil {
				return fmt.Errorf("TLS server certificate rejected: %w", classifyVerify(err))
			}
			return nil
		},
	}
}
