package lbmanager

import (
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/discovery"
	"github.com/paceline/paceline/internal/spec"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}

// backend starts an HTTP server on addr answering its name.
func backend(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func parseLBs(t *testing.T, doc string) []spec.LoadBalancer {
	t.Helper()
	s, err := spec.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return s.LoadBalancers
}

// snap is a discovery snapshot with healthy instances of "web" on nodes.
func snap(nodes map[string]string, vips map[string]string) *discovery.Snapshot {
	s := &discovery.Snapshot{Services: map[string][]discovery.Endpoint{"web": {}}, VIPs: map[string]discovery.VIP{}, Nodes: map[string]netip.Addr{}}
	for n, a := range nodes {
		ip := netip.MustParseAddr(a)
		s.Nodes[n] = ip
		s.Services["web"] = append(s.Services["web"], discovery.Endpoint{Node: n, Addr: ip, Healthy: true})
	}
	for v, a := range vips {
		s.VIPs[v] = discovery.VIP{Addrs: []netip.Addr{netip.MustParseAddr(a)}}
	}
	return s
}

type recorder struct {
	mu     sync.Mutex
	events []Event
	sysctl []string
}

func (r *recorder) event(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) has(typ, substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

func newManager(t *testing.T, r *recorder) *Manager {
	m := New(Config{Node: "n1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: r.event,
		Sysctl: func(name, value string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.sysctl = append(r.sysctl, name+"="+value)
			return nil
		}})
	t.Cleanup(m.Close)
	return m
}

func get(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET via the load balancer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Servers follow the healthy instances of the snapshot; unchanged inputs
// leave the listener and an established connection alone, and a changed
// snapshot updates the servers live.
func TestFollowsInstances(t *testing.T) {
	port := freePort(t)
	backend(t, fmt.Sprintf("127.0.0.2:%d", port), "n2")
	backend(t, fmt.Sprintf("127.0.0.3:%d", port), "n3")
	lbs := parseLBs(t, fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: c}
resources: [{name: web, class: process, mode: clone, params: {command: [web]}}]
loadBalancers:
  - name: web
    frontends: [{name: http, bind: "127.0.0.1:0", mode: http, backend: web}]
    backends: [{name: web, servers: [{resource: web, port: %d}]}]
`, port))
	r := &recorder{}
	m := newManager(t, r)
	in := Inputs{LoadBalancers: lbs, Snapshot: snap(map[string]string{"n2": "127.0.0.2", "n3": "127.0.0.3"}, nil)}
	m.Apply(in)
	a := m.Addr("web", "http")
	if a == nil {
		t.Fatalf("not running: %+v", m.Status())
	}
	if !r.has("lb-started", "load balancer web started on n1 (on every node)") {
		t.Errorf("no start event: %+v", r.events)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	seen := map[string]bool{}
	for range 4 {
		seen[get(t, c, a.String())] = true
	}
	if !seen["n2"] || !seen["n3"] {
		t.Fatalf("not balanced over both instances: %v", seen)
	}
	// A held-open connection through the load balancer.
	conn, err := net.Dial("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m.Apply(in)
	if m.Addr("web", "http").String() != a.String() {
		t.Fatalf("listener moved on an unchanged apply")
	}
	// n3's instance goes away: only n2 answers, the listener stays, the
	// established connection still works.
	in.Snapshot = snap(map[string]string{"n2": "127.0.0.2"}, nil)
	m.Apply(in)
	if m.Addr("web", "http").String() != a.String() {
		t.Fatalf("listener moved on a server change")
	}
	for range 4 {
		if got := get(t, c, a.String()); got != "n2" {
			t.Fatalf("answered by %s after n3 left", got)
		}
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
		t.Fatalf("established connection: %q %v", buf[:n], err)
	}
	st := m.Status()
	if len(st) != 1 || len(st[0].Servers) != 1 || st[0].Servers[0].Name != "n2" {
		t.Fatalf("status %+v", st)
	}
}

// A load balancer with a vip runs only while the VIP is held here.
func TestColocatedWithVIP(t *testing.T) {
	port := freePort(t)
	backend(t, fmt.Sprintf("127.0.0.2:%d", port), "n2")
	fport := freePort(t)
	lbs := parseLBs(t, fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: c}
resources:
  - {name: web, class: process, params: {command: [web]}}
  - {name: vip, class: vip, params: {address: 198.51.100.7/24, interface: lo}}
loadBalancers:
  - name: web
    vip: vip
    frontends: [{name: http, port: %d, mode: http, backend: web}]
    backends: [{name: web, servers: [{resource: web, port: %d}]}]
`, fport, port))
	r := &recorder{}
	m := newManager(t, r)
	held := false
	in := Inputs{LoadBalancers: lbs, Snapshot: snap(map[string]string{"n2": "127.0.0.2"}, map[string]string{"vip": "127.0.0.1"}),
		Held: func(v string) bool { return v == "vip" && held }}
	m.Apply(in)
	if len(m.Status()) != 0 {
		t.Fatalf("runs without the VIP: %+v", m.Status())
	}
	held = true
	m.Apply(in)
	a := m.Addr("web", "http")
	if a == nil || a.String() != fmt.Sprintf("127.0.0.1:%d", fport) {
		t.Fatalf("bound %v, want the VIP's address; status %+v", a, m.Status())
	}
	c := &http.Client{}
	defer c.CloseIdleConnections()
	if got := get(t, c, a.String()); got != "n2" {
		t.Fatalf("answered %q", got)
	}
	held = false
	m.Apply(in)
	if _, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
		t.Fatalf("frontend still listening after the VIP left")
	}
	if !r.has("lb-stopped", "load balancer web stopped on n1") {
		t.Errorf("no stop event: %+v", r.events)
	}
}

// A server whose check fails becomes an lb-server-down event naming the
// resource; when it answers again, lb-server-up.
func TestServerEvents(t *testing.T) {
	port := freePort(t)
	lbs := parseLBs(t, fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: c}
resources: [{name: web, class: process, params: {command: [web]}}]
loadBalancers:
  - name: web
    frontends: [{name: t, bind: "127.0.0.1:0", backend: web}]
    backends: [{name: web, check: {type: tcp, interval: 50ms, rise: 1, fall: 1}, servers: [{resource: web, port: %d}]}]
`, port))
	r := &recorder{}
	m := newManager(t, r)
	in := Inputs{LoadBalancers: lbs, Snapshot: snap(map[string]string{"n2": "127.0.0.2"}, nil)}
	waitFor(t, "an lb-server-down event", func() bool {
		m.Apply(in)
		return r.has("lb-server-down", "server n2 (127.0.0.2:")
	})
	r.mu.Lock()
	for _, e := range r.events {
		if e.Type == "lb-server-down" && e.Resource != "web" {
			t.Errorf("event resource %q", e.Resource)
		}
	}
	r.mu.Unlock()
	backend(t, fmt.Sprintf("127.0.0.2:%d", port), "n2")
	waitFor(t, "an lb-server-up event", func() bool {
		m.Apply(in)
		return r.has("lb-server-up", "server n2")
	})
}

// A frontend on an address that is not local turns on ip_nonlocal_bind
// for its family once (here, with LocalAddrs unknown, after the bind
// failed), and the failure shows in Status.
func TestNonlocalBind(t *testing.T) {
	lbs := parseLBs(t, `apiVersion: paceline/v1
cluster: {name: c}
loadBalancers:
  - name: x
    frontends: [{name: a, bind: "192.0.2.77:0", backend: b}, {name: b, bind: "127.0.0.1:0", backend: b}]
    backends: [{name: b, servers: [{name: s, address: "127.0.0.1:1"}]}]
`)
	r := &recorder{}
	m := newManager(t, r)
	m.cfg.RetryEvery = time.Millisecond
	in := Inputs{LoadBalancers: lbs}
	for range 3 {
		m.Apply(in)
		time.Sleep(2 * time.Millisecond)
	}
	r.mu.Lock()
	got := strings.Join(r.sysctl, ",")
	r.mu.Unlock()
	if got != "net.ipv4.ip_nonlocal_bind=1" {
		t.Fatalf("sysctls %q", got)
	}
	st := m.Status()
	if len(st) != 1 || st[0].Error == "" || m.Addr("x", "b") == nil {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(st[0].Frontends[0].Error, "assign requested address") {
		t.Errorf("frontend a error %q", st[0].Frontends[0].Error)
	}

	// With the namespace's addresses known, the sysctl is set before the
	// first bind of an address that is not local, and only for it.
	r2 := &recorder{}
	m2 := newManager(t, r2)
	m2.cfg.LocalAddrs = func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil }
	lbs[0].Frontends[0].Bind = "[2001:db8::77]:0"
	m2.Apply(Inputs{LoadBalancers: lbs})
	r2.mu.Lock()
	got = strings.Join(r2.sysctl, ",")
	r2.mu.Unlock()
	if got != "net.ipv6.ip_nonlocal_bind=1" {
		t.Fatalf("sysctls %q", got)
	}
}

// A frontend whose address is taken (another process listens there) is
// an event that says what to do; the other frontends serve meanwhile,
// and once the address is free the retry binds it and says so.
func TestFrontendBindFailureEvents(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	lbs := parseLBs(t, fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: c}
loadBalancers:
  - name: x
    frontends: [{name: a, bind: %q, backend: b}, {name: b, bind: "127.0.0.1:0", backend: b}]
    backends: [{name: b, servers: [{name: s, address: "127.0.0.1:1"}]}]
`, addr))
	r := &recorder{}
	m := newManager(t, r)
	m.cfg.RetryEvery = time.Millisecond
	in := Inputs{LoadBalancers: lbs}
	m.Apply(in)
	if !r.has("lb-frontend-failed", "address already in use") || !r.has("lb-frontend-failed", "ss -ltnp") {
		t.Fatalf("no lb-frontend-failed event naming the cause and the fix: %+v", r.events)
	}
	if m.Addr("x", "b") == nil {
		t.Fatal("the other frontend does not listen")
	}
	busy.Close()
	waitFor(t, "an lb-frontend-recovered event", func() bool {
		m.Apply(in)
		return r.has("lb-frontend-recovered", "load balancer x")
	})
	if a := m.Addr("x", "a"); a == nil || a.String() != addr {
		t.Fatalf("frontend a listens on %v, want %s", a, addr)
	}
	n := 0
	r.mu.Lock()
	for _, e := range r.events {
		if e.Type == "lb-frontend-failed" {
			n++
		}
	}
	r.mu.Unlock()
	if n != 1 {
		t.Errorf("%d lb-frontend-failed events for one failure, want 1 (retries must not repeat it)", n)
	}
}

// The Prometheus collector reports each frontend (listening or not) and
// each server's state and counters, read from the running load balancers.
func TestCollector(t *testing.T) {
	port := freePort(t)
	backend(t, fmt.Sprintf("127.0.0.1:%d", port), "s1")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	lbs := parseLBs(t, fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: c}
loadBalancers:
  - name: x
    frontends: [{name: taken, bind: %q, backend: b}, {name: web, bind: "127.0.0.1:0", mode: http, backend: b}]
    backends: [{name: b, servers: [{name: s1, address: "127.0.0.1:%d"}]}]
`, busy.Addr().String(), port))
	r := &recorder{}
	var m *Manager
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector(func() *Manager { return m }))
	if got := gather(t, reg); len(got) != 0 {
		t.Fatalf("before the manager: %v", got)
	}
	m = newManager(t, r)
	m.Apply(Inputs{LoadBalancers: lbs})
	c := &http.Client{}
	defer c.CloseIdleConnections()
	for range 3 {
		if got := get(t, c, m.Addr("x", "web").String()); got != "s1" {
			t.Fatalf("answered %q", got)
		}
	}
	got := gather(t, reg)
	for k, v := range map[string]float64{
		`paceline_lb_frontend_listening{frontend="taken",lb="x"}`:            0,
		`paceline_lb_frontend_listening{frontend="web",lb="x"}`:              1,
		`paceline_lb_server_sessions_total{backend="b",lb="x",server="s1"}`:  3,
		`paceline_lb_server_failures_total{backend="b",lb="x",server="s1"}`:  0,
		`paceline_lb_server_active_sessions{backend="b",lb="x",server="s1"}`: 0,
		`paceline_lb_server_up{backend="b",lb="x",server="s1",state="up"}`:   1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v; all: %v", k, g, ok, v, got)
		}
	}
}

// gather returns every sample of reg as "name{label="value",...}" → value,
// labels in name order.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}
