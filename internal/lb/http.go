package lb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"time"
)

type ctxKey int

const clientKey ctxKey = 0

type clientInfo struct {
	remote, local net.Addr
	ip            string
	conn          net.Conn // raw path: the client connection
}

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return *v.(*[]byte)
	}
	return make([]byte, 32<<10)
}
func (b *bufPool) Put(v []byte) { b.p.Put(&v) }

var buffers = &bufPool{}

func (l *LB) newHTTPServer(f *frontend) *http.Server {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend"
			pr.Out.Host = pr.In.Host
		},
		Transport:  &roundTripper{l: l, f: f},
		BufferPool: buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			switch {
			case errors.Is(err, errNoServer), errors.Is(err, errQueueTimeout):
				code = http.StatusServiceUnavailable
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
				code = http.StatusGatewayTimeout
			case errors.Is(err, context.Canceled):
				return
			}
			l.log.Debug("http: proxy error", "frontend", f.cfg.Name, "err", err)
			w.WriteHeader(code)
		},
		ErrorLog: nil,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ci := &clientInfo{ip: "", remote: nil}
		if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
			ci.remote, ci.ip = a, a.IP.String()
		}
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			ci.local = la
		}
		if r.Header.Get("Upgrade") != "" || r.Method == "CONNECT" {
			rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey, ci)))
			return
		}
		l.serveFast(f, w, r, ci)
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: f.cfg.ClientTimeout,
		IdleTimeout:       f.cfg.ClientTimeout,
		ErrorLog:          nil,
		BaseContext:       func(net.Listener) context.Context { return l.ctx },
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if f.cfg.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if f.cfg.TLS != nil {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return f.cert.Load(), nil
			},
		}
	}
	return srv
}

// serveHTTPOn serves connections handed off by the raw path.
func (l *LB) serveHTTPOn(f *frontend, ln net.Listener) {
	if err := f.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		l.log.Warn("http frontend stopped", "frontend", f.cfg.Name, "err", err)
	}
}

func (l *LB) serveHTTP(f *frontend) {
	srv := f.srv
	var err error
	if f.cfg.TLS != nil {
		err = srv.ServeTLS(f.ln, "", "")
	} else {
		err = srv.Serve(f.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Warn("http frontend stopped", "frontend", f.cfg.Name, "err", err)
	}
}

type transportKey struct {
	connect, server time.Duration
	proxy           int
}

// transport is the keep-alive pool to s.
func (l *LB) transport(b *backend, s *server, cfg *Backend) *http.Transport {
	key := transportKey{cfg.ConnectTimeout, cfg.ServerTimeout, cfg.ProxyProtocol}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.transport != nil && s.tkey == key {
		return s.transport
	}
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var remote, local net.Addr
			if ci, _ := ctx.Value(clientKey).(*clientInfo); ci != nil {
				remote, local = ci.remote, ci.local
			}
			return b.dial(ctx, s, cfg, remote, local)
		},
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.ServerTimeout,
		// A PROXY header names one client, so a connection carrying one is
		// not shared between clients.
		DisableKeepAlives: cfg.ProxyProtocol != 0,
	}
	s.transport, s.tkey = t, key
	return t
}

type roundTripper struct {
	l *LB
	f *frontend
}

type dialError struct{ err error }

func (e dialError) Error() string { return e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	b := rt.f.backend.Load()
	cfg := b.config()
	ci, _ := req.Context().Value(clientKey).(*clientInfo)
	if ci == nil {
		ci = &clientInfo{}
	}
	var pref *server
	if cfg.Stick == "cookie" {
		if ck, err := req.Cookie(cfg.Cookie); err == nil {
			b.mu.Lock()
			for _, s := range b.srvs {
				if s.name == ck.Value {
					pref = s
				}
			}
			b.mu.Unlock()
		}
		// Do not forward our cookie to the server.
		removeCookie(req, cfg.Cookie)
	}
	canRetry := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	tried := map[*server]bool{}
	var lastErr error
	for attempt := 0; attempt <= *cfg.Retries; attempt++ {
		s, err := b.acquire(req.Context(), ci.ip, pref, tried)
		if err != nil {
			if lastErr != nil {
				return nil, errors.Join(err, lastErr)
			}
			return nil, err
		}
		out := req
		if attempt > 0 && req.GetBody != nil {
			out = req.Clone(req.Context())
			out.Body, _ = req.GetBody()
		}
		u := *req.URL
		u.Host = s.addr
		if out == req {
			out = new(http.Request)
			*out = *req
		}
		out.URL = &u
		resp, err := rt.l.transport(b, s, cfg).RoundTrip(out)
		if err != nil {
			b.release(s)
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				b.connFailed(s, err)
				lastErr = err
				if canRetry {
					if cfg.Redispatch {
						tried[s] = true
						pref = nil
					}
					continue
				}
			}
			return nil, err
		}
		b.connOK(s)
		if cfg.Stick == "cookie" && (pref != s) {
			resp.Header.Add("Set-Cookie", (&http.Cookie{Name: cfg.Cookie, Value: s.name, Path: "/", HttpOnly: true}).String())
		}
		resp.Body = releaseBody(resp.Body, func() { b.release(s) })
		return resp, nil
	}
	return nil, lastErr
}

func removeCookie(req *http.Request, name string) {
	cs := req.Cookies()
	req.Header.Del("Cookie")
	for _, c := range cs {
		if c.Name != name {
			req.AddCookie(c)
		}
	}
}

type bodyReleaser struct {
	io.ReadCloser
	once sync.Once
	fn   func()
}

func (b *bodyReleaser) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.fn)
	return err
}

type rwBodyReleaser struct {
	*bodyReleaser
	w io.Writer
}

func (b rwBodyReleaser) Write(p []byte) (int, error) { return b.w.Write(p) }

func releaseBody(body io.ReadCloser, fn func()) io.ReadCloser {
	br := &bodyReleaser{ReadCloser: body, fn: fn}
	if w, ok := body.(io.ReadWriteCloser); ok { // protocol upgrades
		return rwBodyReleaser{br, w}
	}
	return br
}

// loadCert loads a certificate and key, explaining what is wrong.
func loadCert(field string, t *TLS) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%s.tls.cert_file: cannot read %s: %w", field, t.CertFile, err)
	}
	keyPEM, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.tls.key_file: cannot read %s: %w", field, t.KeyFile, err)
	}
	if blk, _ := pem.Decode(certPEM); blk == nil {
		return nil, fmt.Errorf("%s.tls.cert_file: %s holds no PEM block (expected \"-----BEGIN CERTIFICATE-----\")", field, t.CertFile)
	} else if blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s.tls.cert_file: %s starts with a %q PEM block, expected CERTIFICATE (are cert_file and key_file swapped?)", field, t.CertFile, blk.Type)
	} else if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return nil, fmt.Errorf("%s.tls.cert_file: %s: the certificate does not parse: %w", field, t.CertFile, err)
	}
	if blk, _ := pem.Decode(keyPEM); blk == nil {
		return nil, fmt.Errorf("%s.tls.key_file: %s holds no PEM block (expected a PRIVATE KEY block)", field, t.KeyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s.tls: %s with %s: %w", field, t.CertFile, t.KeyFile, err)
	}
	return &c, nil
}
