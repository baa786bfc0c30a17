// Package consensus wraps hashicorp/raft (control nodes vote) and
// hashicorp/memberlist (discovery and membership: a fast pool among control
// nodes and a coarse pool that remote nodes join) behind one small type.
//
// Raft timings are tuned for a LAN (heartbeat and election 150 ms, leader
// lease 100 ms). Raft traffic runs over mutual TLS when a TLS config is
// given; gossip is encrypted with a key derived from the join token.
package consensus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Timings are the raft timings.
type Timings struct {
	Heartbeat          time.Duration
	Election           time.Duration
	LeaderLeaseTimeout time.Duration
}

// DefaultTimings are LAN timings.
var DefaultTimings = Timings{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond}

// Meta is what every node tells the others through gossip.
type Meta struct {
	Cluster string `json:"c"`
	Role    string `json:"r"`
	API     string `json:"a"`
	Raft    string `json:"f,omitempty"`
	// Coarse is the coarse pool's port (0: none).
	Coarse int `json:"g,omitempty"`
}

// Config configures one node's consensus layer.
type Config struct {
	NodeName    string
	ClusterName string
	Role        string // "control", "remote" or "witness" (see witness.go)
	DataDir     string
	// BindAddr is the IP to listen on; AdvertiseAddr the IP others use.
	BindAddr, AdvertiseAddr string
	RaftPort, GossipPort    int
	// CoarsePort is the coarse pool's port (control nodes listen on both).
	CoarsePort      int
	APIAddr         string
	BootstrapExpect int
	JoinToken       string
	// ServerTLS and ClientTLS, when set, secure raft traffic.
	ServerTLS, ClientTLS *tls.Config
	Timings              Timings
	FSM                  raft.FSM
	Logger               *slog.Logger
	// OnMembers is called (from a memberlist goroutine, must not block) when
	// membership changes.
	OnMembers func()
	// Network, when set, carries raft and gossip traffic (tests inject
	// network faults through it); nil uses the host's network directly.
	Network Network
}

// Network is a replaceable network for raft and gossip (see
// internal/faultnet): raft dials through DialContext and accepts through
// WrapListener; gossip runs on a memberlist.NetTransport wrapped by
// WrapTransport.
type Network interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	WrapListener(ln net.Listener) net.Listener
	WrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Member is a node seen through gossip.
type Member struct {
	Name  string
	Addr  string
	Meta  Meta
	Alive bool
}

// Node is the running consensus layer of one agent.
type Node struct {
	cfg    Config
	log    *slog.Logger
	Raft   *raft.Raft // nil on remote nodes
	fast   *memberlist.Memberlist
	coarse *memberlist.Memberlist
	store  *raftboltdb.BoltStore
	trans  *raft.NetworkTransport
	wtrans *witnessTransport // the witness's filter over trans (nil on other nodes)

	mu        sync.Mutex
	bootstrap bool
	// gossipUp is closed once startGossip returned: memberlist reports
	// events from inside Create, before fast and coarse are assigned.
	gossipUp chan struct{}

	// members mirrors each pool's live members (pool → name → member),
	// copied in memberlist's event callbacks: the *memberlist.Node values
	// that Memberlist.Members returns are updated by memberlist without a
	// lock the caller can take, so reading them races.
	mmu     sync.Mutex
	members [2]map[string]Member
}

// ErrDataDir is returned when the data dir cannot be used.
var ErrDataDir = errors.New("data dir unusable")

// CheckDataDir verifies the data dir exists (or can be created) and is writable.
func CheckDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v (set dataDir to a writable directory)", ErrDataDir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %s is not writable: %v (fix its permissions or free space, or set dataDir elsewhere)", ErrDataDir, dir, err)
	}
	name := f.Name()
	_, werr := f.Write(make([]byte, 64<<10))
	serr := f.Sync()
	f.Close()
	os.Remove(name)
	if werr != nil || serr != nil {
		return fmt.Errorf("%w: cannot write to %s: %v (free space on that filesystem or set dataDir elsewhere)", ErrDataDir, dir, errors.Join(werr, serr))
	}
	return nil
}

// Start starts raft (control nodes) and gossip.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Timings == (Timings{}) {
		cfg.Timings = DefaultTimings
	}
	n := &Node{cfg: cfg, log: cfg.Logger, gossipUp: make(chan struct{}), members: [2]map[string]Member{{}, {}}}
	if err := CheckDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if cfg.Role == "control" || cfg.Role == RoleWitness {
		if err := n.startRaft(); err != nil {
			n.Shutdown()
			return nil, err
		}
	}
	err := n.startGossip()
	close(n.gossipUp)
	if err != nil {
		n.Shutdown()
		return nil, err
	}
	return n, nil
}

func (n *Node) startRaft() error {
	c := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.memberName())
	rc.HeartbeatTimeout = c.Timings.Heartbeat
	rc.ElectionTimeout = c.Timings.Election
	rc.LeaderLeaseTimeout = c.Timings.LeaderLeaseTimeout
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = 4096
	rc.SnapshotInterval = 30 * time.Second
	rc.TrailingLogs = 4096
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n.log}})
	dir := filepath.Join(c.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: false})
	if err != nil {
		return fmt.Errorf("%w: open raft log %s: %v", ErrDataDir, filepath.Join(dir, "raft.db"), err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, rc.Logger)
	if err != nil {
		return fmt.Errorf("%w: snapshot store: %v", ErrDataDir, err)
	}
	bind := net.JoinHostPort(c.BindAddr, strconv.Itoa(c.RaftPort))
	adv := &net.TCPAddr{IP: net.ParseIP(c.AdvertiseAddr), Port: c.RaftPort}
	var stream raft.StreamLayer
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("raft listen on %s: %w (is another agent running, or set ports.raft)", bind, err)
	}
	sl := &streamLayer{ln: ln, adv: adv, server: c.ServerTLS, client: c.ClientTLS}
	if c.Network != nil {
		sl.ln = c.Network.WrapListener(ln)
		sl.dial = c.Network.DialContext
	}
	stream = sl
	// MaxRPCsInFlight 1 turns raft's pipelined replication off: with the
	// default (2) a follower answering Success=false (its log diverged, as
	// after a partition) can deadlock the pipeline (pipelineDecode returns,
	// the send loop parks on an unbuffered channel): the leader stops
	// replicating to that follower for good while heartbeats go on, and
	// Raft.Shutdown hangs. Synchronous replication costs nothing on a LAN.
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 2 * time.Second, Logger: rc.Logger})
	var trans raft.Transport = n.trans
	if c.Role == RoleWitness {
		n.wtrans = newWitnessTransport(n.trans, rc.ElectionTimeout)
		trans = n.wtrans
	}
	r, err := raft.NewRaft(rc, c.FSM, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	if n.wtrans != nil {
		lc := r.LastContact
		n.wtrans.contact.Store(&lc)
	}
	n.Raft = r
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("%w: read raft state: %v", ErrDataDir, err)
	}
	n.bootstrap = !has && c.BootstrapExpect > 0
	if n.bootstrap && c.BootstrapExpect == 1 {
		n.tryBootstrap([]Member{{Name: n.memberName(), Meta: n.meta()}})
	}
	return nil
}

func (n *Node) meta() Meta {
	m := Meta{Cluster: n.cfg.ClusterName, Role: n.cfg.Role, API: n.cfg.APIAddr, Coarse: n.cfg.CoarsePort}
	if n.cfg.Role == "control" || n.cfg.Role == RoleWitness {
		m.Raft = net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.RaftPort))
	}
	return m
}

func (n *Node) gossipKey() []byte {
	if n.cfg.JoinToken == "" {
		return nil
	}
	k := sha256.Sum256([]byte("paceline-gossip:" + n.cfg.ClusterName + ":" + n.cfg.JoinToken))
	return k[:]
}

func (n *Node) startGossip() error {
	c := n.cfg
	mk := func(fast bool, port int) (*memberlist.Memberlist, error) {
		var mc *memberlist.Config
		if fast {
			mc = memberlist.DefaultLANConfig()
			mc.ProbeInterval = 200 * time.Millisecond
			mc.ProbeTimeout = 100 * time.Millisecond
			mc.SuspicionMult = 2
			mc.GossipInterval = 50 * time.Millisecond
			mc.PushPullInterval = 10 * time.Second
			mc.TCPTimeout = 2 * time.Second
		} else {
			// The coarse pool is for discovery and display: losing a node
			// is decided by its lease, so hundreds of members gossip lazily.
			mc = memberlist.DefaultLANConfig()
			mc.ProbeInterval = 5 * time.Second
			mc.ProbeTimeout = 2 * time.Second
			mc.GossipInterval = time.Second
			mc.PushPullInterval = 120 * time.Second
		}
		mc.Name = n.memberName()
		mc.BindAddr = c.BindAddr
		mc.BindPort = port
		mc.AdvertiseAddr = c.AdvertiseAddr
		mc.AdvertisePort = port
		mc.SecretKey = n.gossipKey()
		mc.Logger = nil
		mc.LogOutput = slogWriter{n.log.With("pool", map[bool]string{true: "fast", false: "coarse"}[fast])}
		mc.Delegate = &delegate{n: n}
		mc.Events = &events{n: n, pool: map[bool]int{true: poolFast, false: poolCoarse}[fast]}
		mc.Alive = &alive{cluster: c.ClusterName}
		if c.Network != nil {
			nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{c.BindAddr}, BindPort: port, Logger: log.New(mc.LogOutput, "", log.LstdFlags)})
			if err != nil {
				return nil, fmt.Errorf("gossip listen on %s:%d: %w (is another agent running, or set ports.gossip)", c.BindAddr, port, err)
			}
			mc.Transport = c.Network.WrapTransport(nt)
		}
		ml, err := memberlist.Create(mc)
		if err != nil {
			if mc.Transport != nil {
				_ = mc.Transport.Shutdown()
			}
			return nil, fmt.Errorf("gossip listen on %s:%d: %w (is another agent running, or set ports.gossip)", c.BindAddr, port, err)
		}
		return ml, nil
	}
	var err error
	if c.Role == "control" || c.Role == RoleWitness {
		if n.fast, err = mk(true, c.GossipPort); err != nil {
			return err
		}
	}
	if c.CoarsePort > 0 && c.Role != RoleWitness {
		if n.coarse, err = mk(false, c.CoarsePort); err != nil {
			return err
		}
	}
	return nil
}

// JoinFast joins the fast pool through the given gossip addresses.
func (n *Node) JoinFast(addrs []string) (int, error) {
	if n.fast == nil {
		return 0, errors.New("not a control node or witness")
	}
	return n.fast.Join(addrs)
}

// JoinCoarse joins the coarse pool through the given gossip addresses.
func (n *Node) JoinCoarse(addrs []string) (int, error) {
	if n.coarse == nil {
		return 0, errors.New("no coarse pool")
	}
	return n.coarse.Join(addrs)
}

// Pools, as indexes of Node.members.
const (
	poolFast = iota
	poolCoarse
)

// setMember records a pool member as memberlist reports it; called from
// memberlist's event callbacks, which hold memberlist's node lock, so m is
// safe to read here.
func (n *Node) setMember(pool int, m *memberlist.Node, alive bool) {
	var meta Meta
	_ = json.Unmarshal(m.Meta, &meta)
	n.mmu.Lock()
	defer n.mmu.Unlock()
	if !alive {
		delete(n.members[pool], m.Name)
		return
	}
	n.members[pool][m.Name] = Member{Name: m.Name, Addr: m.Address(), Meta: meta, Alive: m.State == memberlist.StateAlive}
}

// Members returns the members of both pools (deduplicated, sorted).
func (n *Node) Members() []Member {
	seen := map[string]Member{}
	n.mmu.Lock()
	for _, pool := range n.members {
		for name, m := range pool {
			if _, ok := seen[name]; !ok {
				seen[name] = m
			}
		}
	}
	n.mmu.Unlock()
	out := make([]Member, 0, len(seen))
	for _, m := range seen {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// membersChanged runs on memberlist events.
func (n *Node) membersChanged() {
	<-n.gossipUp
	n.mu.Lock()
	boot := n.bootstrap
	n.mu.Unlock()
	if boot {
		if ms := bootstrapSet(n.Members(), n.cfg.BootstrapExpect); ms != nil {
			n.tryBootstrap(ms)
		}
	}
	if n.cfg.OnMembers != nil {
		n.cfg.OnMembers()
	}
}

func (n *Node) tryBootstrap(ms []Member) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.bootstrap {
		return
	}
	n.bootstrap = false
	var servers []raft.Server
	for _, m := range ms {
		servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft), Suffrage: raft.Voter})
	}
	f := n.Raft.BootstrapCluster(raft.Configuration{Servers: servers})
	go func() {
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Error("raft bootstrap failed", "err", err)
		} else {
			n.log.Info("raft cluster bootstrapped", "servers", len(servers))
		}
	}()
}

// IsLeader reports raft leadership.
func (n *Node) IsLeader() bool { return n.Raft != nil && n.Raft.State() == raft.Leader }

// LeaderID returns the raft leader's node name, "" if unknown.
func (n *Node) LeaderID() string {
	if n.Raft == nil {
		return ""
	}
	_, id := n.Raft.LeaderWithID()
	return string(id)
}

// Voters returns the raft configuration's servers.
func (n *Node) Voters() ([]raft.Server, error) {
	if n.Raft == nil {
		return nil, errors.New("not a control node")
	}
	f := n.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// Leave leaves the gossip pools (graceful shutdown).
func (n *Node) Leave(timeout time.Duration) {
	for _, ml := range []*memberlist.Memberlist{n.fast, n.coarse} {
		if ml != nil {
			_ = ml.Leave(timeout)
		}
	}
}

// Shutdown stops everything; safe to call on a partially started node.
func (n *Node) Shutdown() {
	for _, ml := range []*memberlist.Memberlist{n.fast, n.coarse} {
		if ml != nil {
			_ = ml.Shutdown()
		}
	}
	if n.Raft != nil {
		_ = n.Raft.Shutdown().Error()
	}
	if n.wtrans != nil {
		_ = n.wtrans.Close()
	} else if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
}

type delegate struct{ n *Node }

func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.n.meta())
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct {
	n    *Node
	pool int
}

func (e *events) NotifyJoin(m *memberlist.Node) {
	e.n.setMember(e.pool, m, true)
	go e.n.membersChanged()
}
func (e *events) NotifyLeave(m *memberlist.Node) {
	e.n.setMember(e.pool, m, false)
	go e.n.membersChanged()
}
func (e *events) NotifyUpdate(m *memberlist.Node) {
	e.n.setMember(e.pool, m, true)
	go e.n.membersChanged()
}

type alive struct{ cluster string }

func (a *alive) NotifyAlive(p *memberlist.Node) error {
	var m Meta
	if err := json.Unmarshal(p.Meta, &m); err != nil {
		return fmt.Errorf("node %s sent unreadable metadata", p.Name)
	}
	if m.Cluster != a.cluster {
		return fmt.Errorf("node %s belongs to cluster %q, not %q", p.Name, m.Cluster, a.cluster)
	}
	return nil
}

// slogWriter adapts library loggers that write lines to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && (msg[len(msg)-1] == '\n') {
		msg = msg[:len(msg)-1]
	}
	w.l.Debug(msg)
	return len(p), nil
}

// streamLayer is raft's transport over TCP, with TLS when configured.
type streamLayer struct {
	ln             net.Listener
	adv            net.Addr
	server, client *tls.Config
	dial           func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dialer
}

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if s.server != nil {
		return tls.Server(c, s.server), nil
	}
	return c, nil
}
func (s *streamLayer) Close() error   { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr { return s.adv }
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.dial != nil {
		return s.dialVia(string(addr), timeout)
	}
	d := &net.Dialer{Timeout: timeout}
	if s.client != nil {
		return tls.DialWithDialer(d, "tcp", string(addr), s.client)
	}
	return d.Dial("tcp", string(addr))
}

// dialVia dials through an injected network (tests), with TLS when configured.
func (s *streamLayer) dialVia(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.dial(ctx, "tcp", addr)
	if err != nil || s.client == nil {
		return c, err
	}
	cfg := s.client.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
