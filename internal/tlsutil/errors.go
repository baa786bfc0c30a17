package tlsutil

import (
	"crypto/tls"
	"errors"
	"strings"
)

// Sentinel errors classifying certificate problems. They are wrapped by
// *FileError (and by the "no CA" error), so test them with errors.Is.
var (
	// ErrNoCA means a CA directory holds no ca.crt/ca.key.
	ErrNoCA = errors.New("no CA")
	// ErrMalformed means a file is not the PEM it should be: empty,
	// damaged, the wrong kind of block, or unparsable contents.
	ErrMalformed = errors.New("malformed PEM")
	// ErrKeyMismatch means a private key does not belong to its certificate.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrExpired means a certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate has expired")
	// ErrNotYetValid means a certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate is not valid yet")
	// ErrNotSignedByCA means a certificate does not chain to the CA.
	ErrNotSignedByCA = errors.New("certificate is not signed by the CA")
	// ErrNotCA means a file given as the CA does not hold a CA certificate.
	ErrNotCA = errors.New("not a CA certificate")
	// ErrExists means Issue or InitCA would overwrite existing files.
	ErrExists = errors.New("already exists")
)

// FileError is a problem with one file: which file, what kind of problem
// (one of the Err* sentinels, or nil), the underlying cause, and the fix.
type FileError struct {
	File string // path of the offending file
	Kind error  // an Err* sentinel, or nil
	Err  error  // underlying cause or detail, or nil
	Fix  string // what the operator should do, or ""
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteString(": ")
	switch {
	case e.Kind != nil && e.Err != nil:
		b.WriteString(e.Kind.Error())
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("unknown problem")
	}
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause, so errors.Is matches either.
func (e *FileError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// IsMismatch reports whether err from a TLS connection attempt is a
// certificate or protocol mismatch that retrying cannot fix: a
// certificate that does not verify, a peer that does not speak TLS, or a
// peer that refused our certificate.
func IsMismatch(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	if errors.As(err, &cv) || errors.As(err, &rh) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"x509:", "certificate rejected", "bad certificate", "unknown certificate authority", "server gave HTTP response to HTTPS client", "first record does not look like a TLS handshake"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
