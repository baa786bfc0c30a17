package tlsutil

import (
	"crypto/x509"
	"fmt"
	"math"
	"strings"
	"time"
)

// Describe returns a human summary of the first certificate in certFile:
// subject, issuer, serial, SANs, validity (with time left), key usage and,
// if caFile is not "", whether it is signed by that CA. A certificate that
// is expired or not signed by the CA is reported in the summary, not as an
// error; errors are for files that cannot be read or parsed.
func Describe(certFile, caFile string) (string, error) {
	s, _, err := describe(certFile, caFile, time.Now())
	return s, err
}

// describe also returns the problems found (expired, not signed by the CA).
func describe(certFile, caFile string, now time.Time) (string, []string, error) {
	data, err := readFile(certFile, "certificate")
	if err != nil {
		return "", nil, err
	}
	certs, err := parseCertsPEM(data, certFile)
	if err != nil {
		return "", nil, err
	}
	c := certs[0]
	var problems []string
	var b strings.Builder
	line := func(k, format string, a ...any) {
		fmt.Fprintf(&b, "%-13s %s\n", k+":", fmt.Sprintf(format, a...))
	}
	line("file", "%s", certFile)
	if len(certs) > 1 {
		line("chain", "%d certificates (describing the first)", len(certs))
	}
	line("subject", "%s", c.Subject)
	line("issuer", "%s", c.Issuer)
	line("serial", "%s", serialHex(c))
	var sans []string
	for _, d := range c.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		sans = append(sans, "URI:"+u.String())
	}
	if len(sans) == 0 {
		sans = []string{"(none)"}
	}
	line("SANs", "%s", strings.Join(sans, ", "))
	line("not before", "%s", c.NotBefore.UTC().Format(time.RFC3339))
	switch {
	case now.After(c.NotAfter):
		line("not after", "%s (EXPIRED %s ago)", c.NotAfter.UTC().Format(time.RFC3339), humanDays(now.Sub(c.NotAfter)))
		problems = append(problems, fmt.Sprintf("%s expired at %s; %s", certFile, c.NotAfter.UTC().Format(time.RFC3339), renewFix(certFile)))
	case now.Before(c.NotBefore):
		line("not after", "%s (NOT VALID YET)", c.NotAfter.UTC().Format(time.RFC3339))
		problems = append(problems, fmt.Sprintf("%s is not valid until %s; check this host's clock", certFile, c.NotBefore.UTC().Format(time.RFC3339)))
	default:
		line("not after", "%s (expires in %s)", c.NotAfter.UTC().Format(time.RFC3339), humanDays(c.NotAfter.Sub(now)))
	}
	line("usage", "%s", usageString(c))
	if c.IsCA {
		line("is CA", "yes")
	} else {
		line("is CA", "no")
	}
	if caFile == "" {
		line("signed by CA", "not checked (pass --ca CAFILE)")
		return b.String(), problems, nil
	}
	caPEM, err := readFile(caFile, "CA certificate")
	if err != nil {
		return "", nil, err
	}
	caCerts, err := parseCertsPEM(caPEM, caFile)
	if err != nil {
		return "", nil, err
	}
	pool := x509.NewCertPool()
	for _, ca := range caCerts {
		pool.AddCert(ca)
	}
	// Check the signature at a time the certificate is valid, so an expired
	// certificate is still reported as signed (expiry is reported above).
	at := now
	if at.After(c.NotAfter) || at.Before(c.NotBefore) {
		at = c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	}
	if err := verifyChain(certs, pool, "", x509.ExtKeyUsageAny, at); err != nil {
		line("signed by CA", "NO (%s): %v", caFile, err)
		problems = append(problems, fmt.Sprintf("%s is not signed by the CA in %s: issue it from this cluster's CA with `paceline tls issue`", certFile, caFile))
	} else {
		line("signed by CA", "yes (%s)", caFile)
	}
	return b.String(), problems, nil
}

func usageString(c *x509.Certificate) string {
	var u []string
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "server auth")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "client auth")
		case x509.ExtKeyUsageAny:
			u = append(u, "any")
		default:
			u = append(u, fmt.Sprintf("ext-key-usage(%d)", e))
		}
	}
	if c.KeyUsage&x509.KeyUsageCertSign != 0 {
		u = append(u, "certificate signing")
	}
	if len(u) == 0 {
		return "(unrestricted)"
	}
	return strings.Join(u, ", ")
}

func humanDays(d time.Duration) string {
	days := d.Hours() / 24
	switch {
	case days >= 2:
		return fmt.Sprintf("%d days", int(math.Floor(days)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	default:
		return d.Round(time.Second).String()
	}
}
