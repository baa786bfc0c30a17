package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The http fast path: a keep-alive pool of plain HTTP/1.1 connections per
// server, driven from the request goroutine (no per-connection reader and
// writer goroutines as in http.Transport). Protocol upgrades (WebSocket)
// go through httputil.ReverseProxy instead.

type bconn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time
	dl   time.Time // read/write deadline last set (raw path)
	lb   *LB
}

const maxIdlePerServer = 1024

var (
	brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}
	bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

// newBconn wraps a new server connection; LB.Close closes it if it is
// still open.
func (l *LB) newBconn(c net.Conn) *bconn {
	l.trackConn(c, true)
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	bw := bwPool.Get().(*bufio.Writer)
	bw.Reset(c)
	return &bconn{c: c, br: br, bw: bw, lb: l}
}

func (bc *bconn) close() {
	bc.lb.trackConn(bc.c, false)
	bc.c.Close()
	bc.br.Reset(nil)
	bc.bw.Reset(nil)
	brPool.Put(bc.br)
	bwPool.Put(bc.bw)
}

func (s *server) getIdle(now time.Time) *bconn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := len(s.idle); n > 0; n = len(s.idle) {
		bc := s.idle[n-1]
		s.idle = s.idle[:n-1]
		if now.Sub(bc.used) < 50*time.Second {
			return bc
		}
		go bc.close()
	}
	return nil
}

func (s *server) putIdle(bc *bconn) {
	bc.used = time.Now()
	s.mu.Lock()
	if len(s.idle) < maxIdlePerServer && !s.removed.Load() {
		s.idle = append(s.idle, bc)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	bc.close()
}

func (s *server) closeIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}

// hop-by-hop headers (RFC 9110 7.6.1) are not forwarded.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

func connectionListed(h http.Header) map[string]bool {
	var m map[string]bool
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = textprotoCanonical(strings.TrimSpace(f)); f != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[f] = true
			}
		}
	}
	return m
}

func textprotoCanonical(s string) string { return http.CanonicalHeaderKey(s) }

// writeRequest writes r to bw as an HTTP/1.1 request with X-Forwarded-*.
func writeRequest(bw *idleWriter, r *http.Request, ci *clientInfo, tls bool, dropCookie string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	listed := connectionListed(r.Header)
	xff := ""
	for k, vs := range r.Header {
		if hopHeaders[k] || listed[k] || k == "X-Forwarded-Proto" || k == "X-Forwarded-Host" || k == "Content-Length" {
			continue
		}
		if k == "X-Forwarded-For" {
			xff = strings.Join(vs, ", ")
			continue
		}
		if k == "Cookie" && dropCookie != "" {
			vs = stripCookie(vs, dropCookie)
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if ci.ip != "" {
		bw.WriteString("X-Forwarded-For: ")
		if xff != "" {
			bw.WriteString(xff)
			bw.WriteString(", ")
		}
		bw.WriteString(ci.ip)
		bw.WriteString("\r\n")
	}
	if tls {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	if r.Header.Get("Te") == "trailers" {
		bw.WriteString("Te: trailers\r\n")
	}
	chunked := false
	switch {
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n")
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		chunked = true
	}
	bw.WriteString("\r\n")
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		buf := buffers.Get()
		defer buffers.Put(buf)
		var dst io.Writer = bw
		var cw io.WriteCloser
		if chunked {
			cw = httputil.NewChunkedWriter(bw)
			dst = cw
		}
		if _, err := io.CopyBuffer(dst, r.Body, buf); err != nil {
			return err
		}
		if cw != nil {
			cw.Close()
			bw.WriteString("\r\n")
		}
	}
	return bw.Flush()
}

func stripCookie(vs []string, name string) []string {
	var out []string
	for _, v := range vs {
		var keep []string
		for _, part := range strings.Split(v, ";") {
			p := strings.TrimSpace(part)
			if p == "" || strings.HasPrefix(p, name+"=") {
				continue
			}
			keep = append(keep, p)
		}
		if len(keep) > 0 {
			out = append(out, strings.Join(keep, "; "))
		}
	}
	return out
}

type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

var errProxy = errors.New("proxy")

// serveFast proxies one request through the keep-alive pool. It returns
// false, having written nothing, when the caller should fall back to the
// ReverseProxy (protocol upgrades).
func (l *LB) serveFast(f *frontend, w http.ResponseWriter, r *http.Request, ci *clientInfo) {
	b := f.backend.Load()
	cfg := b.config()
	var pref *server
	dropCookie := ""
	if cfg.Stick == "cookie" {
		dropCookie = cfg.Cookie
		if ck, err := r.Cookie(cfg.Cookie); err == nil {
			b.mu.Lock()
			for _, s := range b.srvs {
				if s.name == ck.Value {
					pref = s
				}
			}
			b.mu.Unlock()
		}
	}
	var tried map[*server]bool // allocated on a redispatch only
	var lastErr error
	for attempt := 0; attempt <= *cfg.Retries; attempt++ {
		s, err := b.acquire(r.Context(), ci.ip, pref, tried)
		if err != nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		retry, err := l.exchange(b, s, cfg, w, r, ci, f.cfg.TLS != nil, dropCookie, pref != s)
		b.release(s)
		if err == nil {
			return
		}
		lastErr = err
		if !retry { // only connect failures: the body was not read
			break
		}
		if cfg.Redispatch {
			if tried == nil {
				tried = map[*server]bool{}
			}
			tried[s] = true
			pref = nil
		}
	}
	code := http.StatusBadGateway
	switch {
	case errors.Is(lastErr, errNoServer), errors.Is(lastErr, errQueueTimeout):
		code = http.StatusServiceUnavailable
	case errors.Is(lastErr, os.ErrDeadlineExceeded), errors.Is(lastErr, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(lastErr, errResponseStarted), errors.Is(lastErr, context.Canceled):
		return
	}
	l.log.Debug("http: proxy error", "frontend", f.cfg.Name, "err", lastErr)
	w.WriteHeader(code)
}

var errResponseStarted = errors.New("response already started")

// exchange sends r to s and copies the response to w. retry reports that
// nothing reached the server's application (connect failure) or a reused
// connection was found closed before any response byte.
func (l *LB) exchange(b *backend, s *server, cfg *Backend, w http.ResponseWriter, r *http.Request, ci *clientInfo, tls bool, dropCookie string, setCookie bool) (retry bool, err error) {
	now := time.Now()
	bc := (*bconn)(nil)
	if cfg.ProxyProtocol == 0 {
		bc = s.getIdle(now)
	}
	reused := bc != nil
	for {
		if bc == nil {
			c, err := b.dial(r.Context(), s, cfg, ci.remote, ci.local)
			if err != nil {
				b.connFailed(s, err)
				return true, err
			}
			b.connOK(s)
			bc = l.newBconn(c)
		}
		bc.dl = now.Add(cfg.ServerTimeout)
		bc.c.SetDeadline(bc.dl)
		err = writeRequest(&idleWriter{bc.bw, bc.c, cfg.ServerTimeout}, r, ci, tls, dropCookie)
		var resp *http.Response
		if err == nil {
			for {
				resp, err = http.ReadResponse(bc.br, r)
				if err != nil || resp.StatusCode >= 200 || resp.StatusCode == 101 {
					break
				}
				resp.Body.Close() // 1xx interim response
			}
		}
		if err != nil {
			bc.close()
			if reused && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) && connClosed(err) {
				// A pooled connection the server had closed: try a new one.
				bc, reused = nil, false
				continue
			}
			return false, err
		}
		h := w.Header()
		listed := connectionListed(resp.Header)
		for k, vs := range resp.Header {
			if hopHeaders[k] || listed[k] {
				continue
			}
			h[k] = vs
		}
		if setCookie {
			h.Add("Set-Cookie", (&http.Cookie{Name: cfg.Cookie, Value: s.name, Path: "/", HttpOnly: true}).String())
		}
		if len(resp.Trailer) > 0 {
			for k := range resp.Trailer {
				h.Add("Trailer", k)
			}
		}
		w.WriteHeader(resp.StatusCode)
		var dst io.Writer = w
		if resp.ContentLength < 0 {
			fl, _ := w.(http.Flusher)
			dst = flushWriter{w, fl}
		}
		cerr := copyIdle(dst, resp.Body, bc.c, cfg.ServerTimeout)
		for k, vs := range resp.Trailer {
			w.Header()[k] = vs
		}
		resp.Body.Close()
		if cerr != nil || resp.Close || cfg.ProxyProtocol != 0 {
			bc.close()
		} else {
			s.putIdle(bc) // its deadline is set again when it is reused
		}
		if cerr != nil {
			return false, errors.Join(errResponseStarted, cerr)
		}
		return false, nil
	}
}

// idleWriter is the buffered writer to a server; every write of request
// body data pushes the server-side inactivity deadline forward.
type idleWriter struct {
	*bufio.Writer
	c    net.Conn
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	if len(p) > 4<<10 {
		w.c.SetDeadline(time.Now().Add(w.idle)) // later than bconn.dl: safe
	}
	return w.Writer.Write(p)
}

// copyIdle copies a response body; the server's read deadline moves forward
// after every read, so server_timeout is an inactivity timeout.
func copyIdle(dst io.Writer, src io.Reader, c net.Conn, idle time.Duration) error {
	buf := buffers.Get()
	defer buffers.Put(buf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(idle))
	}
}

// connClosed: the server closed an idle pooled connection (not a timeout).
func connClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
