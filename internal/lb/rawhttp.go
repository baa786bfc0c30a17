package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// The raw HTTP/1.1 path: plain-text http frontends parse the common case
// (HTTP/1.1, no request Transfer-Encoding, no Upgrade/Expect, no cookie
// stickiness or PROXY protocol) themselves, without net/http's per-request
// allocations and background reads, and forward request and response
// heads line by line. Anything else hands the connection, with the bytes
// already read, to the net/http server of the frontend.

const maxHead = 16 << 10

var (
	rawBrPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxHead) }}
	rawBwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

// chanListener feeds handed-off connections to an http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// head is a parsed message head; slices point into the peeked buffer.
type head struct {
	raw       []byte
	line      []byte   // request or status line without CRLF
	fields    [][]byte // header lines without CRLF
	clen      int64    // -1 when absent
	chunked   bool
	otherTE   bool
	connClose bool
	upgrade   bool
	expect    bool
	host      []byte
	xff       []byte
}

// readHead peeks a complete head (through the empty line) without
// consuming it.
func readHead(br *bufio.Reader) ([]byte, error) {
	for {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
				return b[:i+4], nil
			}
			if n >= maxHead {
				return nil, errHeadTooBig
			}
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, err
		}
	}
}

var errHeadTooBig = errors.New("message head too big")

func parseHead(raw []byte) (*head, bool) { return parseHeadInto(&head{}, raw) }

// parseHeadInto parses into h, reusing its fields slice.
func parseHeadInto(h *head, raw []byte) (*head, bool) {
	*h = head{raw: raw, clen: -1, fields: h.fields[:0]}
	rest := raw[:len(raw)-2]
	first := true
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return nil, false
		}
		ln := rest[:i]
		rest = rest[i+2:]
		if first {
			h.line, first = ln, false
			continue
		}
		c := bytes.IndexByte(ln, ':')
		if c <= 0 || ln[0] == ' ' || ln[0] == '\t' {
			return nil, false // obsolete line folding or garbage
		}
		name, val := ln[:c], bytes.TrimSpace(ln[c+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 || h.clen >= 0 {
				return nil, false
			}
			h.clen = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if bytes.EqualFold(val, []byte("chunked")) && !h.chunked {
				h.chunked = true
			} else {
				h.otherTE = true
			}
		case bytes.EqualFold(name, []byte("Connection")):
			for _, tok := range bytes.Split(val, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				if bytes.EqualFold(tok, []byte("close")) {
					h.connClose = true
				} else if !bytes.EqualFold(tok, []byte("keep-alive")) && len(tok) > 0 {
					h.otherTE = true // other connection-listed headers: leave to net/http
				}
			}
		case bytes.EqualFold(name, []byte("Upgrade")):
			h.upgrade = true
		case bytes.EqualFold(name, []byte("Expect")):
			h.expect = true
		case bytes.EqualFold(name, []byte("Host")):
			if h.host != nil {
				return nil, false
			}
			h.host = val
		case bytes.EqualFold(name, []byte("X-Forwarded-For")):
			if h.xff != nil {
				return nil, false
			}
			h.xff = val
		}
		h.fields = append(h.fields, ln)
	}
	if h.chunked && h.clen >= 0 {
		return nil, false
	}
	return h, !first
}

func isHop(field []byte) bool {
	c := bytes.IndexByte(field, ':')
	name := field[:c]
	for _, h := range [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Transfer-Encoding", "Content-Length",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Proxy-Authenticate", "Proxy-Authorization"} {
		if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

func (l *LB) acceptRaw(f *frontend, cl *chanListener) {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("accept", "frontend", f.cfg.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !l.trackConn(c, true) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.trackConn(c, false) // a handed-off conn is the http.Server's
			if !l.serveRaw(f, c, cl) {
				c.Close()
			}
		}()
	}
}

// serveRaw serves requests on c; it returns true when c was handed off.
func (l *LB) serveRaw(f *frontend, c net.Conn, cl *chanListener) bool {
	br := rawBrPool.Get().(*bufio.Reader)
	br.Reset(c)
	bw := rawBwPool.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		br.Reset(nil)
		bw.Reset(nil)
		rawBrPool.Put(br)
		rawBwPool.Put(bw)
	}()
	ci := &clientInfo{remote: c.RemoteAddr(), local: c.LocalAddr(), ip: clientIP(c.RemoteAddr()), conn: c}
	var reqHead, respHead head
	var dl time.Time
	for {
		if f.stopped.Load() {
			return false
		}
		// The client inactivity deadline, moved only when a tenth of it
		// has passed (each move costs a timer update).
		if idle := time.Duration(f.idle.Load()); time.Until(dl) < idle*9/10 {
			dl = time.Now().Add(idle)
			c.SetReadDeadline(dl)
		}
		raw, err := readHead(br)
		if err != nil {
			if errors.Is(err, errHeadTooBig) {
				io.WriteString(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			} else if br.Buffered() > 0 && !errors.Is(err, io.EOF) {
				return l.handoff(c, br, cl)
			}
			return false
		}
		b := f.backend.Load()
		cfg := b.config()
		h, ok := parseHeadInto(&reqHead, raw)
		if !ok || h.chunked || h.otherTE || h.upgrade || h.expect || h.host == nil ||
			!bytes.HasSuffix(h.line, []byte(" HTTP/1.1")) || cfg.Stick == "cookie" || cfg.ProxyProtocol != 0 {
			return l.handoff(c, br, cl)
		}
		isHead := bytes.HasPrefix(h.line, []byte("HEAD "))
		if h.clen >= spliceMin {
			dl = time.Time{} // copyUpload changes the client's read deadline
		}
		keep, err := l.rawExchange(b, cfg, h, &respHead, isHead, br, bw, ci)
		if err != nil || !keep {
			bw.Flush()
			return false
		}
	}
}

// handoff gives c, with what br has buffered, to the net/http server.
func (l *LB) handoff(c net.Conn, br *bufio.Reader, cl *chanListener) bool {
	buf, _ := br.Peek(br.Buffered())
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(append([]byte(nil), buf...)), c)}
	c.SetReadDeadline(time.Time{})
	select {
	case cl.ch <- pc:
		return true
	case <-cl.done:
		return false
	}
}

var (
	resp502 = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
	resp503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
	resp504 = "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n"
)

// rawExchange forwards one request (its head already peeked in br) and its
// response. keep reports that the client connection can serve another.
func (l *LB) rawExchange(b *backend, cfg *Backend, h, rh *head, isHead bool, br *bufio.Reader, bw *bufio.Writer, ci *clientInfo) (keep bool, err error) {
	var tried map[*server]bool
	var lastErr error
	hl := len(h.raw)
	for attempt := 0; attempt <= *cfg.Retries; attempt++ {
		s, err := b.acquire(l.ctx, ci.ip, nil, tried)
		if err != nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		retry, keep, err := l.rawOnce(b, s, cfg, h, rh, isHead, br, bw, ci)
		b.release(s)
		if err == nil {
			return keep, nil
		}
		if errors.Is(err, errResponseStarted) {
			return false, err
		}
		lastErr = err
		if !retry {
			break
		}
		if cfg.Redispatch {
			if tried == nil {
				tried = map[*server]bool{}
			}
			tried[s] = true
		}
	}
	// The request was not forwarded completely: answer and close if its
	// body is still unread.
	if br.Buffered() >= hl {
		br.Discard(hl)
	}
	resp := resp502
	switch {
	case errors.Is(lastErr, errNoServer), errors.Is(lastErr, errQueueTimeout):
		resp = resp503
	case isTimeout(lastErr):
		resp = resp504
	}
	bw.WriteString(resp)
	return false, bw.Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rawOnce does one attempt on server s. Until the request head is consumed
// from br nothing is lost, so a connect failure or a closed pooled
// connection can be retried.
func (l *LB) rawOnce(b *backend, s *server, cfg *Backend, h, rh *head, isHead bool, br *bufio.Reader, bw *bufio.Writer, ci *clientInfo) (retry, keep bool, err error) {
	now := time.Now()
	bc := s.getIdle(now)
	reused := bc != nil
	for {
		if bc == nil {
			c, err := b.dial(l.ctx, s, cfg, ci.remote, ci.local)
			if err != nil {
				b.connFailed(s, err)
				return true, false, err
			}
			b.connOK(s)
			bc = l.newBconn(c)
		}
		if bc.dl.Sub(now) < cfg.ServerTimeout*9/10 {
			bc.dl = now.Add(cfg.ServerTimeout)
			bc.c.SetDeadline(bc.dl)
		}
		// Request head.
		w := bc.bw
		w.Write(h.line)
		w.WriteString("\r\n")
		for _, fl := range h.fields {
			if isHop(fl) {
				continue
			}
			w.Write(fl)
			w.WriteString("\r\n")
		}
		w.WriteString("X-Forwarded-For: ")
		if h.xff != nil {
			w.Write(h.xff)
			w.WriteString(", ")
		}
		w.WriteString(ci.ip)
		w.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
		w.Write(h.host)
		w.WriteString("\r\n")
		if h.clen > 0 {
			w.WriteString("Content-Length: ")
			w.WriteString(strconv.FormatInt(h.clen, 10))
			w.WriteString("\r\n")
		}
		w.WriteString("\r\n")
		var werr error
		if h.clen > 0 {
			// The body is consumed: no retry past this point.
			br.Discard(len(h.raw))
			if werr = copyUpload(w, br, bc, h.clen, cfg.ServerTimeout, ci.conn); werr != nil {
				bc.close()
				return false, false, werr
			}
			werr = w.Flush()
		} else {
			werr = w.Flush()
		}
		var rawResp []byte
		code := 0
		for werr == nil {
			if rawResp, werr = readHead(bc.br); werr != nil {
				break
			}
			var ok bool
			_, ok = parseHeadInto(rh, rawResp)
			if !ok || len(rh.line) < 12 || rh.otherTE || !bytes.HasPrefix(rh.line, []byte("HTTP/1.")) {
				werr = errors.New("malformed response head from " + s.addr)
				break
			}
			code, _ = strconv.Atoi(string(rh.line[9:12]))
			if code >= 200 {
				break
			}
			bc.br.Discard(len(rawResp)) // 1xx: we never send Expect or Upgrade here
		}
		if werr != nil {
			bc.close()
			if reused && h.clen <= 0 && connClosed(werr) {
				bc, reused = nil, false
				continue
			}
			return false, false, werr
		}
		if h.clen <= 0 {
			br.Discard(len(h.raw))
		}
		noBody := isHead || code == 204 || code == 304
		closeDelim := !noBody && !rh.chunked && rh.clen < 0
		keep = !h.connClose && !closeDelim
		// Response head.
		bw.WriteString("HTTP/1.1")
		bw.Write(rh.line[8:])
		bw.WriteString("\r\n")
		for _, fl := range rh.fields {
			if isHop(fl) {
				continue
			}
			bw.Write(fl)
			bw.WriteString("\r\n")
		}
		if rh.clen >= 0 {
			bw.WriteString("Content-Length: ")
			bw.WriteString(strconv.FormatInt(rh.clen, 10))
			bw.WriteString("\r\n")
		}
		if rh.chunked {
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		}
		if !keep {
			bw.WriteString("Connection: close\r\n")
		}
		bw.WriteString("\r\n")
		bc.br.Discard(len(rawResp))
		var cerr error
		switch {
		case noBody:
		case rh.chunked:
			cerr = copyChunked(bw, bc, cfg.ServerTimeout, ci.conn)
		case rh.clen >= 0:
			cerr = copyBody(bw, bc, rh.clen, cfg.ServerTimeout, ci.conn)
		default:
			cerr = copyN(bw, bc, -1, cfg.ServerTimeout)
		}
		if cerr == nil {
			cerr = bw.Flush()
		}
		if cerr != nil || rh.connClose || closeDelim || bytes.HasPrefix(rh.line, []byte("HTTP/1.0")) {
			bc.close()
		} else {
			s.putIdle(bc)
		}
		if cerr != nil {
			return false, false, errors.Join(errResponseStarted, cerr)
		}
		return false, keep, nil
	}
}

// copyN copies n bytes (n < 0: until EOF) from the server, moving the
// inactivity deadline forward per piece and flushing when the server has
// nothing more buffered.
func copyN(bw *bufio.Writer, bc *bconn, n int64, idle time.Duration) error {
	for first := true; n != 0; first = false {
		if !first {
			bc.dl = time.Now().Add(idle)
			bc.c.SetDeadline(bc.dl)
		}
		if bc.br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		want := int64(64 << 10)
		if n > 0 && n < want {
			want = n
		}
		m, err := io.CopyN(bw, bc.br, want)
		if n > 0 {
			n -= m
		}
		if err != nil {
			if n < 0 && err == io.EOF {
				return nil
			}
			return err
		}
	}
	return nil
}

// copyChunked forwards a chunked body as is (sizes, extensions, trailers).
func copyChunked(bw *bufio.Writer, bc *bconn, idle time.Duration, client net.Conn) error {
	for first := true; ; first = false {
		if !first && bc.br.Buffered() == 0 {
			bc.dl = time.Now().Add(idle)
			bc.c.SetDeadline(bc.dl)
		}
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		bw.Write(line)
		t := bytes.TrimSpace(line)
		if i := bytes.IndexByte(t, ';'); i >= 0 {
			t = t[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(t)), 16, 64)
		if err != nil || size < 0 {
			return errors.New("malformed chunk size")
		}
		if size == 0 {
			for { // trailers, then the empty line
				line, err := bc.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				bw.Write(line)
				if len(bytes.TrimSpace(line)) == 0 {
					return nil
				}
			}
		}
		if err := copyBody(bw, bc, size+2, idle, client); err != nil {
			return err
		}
		if bc.br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// spliceMin is the body size from which a response body moves from the
// server socket to the client socket with splice(2) instead of through
// the buffers.
const spliceMin = 64 << 10

// copyBody copies n bytes of body. Large bodies between two TCP sockets
// are spliced: what the server reader has buffered goes first, then
// io.CopyN between the *net.TCPConn (see pipe in tcp.go).
func copyBody(bw *bufio.Writer, bc *bconn, n int64, idle time.Duration, client net.Conn) error {
	dst, ok1 := client.(*net.TCPConn)
	src, ok2 := bc.c.(*net.TCPConn)
	if !ok1 || !ok2 || n < spliceMin {
		return copyN(bw, bc, n, idle)
	}
	if k := int64(bc.br.Buffered()); k > 0 {
		if _, err := io.CopyN(bw, bc.br, min(k, n)); err != nil {
			return err
		}
		n -= min(k, n)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	defer dst.SetWriteDeadline(time.Time{})
	bc.dl = time.Time{} // deadlines are set again on the next use
	for n > 0 {
		now := time.Now()
		src.SetReadDeadline(now.Add(idle))
		dst.SetWriteDeadline(now.Add(idle))
		m, err := io.CopyN(dst, src, min(n, spliceChunk))
		n -= m
		if err != nil {
			if m > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue // slow but moving
			}
			return err
		}
	}
	return nil
}

// copyUpload copies a request body of n bytes from the client to the
// server; large bodies between two TCP sockets are spliced.
func copyUpload(w *bufio.Writer, br *bufio.Reader, bc *bconn, n int64, idle time.Duration, client net.Conn) error {
	src, ok1 := client.(*net.TCPConn)
	dst, ok2 := bc.c.(*net.TCPConn)
	if !ok1 || !ok2 || n < spliceMin {
		_, err := io.CopyN(w, br, n)
		return err
	}
	if k := int64(br.Buffered()); k > 0 {
		if _, err := io.CopyN(w, br, min(k, n)); err != nil {
			return err
		}
		n -= min(k, n)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	bc.dl = time.Time{}
	for n > 0 {
		now := time.Now()
		src.SetReadDeadline(now.Add(idle))
		dst.SetWriteDeadline(now.Add(idle))
		m, err := io.CopyN(dst, src, min(n, spliceChunk))
		n -= m
		if err != nil {
			if m > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
	}
	// serveRaw sets the client's read deadline again for the next request.
	return nil
}
