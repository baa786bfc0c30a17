package lb

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// tcpServer is a real TCP server on loopback. On each connection it writes
// its name and a newline, then echoes until EOF, then closes.
type tcpServer struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]bool
}

func newTCPServer(t *testing.T, name string) *tcpServer {
	return newTCPServerAt(t, name, "127.0.0.1:0")
}

func newTCPServerAt(t *testing.T, name, addr string) *tcpServer {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a restart
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{name: name, ln: ln, cs: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.cs[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.cs {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// dialName connects to addr and returns the greeting (server name) and the conn.
func dialName(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil
	}
	c.SetDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

func nameOnce(t *testing.T, addr string) string {
	n, c := dialName(t, addr)
	if c != nil {
		c.Close()
	}
	return n
}

// httpServer is a real HTTP server on loopback answering with its name.
func newHTTPServer(t *testing.T, name string, h http.HandlerFunc, opts ...func(*http.Server)) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Server", name)
			io.WriteString(w, name)
		}
	}
	srv := &http.Server{Handler: h}
	for _, o := range opts {
		o(srv)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

func ip(n int) *int { return &n }

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustNew(t *testing.T, cfg Config) *LB {
	t.Helper()
	l, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func serverState(l *LB, b, s string) string {
	st, _ := l.Status().Server(b, s)
	return st.State
}
