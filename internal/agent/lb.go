package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/executor"
	"github.com/paceline/paceline/internal/httpapi"
	"github.com/paceline/paceline/internal/lbmanager"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Load balancer wiring (docs/lb.md, "Spec and agent wiring"): every agent
// runs an lbmanager.Manager fed with the spec's loadBalancers, this
// node's discovery snapshot and the VIPs its executor runs; status is
// served at /v1/loadbalancers, events go to the leader.
const (
	// lbInterval is how often the manager compares what should run with
	// what runs (Update is called only on a change).
	lbInterval = 200 * time.Millisecond
	// lbStatusTimeout bounds the fetch of one node's status.
	lbStatusTimeout = 3 * time.Second
)

type lbWiring struct {
	mu sync.Mutex
	m  *lbmanager.Manager

	// Used by the lbLoop goroutine only: the spec's section, cloned once
	// per spec version.
	specVersion int
	lbs         []spec.LoadBalancer

	events chan api.Event
}

var _ httpapi.LBBackend = (*Agent)(nil)

// LBManager is this node's load balancer manager, nil before Run starts it (tests).
func (a *Agent) LBManager() *lbmanager.Manager {
	a.lbw.mu.Lock()
	defer a.lbw.mu.Unlock()
	return a.lbw.m
}

// lbLoop runs the node's load balancers until ctx ends.
func (a *Agent) lbLoop(ctx context.Context) {
	a.lbw.events = make(chan api.Event, 256)
	m := lbmanager.New(lbmanager.Config{Node: a.cfg.NodeName, Logger: a.log.With("sub", "lb"), Events: a.queueLBEvent})
	a.lbw.mu.Lock()
	a.lbw.m = m
	a.lbw.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); a.lbEventLoop(ctx) }()
	m.Run(ctx, lbInterval, a.lbInputs)
	<-done
}

func (a *Agent) lbInputs() lbmanager.Inputs {
	w := &a.lbw
	a.fsm.Read(func(s *state.State) {
		if s.SpecVersion == w.specVersion && (w.lbs != nil || s.Spec == nil) {
			return
		}
		w.specVersion, w.lbs = s.SpecVersion, []spec.LoadBalancer{}
		if s.Spec != nil {
			w.lbs = append(w.lbs, (&spec.Spec{LoadBalancers: s.Spec.LoadBalancers}).Clone().LoadBalancers...)
		}
	})
	in := lbmanager.Inputs{LoadBalancers: w.lbs, Snapshot: a.disc.holder.Snapshot()}
	if len(w.lbs) == 0 {
		return in
	}
	// A VIP counts as held from the moment its start begins (before the
	// address is added: the frontends are listening, with
	// ip_nonlocal_bind, when the first packet for the address arrives)
	// until its stop begins.
	held := map[string]bool{}
	for _, ai := range a.exec.Active() {
		if (ai.State == executor.StateStarting || ai.State == executor.StateRunning) && !ai.Probed {
			held[ai.Resource] = true
		}
	}
	in.Held = func(vip string) bool { return held[vip] }
	return in
}

// queueLBEvent hands an event to lbEventLoop without blocking.
func (a *Agent) queueLBEvent(e lbmanager.Event) {
	ev := api.Event{Time: time.Now(), Type: e.Type, Node: a.cfg.NodeName, Resource: e.Resource, Message: e.Message}
	select {
	case a.lbw.events <- ev:
	default:
		a.log.Warn("load balancer event queue full; dropping", "event", e.Message)
	}
}

// lbEventLoop sends load balancer events to the leader, which records
// them in the event log; a batch is retried for up to 10 s.
func (a *Agent) lbEventLoop(ctx context.Context) {
	for {
		var batch []api.Event
		select {
		case <-ctx.Done():
			return
		case e := <-a.lbw.events:
			batch = append(batch, e)
		}
	more:
		for len(batch) < 64 {
			select {
			case e := <-a.lbw.events:
				batch = append(batch, e)
			default:
				break more
			}
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			if addr := a.currentLeaderAPI(); addr != "" {
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := a.peerClient(addr).Do(cctx, "POST", "/v1/internal/events", batch, nil)
				cancel()
				if err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				a.log.Warn("load balancer events not delivered to the leader for 10 s; dropped (they are in this log)", "events", len(batch))
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// PostEvents implements httpapi.LBBackend: the leader records events
// reported by a node.
func (a *Agent) PostEvents(ctx context.Context, evs []api.Event) error {
	if a.coordinator() == nil {
		return a.notLeader()
	}
	cmd := &state.Command{Type: state.CmdEvent, Time: time.Now()}
	for _, e := range evs {
		cmd.Events = append(cmd.Events, state.Event{Time: e.Time, Type: e.Type, Node: e.Node, Resource: e.Resource, Message: e.Message})
	}
	_, err := a.Propose(ctx, cmd)
	return err
}

// LoadBalancers implements httpapi.LBBackend: this node's load balancers
// (local), or every online node's, fetched in parallel.
func (a *Agent) LoadBalancers(ctx context.Context, local bool) (*api.LoadBalancers, error) {
	out := &api.LoadBalancers{LoadBalancers: []api.LoadBalancerStatus{}}
	if m := a.LBManager(); m != nil {
		out.LoadBalancers = append(out.LoadBalancers, m.Status()...)
	}
	if local {
		return out, nil
	}
	peers := map[string]string{}
	var specLBs []spec.LoadBalancer
	a.fsm.Read(func(s *state.State) {
		for name, n := range s.Nodes {
			if n != nil && name != a.cfg.NodeName && n.Online && n.APIAddr != "" {
				peers[name] = n.APIAddr
			}
		}
		if s.Spec != nil {
			specLBs = (&spec.Spec{LoadBalancers: s.Spec.LoadBalancers}).Clone().LoadBalancers
		}
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, addr := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, lbStatusTimeout)
			defer cancel()
			var res api.LoadBalancers
			err := a.peerClient(addr).Do(cctx, "GET", "/v1/internal/loadbalancers", nil, &res)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if out.Unreachable == nil {
					out.Unreachable = map[string]string{}
				}
				out.Unreachable[name] = err.Error()
				return
			}
			out.LoadBalancers = append(out.LoadBalancers, res.LoadBalancers...)
		}()
	}
	wg.Wait()
	runs := map[string]bool{}
	for _, s := range out.LoadBalancers {
		if s.Error == "" || len(s.Frontends) > 0 {
			runs[s.Name] = true
		}
	}
	for _, l := range specLBs {
		if runs[l.Name] {
			continue
		}
		why := "runs on no node"
		if l.VIP != "" {
			why = fmt.Sprintf("runs on no node: it runs where vip %s is held, and no node holds it", l.VIP)
		}
		out.LoadBalancers = append(out.LoadBalancers, api.LoadBalancerStatus{Name: l.Name, VIP: l.VIP, Error: why})
	}
	sort.SliceStable(out.LoadBalancers, func(i, j int) bool {
		x, y := out.LoadBalancers[i], out.LoadBalancers[j]
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Node < y.Node
	})
	return out, nil
}
