// Package clustertest runs multi-node paceline clusters inside one test
// process: every agent binds its own loopback address (127.A.B.10,
// 127.A.B.11, …, with A.B taken from the process ID so that test binaries
// running at once never compete for the same address and port) with free ports, a shared join token, optional TLS from a
// test CA and a temporary data dir, and all its traffic goes through one
// internal/faultnet network, so tests partition, heal, crash, stop and
// restart nodes without root.
//
// Helpers wait by polling with generous deadlines; nothing asserts a
// wall-clock duration.
package clustertest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agent"
	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/faultnet"
	"github.com/paceline/paceline/internal/tlsutil"
)

// Patience is how long Wait helpers wait before failing the test.
const Patience = 60 * time.Second

// LeaseEnv overrides the default lease duration (margin: a tenth), e.g.
// PACELINE_CLUSTERTEST_LEASE=400ms to run the tests at the agent's default.
const LeaseEnv = "PACELINE_CLUSTERTEST_LEASE"

// Options shape a cluster.
type Options struct {
	// N is the number of control nodes (3 or 5).
	N int
	// TLS secures every connection with a test CA.
	TLS bool
	// Lease and Margin are the hold-lease timings (default 1 s and 100 ms:
	// longer than the agent's 400 ms so that a loaded CI machine running
	// the race detector does not fail over for nothing; the rules are the
	// same at any scale).
	Lease, Margin time.Duration
	// Name is the cluster name (default "ct").
	Name string
	// Witness adds a quorum witness (`paceline witness`, witness.go) that
	// bootstraps with the N control nodes (N 2 makes the two-node cluster
	// of docs/quorum.md).
	Witness bool
}

// Cluster is a set of in-process agents on one faultnet.
type Cluster struct {
	T     testing.TB
	Net   *faultnet.Net
	Dir   string
	Name  string
	Token string
	Nodes []*Node
	// Witness is the quorum witness (nil without Options.Witness).
	Witness *WitnessNode

	tlsDir string
	logf   *os.File
	log    *slog.Logger
}

// Node is one agent slot; Start, Stop, Crash and Start again reuse its
// config, addresses and data dir.
type Node struct {
	c    *Cluster
	Name string
	IP   string
	Cfg  config.Config

	mu     sync.Mutex
	ag     *agent.Agent
	cancel context.CancelFunc
	exited chan struct{}
	runErr error
}

// New starts a cluster of opts.N nodes and waits until every node holds a
// lease and a leader is known. Everything is stopped in t.Cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.N == 0 {
		opts.N = 3
	}
	if opts.Name == "" {
		opts.Name = "ct"
	}
	dir := tempDir(t)
	c := &Cluster{T: t, Net: faultnet.New(), Dir: dir, Name: opts.Name, Token: fmt.Sprintf("join-%d", time.Now().UnixNano())}
	lf, err := os.Create(filepath.Join(dir, "cluster.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.logf = lf
	c.log = slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(c.cleanup)
	if opts.TLS {
		c.tlsDir = filepath.Join(dir, "tls")
		if err := tlsutil.InitCA(c.tlsDir, opts.Name, false); err != nil {
			t.Fatal(err)
		}
	}
	var apis []string
	for i := 0; i < opts.N; i++ {
		pid := os.Getpid()
		ip := fmt.Sprintf("127.%d.%d.%d", 1+pid%250, (pid/250)%250, 10+i)
		name := fmt.Sprintf("n%d", i+1)
		ports := freePorts(t, ip, 4)
		cfg := config.Default()
		cfg.NodeName, cfg.ClusterName, cfg.Role = name, opts.Name, "control"
		cfg.BindAddr = ip
		cfg.Ports = config.Ports{API: ports[0], Raft: ports[1], Gossip: ports[2], Coarse: ports[3]}
		cfg.DataDir = filepath.Join(dir, name)
		// Each in-process node keeps its own OCF agent state, as separate
		// machines would.
		cfg.Agents.RscTmp = filepath.Join(cfg.DataDir, "rsctmp")
		cfg.Agents.Env = map[string]string{"HA_VARRUN": filepath.Join(cfg.DataDir, "run")}
		if err := os.MkdirAll(cfg.Agents.Env["HA_VARRUN"], 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.BootstrapExpect = opts.N
		if opts.Witness {
			cfg.BootstrapExpect = opts.N + 1
		}
		cfg.JoinToken = c.Token
		cfg.Lease.Duration, cfg.Lease.Margin = time.Second, 100*time.Millisecond
		if d, err := time.ParseDuration(os.Getenv(LeaseEnv)); err == nil && d > 0 {
			cfg.Lease.Duration, cfg.Lease.Margin = d, d/10
		}
		if opts.Lease > 0 {
			cfg.Lease.Duration = opts.Lease
			cfg.Lease.Margin = opts.Lease / 10
		}
		if opts.Margin > 0 {
			cfg.Lease.Margin = opts.Margin
		}
		if opts.TLS {
			if err := tlsutil.Issue(c.tlsDir, c.tlsDir, name, []string{ip}, 0); err != nil {
				t.Fatal(err)
			}
			f := tlsutil.NodeFiles(c.tlsDir, name)
			cfg.TLS = config.TLS{CA: f.CA, Cert: f.Cert, Key: f.Key}
		}
		apis = append(apis, net.JoinHostPort(ip, fmt.Sprint(ports[0])))
		c.Nodes = append(c.Nodes, &Node{c: c, Name: name, IP: ip, Cfg: cfg})
	}
	for _, n := range c.Nodes {
		n.Cfg.Join = apis
	}
	if opts.Witness {
		c.Witness = c.newWitness(opts, apis)
		c.Witness.Start()
	}
	for _, n := range c.Nodes {
		n.Start()
	}
	c.WaitReady(c.Nodes...)
	c.WaitLeader()
	return c
}

// tempDir is a test directory on /dev/shm when there is one: raft fsyncs
// every entry, and a shared, busy disk makes that slow enough to delay
// elections. (In-process tests cannot lose power, so nothing is lost.)
func tempDir(t testing.TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "paceline-clustertest-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// freePorts finds k ports free for TCP and UDP on ip.
func freePorts(t testing.TB, ip string, k int) []int {
	t.Helper()
	var out []int
	var hold []io.Closer
	defer func() {
		for _, h := range hold {
			h.Close()
		}
	}()
	for len(out) < k {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		hold = append(hold, ln)
		p := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(p)))
		if err != nil {
			continue
		}
		hold = append(hold, u)
		out = append(out, p)
	}
	return out
}

// stopPatience bounds how long cleanup waits for the nodes to stop.
const stopPatience = 60 * time.Second

func (c *Cluster) cleanup() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	if c.Witness != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.Witness.Stop() }()
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopPatience):
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		c.T.Errorf("nodes did not stop within %v (agent shutdown hangs); goroutines:\n%s", stopPatience, buf)
		c.dumpLog(400)
		c.logf.Close()
		return // leave them: the test binary reports the failure
	}
	c.Net.Heal()
	if c.T.Failed() {
		c.dumpLog(400)
	}
	c.logf.Close()
}

// dumpLog prints the last lines of the cluster log to the test log.
func (c *Cluster) dumpLog(lines int) {
	f, err := os.Open(c.logf.Name())
	if err != nil {
		return
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	c.T.Logf("last %d lines of %s:\n%s", len(all), c.logf.Name(), strings.Join(all, "\n"))
}

// Logf writes a marker into the cluster log (to read logs next to test steps).
func (c *Cluster) Logf(format string, a ...any) {
	c.log.Info("TEST: " + fmt.Sprintf(format, a...))
}

// Start runs the node's agent (again, after Stop or Crash) with the same
// config and data dir.
func (n *Node) Start() {
	t := n.c.T
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ag != nil {
		t.Fatalf("%s is already running", n.Name)
	}
	a, err := agent.New(n.Cfg, n.c.log)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	host := n.c.Net.Host(n.IP)
	a.SetNetwork(host)
	ctx, cancel := context.WithCancel(context.Background())
	n.ag, n.cancel, n.exited, n.runErr = a, cancel, make(chan struct{}), nil
	exited := n.exited
	go func() {
		err := a.Run(ctx)
		host.CloseConns() // the "process" is gone: so are its sockets
		n.mu.Lock()
		n.runErr = err
		n.mu.Unlock()
		close(exited)
	}()
	n.c.Logf("started %s", n.Name)
}

// Stop stops the node gracefully (its Run context ends) and waits.
func (n *Node) Stop() {
	n.halt("stopp", func(_ *agent.Agent, cancel context.CancelFunc) { cancel() })
}

// Crash stops the node abruptly (agent.Crash) and waits.
func (n *Node) Crash() {
	n.halt("crash", func(a *agent.Agent, _ context.CancelFunc) { a.Crash() })
}

// halt ends a running node with how and waits for its Run to return;
// verb names it in the log ("stopp" + "ing"/"ed").
func (n *Node) halt(verb string, how func(*agent.Agent, context.CancelFunc)) {
	n.mu.Lock()
	a, cancel, exited := n.ag, n.cancel, n.exited
	n.ag = nil
	n.mu.Unlock()
	if a == nil {
		return
	}
	n.c.Logf("%sing %s", verb, n.Name)
	how(a, cancel)
	<-exited
	cancel()
	n.c.Logf("%sed %s", verb, n.Name)
}

// Agent returns the running agent once it has been ready (held a lease)
// at least once, else nil. Only such agents are safe to inspect: Run sets
// their fields before readiness.
func (n *Node) Agent() *agent.Agent {
	n.mu.Lock()
	a := n.ag
	n.mu.Unlock()
	if a == nil {
		return nil
	}
	select {
	case <-a.Ready():
		return a
	default:
		return nil
	}
}

// Running reports whether the node's agent runs (it may not be ready yet).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ag != nil
}

// RunErr is what the last Run returned (nil while running).
func (n *Node) RunErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runErr
}

// APIAddr is the node's API address.
func (n *Node) APIAddr() string {
	return net.JoinHostPort(n.IP, fmt.Sprint(n.Cfg.Ports.API))
}

// Addrs returns the IPs of the given nodes (for faultnet rules).
func Addrs(nodes ...*Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.IP)
	}
	return out
}

// Others returns the nodes of the cluster except those given.
func (c *Cluster) Others(except ...*Node) []*Node {
	skip := map[*Node]bool{}
	for _, n := range except {
		skip[n] = true
	}
	var out []*Node
	for _, n := range c.Nodes {
		if !skip[n] {
			out = append(out, n)
		}
	}
	return out
}

// Wait polls cond until it holds, failing the test after Patience.
func (c *Cluster) Wait(what string, cond func() bool) {
	c.T.Helper()
	if err := c.poll(Patience, cond); err != nil {
		c.T.Fatalf("timed out after %v waiting for %s", Patience, what)
	}
}

func (c *Cluster) poll(patience time.Duration, cond func() bool) error {
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// WaitReady waits until the nodes hold a lease.
func (c *Cluster) WaitReady(nodes ...*Node) {
	c.T.Helper()
	for _, n := range nodes {
		c.Wait(n.Name+" ready", func() bool { return n.Agent() != nil })
	}
}

// Leader returns the node that is raft leader (among ready nodes), or nil.
// With several (a deposed leader in a minority), it returns nil.
func (c *Cluster) Leader(among ...*Node) *Node {
	if len(among) == 0 {
		among = c.Nodes
	}
	var l *Node
	for _, n := range among {
		if a := n.Agent(); a != nil && a.IsLeader() {
			if l != nil {
				return nil
			}
			l = n
		}
	}
	return l
}

// WaitLeader waits for exactly one leader among the nodes and returns it.
func (c *Cluster) WaitLeader(among ...*Node) *Node {
	c.T.Helper()
	var l *Node
	c.Wait("a leader", func() bool { l = c.Leader(among...); return l != nil })
	return l
}

// OperatorToken reads DATADIR/operator.token from whichever node wrote it.
func (c *Cluster) OperatorToken() string {
	c.T.Helper()
	var tok string
	c.Wait("operator.token", func() bool {
		for _, n := range c.Nodes {
			if b, err := os.ReadFile(filepath.Join(n.Cfg.DataDir, "operator.token")); err == nil && len(b) > 0 {
				tok = strings.TrimSpace(string(b))
				return true
			}
		}
		return false
	})
	return tok
}

// Client returns an operator API client for the given nodes (default: all).
// The test's client runs on 127.0.0.1, which no partition rule mentions.
func (c *Cluster) Client(nodes ...*Node) *api.Client {
	c.T.Helper()
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.APIAddr())
	}
	tc := c.clientTLS()
	cl := api.NewClient(addrs, c.OperatorToken(), tc)
	cl.RetryBusy = false // tests look at each refusal themselves
	cl.HTTP.Timeout = 10 * time.Second
	c.T.Cleanup(cl.HTTP.CloseIdleConnections)
	return cl
}

func (c *Cluster) clientTLS() *tls.Config {
	if c.tlsDir == "" {
		return nil
	}
	// The test client presents node n1's certificate; it trusts the CA.
	r, err := tlsutil.NewReloader(tlsutil.NodeFiles(c.tlsDir, c.Nodes[0].Name))
	if err != nil {
		c.T.Fatal(err)
	}
	return r.PeerClientConfig()
}

// Apply applies a spec through the given nodes (default: all), retrying
// while the cluster is electing a leader, and returns the new version.
func (c *Cluster) Apply(doc string, comment string, nodes ...*Node) int {
	c.T.Helper()
	cl := c.Client(nodes...)
	var version int
	var last error
	if err := c.poll(Patience, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := cl.Apply(ctx, []byte(doc), false, comment)
		if err != nil {
			last = err
			return false
		}
		version = res.Version
		return true
	}); err != nil {
		c.T.Fatalf("apply did not succeed within %v: %v", Patience, last)
	}
	return version
}
