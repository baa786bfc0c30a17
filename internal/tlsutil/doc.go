// Package tlsutil is paceline's certificate authority and certificate
// handling.
//
// A cluster has one CA (ca.crt, ca.key), created by InitCA. Every agent and
// API client gets a certificate from Issue that is valid both as a TLS server
// and as a TLS client certificate, so the same pair serves mutual TLS between
// agents and the HTTPS API. Rotate re-issues a certificate with the same
// names, replacing the files atomically and keeping the previous pair as
// *.prev.
//
// A running agent uses a Reloader: it serves the certificate and trusts the
// CA found on disk, re-reading them when their modification times change
// (checked at most once per second, on use), so `paceline tls rotate` takes
// effect for new connections without a restart. A reload that finds broken
// files keeps serving the last good pair and reports the problem through
// LastError.
//
// Every problem with a file (malformed PEM, a key that does not match its
// certificate, an expired certificate, a certificate from another CA) is a
// *FileError naming the file and what the operator should do; the Err*
// sentinels classify it for errors.Is.
//
// CLI implements the `paceline tls` subcommands on top of this API.
package tlsutil
