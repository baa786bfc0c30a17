package lb

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func tcpConfig(balance string, servers ...Server) Config {
	return Config{
		Frontends: []Frontend{{Name: "fe", Bind: "127.0.0.1:0", Backend: "be"}},
		Backends:  []Backend{{Name: "be", Balance: balance, Servers: servers}},
	}
}

func TestTCPWeightedRoundRobin(t *testing.T) {
	a, b, c := newTCPServer(t, "a"), newTCPServer(t, "b"), newTCPServer(t, "c")
	l := mustNew(t, tcpConfig("roundrobin",
		Server{Name: "a", Address: a.addr(), Weight: ip(1)},
		Server{Name: "b", Address: b.addr(), Weight: ip(3)},
		Server{Name: "c", Address: c.addr(), Weight: ip(0)}))
	addr := l.Addr("fe").String()
	got := map[string]int{}
	for range 40 {
		got[nameOnce(t, addr)]++
	}
	if got["a"] != 10 || got["b"] != 30 || got["c"] != 0 {
		t.Fatalf("distribution %v, want a:10 b:30 c:0", got)
	}
}

func TestTCPFirstAndLeastconnAndSource(t *testing.T) {
	a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
	l := mustNew(t, tcpConfig("first", Server{Name: "a", Address: a.addr(), MaxConn: 2}, Server{Name: "b", Address: b.addr()}))
	addr := l.Addr("fe").String()
	// first: a until it is full.
	n1, c1 := dialName(t, addr)
	n2, c2 := dialName(t, addr)
	n3, c3 := dialName(t, addr)
	defer c1.Close()
	defer c2.Close()
	defer c3.Close()
	if n1 != "a" || n2 != "a" || n3 != "b" {
		t.Fatalf("first: got %s %s %s, want a a b", n1, n2, n3)
	}

	cfg := tcpConfig("leastconn", Server{Name: "a", Address: a.addr()}, Server{Name: "b", Address: b.addr()})
	cfg.Frontends[0].Bind = addr
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	// a holds 2, b 1 (the conns above stay open across Update): next go to b.
	n4, c4 := dialName(t, addr)
	defer c4.Close()
	n5, c5 := dialName(t, addr)
	defer c5.Close()
	if n4 != "b" {
		t.Fatalf("leastconn: got %s, want b", n4)
	}
	_ = n5

	cfg = tcpConfig("source", Server{Name: "a", Address: a.addr()}, Server{Name: "b", Address: b.addr()})
	cfg.Frontends[0].Bind = addr
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	first := nameOnce(t, addr)
	for range 10 {
		if n := nameOnce(t, addr); n != first {
			t.Fatalf("source: same client went to %s and %s", first, n)
		}
	}
}

func TestTCPHalfCloseAndEcho(t *testing.T) {
	a := newTCPServer(t, "a")
	l := mustNew(t, tcpConfig("", Server{Name: "a", Address: a.addr()}))
	name, c := dialName(t, l.Addr("fe").String())
	if name != "a" {
		t.Fatal(name)
	}
	payload := strings.Repeat("x", 1<<20)
	go func() {
		io.WriteString(c, payload)
		c.(*net.TCPConn).CloseWrite() // half-close: the server sees EOF, still answers
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
}

// procIO reads rchar from /proc/self/io: bytes moved by read(2) and friends.
func procIO(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io:", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar")
	return 0
}

// TestTCPSplice shows that tcp mode does not copy through user space: the
// bytes read with read(2) by this process grow by what the sink reads
// (64 MiB), not twice that as a read/write proxy would add.
func TestTCPSplice(t *testing.T) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := sink.Accept()
		if err != nil {
			done <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	l := mustNew(t, tcpConfig("", Server{Name: "sink", Address: sink.Addr().String()}))
	const size = 64 << 20
	before := procIO(t)
	c, err := net.Dial("tcp", l.Addr("fe").String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for range size / len(buf) {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	select {
	case n := <-done:
		if n != size {
			t.Fatalf("sink got %d bytes, want %d", n, size)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("timeout")
	}
	delta := procIO(t) - before
	t.Logf("rchar grew by %d MiB for %d MiB proxied", delta>>20, size>>20)
	if delta > size*3/2 {
		t.Fatalf("rchar grew by %d bytes: the proxy copies through user space", delta)
	}
}

func TestTCPBackupNoFailback(t *testing.T) {
	for _, failback := range []bool{false, true} {
		t.Run("failback="+strconv.FormatBool(failback), func(t *testing.T) {
			a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
			aAddr := a.addr()
			cfg := tcpConfig("first", Server{Name: "a", Address: aAddr}, Server{Name: "b", Address: b.addr(), Backup: true})
			cfg.Backends[0].Failback = failback
			cfg.Backends[0].Check = &Check{Type: "tcp", Interval: 30 * time.Millisecond, Rise: 2, Fall: 1}
			l := mustNew(t, cfg)
			addr := l.Addr("fe").String()
			for range 5 {
				if n := nameOnce(t, addr); n != "a" {
					t.Fatalf("got %s, want the active server a", n)
				}
			}
			a.stop()
			waitFor(t, "a down", 5*time.Second, func() bool { return serverState(l, "be", "a") == "down" })
			if n := nameOnce(t, addr); n != "b" {
				t.Fatalf("got %s, want backup b", n)
			}
			newTCPServerAt(t, "a", aAddr)
			waitFor(t, "a up", 5*time.Second, func() bool { return serverState(l, "be", "a") == "up" })
			want := "b"
			if failback {
				want = "a"
			}
			for range 5 {
				if n := nameOnce(t, addr); n != want {
					t.Fatalf("after a came back: got %s, want %s", n, want)
				}
			}
		})
	}
}

func TestTCPShutdownSessionsOnDown(t *testing.T) {
	a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
	cfg := tcpConfig("first", Server{Name: "a", Address: a.addr()}, Server{Name: "b", Address: b.addr(), Backup: true})
	cfg.Backends[0].ShutdownOnDown = true
	cfg.Backends[0].Check = &Check{Type: "exec", Command: []string{"sh", "-c", "test ! -e " + t.TempDir() + "/down"}, Interval: 30 * time.Millisecond, Fall: 1}
	l := mustNew(t, cfg)
	n, c := dialName(t, l.Addr("fe").String())
	if n != "a" {
		t.Fatal(n)
	}
	defer c.Close()
	os.WriteFile(cfg.Backends[0].Check.Command[2][len("test ! -e "):], nil, 0o644)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session to a server marked down was not closed: %v", err)
	}
}

func TestTCPMaxConnQueue(t *testing.T) {
	a := newTCPServer(t, "a")
	cfg := tcpConfig("", Server{Name: "a", Address: a.addr(), MaxConn: 1})
	cfg.Backends[0].QueueTimeout = 300 * time.Millisecond
	l := mustNew(t, cfg)
	addr := l.Addr("fe").String()
	n, c1 := dialName(t, addr)
	if n != "a" {
		t.Fatal(n)
	}
	// Second client is queued then dropped after the queue timeout.
	start := time.Now()
	if n, c := dialName(t, addr); n != "" {
		c.Close()
		t.Fatalf("second connection got %q while a was at maxconn", n)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("dropped after %s, before the queue timeout", el)
	}
	// Third client is queued and served when the first leaves.
	go func() { time.Sleep(100 * time.Millisecond); c1.Close() }()
	if n := nameOnce(t, addr); n != "a" {
		t.Fatalf("queued connection got %q, want a", n)
	}
}

func TestTCPRetryRedispatchAndPassiveEjection(t *testing.T) {
	a := newTCPServer(t, "a")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	cfg := tcpConfig("roundrobin", Server{Name: "dead", Address: deadAddr}, Server{Name: "a", Address: a.addr()})
	cfg.Backends[0].Redispatch = true
	cfg.Backends[0].EjectAfter = 2
	l := mustNew(t, cfg)
	for i := range 10 {
		if n := nameOnce(t, l.Addr("fe").String()); n != "a" {
			t.Fatalf("connection %d got %q: retry with redispatch should reach a", i, n)
		}
	}
	if s := serverState(l, "be", "dead"); s != "ejected" {
		t.Fatalf("dead server state %s, want ejected", s)
	}
	st := l.Status()
	dst, _ := st.Server("be", "dead")
	ast, _ := st.Server("be", "a")
	if dst.Failed != 2 || dst.Total != 2 || ast.Total != 10 || ast.Failed != 0 {
		t.Fatalf("counters: dead %+v, a %+v", dst, ast)
	}
}

func TestUnresolvableBackendDoesNotBlock(t *testing.T) {
	a := newTCPServer(t, "a")
	cfg := tcpConfig("roundrobin", Server{Name: "nowhere", Address: "nowhere.invalid:3306"}, Server{Name: "a", Address: a.addr()})
	cfg.Backends[0].Redispatch = true
	cfg.Backends[0].Check = &Check{Type: "tcp", Interval: time.Hour, Timeout: 2 * time.Second}
	start := time.Now()
	l := mustNew(t, cfg)
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("New took %s", el)
	}
	waitFor(t, "nowhere down", 5*time.Second, func() bool { return serverState(l, "be", "nowhere") == "down" })
	st, _ := l.Status().Server("be", "nowhere")
	if !strings.Contains(st.Reason, "nowhere.invalid") {
		t.Fatalf("reason %q does not explain", st.Reason)
	}
	for range 4 {
		if n := nameOnce(t, l.Addr("fe").String()); n != "a" {
			t.Fatal(n)
		}
	}
}

func TestUpdateLiveKeepsConnections(t *testing.T) {
	a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
	l := mustNew(t, tcpConfig("", Server{Name: "a", Address: a.addr()}))
	addr := l.Addr("fe").String()
	n, c := dialName(t, addr)
	if n != "a" {
		t.Fatal(n)
	}
	defer c.Close()
	// Replace a by b; same frontend address: the listener and c survive.
	cfg := tcpConfig("", Server{Name: "b", Address: b.addr()})
	cfg.Frontends[0].Bind = addr
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := l.Addr("fe").String(); got != addr {
		t.Fatalf("listener moved: %s → %s", addr, got)
	}
	if n := nameOnce(t, addr); n != "b" {
		t.Fatalf("new connection went to %s, want b", n)
	}
	r := bufio.NewReader(c)
	io.WriteString(c, "still here\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("established connection to the removed server: %q %v", line, err)
	}
	// Drain b: c2 stays, new connections go to a (added back).
	n2, c2 := dialName(t, addr)
	defer c2.Close()
	cfg = tcpConfig("", Server{Name: "b", Address: b.addr(), Drain: true}, Server{Name: "a", Address: a.addr()})
	cfg.Frontends[0].Bind = addr
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n := nameOnce(t, addr); n != "a" {
			t.Fatalf("drained b got a new connection")
		}
	}
	io.WriteString(c2, "x\n")
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(c2).ReadString('\n'); err != nil || line != "x\n" {
		t.Fatalf("connection to drained %s broken: %v", n2, err)
	}
	if s := serverState(l, "be", "b"); s != "drain" {
		t.Fatalf("b is %s, want drain", s)
	}
	// Maintenance.
	cfg.Backends[0].Servers[1].Maintenance = true
	cfg.Backends[0].Servers[0].Drain = false
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if n := nameOnce(t, addr); n != "b" {
		t.Fatalf("a in maintenance got a connection")
	}
	// A bad config changes nothing.
	bad := cfg
	bad.Backends = []Backend{{Name: "be", Balance: "random"}}
	if err := l.Update(bad); err == nil || !strings.Contains(err.Error(), "backends[0](be).balance") {
		t.Fatalf("bad update: %v", err)
	}
	if n := nameOnce(t, addr); n != "b" {
		t.Fatal("config changed after a rejected update")
	}
}

func TestClientTimeout(t *testing.T) {
	a := newTCPServer(t, "a")
	cfg := tcpConfig("", Server{Name: "a", Address: a.addr()})
	cfg.Frontends[0].ClientTimeout = 200 * time.Millisecond
	l := mustNew(t, cfg)
	_, c := dialName(t, l.Addr("fe").String())
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection not closed: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("closed after %s", el)
	}
}

func TestSlowStart(t *testing.T) {
	a, b := newTCPServer(t, "a"), newTCPServer(t, "b")
	flag := t.TempDir() + "/a-down"
	cfg := tcpConfig("roundrobin", Server{Name: "a", Address: a.addr()}, Server{Name: "b", Address: b.addr()})
	cfg.Backends[0].SlowStart = 2 * time.Second
	cfg.Backends[0].Check = &Check{Type: "exec", Interval: 20 * time.Millisecond, Rise: 1, Fall: 1,
		Command: []string{"sh", "-c", `test "$PACELINE_SERVER_NAME" != a || test ! -e ` + flag}}
	l := mustNew(t, cfg)
	addr := l.Addr("fe").String()
	os.WriteFile(flag, nil, 0o644)
	waitFor(t, "a down", 3*time.Second, func() bool { return serverState(l, "be", "a") == "down" })
	os.Remove(flag)
	waitFor(t, "a up", 3*time.Second, func() bool { return serverState(l, "be", "a") == "up" })
	got := map[string]int{}
	for range 40 {
		got[nameOnce(t, addr)]++
	}
	if got["a"] > 10 {
		t.Fatalf("right after coming up, a got %d of 40 connections: no slow start", got["a"])
	}
	t.Logf("during slow start: %v", got)
}
