package lb

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

func (l *LB) acceptTCP(f *frontend) {
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off like net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			l.log.Warn("accept", "frontend", f.cfg.Name, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !l.trackConn(c, true) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.trackConn(c, false)
			l.proxyTCP(f, c.(*net.TCPConn))
		}()
	}
}

func clientIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// connectServer picks a server and connects to it, with retries and
// redispatch. The returned server holds a slot the caller releases.
func (l *LB) connectServer(b *backend, ip string, pref *server, client, local net.Addr) (*server, net.Conn, error) {
	cfg := b.config()
	tried := map[*server]bool{}
	var s *server
	var lastErr error
	for attempt := 0; attempt <= *cfg.Retries; attempt++ {
		if s == nil {
			var err error
			s, err = b.acquire(l.ctx, ip, pref, tried)
			if err != nil {
				if lastErr != nil {
					return nil, nil, errors.Join(err, lastErr)
				}
				return nil, nil, err
			}
		}
		c, err := b.dial(l.ctx, s, cfg, client, local)
		if err == nil {
			b.connOK(s)
			return s, c, nil
		}
		lastErr = err
		b.connFailed(s, err)
		if cfg.Redispatch {
			tried[s] = true
			pref = nil
			b.release(s)
			s = nil
		}
	}
	if s != nil {
		b.release(s)
	}
	return nil, nil, lastErr
}

func (l *LB) proxyTCP(f *frontend, c *net.TCPConn) {
	b := f.backend.Load()
	cfg := b.config()
	s, sc, err := l.connectServer(b, clientIP(c.RemoteAddr()), nil, c.RemoteAddr(), c.LocalAddr())
	if err != nil {
		c.Close()
		l.log.Debug("tcp: no server", "frontend", f.cfg.Name, "client", c.RemoteAddr().String(), "err", err)
		return
	}
	clientTO := time.Duration(f.idle.Load())
	// The event loop takes the session over (and releases s when it ends);
	// when it cannot (not Linux, disabled, closing), the goroutines below
	// carry it.
	if l.tcpLoops.handoff(l, b, s, c, sc.(*net.TCPConn), clientTO, cfg.ServerTimeout) {
		return
	}
	defer c.Close()
	defer b.release(s)
	defer sc.Close()
	if !l.trackConn(sc, true) {
		return
	}
	defer l.trackConn(sc, false)
	s.track(c, true)
	defer s.track(c, false)
	pipe(c, sc.(*net.TCPConn), clientTO, cfg.ServerTimeout)
}

// spliceChunk is how much one io.CopyN moves before the idle deadline is
// pushed forward. io.CopyN wraps the source in an *io.LimitedReader, which
// (*net.TCPConn).ReadFrom still recognises, so on Linux the bytes move with
// splice(2) through a pipe and never enter user space.
const spliceChunk = 4 << 20

// pipe copies both directions between client and server until both sides
// have closed, handling half-close (a FIN is forwarded with CloseWrite) and
// inactivity timeouts: a side times out when neither direction moved a
// byte for its timeout (a long download with a silent client is active).
func pipe(client, server *net.TCPConn, clientTO, serverTO time.Duration) {
	var last atomic.Int64 // unix nano of the last progress in either direction
	last.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	cp := func(dst, src *net.TCPConn, idle time.Duration) {
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			dst.SetWriteDeadline(time.Now().Add(idle))
			n, err := io.CopyN(dst, src, spliceChunk)
			if n > 0 {
				last.Store(time.Now().UnixNano())
			}
			switch {
			case err == nil:
				continue
			case err == io.EOF:
				dst.CloseWrite()
				errc <- nil
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is active
				}
			}
			errc <- err
			return
		}
	}
	go cp(server, client, clientTO)
	go cp(client, server, serverTO)
	if err := <-errc; err != nil {
		client.Close()
		server.Close()
	}
	if err := <-errc; err != nil {
		client.Close()
		server.Close()
	}
}
