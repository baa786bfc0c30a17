package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestIsMismatch(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("post: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), true},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), true},
		{errors.New("remote error: tls: bad certificate"), true},
		{fmt.Errorf("dial tcp 127.0.0.1:1: %w", syscall.ECONNREFUSED), false},
		{errors.New("context deadline exceeded"), false},
	} {
		if got := IsMismatch(c.err); got != c.want {
			t.Errorf("IsMismatch(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
