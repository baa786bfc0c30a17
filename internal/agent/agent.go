// Package agent is the composition root of `paceline agent`: it turns a
// validated config into running subsystems — consensus (raft + gossip),
// the replicated state, the leader-only coordinator, the node-local
// executor with its hold lease, and the HTTP API — started together and
// stopped together in reverse order.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/systemd"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/consensus"
	"github.com/paceline/paceline/internal/coordinator"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/executor"
	"github.com/paceline/paceline/internal/httpapi"
	"github.com/paceline/paceline/internal/lbmanager"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/metrics"
	"github.com/paceline/paceline/internal/state"
	"github.com/paceline/paceline/internal/tlsutil"
	"github.com/paceline/paceline/internal/watchdog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Agent is one running paceline agent.
type Agent struct {
	// sdBus is the shared systemd bus connection (made on first use).
	sdOnce    sync.Once
	sdBus     *systemd.Bus
	cfg       config.Config
	log       *slog.Logger
	joinToken string
	adv       string
	apiAddr   string
	lp        lease.Params
	timings   consensus.Timings
	registry  *prometheus.Registry
	metrics   *metrics.Metrics

	fsm    *state.FSM
	cons   *consensus.Node
	table  *lease.Table
	holder *lease.Holder
	exec   *executor.Executor
	ranks  ranks // ordered-bootstrap ranks (bootstrap.go)
	// lastLeaderMove is when this agent last handed leadership away
	// (leaderplace.go); a time.Time.
	lastLeaderMove atomic.Value
	// watchdogMS is the hardware watchdog's timeout (0: none), reported
	// with renewals so the leader can count on the reset.
	watchdogMS int64

	serverTLS, clientTLS *tls.Config
	raftTLS              *tls.Config // mutual TLS for raft
	httpSrv              *http.Server
	ln                   net.Listener
	peer                 *api.Client // agent-to-agent client (join token)

	mu        sync.Mutex
	coord     *coordinator.Coordinator
	leaderAPI string
	ready     chan struct{}
	readyOnce sync.Once
	failures  chan api.Failure
	leaving   atomic.Bool

	assignments coordinator.AssignmentCache
	incarnation string        // random per process: orders this process's reports
	renewSeq    atomic.Uint64 // sequence of renewal reports

	// leaderChanged (under mu) is closed and reset when leaderAPI changes.
	leaderChanged chan struct{}

	net       Network         // nil: the host's network
	fwd       *http.Transport // the API's forwarding transport when net is set
	started   atomic.Bool
	crash     chan struct{}
	crashOnce sync.Once
	done      chan struct{} // closed when Run returns

	disc   discoveryWiring // discovery.go
	lbw    lbWiring        // lb.go
	quorum quorumState     // quorum.go
}

// Network is a replaceable network under the agent (tests inject network
// faults through internal/faultnet): every connection the agent makes goes
// through DialContext, every listener through WrapListener, and gossip
// through a memberlist transport wrapped by WrapTransport.
type Network interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	WrapListener(ln net.Listener) net.Listener
	WrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// SetNetwork makes the agent use n for all its traffic: the API listener,
// agent-to-agent HTTP, raft and gossip. Call it before Run.
func (a *Agent) SetNetwork(n Network) {
	a.net = n
	if tr, ok := a.peer.HTTP.Transport.(*http.Transport); ok {
		tr.DialContext = n.DialContext
	}
}

// ErrCrashed is what Run returns after Crash.
var ErrCrashed = errors.New("agent crashed (Crash was called)")

// Crash stops a running agent abruptly, as a power loss would (tests): its
// loops stop, every resource process is killed at once, its listeners are
// closed, and raft and gossip stop without telling anybody — no final
// renewal, no leave, no leadership transfer. Run then returns ErrCrashed;
// the data dir is left as it is. Crash returns once Run has returned (at
// once if Run was never called).
func (a *Agent) Crash() {
	if !a.started.Load() {
		return
	}
	a.crashOnce.Do(func() { close(a.crash) })
	<-a.done
}

// New validates the config and prepares an agent; Run starts it.
func New(cfg config.Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	if cfg.Role == config.RoleWitness {
		return nil, errors.New("role: witness is run by `paceline witness --config FILE`, not `paceline agent`")
	}
	tok, err := cfg.ResolveToken()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: log.With("node", cfg.NodeName), joinToken: tok, adv: cfg.Advertise(),
		ready: make(chan struct{}), failures: make(chan api.Failure, 256), crash: make(chan struct{}), done: make(chan struct{})}
	a.apiAddr = net.JoinHostPort(a.adv, strconv.Itoa(cfg.Ports.API))
	a.incarnation = randToken()[:16]
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = metrics.New(a.registry)
	a.registry.MustRegister(lbmanager.Collector(a.LBManager)) // load balancers (docs/lb.md, "Metrics")
	a.timings = consensus.Timings{Heartbeat: cfg.Raft.Heartbeat, Election: cfg.Raft.Election, LeaderLeaseTimeout: cfg.Raft.LeaderLease}
	a.lp = lease.Params{L: cfg.Lease.Duration, Margin: cfg.Lease.Margin, LeaderLeaseTimeout: a.timings.LeaderLeaseTimeout}
	if err := a.lp.Validate(); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if cfg.TLS.Enabled() {
		r, err := tlsutil.NewReloader(tlsutil.Files{CA: cfg.TLS.CA, Cert: cfg.TLS.Cert, Key: cfg.TLS.Key}, tlsutil.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		a.serverTLS = r.ServerConfig(false)
		a.raftTLS = r.ServerConfig(true)
		a.clientTLS = r.PeerClientConfig()
	}
	a.peer = api.NewClient(nil, "", a.clientTLS)
	a.peer.JoinToken = tok
	a.peer.RetryBusy = false // agents follow the leader hints themselves
	a.peer.HTTP.Timeout = 0
	a.lastLeaderMove.Store(time.Time{})
	return a, nil
}

// APIAddr is the advertised API address.
func (a *Agent) APIAddr() string { return a.apiAddr }

// Ready is closed once the node holds a lease from a leader for the first time.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// FSM exposes the replicated state (read-only use).
func (a *Agent) FSM() *state.FSM { return a.fsm }

// Executor exposes the node-local executor (tests).
func (a *Agent) Executor() *executor.Executor { return a.exec }

// IsLeader reports raft leadership.
func (a *Agent) IsLeader() bool { return a.cons != nil && a.cons.IsLeader() }

// Run starts everything and blocks until ctx ends, then shuts down
// gracefully: resources stop while the lease is still valid, the leader is
// told this node is leaving (so it fails over at once), leadership moves
// away, and raft and gossip stop.
func (a *Agent) Run(ctx context.Context) error {
	if a.started.Swap(true) {
		return errors.New("agent: Run called twice")
	}
	defer close(a.done)
	cfg := a.cfg
	if err := consensus.CheckDataDir(cfg.DataDir); err != nil {
		return err
	}
	a.fsm = state.NewFSM()
	a.table = lease.NewTable(a.lp)
	a.holder = lease.NewHolder(a.lp)
	a.exec = executor.New(executor.Config{Node: cfg.NodeName, Holder: a.holder, LogDir: filepath.Join(cfg.DataDir, "logs"),
		Logger: a.log.With("sub", "executor"), Report: a.queueFailure, Cluster: cfg.ClusterName,
		StateDir: filepath.Join(cfg.DataDir, "executor"), OCFRoot: cfg.Agents.OCFRoot, RscTmp: cfg.Agents.RscTmp, LSBDir: cfg.Agents.LSBDir, ScriptEnv: cfg.Agents.Env,
		Systemd: func(class string) (agents.Invoker, error) {
			// One system-bus connection for every systemd unit, made on first use.
			a.sdOnce.Do(func() { a.sdBus = systemd.NewBus("", a.log.With("sub", "systemd")) })
			return systemd.New(strings.TrimPrefix(class, "systemd:"), systemd.Options{Bus: a.sdBus})
		}})

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.API)))
	if err != nil {
		return fmt.Errorf("api listen on %s:%d: %w (another agent running? set ports.api)", cfg.BindAddr, cfg.Ports.API, err)
	}
	if a.net != nil {
		ln = a.net.WrapListener(ln)
	}
	if a.serverTLS != nil {
		ln = tls.NewListener(ln, a.serverTLS)
	}
	a.ln = ln
	if err := a.startDNS(); err != nil {
		_ = ln.Close()
		return err
	}
	srv := httpapi.New(a, a.joinToken, a.log.With("sub", "api"))
	if a.clientTLS != nil {
		srv.Scheme = "https"
		srv.Transport = &http.Transport{TLSClientConfig: a.clientTLS}
	}
	if a.net != nil {
		a.fwd = &http.Transport{TLSClientConfig: a.clientTLS, DialContext: a.net.DialContext}
		srv.Transport = a.fwd
	}
	a.httpSrv = &http.Server{Handler: a.withMetrics(srv), ReadHeaderTimeout: 10 * time.Second}

	var wd *watchdog.Device
	if cfg.Watchdog.Device != "" {
		if wd, err = watchdog.Open(cfg.Watchdog.Device, cfg.WatchdogTimeout()); err != nil {
			_ = ln.Close()
			a.stopDNS()
			return err
		}
		a.watchdogMS = wd.Timeout().Milliseconds()
		a.log.Info("watchdog armed: petted while this node may keep its exclusive resources", "device", cfg.Watchdog.Device, "timeout", wd.Timeout())
	}
	cons, err := consensus.Start(consensus.Config{NodeName: cfg.NodeName, ClusterName: cfg.ClusterName, Role: cfg.Role, DataDir: cfg.DataDir,
		BindAddr: cfg.BindAddr, AdvertiseAddr: a.adv, RaftPort: cfg.Ports.Raft, GossipPort: cfg.Ports.Gossip, CoarsePort: cfg.Ports.Coarse,
		APIAddr: a.apiAddr, BootstrapExpect: cfg.BootstrapExpect, JoinToken: a.joinToken, ServerTLS: a.raftTLS, ClientTLS: a.clientTLS,
		FSM: a.fsm, Logger: a.log.With("sub", "consensus"), Network: a.net, Timings: a.timings})
	if err != nil {
		_ = ln.Close()
		a.stopDNS()
		return err
	}
	a.cons = cons
	// Serve only now: handlers use a.cons (connections wait in the backlog).
	go func() {
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "err", err)
		}
	}()

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(runCtx) }()
	}
	joinErr := make(chan error, 1)
	goRun(func(ctx context.Context) {
		if err := a.join(ctx); err != nil {
			joinErr <- err
		}
	})
	if cfg.Role == "control" {
		goRun(a.leadership)
		goRun(a.quorumLoop) // quorum.go
	}
	goRun(a.renewLoop)
	goRun(a.watchLoop)
	goRun(a.fenceLoop)
	goRun(a.failureLoop)
	goRun(a.discoveryLoop)
	goRun(a.rankLoop)
	if wd != nil {
		goRun(func(ctx context.Context) {
			t := time.NewTicker(min(250*time.Millisecond, wd.Timeout()/4))
			defer t.Stop()
			watchdog.Run(ctx, wd, t.C, a.watchdogOK, a.log.With("sub", "watchdog"))
		})
	}
	goRun(a.lbLoop)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-joinErr:
	case <-a.crash:
		a.crashStop(cancel, &wg)
		return ErrCrashed
	}
	a.shutdown(cancel, &wg)
	return runErr
}

// crashStop is Crash's abrupt stop: nothing is said to anybody.
func (a *Agent) crashStop(cancel context.CancelFunc, wg *sync.WaitGroup) {
	a.log.Warn("crashing: stopping abruptly (no leave, no transfer)")
	cancel() // loops stop: no further renewal reports anything
	_ = a.httpSrv.Close()
	a.stopDNS()
	a.exec.SelfFence()
	killNow, kc := context.WithCancel(context.Background())
	kc()
	a.exec.StopAll(killNow) // the remaining instances are killed at once too
	wg.Wait()
	a.cons.Shutdown()
	a.closeIdle()
}

// closeIdle drops kept-alive client connections (their goroutines end)
// and the systemd bus connection, if one was made.
func (a *Agent) closeIdle() {
	a.sdOnce.Do(func() {}) // no bus is made after this
	if a.sdBus != nil {
		a.sdBus.Close()
	}
	a.peer.HTTP.CloseIdleConnections()
	if a.fwd != nil {
		a.fwd.CloseIdleConnections()
	}
}

func (a *Agent) shutdown(cancel context.CancelFunc, wg *sync.WaitGroup) {
	a.log.Info("shutting down: stopping resources")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	a.exec.StopAll(sctx)
	a.holder.Revoke()
	// Tell the leader we run nothing anymore, so it fails over at once.
	a.sendLeaving()
	if a.cons.IsLeader() {
		if err := a.transferLeadership(); err != nil { // quorum.go: never to a witness
			a.log.Warn("leadership transfer failed", "err", err)
		} else {
			a.log.Info("leadership transferred")
			// The "leaving" above went to our own coordinator, gone with
			// the leadership: tell the new leader too, or it waits for
			// this node's lease to run out before failing over.
			a.sendLeaving()
		}
	}
	cancel()
	wg.Wait()
	a.cons.Leave(time.Second)
	a.cons.Shutdown()
	ctx, c2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer c2()
	_ = a.httpSrv.Shutdown(ctx)
	a.stopDNS()
	a.closeIdle()
	a.log.Info("stopped")
}

// join introduces this node to the cluster through the join addresses and
// joins the gossip pools. A wrong cluster name or join token is fatal.
func (a *Agent) join(ctx context.Context) error {
	if len(a.cfg.Join) == 0 {
		return nil
	}
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var lastErr error
		for _, addr := range a.cfg.Join {
			if addr == a.apiAddr {
				continue
			}
			c := a.peerClient(addr)
			var w api.Welcome
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := c.Do(cctx, "POST", "/v1/internal/hello", api.Hello{Node: a.cfg.NodeName, Cluster: a.cfg.ClusterName, Role: a.cfg.Role}, &w)
			cancel()
			var ae *api.Error
			if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusConflict) {
				return fmt.Errorf("cannot join through %s: %s", addr, ae.Message)
			}
			if err != nil {
				if tlsutil.IsMismatch(err) {
					return fmt.Errorf("cannot join through %s: TLS handshake failed: %v\nThe agents must trust the same CA (tls.ca) and present certificates it signed (`paceline tls issue`); an agent with TLS cannot talk to one without it", addr, err)
				}
				lastErr = err
				continue
			}
			if len(w.Fast) == 0 && len(w.Coarse) == 0 {
				lastErr = fmt.Errorf("%s knows no gossip members yet", addr)
				continue
			}
			var jerr error
			if a.cfg.Role == "control" && len(w.Fast) > 0 {
				_, jerr = a.cons.JoinFast(w.Fast)
			}
			if len(w.Coarse) > 0 {
				if _, err := a.cons.JoinCoarse(w.Coarse); err != nil && jerr == nil {
					jerr = err
				}
			}
			if jerr == nil {
				a.log.Info("joined the cluster", "through", addr)
				return nil
			}
			lastErr = fmt.Errorf("gossip join: %w (check that the gossip ports are reachable and the join token matches)", jerr)
		}
		if lastErr != nil && (attempt == 1 || attempt%10 == 0) {
			a.log.Warn("join not yet possible, retrying", "attempt", attempt, "err", lastErr)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

func (a *Agent) peerClient(addr string) *api.Client {
	c := *a.peer
	c.Addrs = []string{addr}
	return &c
}

// leadership runs the coordinator while this node leads.
func (a *Agent) leadership(ctx context.Context) {
	ch := a.cons.Raft.LeaderCh()
	var cancel context.CancelFunc = func() {}
	var done chan struct{}
	stop := func() {
		cancel()
		if done != nil {
			<-done
			done = nil
		}
		a.mu.Lock()
		a.coord = nil
		a.mu.Unlock()
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			stop()
			if !isLeader {
				a.metrics.Leader.Set(0)
				a.log.Info("lost leadership")
				continue
			}
			since := time.Now() // after the election: the lease rule may count from here
			a.metrics.Leader.Set(1)
			a.log.Info("became leader")
			lctx, c := context.WithCancel(ctx)
			cancel = c
			done = make(chan struct{})
			go func() {
				defer close(done)
				a.lead(lctx, since)
			}()
		}
	}
}

func (a *Agent) lead(ctx context.Context, since time.Time) {
	if err := a.cons.Raft.Barrier(10 * time.Second).Error(); err != nil {
		a.log.Warn("barrier failed; waiting for the next term", "err", err)
		return
	}
	var inited bool
	a.fsm.Read(func(s *state.State) { inited = s.ClusterName != "" })
	if !inited {
		if err := a.initCluster(ctx); err != nil {
			a.log.Error("cluster initialisation failed", "err", err)
			return
		}
	}
	// Wait-for-all (quorum.go): no coordinator, so no lease and no start
	// anywhere, until every control node has been seen at once.
	if !a.waitForAll(ctx) {
		return
	}
	c := coordinator.New(coordinator.Config{Cluster: a.cfg.ClusterName, FSM: a.fsm, Raft: a, Lease: a.lp, Table: a.table, Logger: a.log.With("sub", "coordinator"), Metrics: a.metrics,
		LeaderSince: since})
	a.mu.Lock()
	a.coord = c
	a.mu.Unlock()
	go a.voterLoop(ctx)
	go a.leaderPlacement(ctx, since) // leaderplace.go
	_ = c.Run(ctx)
}

// initCluster records the cluster name and the bootstrap bearer tokens;
// their plaintext goes to DATADIR/operator.token and readonly.token.
func (a *Agent) initCluster(ctx context.Context) error {
	op, ro := randToken(), randToken()
	cmd := &state.Command{Type: state.CmdInit, Time: time.Now(), ClusterName: a.cfg.ClusterName,
		TokenHashes: map[string]string{HashToken(op): httpapi.RoleOperator, HashToken(ro): httpapi.RoleReadOnly}}
	if _, err := a.Propose(ctx, cmd); err != nil {
		return err
	}
	for name, tok := range map[string]string{"operator.token": op, "readonly.token": ro} {
		p := filepath.Join(a.cfg.DataDir, name)
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	a.log.Info("cluster initialised; bearer tokens written", "operator", filepath.Join(a.cfg.DataDir, "operator.token"), "readonly", filepath.Join(a.cfg.DataDir, "readonly.token"))
	return nil
}

// voterLoop adds control nodes and witnesses seen in gossip to the raft
// configuration.
func (a *Agent) voterLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		servers, err := a.cons.Voters()
		if err == nil {
			in := map[string]bool{}
			for _, s := range servers {
				in[string(s.ID)] = true
			}
			for _, m := range a.cons.Members() {
				witness := m.Meta.Role == consensus.RoleWitness && consensus.IsWitness(m.Name)
				if (m.Meta.Role != "control" && !witness) || !m.Alive || in[m.Name] || m.Meta.Raft == "" {
					continue
				}
				a.log.Info("adding voter", "node", m.Name, "addr", m.Meta.Raft)
				if err := a.cons.Raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.Meta.Raft), 0, 5*time.Second).Error(); err != nil {
					a.log.Warn("add voter failed", "node", m.Name, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Propose commits a command through raft (leader only).
func (a *Agent) Propose(ctx context.Context, c *state.Command) (state.Result, error) {
	if a.cons == nil || a.cons.Raft == nil {
		return state.Result{}, a.notLeader()
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := a.cons.Raft.Apply(c.Encode(), timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return state.Result{}, a.notLeader()
		}
		return state.Result{}, fmt.Errorf("%w: could not commit the change: %v (check that a majority of control nodes is up and their data dirs are writable)", errs.ErrNoQuorum, err)
	}
	res, _ := f.Response().(state.Result)
	if res.Err != nil {
		return res, fmt.Errorf("%w: %w", errs.ErrBadRequest, res.Err)
	}
	return res, nil
}

// VerifyLeader implements coordinator.Raft.
func (a *Agent) VerifyLeader() error { return a.cons.Raft.VerifyLeader().Error() }

func (a *Agent) notLeader() error {
	l, api := a.leader()
	return &errs.NotLeader{Leader: l, LeaderAPI: api}
}

// leader returns the leader's name and API address as this node knows them.
func (a *Agent) leader() (string, string) {
	if a.cons != nil && a.cons.Raft != nil {
		id := a.cons.LeaderID()
		if id == "" {
			return "", ""
		}
		var addr string
		a.fsm.Read(func(s *state.State) {
			if n := s.Nodes[id]; n != nil {
				addr = n.APIAddr
			}
		})
		if addr == "" {
			for _, m := range a.cons.Members() {
				if m.Name == id {
					addr = m.Meta.API
				}
			}
		}
		return id, addr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return "", a.leaderAPI
}

func (a *Agent) coordinator() *coordinator.Coordinator {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.coord
}

// HashToken is how bearer tokens are stored.
func HashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func randToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// withMetrics serves GET /metrics (Prometheus text format; a read-only or
// operator bearer token is required) in front of the API.
func (a *Agent) withMetrics(next http.Handler) http.Handler {
	prom := promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{})
	// PACELINE_PPROF=1 also serves Go's profiler at /debug/pprof/ (same
	// token rule), for diagnosing an agent in the field.
	debug := os.Getenv("PACELINE_PPROF") == "1"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isDebug := debug && strings.HasPrefix(r.URL.Path, "/debug/pprof/")
		if r.URL.Path != "/metrics" && !isDebug {
			next.ServeHTTP(w, r)
			return
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok := tok != "" && a.TokenRole(tok) != ""
		if a.cfg.Role != "control" {
			// Remote nodes hold no token hashes: they take the join token.
			ok = tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.joinToken)) == 1
		}
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"status":401,"error":"unauthorized: /metrics needs a read-only or operator bearer token (Prometheus: authorization.credentials_file)"}`)
			return
		}
		if isDebug {
			switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
			case "profile":
				pprof.Profile(w, r)
			case "trace":
				pprof.Trace(w, r)
			default:
				pprof.Index(w, r)
			}
			return
		}
		prom.ServeHTTP(w, r)
	})
}
