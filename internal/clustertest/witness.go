package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/qwitness"
	"github.com/paceline/paceline/internal/tlsutil"
)

// WitnessNode is the cluster's quorum witness slot; Start, Stop, Crash and
// Start again reuse its config, address and data dir.
type WitnessNode struct {
	c    *Cluster
	Name string
	IP   string
	Cfg  config.Config

	mu     sync.Mutex
	w      *qwitness.Witness
	cancel context.CancelFunc
	exited chan struct{}
}

// newWitness prepares the witness on the address after the control nodes'.
func (c *Cluster) newWitness(opts Options, apis []string) *WitnessNode {
	t := c.T
	pid := os.Getpid()
	ip := fmt.Sprintf("127.%d.%d.%d", 1+pid%250, (pid/250)%250, 10+len(c.Nodes))
	name := "w1"
	ports := freePorts(t, ip, 4)
	cfg := config.Default()
	cfg.NodeName, cfg.ClusterName, cfg.Role = name, c.Name, config.RoleWitness
	cfg.BindAddr = ip
	cfg.Ports = config.Ports{API: ports[0], Raft: ports[1], Gossip: ports[2], Coarse: ports[3]}
	cfg.DataDir = filepath.Join(c.Dir, "witness-"+name)
	cfg.JoinToken = c.Token
	cfg.Join = apis
	if opts.TLS {
		if err := tlsutil.Issue(c.tlsDir, c.tlsDir, name, []string{ip}, 0); err != nil {
			t.Fatal(err)
		}
		f := tlsutil.NodeFiles(c.tlsDir, name)
		cfg.TLS = config.TLS{CA: f.CA, Cert: f.Cert, Key: f.Key}
	}
	return &WitnessNode{c: c, Name: name, IP: ip, Cfg: cfg}
}

// Start runs the witness (again, after Stop or Crash).
func (w *WitnessNode) Start() {
	t := w.c.T
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.w != nil {
		t.Fatalf("witness %s is already running", w.Name)
	}
	wt, err := qwitness.New(w.Cfg, w.c.log)
	if err != nil {
		t.Fatalf("witness %s: %v", w.Name, err)
	}
	host := w.c.Net.Host(w.IP)
	wt.SetNetwork(host)
	ctx, cancel := context.WithCancel(context.Background())
	w.w, w.cancel, w.exited = wt, cancel, make(chan struct{})
	exited := w.exited
	go func() {
		err := wt.Run(ctx)
		host.CloseConns()
		if err != nil && err != qwitness.ErrCrashed {
			w.c.Logf("witness %s: Run: %v", w.Name, err)
		}
		close(exited)
	}()
	w.c.Logf("started witness %s", w.Name)
}

// Stop stops the witness gracefully and waits.
func (w *WitnessNode) Stop() {
	w.halt("stopp", func(_ *qwitness.Witness, cancel context.CancelFunc) { cancel() })
}

// Crash stops the witness abruptly and waits.
func (w *WitnessNode) Crash() {
	w.halt("crash", func(x *qwitness.Witness, _ context.CancelFunc) { x.Crash() })
}

func (w *WitnessNode) halt(verb string, how func(*qwitness.Witness, context.CancelFunc)) {
	w.mu.Lock()
	x, cancel, exited := w.w, w.cancel, w.exited
	w.w = nil
	w.mu.Unlock()
	if x == nil {
		return
	}
	w.c.Logf("%sing witness %s", verb, w.Name)
	how(x, cancel)
	<-exited
	cancel()
	w.c.Logf("%sed witness %s", verb, w.Name)
}

// Witness returns the running witness, or nil.
func (w *WitnessNode) Witness() *qwitness.Witness {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w
}

// AddNode starts one more control node that joins the running cluster
// (bootstrapExpect 0, join through the existing nodes), as an operator
// growing a cluster does; it copies the first node's settings (TLS is not
// supported here).
func (c *Cluster) AddNode() *Node {
	t := c.T
	t.Helper()
	if c.tlsDir != "" {
		t.Fatal("AddNode: TLS clusters are not supported")
	}
	first := c.Nodes[0]
	pid := os.Getpid()
	i := len(c.Nodes)
	if c.Witness != nil {
		i++
	}
	ip := fmt.Sprintf("127.%d.%d.%d", 1+pid%250, (pid/250)%250, 10+i)
	name := fmt.Sprintf("n%d", len(c.Nodes)+1)
	ports := freePorts(t, ip, 4)
	cfg := first.Cfg
	cfg.NodeName, cfg.BindAddr, cfg.BootstrapExpect = name, ip, 0
	cfg.Ports = config.Ports{API: ports[0], Raft: ports[1], Gossip: ports[2], Coarse: ports[3]}
	cfg.DataDir = filepath.Join(c.Dir, name)
	cfg.Agents.RscTmp = filepath.Join(cfg.DataDir, "rsctmp")
	cfg.Agents.Env = map[string]string{"HA_VARRUN": filepath.Join(cfg.DataDir, "run")}
	if err := os.MkdirAll(cfg.Agents.Env["HA_VARRUN"], 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Join = nil
	for _, n := range c.Nodes {
		cfg.Join = append(cfg.Join, n.APIAddr())
	}
	n := &Node{c: c, Name: name, IP: ip, Cfg: cfg}
	c.Nodes = append(c.Nodes, n)
	n.Start()
	return n
}
