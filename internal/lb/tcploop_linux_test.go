package lb

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// withTCPPath runs the rest of the test with tcp sessions on path ("loop"
// or "goroutine") for the LBs it creates.
func withTCPPath(t *testing.T, path string) {
	old := tcpPathOverride
	tcpPathOverride = path
	t.Cleanup(func() { tcpPathOverride = old })
}

func bothTCPPaths(t *testing.T, f func(t *testing.T)) {
	for _, p := range []string{"loop", "goroutine"} {
		t.Run(p, func(t *testing.T) {
			withTCPPath(t, p)
			f(t)
		})
	}
}

func loopOnly(t *testing.T, f func(t *testing.T)) {
	withTCPPath(t, "loop")
	f(t)
}

// TestTCPGoroutinePath runs the tcp tests of tcp_test.go on the goroutine
// path too (the default is the event loop).
func TestTCPGoroutinePath(t *testing.T) {
	withTCPPath(t, "goroutine")
	for name, f := range map[string]func(*testing.T){
		"HalfCloseAndEcho":           TestTCPHalfCloseAndEcho,
		"Splice":                     TestTCPSplice,
		"ShutdownSessionsOnDown":     TestTCPShutdownSessionsOnDown,
		"MaxConnQueue":               TestTCPMaxConnQueue,
		"ClientTimeout":              TestClientTimeout,
		"UpdateLiveKeepsConnections": TestUpdateLiveKeepsConnections,
		"FirstAndLeastconnAndSource": TestTCPFirstAndLeastconnAndSource,
	} {
		t.Run(name, f)
	}
}

// TestTCPLoopIsUsed: by default a tcp session is owned by the event loop
// (the connection tracked for Close is the loop's stand-in).
func TestTCPLoopIsUsed(t *testing.T) {
	a := newTCPServer(t, "a")
	l := mustNew(t, tcpConfig("", Server{Name: "a", Address: a.addr()}))
	_, c := dialName(t, l.Addr("fe").String())
	defer c.Close()
	waitFor(t, "session tracked", 5*time.Second, func() bool {
		l.connMu.Lock()
		defer l.connMu.Unlock()
		for c := range l.conns {
			if _, ok := c.(*loopConn); ok {
				return true
			}
		}
		return false
	})
}

// fdCount counts this process's sockets, epoll sets and eventfds. Pipes
// are left out: Go's own splice keeps a pool of them, freed by the GC.
func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "anon_inode:") {
			n++
		}
	}
	return n
}

func activeConns(l *LB, be, srv string) int64 {
	st, _ := l.Status().Server(be, srv)
	return st.Active
}

// pattern is a deterministic byte stream, so a receiver can check every byte.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestTCPLoopBackpressureSlowReader: a server sends 48 MiB to a client
// that does not read. The proxy must stop reading from the server (the
// server's writes stall well before 48 MiB) instead of buffering, then
// deliver every byte intact when the client reads. With and without the
// switch to splice.
// loopSplice selects the event loop for the test, with splice (the
// default switch after bulk reads) or without it.
func loopSplice(t *testing.T, splice bool) {
	withTCPPath(t, "loop")
	if !splice {
		old := spliceAfter
		spliceAfter = math.MaxInt
		t.Cleanup(func() { spliceAfter = old })
	}
}

func TestTCPLoopBackpressureSlowReader(t *testing.T) {
	for _, splice := range []bool{true, false} {
		t.Run(fmt.Sprintf("splice=%v", splice), func(t *testing.T) {
			loopSplice(t, splice)
			const size = 48 << 20
			data := pattern(1, size)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var written atomic.Int64
			srvDone := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					srvDone <- err
					return
				}
				defer c.Close()
				for off := 0; off < size; off += 32 << 10 {
					n, err := c.Write(data[off : off+32<<10])
					written.Add(int64(n))
					if err != nil {
						srvDone <- err
						return
					}
				}
				srvDone <- nil
			}()
			l := mustNew(t, tcpConfig("", Server{Name: "s", Address: ln.Addr().String()}))
			c, err := net.Dial("tcp", l.Addr("fe").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Wait until the server's writes stop progressing.
			deadline := time.Now().Add(30 * time.Second)
			last, stable := int64(-1), 0
			for stable < 5 {
				if time.Now().After(deadline) {
					t.Fatalf("server writes never stalled: %d bytes written", written.Load())
				}
				time.Sleep(50 * time.Millisecond)
				if w := written.Load(); w == last && w > 0 {
					stable++
				} else {
					last, stable = w, 0
				}
			}
			t.Logf("server stalled after %d KiB with the client not reading", last>>10)
			if last >= size {
				t.Fatalf("the proxy took all %d bytes from the server while the client read nothing", last)
			}
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			got := make([]byte, 0, size)
			buf := make([]byte, 7000) // odd-sized, small reads
			for len(got) < size {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if len(got) != size || !bytes.Equal(got, data) {
				t.Fatalf("client got %d bytes (crc %08x), want %d (crc %08x)", len(got), crc32.ChecksumIEEE(got), size, crc32.ChecksumIEEE(data))
			}
			if err := <-srvDone; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTCPHalfCloseServerFirst: the server sends a greeting and shuts its
// write side; the client sees EOF yet its data still reaches the server;
// then the client's EOF reaches it and the session ends, releasing the
// server's slot.
func TestTCPHalfCloseServerFirst(t *testing.T) {
	bothTCPPaths(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			defer c.Close()
			io.WriteString(c, "bye\n")
			c.(*net.TCPConn).CloseWrite()
			b, _ := io.ReadAll(c)
			got <- b
		}()
		l := mustNew(t, tcpConfig("", Server{Name: "s", Address: ln.Addr().String()}))
		c, err := net.Dial("tcp", l.Addr("fe").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "bye\n" {
			t.Fatalf("client read %q, %v; want the greeting then EOF", b, err)
		}
		payload := pattern(2, 3<<20)
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("write after the server's half-close: %v", err)
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case b := <-got:
			if !bytes.Equal(b, payload) {
				t.Fatalf("server got %d bytes, want %d intact", len(b), len(payload))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("server never saw the client's EOF")
		}
		waitFor(t, "session released", 5*time.Second, func() bool { return activeConns(l, "be", "s") == 0 })
	})
}

// TestTCPLoopTimeoutIsInactivity: a download the client never answers is
// active, so client_timeout does not end it; once nothing moves in either
// direction, the session ends. Event loop only: the goroutine path notes
// progress once per 4 MiB chunk, so a slow trickle of a download there
// ends at client_timeout (see docs/lb.md).
func TestTCPLoopTimeoutIsInactivity(t *testing.T) {
	loopOnly(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		stopSending := make(chan struct{})
		srvClosed := make(chan struct{})
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
		send:
			for {
				select {
				case <-tk.C:
					if _, err := c.Write([]byte{'x'}); err != nil {
						return
					}
				case <-stopSending:
					break send
				}
			}
			c.Read(make([]byte, 1)) // until the proxy closes
			close(srvClosed)
		}()
		cfg := tcpConfig("", Server{Name: "s", Address: ln.Addr().String()})
		cfg.Frontends[0].ClientTimeout = 2 * time.Second
		l := mustNew(t, cfg)
		c, err := net.Dial("tcp", l.Addr("fe").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 200 bytes at one per 20 ms: about 4 s, twice the timeout (which
		// leaves a loaded CI machine 2 s of slack per byte).
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 200)); err != nil {
			t.Fatalf("active download ended: %v", err)
		}
		close(stopSending)
		_, err = io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("idle session not closed")
		}
		select {
		case <-srvClosed:
		case <-time.After(30 * time.Second):
			t.Fatal("server side of the idle session not closed")
		}
		waitFor(t, "session released", 5*time.Second, func() bool { return activeConns(l, "be", "s") == 0 })
	})
}

// TestTCPLoopManySessions: 200 concurrent sessions through the echo server,
// each with its own data in odd-sized writes, every byte checked; then the
// accounting and the file descriptors are back where they started. With
// small writes batched at the end of each loop round (the default) and
// written at once.
func TestTCPLoopManySessions(t *testing.T) {
	for _, p := range []string{"loop", "loop-immediate"} {
		t.Run(p, func(t *testing.T) {
			withTCPPath(t, p)
			testManySessions(t)
		})
	}
}

func testManySessions(t *testing.T) {
	a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
	l := mustNew(t, tcpConfig("leastconn", Server{Name: "a", Address: a.addr()}, Server{Name: "b", Address: b.addr()}))
	addr := l.Addr("fe").String()
	nameOnce(t, addr) // start the loops before counting descriptors
	waitFor(t, "first session released", 5*time.Second, func() bool {
		return activeConns(l, "be", "a")+activeConns(l, "be", "b") == 0
	})
	fds := fdCount(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			var name []byte
			for b := make([]byte, 1); len(name) == 0 || name[len(name)-1] != '\n'; {
				if _, err := c.Read(b); err != nil {
					errs <- fmt.Errorf("session %d: greeting: %w", i, err)
					return
				}
				name = append(name, b[0])
			}
			size := 1 + i*997%(300<<10)
			if i%10 == 0 {
				size = 2 << 20 // some large enough to splice
			}
			data := pattern(uint64(i)+10, size)
			go func() {
				for off := 0; off < size; {
					k := min(size-off, 1+(off*31+i)%20000)
					if _, err := c.Write(data[off : off+k]); err != nil {
						return
					}
					off += k
				}
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("session %d (%s): %d of %d bytes back, %v", i, name, len(got), size, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "sessions released", 10*time.Second, func() bool {
		return activeConns(l, "be", "a")+activeConns(l, "be", "b") == 0
	})
	st := l.Status()
	sa, _ := st.Server("be", "a")
	sb, _ := st.Server("be", "b")
	if sa.Total+sb.Total != n+1 || sa.Total < n/4 || sb.Total < n/4 {
		t.Fatalf("totals a=%d b=%d, want %d spread by leastconn", sa.Total, sb.Total, n+1)
	}
	waitFor(t, "descriptors closed", 10*time.Second, func() bool { return fdCount(t) <= fds })
	l.connMu.Lock()
	left := len(l.conns)
	l.connMu.Unlock()
	if left != 0 {
		t.Fatalf("%d connections still tracked", left)
	}
}

// TestTCPLoopCloseWithSessionsOpen: Close ends every session at once (the
// clients see the connection closed), returns, and leaves no descriptor.
func TestTCPLoopCloseWithSessionsOpen(t *testing.T) {
	bothTCPPaths(t, func(t *testing.T) {
		fds := fdCount(t)
		a := newTCPServer(t, "a")
		l, err := New(tcpConfig("", Server{Name: "a", Address: a.addr()}), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		var cs []net.Conn
		for range 20 {
			n, c := dialName(t, l.Addr("fe").String())
			if n != "a" {
				t.Fatalf("got %q", n)
			}
			defer c.Close()
			cs = append(cs, c)
		}
		done := make(chan struct{})
		go func() { l.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Close did not return")
		}
		for i, c := range cs {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("session %d still open after Close: %v", i, err)
			}
			c.Close()
		}
		a.stop()
		waitFor(t, "descriptors closed", 10*time.Second, func() bool { return fdCount(t) <= fds })
	})
}

// TestTCPLoopServerResetEndsSession: a server that resets its connection
// ends the session (the client sees it closed) and frees the slot.
func TestTCPLoopServerResetEndsSession(t *testing.T) {
	bothTCPPaths(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 1))
			c.(*net.TCPConn).SetLinger(0) // RST on close
			c.Close()
		}()
		l := mustNew(t, tcpConfig("", Server{Name: "s", Address: ln.Addr().String()}))
		c, err := net.Dial("tcp", l.Addr("fe").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("session not ended after the server's reset")
		}
		waitFor(t, "session released", 5*time.Second, func() bool { return activeConns(l, "be", "s") == 0 })
	})
}

// TestTCPLoopServerClosesWhileClientSlow: the client sends its request and
// half-closes, then reads the answer slowly; the server writes more than
// all the buffers between them hold, and closes. Once its FIN is in, the
// proxy's server socket reports EPOLLHUP (its FIN in, ours out) while the
// rest of the answer still waits in the proxy (pipe, socket buffer) for
// the client: every byte must still arrive. (The loop used to end the
// session on that HUP when it was not reading the server at the moment: a
// 2 MiB session of TestTCPLoopManySessions got a truncated answer about
// one run in twenty.)
func TestTCPLoopServerClosesWhileClientSlow(t *testing.T) {
	for _, splice := range []bool{true, false} {
		t.Run(fmt.Sprintf("splice=%v", splice), func(t *testing.T) {
			loopSplice(t, splice)
			const size = 16 << 20
			data := pattern(7, size)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			closed := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					closed <- err
					return
				}
				// Read the request to its end, answer, close.
				if _, err := io.Copy(io.Discard, c); err != nil {
					c.Close()
					closed <- err
					return
				}
				_, err = c.Write(data)
				c.Close()
				closed <- err
			}()
			l := mustNew(t, tcpConfig("", Server{Name: "s", Address: ln.Addr().String()}))
			nc, err := net.Dial("tcp", l.Addr("fe").String())
			if err != nil {
				t.Fatal(err)
			}
			c := nc.(*net.TCPConn)
			defer c.Close()
			if _, err := c.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			c.SetReadDeadline(time.Now().Add(120 * time.Second))
			got := make([]byte, 0, size)
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("read: %v after %d bytes", err, len(got))
				}
				time.Sleep(time.Millisecond) // a slow reader
			}
			if err := <-closed; err != nil {
				t.Fatalf("server: %v", err)
			}
			if len(got) != size || !bytes.Equal(got, data) {
				t.Fatalf("%d of %d bytes arrived (equal prefix: %v)", len(got), size, bytes.Equal(got, data[:min(len(got), size)]))
			}
		})
	}
}
