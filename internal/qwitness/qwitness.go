// Package qwitness is `paceline witness`: a quorum witness, the third vote
// that lets a two-node cluster survive losing either node without split
// brain (docs/quorum.md), as corosync-qdevice does for corosync.
//
// A witness is a raft voter of one cluster. It keeps the replicated log and
// state, as every raft voter must (a vote from a member that forgot a
// committed entry could elect a leader without it), but it runs no
// resources, holds no lease and serves no API. It stands for election
// only after the control nodes had several election timeouts to win
// without it, which they can unless the witness holds log entries the
// surviving node lacks; then it wins, and hands leadership at once to a
// live control node, which raft first brings up to date (see
// internal/consensus, witness.go). Leadership transfers to the witness
// are refused. It joins through the control nodes' API
// addresses with the join token, like an agent, and talks raft and gossip
// over mutual TLS when tls is configured.
//
// One witness process serves one cluster; several clusters need several
// witness processes (each with its own ports and data dir), which can run
// on the same host.
package qwitness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/consensus"
	"github.com/paceline/paceline/internal/state"
	"github.com/paceline/paceline/internal/tlsutil"
)

// Witness is one witness process for one cluster.
type Witness struct {
	cfg       config.Config
	log       *slog.Logger
	token     string
	raftTLS   *tls.Config
	clientTLS *tls.Config
	net       consensus.Network
	peer      *api.Client

	cons      *consensus.Node
	consReady chan struct{}

	started   atomic.Bool
	crash     chan struct{}
	crashOnce sync.Once
	done      chan struct{}
}

// New validates cfg (whose role must be witness, or empty) and prepares a
// witness; Run starts it.
func New(cfg config.Config, log *slog.Logger) (*Witness, error) {
	if cfg.Role == "" {
		cfg.Role = config.RoleWitness
	}
	if cfg.Role != config.RoleWitness {
		return nil, fmt.Errorf("invalid config:\nrole: %q; a witness has role witness (run `paceline agent` for control and remote nodes)", cfg.Role)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	tok, err := cfg.ResolveToken()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &Witness{cfg: cfg, log: log.With("witness", cfg.NodeName), token: tok, consReady: make(chan struct{}),
		crash: make(chan struct{}), done: make(chan struct{})}
	if cfg.TLS.Enabled() {
		r, err := tlsutil.NewReloader(tlsutil.Files{CA: cfg.TLS.CA, Cert: cfg.TLS.Cert, Key: cfg.TLS.Key}, tlsutil.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		w.raftTLS = r.ServerConfig(true)
		w.clientTLS = r.PeerClientConfig()
	}
	w.peer = api.NewClient(nil, "", w.clientTLS)
	w.peer.JoinToken = tok
	w.peer.RetryBusy = false
	return w, nil
}

// SetNetwork makes the witness use n for raft, gossip and its join calls
// (tests inject faults through internal/faultnet). Call it before Run.
func (w *Witness) SetNetwork(n consensus.Network) {
	w.net = n
	if tr, ok := w.peer.HTTP.Transport.(*http.Transport); ok {
		tr.DialContext = n.DialContext
	}
}

// ID is the witness's raft server ID and gossip name ("witness:NAME").
func (w *Witness) ID() string { return consensus.WitnessID(w.cfg.NodeName) }

// IsLeader reports raft leadership (which a witness gives away at once).
func (w *Witness) IsLeader() bool {
	select {
	case <-w.consReady:
		return w.cons.IsLeader()
	default:
		return false
	}
}

// Voter reports whether the witness is a voter of the raft configuration
// it knows.
func (w *Witness) Voter() bool {
	select {
	case <-w.consReady:
	default:
		return false
	}
	servers, err := w.cons.Voters()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == w.ID() && s.Suffrage == raft.Voter {
			return true
		}
	}
	return false
}

// ErrCrashed is what Run returns after Crash.
var ErrCrashed = errors.New("witness crashed (Crash was called)")

// Crash stops a running witness abruptly (tests): raft and gossip stop
// without leaving. Run then returns ErrCrashed.
func (w *Witness) Crash() {
	if !w.started.Load() {
		return
	}
	w.crashOnce.Do(func() { close(w.crash) })
	<-w.done
}

// Run starts raft and gossip, joins the cluster and blocks until ctx ends,
// then leaves the gossip pool and stops.
func (w *Witness) Run(ctx context.Context) error {
	if w.started.Swap(true) {
		return errors.New("witness: Run called twice")
	}
	defer close(w.done)
	cfg := w.cfg
	if err := consensus.CheckDataDir(cfg.DataDir); err != nil {
		return err
	}
	cons, err := consensus.Start(consensus.Config{NodeName: cfg.NodeName, ClusterName: cfg.ClusterName, Role: consensus.RoleWitness,
		DataDir: cfg.DataDir, BindAddr: cfg.BindAddr, AdvertiseAddr: cfg.Advertise(), RaftPort: cfg.Ports.Raft, GossipPort: cfg.Ports.Gossip,
		JoinToken: w.token, ServerTLS: w.raftTLS, ClientTLS: w.clientTLS, FSM: state.NewFSM(), Logger: w.log.With("sub", "consensus"),
		Network: w.net, Timings: consensus.Timings{Heartbeat: cfg.Raft.Heartbeat, Election: cfg.Raft.Election, LeaderLeaseTimeout: cfg.Raft.LeaderLease}})
	if err != nil {
		return err
	}
	w.cons = cons
	close(w.consReady)
	w.log.Info("witness started", "cluster", cfg.ClusterName, "raft", fmt.Sprintf("%s:%d", cfg.Advertise(), cfg.Ports.Raft))

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	joinErr := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := w.gossipLoop(runCtx); err != nil {
			joinErr <- err
		}
	}()
	go func() { defer wg.Done(); w.leadershipLoop(runCtx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-joinErr:
	case <-w.crash:
		cancel()
		wg.Wait()
		cons.Shutdown()
		w.peer.HTTP.CloseIdleConnections()
		return ErrCrashed
	}
	cancel()
	wg.Wait()
	cons.Leave(time.Second)
	cons.Shutdown()
	w.peer.HTTP.CloseIdleConnections()
	w.log.Info("witness stopped")
	return runErr
}

// gossipLoop joins the gossip pool through the join addresses, and joins
// again whenever it has lost every other member (both control nodes
// restarted): raft needs no gossip to vote, but the control nodes learn
// from gossip that the witness is alive. A wrong cluster name or join
// token is fatal.
func (w *Witness) gossipLoop(ctx context.Context) error {
	delay := 200 * time.Millisecond
	joined := false
	for attempt := 1; ; attempt++ {
		if !joined || w.alone() {
			err := w.joinOnce(ctx)
			var fatal *fatalError
			if errors.As(err, &fatal) {
				return fatal.err
			}
			if err == nil {
				if !joined {
					w.log.Info("joined the cluster's gossip pool; the leader adds this witness as a voter")
				}
				joined, delay = true, 200*time.Millisecond
			} else if attempt == 1 || attempt%10 == 0 {
				w.log.Warn("join not yet possible, retrying", "attempt", attempt, "err", err)
			}
		}
		wait := delay
		if joined {
			wait = 2 * time.Second
		} else if delay < 2*time.Second {
			delay *= 2
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// alone reports whether the gossip pool holds no live member but this one.
func (w *Witness) alone() bool {
	for _, m := range w.cons.Members() {
		if m.Alive && m.Name != w.ID() {
			return false
		}
	}
	return true
}

type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }

// joinOnce says hello to each join address until one answers with gossip
// addresses that work.
func (w *Witness) joinOnce(ctx context.Context) error {
	var last error
	for _, addr := range w.cfg.Join {
		c := *w.peer
		c.Addrs = []string{addr}
		var wel api.Welcome
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := c.Do(cctx, "POST", "/v1/internal/hello", api.Hello{Node: w.ID(), Cluster: w.cfg.ClusterName, Role: consensus.RoleWitness}, &wel)
		cancel()
		var ae *api.Error
		if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusConflict) {
			return &fatalError{fmt.Errorf("cannot join through %s: %s", addr, ae.Message)}
		}
		if err != nil {
			if tlsutil.IsMismatch(err) {
				return &fatalError{fmt.Errorf("cannot join through %s: TLS handshake failed: %v\nThe witness and the agents must trust the same CA (tls.ca) and present certificates it signed (`paceline tls issue`)", addr, err)}
			}
			last = fmt.Errorf("%s: %w", addr, err)
			continue
		}
		if len(wel.Fast) == 0 {
			last = fmt.Errorf("%s knows no control node's gossip address yet", addr)
			continue
		}
		if _, err := w.cons.JoinFast(wel.Fast); err != nil {
			last = fmt.Errorf("gossip join through %s: %w (check that the gossip ports are reachable and the join token matches)", addr, err)
			continue
		}
		return nil
	}
	if last == nil {
		last = errors.New("no join address configured")
	}
	return last
}

// leadershipLoop hands leadership to a control node whenever the witness
// wins an election (which it does only when no control node could).
func (w *Witness) leadershipLoop(ctx context.Context) {
	ch := w.cons.Raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			if !isLeader {
				continue
			}
			w.log.Info("witness won an election (no control node could); handing leadership to a control node")
			for ctx.Err() == nil && w.cons.IsLeader() {
				err := w.transfer()
				if err == nil {
					w.log.Info("leadership handed to a control node")
					break
				}
				w.log.Warn("leadership transfer failed; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
}

// transfer hands leadership to a control voter, those alive in gossip
// first; raft replicates the missing entries to it before it takes over.
func (w *Witness) transfer() error {
	servers, err := w.cons.Voters()
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, m := range w.cons.Members() {
		alive[m.Name] = m.Alive && m.Meta.Role == "control"
	}
	var ctl []raft.Server
	for _, s := range servers {
		if s.Suffrage == raft.Voter && !consensus.IsWitness(string(s.ID)) {
			ctl = append(ctl, s)
		}
	}
	sort.SliceStable(ctl, func(i, j int) bool { return alive[string(ctl[i].ID)] && !alive[string(ctl[j].ID)] })
	var errs []error
	for _, s := range ctl {
		if err := w.cons.Raft.LeadershipTransferToServer(s.ID, s.Address).Error(); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", s.ID, err))
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no control voter in the raft configuration")
	}
	return errors.Join(errs...)
}
