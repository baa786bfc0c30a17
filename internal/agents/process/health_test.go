package process

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// httpServer serves status(n) for the n-th request (1-based) on
// 127.0.0.1:0 and counts requests.
type httpServer struct {
	URL   string
	count atomic.Int64
}

func newHTTPServer(t *testing.T, status func(n int64) int) *httpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &httpServer{URL: "http://" + ln.Addr().String() + "/health"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status(s.count.Add(1)))
	})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	return s
}

// tcpListener accepts and closes connections until the test ends.
func tcpListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func sleeper(h *Health) Config {
	return Config{Command: []string{"sleep", "1000"}, Health: h}
}

func waitHealthy(t *testing.T, p *Proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := p.WaitHealthy(ctx); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
}

func waitUnhealthy(t *testing.T, p *Proc) string {
	t.Helper()
	select {
	case r := <-p.Unhealthy():
		return r
	case <-time.After(patience):
		t.Fatal("no unhealthy report")
		return ""
	}
}

func noUnhealthy(t *testing.T, p *Proc) {
	t.Helper()
	select {
	case r := <-p.Unhealthy():
		t.Fatalf("unexpected unhealthy report: %s", r)
	default:
	}
}

const fast = 5 * time.Millisecond

func TestHealthHTTP(t *testing.T) {
	checkLeaks(t)
	t.Run("2xx healthy", func(t *testing.T) {
		srv := newHTTPServer(t, func(int64) int { return http.StatusNoContent })
		p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: fast, Timeout: patience}))
		waitHealthy(t, p)
		waitUntil(t, "more checks", func() bool { return srv.count.Load() >= 5 })
		noUnhealthy(t, p)
	})
	t.Run("3xx healthy, not followed", func(t *testing.T) {
		srv := newHTTPServer(t, func(int64) int { return http.StatusFound })
		p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: fast, Timeout: patience}))
		waitHealthy(t, p)
	})
	t.Run("5xx unhealthy after Fall", func(t *testing.T) {
		srv := newHTTPServer(t, func(int64) int { return http.StatusInternalServerError })
		p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: fast, Timeout: patience, Fall: 3}))
		reason := waitUnhealthy(t, p)
		if n := srv.count.Load(); n < 3 {
			t.Errorf("reported after %d checks, want >= 3", n)
		}
		if !strings.Contains(reason, "3 consecutive") || !strings.Contains(reason, "500") {
			t.Errorf("reason %q", reason)
		}
		// It keeps failing, so it is reported again after 3 more failures.
		waitUnhealthy(t, p)
		if n := srv.count.Load(); n < 6 {
			t.Errorf("second report after %d checks, want >= 6", n)
		}
	})
	t.Run("fewer than Fall consecutive failures are not reported", func(t *testing.T) {
		// fail, fail, pass, fail, fail, pass, ...
		srv := newHTTPServer(t, func(n int64) int {
			if n%3 == 0 {
				return http.StatusOK
			}
			return http.StatusServiceUnavailable
		})
		p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: fast, Timeout: patience, Fall: 3}))
		// Checks run one after another, so when request 12 arrives the
		// results of requests 1..11 have been handled.
		waitUntil(t, "12 checks", func() bool { return srv.count.Load() >= 12 })
		noUnhealthy(t, p)
	})
	t.Run("becomes healthy after failures", func(t *testing.T) {
		srv := newHTTPServer(t, func(n int64) int {
			if n <= 3 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: fast, Timeout: patience, Fall: 10}))
		waitHealthy(t, p)
		if n := srv.count.Load(); n < 4 {
			t.Errorf("healthy after %d checks, want >= 4", n)
		}
	})
}

func TestHealthTCP(t *testing.T) {
	checkLeaks(t)
	t.Run("healthy", func(t *testing.T) {
		addr := tcpListener(t)
		p := start(t, sleeper(&Health{TCP: addr, Interval: fast, Timeout: patience}))
		waitHealthy(t, p)
	})
	t.Run("unhealthy", func(t *testing.T) {
		p := start(t, sleeper(&Health{TCP: closedAddr(t), Interval: fast, Timeout: patience, Fall: 2}))
		reason := waitUnhealthy(t, p)
		if !strings.Contains(reason, "tcp check") || !strings.Contains(reason, "2 consecutive") {
			t.Errorf("reason %q", reason)
		}
	})
}

func TestHealthExec(t *testing.T) {
	checkLeaks(t)
	t.Run("healthy", func(t *testing.T) {
		p := start(t, sleeper(&Health{Exec: []string{"true"}, Interval: fast, Timeout: patience}))
		waitHealthy(t, p)
	})
	t.Run("unhealthy", func(t *testing.T) {
		p := start(t, sleeper(&Health{Exec: []string{"/bin/sh", "-c", "exit 7"}, Interval: fast, Timeout: patience, Fall: 2}))
		reason := waitUnhealthy(t, p)
		if !strings.Contains(reason, "exit status 7") || !strings.Contains(reason, "2 consecutive") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		p := start(t, sleeper(&Health{Exec: []string{"sleep", "1000"}, Interval: fast, Timeout: 50 * time.Millisecond}))
		reason := waitUnhealthy(t, p)
		if !strings.Contains(reason, "timed out") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("uses Env and Dir", func(t *testing.T) {
		dir := t.TempDir()
		p := start(t, Config{
			Command: []string{"sleep", "1000"},
			Env:     map[string]string{"WANT": dir},
			Dir:     dir,
			Health:  &Health{Exec: []string{"/bin/sh", "-c", `test "$(pwd)" = "$WANT"`}, Interval: fast, Timeout: patience},
		})
		waitHealthy(t, p)
	})
}

func TestHealthCombined(t *testing.T) {
	checkLeaks(t)
	srv := newHTTPServer(t, func(int64) int { return http.StatusOK })
	p := start(t, sleeper(&Health{HTTP: srv.URL, TCP: closedAddr(t), Interval: fast, Timeout: patience}))
	reason := waitUnhealthy(t, p)
	if !strings.Contains(reason, "tcp check") {
		t.Errorf("reason %q", reason)
	}
}

func TestWaitHealthy(t *testing.T) {
	checkLeaks(t)
	t.Run("no health check", func(t *testing.T) {
		p := start(t, Config{Command: []string{"sleep", "1000"}})
		if err := p.WaitHealthy(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("process exits first", func(t *testing.T) {
		p := start(t, Config{
			Command: []string{"/bin/sh", "-c", "exit 2"},
			Health:  &Health{TCP: closedAddr(t), Interval: fast, Timeout: patience},
		})
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		err := p.WaitHealthy(ctx)
		if err == nil || !strings.Contains(err.Error(), "exit status 2") {
			t.Fatalf("WaitHealthy = %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("WaitHealthy waited for ctx instead of noticing the exit")
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		p := start(t, sleeper(&Health{TCP: closedAddr(t), Interval: fast, Timeout: patience}))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := p.WaitHealthy(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitHealthy = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("stopped first", func(t *testing.T) {
		p := start(t, sleeper(&Health{TCP: closedAddr(t), Interval: fast, Timeout: patience}))
		errc := make(chan error, 1)
		go func() { errc <- p.WaitHealthy(context.Background()) }()
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("WaitHealthy = nil for a stopped, never healthy process")
			}
		case <-time.After(patience):
			t.Fatal("WaitHealthy did not return after Stop")
		}
	})
}

// Until the first check passes, checks run every startupProbe, not every
// Interval: a service that comes up shortly after start is seen as healthy
// long before one (here: hour-long) interval has passed.
func TestStartupProbesFast(t *testing.T) {
	checkLeaks(t)
	srv := newHTTPServer(t, func(n int64) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	p := start(t, sleeper(&Health{HTTP: srv.URL, Interval: time.Hour, Timeout: patience}))
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := p.WaitHealthy(ctx); err != nil {
		t.Fatalf("WaitHealthy = %v after %d checks; startup probing must not wait a whole interval", err, srv.count.Load())
	}
}

// Stop ends a health check in progress (here a slow HTTP endpoint) without
// waiting for its timeout; goleak checks nothing is left behind.
func TestStopEndsHealthLoop(t *testing.T) {
	checkLeaks(t)
	block := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(block); _ = srv.Close(); <-served })

	p, err := Start(sleeper(&Health{HTTP: "http://" + ln.Addr().String(), Interval: fast, Timeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(patience):
		t.Fatal("health check never reached the server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-p.healthDone:
	default:
		t.Fatal("health loop still running after Stop returned")
	}
}
