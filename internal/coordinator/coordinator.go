// Package coordinator holds the raft leader's work: it grants hold leases
// (renewals from every node), keeps node records online/offline, turns the
// scheduler's placement into committed assignments while never letting an
// exclusive resource run twice, and records failures and recoveries.
//
// Only the leader runs a Coordinator, after a raft barrier. Renewals and
// planning are serialised by one mutex: an acknowledgement is given either
// before a decision that treated the node as gone (and then the decision
// sees the fresh acknowledgement) or after that decision was committed (and
// then the acknowledged index covers it).
package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/metrics"
	"github.com/paceline/paceline/internal/scheduler"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Raft is what the coordinator needs from the consensus layer.
type Raft interface {
	// Propose commits a command and returns its result once applied locally.
	Propose(ctx context.Context, c *state.Command) (state.Result, error)
	// VerifyLeader returns nil when a quorum still follows this leader.
	VerifyLeader() error
}

// Config wires a coordinator.
type Config struct {
	Cluster string
	FSM     *state.FSM
	Raft    Raft
	Lease   lease.Params
	Table   *lease.Table
	Logger  *slog.Logger
	Now     func() time.Time
	// Metrics, optional.
	Metrics *metrics.Metrics
	// LeaderSince is when raft reported this node leader (zero: when Run
	// starts). Silent nodes are judged from it (lease.Table.BecameLeader):
	// any moment after the election is safe, and the earlier the sooner a
	// node lost with the old leader is recovered.
	LeaderSince time.Time
}

type report struct {
	r  api.Renew
	at time.Time
}

type recovery struct {
	from  string
	since time.Time
	to    string
}

// Coordinator is the leader-only planner. Create one per leadership term.
type Coordinator struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu         sync.Mutex
	running    bool
	reports    map[string]report
	released   map[string]bool
	lastUnset  map[string]uint64
	startIndex uint64
	recoveries map[string]recovery
	unplaced   []string
	defs       AssignmentCache
	kick       chan struct{}
	// fence is the leader's fencing (fence.go); fenced is the state's
	// fenced marks as read by the current planning round.
	fence  *fenceOps
	fenced map[string]time.Time
	sp     *spec.Spec
	runCtx context.Context // the leadership term's context (fence operations)
	// Ordered bootstrap (bootstrap.go): what each cold start waits for,
	// since when; wake is a wake-up time a helper asked for this round.
	bootWaiting map[string]string
	bootSince   map[string]time.Time
	bootFirst   map[string]string // resource → node chosen to start first in this cold start
	wake        time.Time
}

// soonAt asks the current planning round to run again at t at the latest.
func (c *Coordinator) soonAt(t time.Time) {
	if c.wake.IsZero() || t.Before(c.wake) {
		c.wake = t
	}
}

// New returns a coordinator; call Run when leadership is established.
func New(cfg Config) *Coordinator {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Coordinator{cfg: cfg, log: cfg.Logger, now: cfg.Now, reports: map[string]report{}, released: map[string]bool{},
		lastUnset: map[string]uint64{}, recoveries: map[string]recovery{}, kick: make(chan struct{}, 1), fence: newFenceOps(),
		bootWaiting: map[string]string{}, bootSince: map[string]time.Time{}, bootFirst: map[string]string{}}
}

func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run plans until ctx ends (leadership lost). The caller has passed a raft
// barrier, so the FSM holds every committed entry.
func (c *Coordinator) Run(ctx context.Context) error {
	t := c.cfg.Table
	since := c.now()
	if s := c.cfg.LeaderSince; !s.IsZero() && s.Before(since) {
		since = s
	}
	t.BecameLeader(since)
	// Nodes keep the lease timings they declared to earlier leaders.
	c.cfg.FSM.Read(func(s *state.State) {
		for _, n := range s.Nodes {
			if n.LeaseMS > 0 {
				t.Declare(n.Name, time.Duration(n.LeaseMS)*time.Millisecond, time.Duration(n.MarginMS)*time.Millisecond)
			}
		}
	})
	c.mu.Lock()
	c.running = true
	c.runCtx = ctx
	c.startIndex = c.cfg.FSM.Index()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
		t.LostLeadership()
	}()
	defer c.closeFencing()
	// Confirm leadership continuously: acknowledgements need a fresh quorum.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(c.cfg.Lease.LeaderLeaseTimeout / 3)
		defer tick.Stop()
		for {
			start := c.now()
			if err := c.cfg.Raft.VerifyLeader(); err == nil {
				t.Confirmed(start)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer wg.Wait()
	fallback := time.NewTicker(500 * time.Millisecond)
	defer fallback.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		changed := c.cfg.FSM.Changed()
		next := c.reconcile(ctx)
		c.mu.Lock()
		if w := c.wake; !w.IsZero() && (next.IsZero() || w.Before(next)) {
			next = w
		}
		c.mu.Unlock()
		if !next.IsZero() {
			d := next.Sub(c.now()) + time.Millisecond
			if d < time.Millisecond {
				d = time.Millisecond
			}
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-c.kick:
		case <-timer.C:
		case <-fallback.C:
		}
	}
}

// Renew grants (or refuses) a hold-lease renewal and records the node's report.
func (c *Coordinator) Renew(r api.Renew) api.RenewAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return api.RenewAck{OK: false, Reason: "not leading"}
	}
	if r.Cluster != c.cfg.Cluster {
		return api.RenewAck{OK: false, Reason: fmt.Sprintf("node %s belongs to cluster %q, this is %q", r.Node, r.Cluster, c.cfg.Cluster)}
	}
	now := c.now()
	if !c.cfg.Table.AckWith(r.Node, now, time.Duration(r.LeaseMS)*time.Millisecond, time.Duration(r.MarginMS)*time.Millisecond) {
		return api.RenewAck{OK: false, Reason: "leadership not confirmed by a quorum"}
	}
	prev, had := c.reports[r.Node]
	if had && r.Incarnation != "" && r.Incarnation == prev.r.Incarnation && r.Seq < prev.r.Seq {
		// A renewal overtaken by a newer one of the same process (e.g. a
		// report sent before "leaving" that arrives after it): the lease
		// ack above stands, the stale report is ignored.
		return api.RenewAck{OK: true, Index: c.cfg.FSM.Index()}
	}
	c.reports[r.Node] = report{r: r, at: now}
	if r.Leaving {
		c.released[r.Node] = len(r.Active) == 0
	} else {
		delete(c.released, r.Node)
	}
	if !had || !sameActive(prev.r, r) || prev.r.Leaving != r.Leaving || prev.r.APIAddr != r.APIAddr || !slices.Equal(prev.r.ProbesDone, r.ProbesDone) || !maps.Equal(prev.r.Attributes, r.Attributes) {
		c.poke()
	}
	return api.RenewAck{OK: true, Index: c.cfg.FSM.Index()}
}

func sameActive(a, b api.Renew) bool {
	if len(a.Active) != len(b.Active) || a.Applied != b.Applied || len(a.Ranks) != len(b.Ranks) {
		return false
	}
	for r, x := range a.Ranks {
		if y, ok := b.Ranks[r]; !ok || x.OK != y.OK || x.Rank != y.Rank {
			return false
		}
	}
	for i := range a.Active {
		if !sameInstance(a.Active[i], b.Active[i]) {
			return false
		}
	}
	return true
}

func sameInstance(a, b api.ActiveInstance) bool {
	if (a.PromotionScore == nil) != (b.PromotionScore == nil) || (a.PromotionScore != nil && *a.PromotionScore != *b.PromotionScore) {
		return false
	}
	a.PromotionScore, b.PromotionScore = nil, nil
	return a == b
}

// Unplaced returns the explanations of slots that could not be placed.
func (c *Coordinator) Unplaced() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.unplaced...)
	for _, r := range sortedKeys(c.bootWaiting) {
		out = append(out, r+":bootstrap "+c.bootWaiting[r])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// InstanceStates returns what every node reported: node → slot key → state.
func (c *Coordinator) InstanceStates() map[string]map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]string{}
	for n, rep := range c.reports {
		m := map[string]string{}
		for _, a := range rep.r.Active {
			m[state.SlotKey(a.Resource, a.Slot)] = a.State
		}
		out[n] = m
	}
	return out
}

// ActiveReports returns a copy of what every node last reported running
// (its Renew.Active: node → instances, with slots, states and epochs), for
// discovery. The copy shares nothing with the coordinator.
func (c *Coordinator) ActiveReports() map[string][]api.ActiveInstance {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]api.ActiveInstance, len(c.reports))
	for n, rep := range c.reports {
		act := make([]api.ActiveInstance, len(rep.r.Active))
		copy(act, rep.r.Active)
		for i := range act {
			if p := act[i].PromotionScore; p != nil {
				v := *p
				act[i].PromotionScore = &v
			}
		}
		out[n] = act
	}
	return out
}

// Failure records a failure reported by a node.
func (c *Coordinator) Failure(ctx context.Context, f api.Failure) error {
	var r *spec.Resource
	var fz *spec.Fencing
	c.cfg.FSM.Read(func(s *state.State) {
		if s.Spec != nil {
			fz = s.Spec.Fencing
			for i := range s.Spec.Resources {
				if s.Spec.Resources[i].Name == f.Resource {
					x := s.Spec.Resources[i]
					r = &x
				}
			}
		}
	})
	if r == nil {
		return nil // resource gone from the spec; nothing to count
	}
	onFail := f.OnFail
	if onFail == "" {
		onFail = r.OnFail
	}
	if onFail == "" {
		onFail = spec.OnFailRestart
	}
	startFatal := true
	c.cfg.FSM.Read(func(s *state.State) {
		if s.Spec != nil && s.Spec.Cluster.StartFailureIsFatal != nil {
			startFatal = *s.Spec.Cluster.StartFailureIsFatal
		}
	})
	reason := f.Reason
	if f.Op != "" {
		reason = f.Op + " failed: " + reason
	}
	cmd := &state.Command{Type: state.CmdFailure, Time: c.now(), NodeName: f.Node, Resource: f.Resource, Reason: reason,
		Block:   onFail == spec.OnFailStop || f.Hard == "cluster",
		Freeze:  onFail == spec.OnFailBlock,
		NoCount: onFail == spec.OnFailIgnore && f.Hard == "",
		Fatal:   f.Hard == "node" || (f.Op == "start" && startFatal)}
	// onFail: fence, and a failed stop when fencing is active and the
	// stop operation sets no onFail (Pacemaker's default): the node is
	// fenced; its resources recover once the fence is confirmed.
	if onFail == spec.OnFailFence || (f.Op == "stop" && f.OnFail == "" && r.OnFail == "" && fz.Active()) {
		c.mu.Lock()
		runCtx := c.runCtx
		c.mu.Unlock()
		if runCtx != nil && fz.Active() {
			c.startFence(runCtx, fz, f.Node, fz.RecoveryAction(), fmt.Sprintf("onFail: fence of %s (%s)", f.Resource, reason), "")
		}
		cmd.Block, cmd.Freeze = false, false
	}
	if onFail == spec.OnFailStandby {
		// The node goes standby: everything moves away from it.
		yes := true
		cmd = &state.Command{Type: state.CmdBatch, Batch: []state.Command{*cmd, {Type: state.CmdNodeAdmin, NodeName: f.Node, Standby: &yes, Author: "onFail standby of " + f.Resource}}}
	}
	_, err := c.cfg.Raft.Propose(ctx, cmd)
	return err
}

// reconcile runs one planning round and returns when it wants to run again
// at the latest (zero: only on events).
func (c *Coordinator) reconcile(ctx context.Context) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.wake = time.Time{}
	if m := c.cfg.Metrics; m != nil {
		start := time.Now()
		defer func() { m.PlanDuration.Observe(time.Since(start).Seconds()) }()
	}
	t := c.cfg.Table
	var (
		nodes      []state.Node
		assign     map[string]state.Assignment
		sp         *spec.Spec
		specVer    int
		in         scheduler.Input
		expire     [][2]string
		expireCons []string
		nextExpiry time.Time
	)
	var probes []probeDef
	var released map[string]map[string]string
	c.cfg.FSM.Read(func(s *state.State) {
		in = scheduler.FromState(s, s.Spec, now)
		_, probes = c.defs.load(s)
		released = map[string]map[string]string{}
		for n, m := range s.ProbeRelease {
			released[n] = map[string]string{}
			for r, k := range m {
				released[n][r] = k
			}
		}
		expireCons = s.ExpiredConstraints(now)
		nextExpiry = s.NextConstraintExpiry(now)
		for _, n := range s.NodeNames() {
			nodes = append(nodes, *s.Nodes[n])
		}
		assign = map[string]state.Assignment{}
		for k, a := range s.Assignments {
			assign[k] = *a
		}
		if s.Spec != nil {
			sp = s.Spec.WithDefaults()
		}
		specVer = s.SpecVersion
		expire = s.ExpireFailures(now)
		c.fenced = map[string]time.Time{}
		for n, at := range s.Fenced {
			c.fenced[n] = at
		}
	})
	c.sp = sp
	propose := func(cmd *state.Command) (state.Result, bool) {
		cmd.Time = now
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := c.cfg.Raft.Propose(pctx, cmd)
		if err == nil {
			err = res.Err
		}
		if m := c.cfg.Metrics; m != nil {
			m.Proposals.WithLabelValues(cmd.Type, map[bool]string{true: "ok", false: "error"}[err == nil]).Inc()
		}
		if err != nil {
			c.log.Warn("proposal failed", "type", cmd.Type, "err", err)
			return res, false
		}
		return res, true
	}
	var next time.Time
	soon := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	gone := func(n string) bool { return c.released[n] || t.Expired(n, now) }

	// 1. Node records follow renewals and lease expiry.
	known := map[string]state.Node{}
	for _, n := range nodes {
		known[n.Name] = n
	}
	// All node-record changes of a round go into one raft entry: hundreds
	// of nodes joining at once must not mean hundreds of commits while
	// renewals wait for this round.
	var batch []state.Command
	reporters := make([]string, 0, len(c.reports))
	for n := range c.reports {
		reporters = append(reporters, n)
	}
	sort.Strings(reporters)
	on, off := true, false
	for _, name := range reporters {
		rep := c.reports[name].r
		n, ok := known[name]
		if !ok || n.APIAddr != rep.APIAddr || n.RaftAddr != rep.RaftAddr || n.Role != rep.Role || !sameLabels(n.Labels, rep.Labels) ||
			n.LeaseMS != rep.LeaseMS || n.MarginMS != rep.MarginMS {
			batch = append(batch, state.Command{Type: state.CmdNodeUpsert, Node: &state.Node{Name: name, Role: rep.Role, APIAddr: rep.APIAddr,
				RaftAddr: rep.RaftAddr, Labels: rep.Labels, LeaseMS: rep.LeaseMS, MarginMS: rep.MarginMS}})
			if !ok && t.Alive(name, now) && !rep.Leaving {
				batch = append(batch, state.Command{Type: state.CmdNodeOnline, NodeName: name, Online: &on})
			}
		}
	}
	for _, n := range nodes {
		alive := t.Alive(n.Name, now) && !c.reports[n.Name].r.Leaving
		if n.Online && gone(n.Name) {
			reason := "lease expired"
			if c.released[n.Name] {
				reason = "shut down cleanly"
			}
			batch = append(batch, state.Command{Type: state.CmdNodeOnline, NodeName: n.Name, Online: &off, Reason: reason})
		} else if !n.Online && alive {
			batch = append(batch, state.Command{Type: state.CmdNodeOnline, NodeName: n.Name, Online: &on})
		} else if n.Online {
			soon(t.ExpiresAt(n.Name))
		}
	}
	if len(batch) > 0 {
		cmd := &batch[0]
		if len(batch) > 1 {
			cmd = &state.Command{Type: state.CmdBatch, Batch: batch}
		}
		if _, ok := propose(cmd); ok {
			return now // re-read state next round
		}
		return now.Add(100 * time.Millisecond)
	}
	// Lost nodes are fenced; fenced nodes that came back are unfenced.
	c.fenceLost(ctx, sp, nodes, gone, now, propose, soon)
	// 2. Failures older than failureTimeout are forgotten.
	for _, rn := range expire {
		propose(&state.Command{Type: state.CmdCleanup, Resource: rn[0], NodeName: rn[1], Author: "failure-timeout"})
	}
	if len(expire) > 0 {
		return now
	}
	// Operator constraints (move/ban) whose lifetime ended are removed.
	if len(expireCons) > 0 {
		propose(state.ExpireConstraintsCommand(expireCons))
		return now
	}
	if !nextExpiry.IsZero() {
		soon(nextExpiry)
	}
	// 3. Recoveries: a moved exclusive slot reported running on its new node.
	c.noteRecoveries(assign, propose)
	if sp == nil {
		return next
	}
	// 4. Placement and transition, from what live nodes report running.
	in.Spec = sp
	defs := map[string]*spec.Resource{}
	for i := range sp.Resources {
		defs[sp.Resources[i].Name] = &sp.Resources[i]
	}
	c.observe(&in, gone)
	out, tr := scheduler.Plan(in)
	boot := c.newBootGate(in, out, now)
	if keys, evs := c.releaseColdAssignments(sp, assign, gone); len(keys) > 0 {
		cmd := &state.Command{Type: state.CmdPlan, SpecVersion: specVer, Unset: keys, Events: evs}
		if _, ok := propose(cmd); ok {
			return now
		}
		return now.Add(200 * time.Millisecond)
	}
	c.unplaced = append(append([]string(nil), out.Unplaced...), tr.Blocked...)
	// An action may go ahead when everything it waits for is done: in a
	// transition computed from what nodes report, pending prerequisites
	// are still listed.
	ready := map[string]bool{}
	listed := map[string]bool{}
	for _, a := range tr.Actions {
		id := a.Op + " " + a.Slot + "@" + a.Node
		listed[id] = true
		if len(a.After) == 0 {
			ready[id] = true
		}
	}
	// Instances found by probes that the placement does not adopt: the
	// node stops them once the resource leaves its probe list.
	var releases []state.Command
	for _, a := range tr.Actions {
		if a.Op != scheduler.OpStop || a.Slot != "" || len(a.After) > 0 {
			continue
		}
		for _, p := range probes {
			if p.res == a.Resource && released[a.Node][a.Resource] != p.key {
				releases = append(releases, state.Command{Type: state.CmdProbeRelease, NodeName: a.Node, Resource: a.Resource, ProbeKey: p.key, Reason: a.Reason})
			}
		}
	}
	if len(releases) > 0 {
		cmd := &releases[0]
		if len(releases) > 1 {
			cmd = &state.Command{Type: state.CmdBatch, Batch: releases}
		}
		if _, ok := propose(cmd); ok {
			return now
		}
	}
	may := func(op, k, node string) bool {
		if op == scheduler.OpStart && c.unprobed(probes, released, resourceOfKey(k), gone) != "" {
			return false // find out where it already runs before starting it anywhere
		}
		return !listed[op+" "+k+"@"+node] || ready[op+" "+k+"@"+node]
	}
	plan := &state.Command{Type: state.CmdPlan, SpecVersion: specVer}
	keys := map[string]bool{}
	for k := range assign {
		keys[k] = true
	}
	for k := range out.Desired {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var unset []string
	for _, k := range sorted {
		cur, has := assign[k]
		want := out.Desired[k]
		role := out.Roles[k]
		if has && cur.Node == want {
			if cur.Role != role {
				op := scheduler.OpDemote
				if role == spec.RolePromoted {
					op = scheduler.OpPromote
				}
				if role == spec.RolePromoted && (!ready[op+" "+k+"@"+want] || c.promotedElsewhere(assign, cur, sp, defs[cur.Resource], now)) {
					continue // promote once started and once no other instance holds the role
				}
				plan.Set = append(plan.Set, state.Assignment{Resource: cur.Resource, Slot: cur.Slot, Node: want, Role: role})
				plan.Events = append(plan.Events, state.Event{Type: "resource-" + op, Node: want, Resource: cur.Resource, Message: fmt.Sprintf("%s %s on %s", op, k, want)})
			}
			continue
		}
		excl, inSpec := out.Exclusive[k]
		if !inSpec {
			excl = true
		}
		resName := out.Resource[k]
		if resName == "" {
			resName = cur.Resource
		}
		slot := slotOf(k)
		// A new placement starts unpromoted; promotion follows once it runs.
		newAssign := state.Assignment{Resource: resName, Slot: slot, Node: want}
		switch {
		case has && want == "":
			if !may(scheduler.OpStop, k, cur.Node) {
				continue // an order makes it wait for other stops
			}
			plan.Unset = append(plan.Unset, k)
			unset = append(unset, k)
			plan.Events = append(plan.Events, state.Event{Type: "resource-stop", Node: cur.Node, Resource: resName, Message: fmt.Sprintf("stop %s on %s", k, cur.Node)})
		case has && !excl:
			if !may(scheduler.OpStart, k, want) || (!foundOn(in.Active, resName, want) && boot.hold(defs[resName], want)) {
				continue
			}
			plan.Set = append(plan.Set, newAssign)
			plan.Events = append(plan.Events, state.Event{Type: "resource-move", Node: want, Resource: resName, Message: fmt.Sprintf("move %s from %s to %s", k, cur.Node, want)})
		case has && gone(cur.Node):
			if done, at := c.fenceDone(cur.Node, defs[resName], now); !done {
				if !at.IsZero() {
					soon(at) // its self-fence may still be stopping a script-class instance
				} // else: waits for a confirmed fence, whose record wakes the loop
				continue
			}
			if !may(scheduler.OpStart, k, want) {
				continue
			}
			plan.Set = append(plan.Set, newAssign)
			c.recoveries[k] = recovery{from: cur.Node, since: t.ExpiresAt(cur.Node).Add(-c.cfg.Lease.L - c.cfg.Lease.Margin), to: want}
			why := "lease expired"
			if c.released[cur.Node] {
				why = "shut down cleanly"
			} else if c.fencedAfterAck(cur.Node) {
				why = "fenced"
			}
			plan.Events = append(plan.Events, state.Event{Type: "resource-recover", Node: want, Resource: resName, Message: fmt.Sprintf("%s: %s is gone (%s), starting on %s", k, cur.Node, why, want)})
		case has && t.Alive(cur.Node, now):
			// Graceful move: stop first; start elsewhere once stopped.
			if !may(scheduler.OpStop, k, cur.Node) {
				continue
			}
			plan.Unset = append(plan.Unset, k)
			unset = append(unset, k)
			plan.Events = append(plan.Events, state.Event{Type: "resource-move", Node: cur.Node, Resource: resName, Message: fmt.Sprintf("move %s away from %s to %s: stopping it first", k, cur.Node, want)})
		case has:
			soon(t.ExpiresAt(cur.Node)) // silent holder: wait for its lease to end
		case !may(scheduler.OpStart, k, want):
			// Waits for another action (an order or group).
		case !foundOn(in.Active, resName, want) && boot.hold(defs[resName], want):
			// Waits for the ordered bootstrap (a cold start).
		case !excl && !foundOn(in.Active, resName, want):
			plan.Set = append(plan.Set, newAssign)
			plan.Events = append(plan.Events, state.Event{Type: "resource-start", Node: want, Resource: resName, Message: fmt.Sprintf("start %s on %s", k, want)})
		case foundOn(in.Active, resName, want):
			// A probe found it running there: assign it where it runs
			// (the node adopts it; nothing starts).
			plan.Set = append(plan.Set, newAssign)
			plan.Events = append(plan.Events, state.Event{Type: "resource-adopt", Node: want, Resource: resName, Message: fmt.Sprintf("%s found running on %s by a probe: adopted there", k, want)})
		default:
			if blocker, until := c.exclusiveBlocker(k, want, defs[resName], slot, nodes, now); blocker != "" {
				if !until.IsZero() {
					soon(until)
				}
				continue
			}
			plan.Set = append(plan.Set, newAssign)
			plan.Events = append(plan.Events, state.Event{Type: "resource-start", Node: want, Resource: resName, Message: fmt.Sprintf("start %s on %s", k, want)})
		}
	}
	// cluster.batchLimit: at most that many new starts per round; the
	// rest follow in the next rounds. Recoveries of resources from lost
	// nodes are never held back.
	if limit := sp.Cluster.BatchLimit; limit > 0 {
		var kept []state.Assignment
		starts := 0
		for _, a := range plan.Set {
			cur, has := assign[a.Key()]
			isStart := !has || cur.Node != a.Node
			if isStart && !c.isRecovery(a.Key()) {
				if starts >= limit {
					continue
				}
				starts++
			}
			kept = append(kept, a)
		}
		if len(kept) < len(plan.Set) {
			plan.Set = kept
			plan.Events = filterEvents(plan.Events, kept, plan.Unset)
			soon(now.Add(50 * time.Millisecond))
		}
	}
	plan.Events = append(plan.Events, boot.events...)
	if len(plan.Set) == 0 && len(plan.Unset) == 0 {
		if len(boot.events) > 0 {
			propose(&state.Command{Type: state.CmdEvent, Events: boot.events})
		}
		return next
	}
	res, ok := propose(plan)
	if ok {
		for _, k := range unset {
			c.lastUnset[k] = res.Index
		}
		return now
	}
	return now.Add(200 * time.Millisecond)
}

// Observe adds to in what live nodes report, as a planning round does
// (for simulate and previews on the leader).
func (c *Coordinator) Observe(in *scheduler.Input) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.observe(in, func(n string) bool { return c.released[n] || c.cfg.Table.Expired(n, now) })
}

// observe adds to in what live nodes report: instances running (and
// their roles), instances found by probes outside any slot, and the
// promotion preferences agents reported. Nodes that are gone run nothing.
func (c *Coordinator) observe(in *scheduler.Input, gone func(string) bool) {
	in.Running, in.RunningRoles = map[string]string{}, map[string]string{}
	scores := map[string]int{}
	names := make([]string, 0, len(c.reports))
	for n := range c.reports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if gone(n) {
			continue
		}
		for _, a := range c.reports[n].r.Active {
			if a.PromotionScore != nil {
				scores[a.Resource+"@"+n] = *a.PromotionScore
			}
			if a.Probed {
				in.Active = append(in.Active, scheduler.Instance{Resource: a.Resource, Slot: -1, Node: n, Role: a.Role})
				continue
			}
			if a.State != "running" {
				continue
			}
			k := state.SlotKey(a.Resource, a.Slot)
			in.Running[k] = n
			if a.Role == spec.RolePromoted {
				in.RunningRoles[k] = spec.RolePromoted
			}
		}
	}
	in.PromotionScore = func(r, n string) (int, bool) { v, ok := scores[r+"@"+n]; return v, ok }
	// Attributes agents set on live nodes join the node's labels for rules
	// (the spec's nodes[].attributes still win: they are the operator's).
	declared := map[string]map[string]string{}
	if in.Spec != nil {
		for _, ns := range in.Spec.Nodes {
			declared[ns.Name] = ns.Attributes
		}
	}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		rep, ok := c.reports[n.Name]
		if !ok || gone(n.Name) || len(rep.r.Attributes) == 0 {
			continue
		}
		labels := maps.Clone(n.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range rep.r.Attributes {
			if _, fixed := declared[n.Name][k]; !fixed {
				labels[k] = v
			}
		}
		n.Labels = labels
	}
}

// unprobed names a live node that was asked to probe res and has not
// reported the result yet ("" when none). Nodes that do not probe at all
// (ProbesDone nil) are not waited for.
func (c *Coordinator) unprobed(probes []probeDef, released map[string]map[string]string, res string, gone func(string) bool) string {
	for _, p := range probes {
		if p.res != res {
			continue
		}
		names := make([]string, 0, len(c.reports))
		for n := range c.reports {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			rep := c.reports[n].r
			if gone(n) || rep.ProbesDone == nil || !p.on(n) || released[n][res] == p.key {
				continue
			}
			if !slices.Contains(rep.ProbesDone, p.key) {
				return n
			}
		}
	}
	return ""
}

// fenceDone reports whether node n can no longer run anything of r: at
// once after a clean shutdown (it stopped everything before leaving);
// after its hold lease expired plus, for script classes, the time its
// self-fence may take to run the stop (and demote) scripts
// (driver.FenceWait). The classes whose fence action a lease guard
// performs (process: SIGKILL; vip: the address removed) are done at the
// expiry itself: the guard acts by the holder's deadline, 2 × margin
// before it, even if the holder's agent is hung (docs/safety.md).
// When not yet, it also returns when.
//
// With fencing, a node confirmed fenced after its last acknowledged
// renewal runs nothing; when recovery must wait for the fence
// (mustFence), the lease rule alone is not enough and the zero time
// says "wait for an event".
func (c *Coordinator) fenceDone(n string, r *spec.Resource, now time.Time) (bool, time.Time) {
	if c.released[n] || c.fencedAfterAck(n) {
		return true, time.Time{}
	}
	if mustFence(c.sp, r) {
		return false, time.Time{}
	}
	return c.leaseDone(n, r, now)
}

// leaseDone is the lease rule alone: n's lease expired plus the time its
// self-fence may take for r.
func (c *Coordinator) leaseDone(n string, r *spec.Resource, now time.Time) (bool, time.Time) {
	t := c.cfg.Table
	if c.released[n] {
		return true, time.Time{}
	}
	if !t.Expired(n, now) {
		return false, t.ExpiresAt(n)
	}
	var wait time.Duration
	if r != nil {
		wait = driver.FenceWait(r)
	}
	// A node with a hardware watchdog stops petting it while exclusive
	// instances outlive its lease: it has reset within the watchdog
	// timeout (plus one petting interval) after its deadline, which
	// precedes the expiry. That bounds a script's stop wait.
	if wd := time.Duration(c.reports[n].r.WatchdogMS) * time.Millisecond; wd > 0 && wd+watchdogPetSlack < wait {
		wait = wd + watchdogPetSlack
	}
	at := t.ExpiresAt(n).Add(wait)
	return !now.Before(at), at
}

// watchdogPetSlack is the agent's longest interval between two pets.
const watchdogPetSlack = 250 * time.Millisecond

// isRecovery reports whether slot k is being recovered from a lost node.
func (c *Coordinator) isRecovery(k string) bool {
	_, ok := c.recoveries[k]
	return ok
}

// filterEvents keeps the events of the changes that remain in the plan:
// those about a kept assignment (resource on its new node) and those about
// a resource with an unassignment in the plan.
func filterEvents(evs []state.Event, set []state.Assignment, unset []string) []state.Event {
	keep := map[string]bool{}
	for _, a := range set {
		keep[a.Resource+"@"+a.Node] = true
	}
	stopping := map[string]bool{}
	for _, k := range unset {
		stopping[resourceOfKey(k)] = true
	}
	var out []state.Event
	for _, e := range evs {
		if keep[e.Resource+"@"+e.Node] || stopping[e.Resource] {
			out = append(out, e)
		}
	}
	return out
}

// foundOn reports whether a probe found res running on node.
func foundOn(active []scheduler.Instance, res, node string) bool {
	for _, a := range active {
		if a.Resource == res && a.Node == node {
			return true
		}
	}
	return false
}

func resourceOfKey(k string) string {
	if i := strings.LastIndexByte(k, ':'); i >= 0 {
		return k[:i]
	}
	return k
}

// promotedElsewhere reports whether another slot of a's resource is still
// promoted (assigned or reported) beyond what promotedMax allows, so that
// promoting a now could briefly make one too many.
func (c *Coordinator) promotedElsewhere(assign map[string]state.Assignment, a state.Assignment, sp *spec.Spec, def *spec.Resource, now time.Time) bool {
	promoted := map[string]bool{}
	for k, x := range assign {
		if x.Resource == a.Resource && x.Role == spec.RolePromoted && k != a.Key() {
			promoted[k] = true
		}
	}
	for n, rep := range c.reports {
		if done, _ := c.fenceDone(n, def, now); done && (c.released[n] || c.cfg.Table.Expired(n, now)) {
			continue // self-fenced: its instances are stopped
		}
		for _, x := range rep.r.Active {
			if k := state.SlotKey(x.Resource, x.Slot); x.Resource == a.Resource && x.Role == spec.RolePromoted && k != a.Key() {
				promoted[k] = true
			}
		}
	}
	max := 1
	for _, r := range sp.Resources {
		if r.Name == a.Resource && r.PromotedMax > 0 {
			max = r.PromotedMax
		}
	}
	return len(promoted) >= max
}

// exclusiveBlocker names a node that may still run slot k (so it must not
// start on want yet) and until when to wait for it at most.
func (c *Coordinator) exclusiveBlocker(k, want string, def *spec.Resource, slot int, nodes []state.Node, now time.Time) (string, time.Time) {
	res := ""
	if def != nil {
		res = def.Name
	}
	t := c.cfg.Table
	need := c.lastUnset[k]
	if need < c.startIndex {
		need = c.startIndex
	}
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
	}
	for n := range c.reports {
		names[n] = true
	}
	for n := range names {
		if n == want {
			continue
		}
		if t.Expired(n, now) || c.released[n] {
			done, at := c.fenceDone(n, def, now)
			if !done && at.IsZero() {
				// Waiting for a fence matters only if it may run the slot:
				// a lost node starts nothing new, so one whose last report
				// is recent enough and lacks the slot only needs the lease
				// rule.
				if rep, ok := c.reports[n]; ok && rep.r.Applied >= need && !hasSlot(rep.r, res, slot) {
					done, at = c.leaseDone(n, def, now)
				}
			}
			if !done {
				return n, at
			}
			continue
		}
		rep, ok := c.reports[n]
		if !ok || rep.r.Applied < need || hasSlot(rep.r, res, slot) {
			return n, t.ExpiresAt(n)
		}
	}
	return "", time.Time{}
}

func (c *Coordinator) noteRecoveries(assign map[string]state.Assignment, propose func(*state.Command) (state.Result, bool)) {
	for k, rc := range c.recoveries {
		a, ok := assign[k]
		if !ok || a.Node != rc.to {
			delete(c.recoveries, k)
			continue
		}
		rep, ok := c.reports[rc.to]
		if !ok {
			continue
		}
		for _, ai := range rep.r.Active {
			if ai.Resource == a.Resource && ai.Slot == a.Slot && ai.State == "running" && ai.Epoch >= a.Epoch {
				down := rep.at.Sub(rc.since)
				delete(c.recoveries, k)
				if m := c.cfg.Metrics; m != nil {
					m.Recoveries.Inc()
					m.RecoverySeconds.Observe(down.Seconds())
				}
				propose(&state.Command{Type: state.CmdEvent, Events: []state.Event{{Type: "resource-recovered", Node: rc.to, Resource: a.Resource,
					Message: fmt.Sprintf("%s recovered on %s after %s was lost (≤ %d ms since its last renewal)", k, rc.to, rc.from, down.Milliseconds()), DowntimeMS: down.Milliseconds()}}})
			}
		}
	}
}

func hasSlot(r api.Renew, res string, slot int) bool {
	for _, a := range r.Active {
		if a.Resource == res && a.Slot == slot {
			return true
		}
	}
	return false
}

func slotOf(k string) int {
	var n int
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == ':' {
			fmt.Sscanf(k[i+1:], "%d", &n)
			break
		}
	}
	return n
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// AssignmentCache answers assignment requests, encoding resource
// definitions (and their probe keys) once per spec version instead of once
// per request.
type AssignmentCache struct {
	mu      sync.Mutex
	version int
	defs    map[string]json.RawMessage
	probes  []probeDef
}

type probeDef struct {
	res       string
	key       string
	def       json.RawMessage
	never     map[string]bool // nodes with discovery: never
	exclusive map[string]bool // when set: only these nodes (discovery: exclusive)
}

// ProbeKey identifies a resource definition for probing.
func ProbeKey(def []byte) string {
	sum := sha256.Sum256(def)
	return hex.EncodeToString(sum[:8])
}

// probeDefs lists the resources nodes must probe: every script-class
// resource (ocf, lsb, systemd), honouring discovery never/exclusive of
// node locations.
func probeDefs(sp *spec.Spec, defs map[string]json.RawMessage) []probeDef {
	var out []probeDef
	for _, r := range sp.Resources {
		if !r.Info().Script() {
			continue
		}
		pd := probeDef{res: r.Name, key: ProbeKey(defs[r.Name]), def: defs[r.Name], never: map[string]bool{}}
		if sp.Constraints != nil {
			for _, l := range sp.Constraints.Location {
				if l.Resource != r.Name || l.Node == "" {
					continue
				}
				switch l.Discovery {
				case "never":
					pd.never[l.Node] = true
				case "exclusive":
					if pd.exclusive == nil {
						pd.exclusive = map[string]bool{}
					}
					pd.exclusive[l.Node] = true
				}
			}
		}
		out = append(out, pd)
	}
	return out
}

func (p probeDef) on(node string) bool {
	return !p.never[node] && (p.exclusive == nil || p.exclusive[node])
}

func (c *AssignmentCache) load(s *state.State) (map[string]json.RawMessage, []probeDef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defs == nil || c.version != s.SpecVersion {
		c.defs = map[string]json.RawMessage{}
		c.probes = nil
		c.version = s.SpecVersion
		if s.Spec != nil {
			sp := s.Spec.WithDefaults()
			for _, r := range sp.Resources {
				b, _ := json.Marshal(r)
				c.defs[r.Name] = b
			}
			c.probes = probeDefs(sp, c.defs)
		}
	}
	return c.defs, c.probes
}

// For returns node's assignments from the FSM: its instances with their
// definitions, roles, restart generations and (notify clones) peers, and
// the resources it must probe.
func (c *AssignmentCache) For(fsm *state.FSM, node string) api.Assignments {
	var out api.Assignments
	fsm.Read(func(s *state.State) {
		out.Index = s.Index
		defs, probes := c.load(s)
		notify := map[string]bool{}
		if s.Spec != nil {
			out.Maintenance = s.Spec.Cluster.Maintenance
			for _, r := range s.Spec.Resources {
				if r.Notify {
					notify[r.Name] = true
				}
			}
		}
		var peers map[string][]api.Peer
		for _, a := range s.AssignmentsFor(node) {
			na := api.NodeAssignment{Resource: a.Resource, Slot: a.Slot, Epoch: a.Epoch, Def: defs[a.Resource], Role: a.Role, Generation: s.Generation(a.Resource)}
			if notify[a.Resource] {
				if peers == nil {
					peers = map[string][]api.Peer{}
					for _, x := range s.SortedAssignments() {
						if notify[x.Resource] {
							peers[x.Resource] = append(peers[x.Resource], api.Peer{Slot: x.Slot, Node: x.Node, Role: x.Role})
						}
					}
				}
				na.Peers = peers[a.Resource]
			}
			out.Items = append(out.Items, na)
		}
		for _, p := range probes {
			if p.on(node) && s.ProbeRelease[node][p.res] != p.key {
				out.Probes = append(out.Probes, api.ProbeItem{Resource: p.res, Def: p.def, Key: p.key})
			}
		}
	})
	return out
}
