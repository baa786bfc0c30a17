package coordinator

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

var lp = lease.Params{L: 400 * time.Millisecond, Margin: 40 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond}

// fakeRaft commits every proposal at once, applying it to a real FSM at the
// next index.
type fakeRaft struct {
	mu    sync.Mutex
	fsm   *state.FSM
	index uint64
	cmds  []state.Command
}

func (r *fakeRaft) Propose(ctx context.Context, c *state.Command) (state.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	r.cmds = append(r.cmds, *c)
	res := r.fsm.Apply(&raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: c.Encode()}).(state.Result)
	return res, nil
}

func (r *fakeRaft) VerifyLeader() error { return nil }

func (r *fakeRaft) proposals(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.cmds {
		if c.Type == typ {
			n++
		}
	}
	return n
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// h is one leader term over a shared FSM and raft.
type h struct {
	t     *testing.T
	clk   *fakeClock
	raft  *fakeRaft
	fsm   *state.FSM
	table *lease.Table
	c     *Coordinator
}

func newHarness(t *testing.T, resources ...spec.Resource) *h {
	fsm := state.NewFSM()
	x := &h{t: t, clk: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, fsm: fsm, raft: &fakeRaft{fsm: fsm}}
	sp := &spec.Spec{APIVersion: spec.APIVersion, Cluster: spec.Cluster{Name: "c1"}, Resources: resources}
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdSetSpec, Spec: sp}); res.Err != nil {
		t.Fatal(res.Err)
	}
	x.lead()
	return x
}

// lead starts a new leader term now: a fresh table and coordinator, as
// Run does before its loops (BecameLeader, running, startIndex, a
// confirmed leadership).
func (x *h) lead() {
	x.table = lease.NewTable(lp)
	x.c = New(Config{Cluster: "c1", FSM: x.fsm, Raft: x.raft, Lease: lp, Table: x.table, Now: x.clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	now := x.clk.Now()
	x.table.BecameLeader(now)
	x.c.mu.Lock()
	x.c.running = true
	x.c.startIndex = x.fsm.Index()
	x.c.mu.Unlock()
	x.table.Confirmed(now)
}

// advance moves the clock; the leader's quorum check keeps confirming.
func (x *h) advance(d time.Duration) {
	x.clk.Set(x.clk.Now().Add(d))
	x.table.Confirmed(x.clk.Now())
}

func (x *h) renew(node string, applied uint64, active ...api.ActiveInstance) api.RenewAck {
	x.t.Helper()
	ack := x.c.Renew(api.Renew{Node: node, Cluster: "c1", Role: state.RoleControl, APIAddr: node + ":7480", Applied: applied, Active: active})
	if !ack.OK {
		x.t.Fatalf("renew of %s refused: %s", node, ack.Reason)
	}
	return ack
}

// renewAll renews every node as fully caught up and running nothing.
func (x *h) renewAll(nodes ...string) {
	x.t.Helper()
	for _, n := range nodes {
		x.renew(n, x.fsm.Index())
	}
}

// settle runs planning rounds until one commits nothing.
func (x *h) settle() {
	x.t.Helper()
	for i := 0; i < 30; i++ {
		before := x.fsm.Index()
		x.c.reconcile(context.Background())
		if x.fsm.Index() == before {
			return
		}
	}
	x.raft.mu.Lock()
	last := x.raft.cmds[max(0, len(x.raft.cmds)-6):]
	x.raft.mu.Unlock()
	for _, c := range last {
		x.t.Logf("proposal %s node=%s set=%v unset=%v", c.Type, c.NodeName, c.Set, c.Unset)
	}
	x.t.Fatal("planning did not settle")
}

func (x *h) holder(key string) (state.Assignment, bool) {
	var a state.Assignment
	var ok bool
	x.fsm.Read(func(s *state.State) {
		if p := s.Assignments[key]; p != nil {
			a, ok = *p, true
		}
	})
	return a, ok
}

func (x *h) node(name string) state.Node {
	var n state.Node
	x.fsm.Read(func(s *state.State) {
		if p := s.Nodes[name]; p != nil {
			n = *p
		}
	})
	return n
}

func (x *h) events(typ string) []state.Event {
	var out []state.Event
	x.fsm.Read(func(s *state.State) {
		for _, e := range s.Events {
			if e.Type == typ {
				out = append(out, e)
			}
		}
	})
	return out
}

func running(a state.Assignment) api.ActiveInstance {
	return api.ActiveInstance{Resource: a.Resource, Slot: a.Slot, Epoch: a.Epoch, State: "running"}
}

func vip() spec.Resource {
	return spec.Resource{Name: "vip", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"sleep", "1000"}}}
}

var nodes3 = []string{"n1", "n2", "n3"}

// placeVIP brings up n1..n3 and returns the vip's assignment.
func placeVIP(x *h) state.Assignment {
	x.t.Helper()
	for i := 0; i < 3; i++ {
		x.renewAll(nodes3...)
		x.settle()
	}
	a, ok := x.holder("vip:0")
	if !ok {
		x.t.Fatalf("vip not placed; unplaced %q", x.c.Unplaced())
	}
	return a
}

func TestExclusivePlacedOnceNodesRenew(t *testing.T) {
	x := newHarness(t, vip())
	// Nodes that have not yet caught up with the log block a start: one of
	// them might still run the resource under an older assignment.
	for _, n := range nodes3 {
		x.renew(n, 0)
	}
	x.settle()
	for _, n := range nodes3 {
		if !x.node(n).Online {
			t.Fatalf("%s not online after renewing", n)
		}
	}
	if _, ok := x.holder("vip:0"); ok {
		t.Fatal("placed before every node acknowledged the current log")
	}
	x.renewAll(nodes3...)
	x.settle()
	a, ok := x.holder("vip:0")
	if !ok || a.Node != "n1" {
		t.Fatalf("vip %+v placed=%v", a, ok)
	}
	if a.Epoch == 0 || a.Epoch > x.fsm.Index() {
		t.Fatalf("epoch %d", a.Epoch)
	}
	// Steady state: nothing more is proposed.
	plans := x.raft.proposals(state.CmdPlan)
	x.renew("n1", x.fsm.Index(), running(a))
	x.renewAll("n2", "n3")
	x.settle()
	if got := x.raft.proposals(state.CmdPlan); got != plans {
		t.Fatalf("%d more plans in a steady state", got-plans)
	}
}

func TestGracefulMoveStopsFirst(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	on := true
	x.raft.Propose(context.Background(), &state.Command{Type: state.CmdNodeAdmin, NodeName: "n1", Standby: &on})
	x.settle()
	if _, ok := x.holder("vip:0"); ok {
		t.Fatal("the slot was reassigned while its holder is alive; it must be unset first")
	}
	unsetAt := x.fsm.Index()
	// Everyone caught up, but n1 still reports the instance: no start elsewhere.
	for i := 0; i < 5; i++ {
		x.advance(50 * time.Millisecond)
		x.renew("n1", unsetAt, running(a))
		x.renewAll("n2", "n3")
		x.settle()
		if b, ok := x.holder("vip:0"); ok {
			t.Fatalf("started on %s while n1 still reports it", b.Node)
		}
	}
	// n1 reports it stopped, but from assignments older than the unset: still wait.
	x.renew("n1", unsetAt-1)
	x.settle()
	if b, ok := x.holder("vip:0"); ok {
		t.Fatalf("started on %s before n1 applied the unset", b.Node)
	}
	x.renew("n1", unsetAt)
	x.settle()
	b, ok := x.holder("vip:0")
	if !ok || b.Node == "n1" {
		t.Fatalf("after n1 stopped: %+v placed=%v", b, ok)
	}
	if b.Epoch <= a.Epoch {
		t.Fatalf("new epoch %d not above old %d", b.Epoch, a.Epoch)
	}
}

func TestSilentHolderReassignedOnlyAfterExpiry(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	expiry := x.table.ExpiresAt("n1")
	// n1 goes silent; the others keep renewing.
	for x.clk.Now().Before(expiry) {
		x.advance(30 * time.Millisecond)
		if x.clk.Now().After(expiry) {
			x.clk.Set(expiry) // land exactly on the boundary
		}
		x.renewAll("n2", "n3")
		x.settle()
		if b, _ := x.holder("vip:0"); b.Node != "n1" {
			t.Fatalf("reassigned to %q at %v, lease ends %v", b.Node, x.clk.Now(), expiry)
		}
		if !x.node("n1").Online {
			t.Fatalf("n1 marked offline before its lease ended")
		}
	}
	x.advance(time.Nanosecond)
	if !x.table.Expired("n1", x.clk.Now()) {
		t.Fatal("table says not expired after ExpiresAt")
	}
	x.renewAll("n2", "n3")
	x.settle()
	b, ok := x.holder("vip:0")
	if !ok || b.Node == "n1" {
		t.Fatalf("not reassigned after expiry: %+v", b)
	}
	if x.node("n1").Online {
		t.Fatal("n1 still online")
	}
	if ev := x.events("resource-recover"); len(ev) != 1 || ev[0].Node != b.Node {
		t.Fatalf("recover events %+v", ev)
	}
	// The new holder reports it running: a recovery with its downtime is recorded.
	x.advance(20 * time.Millisecond)
	x.renew(b.Node, x.fsm.Index(), running(b))
	x.settle()
	rec := x.events("resource-recovered")
	if len(rec) != 1 || rec[0].DowntimeMS <= 0 || rec[0].Resource != "vip" {
		t.Fatalf("recovered events %+v", rec)
	}
}

func TestNewLeaderWaitsBeforeReassigning(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	x.settle()
	// Leadership moves; the new leader knows nothing of earlier acknowledgements.
	x.advance(10 * time.Millisecond)
	x.lead()
	start := x.clk.Now()
	wait := lp.LeaderLeaseTimeout + lp.L + lp.Margin
	for x.clk.Now().Sub(start) < wait {
		x.advance(25 * time.Millisecond)
		if x.clk.Now().Sub(start) > wait {
			x.clk.Set(start.Add(wait))
		}
		x.renewAll("n2", "n3") // n1 is silent
		x.settle()
		if b, _ := x.holder("vip:0"); b.Node != "n1" {
			t.Fatalf("new leader reassigned after %v < %v", x.clk.Now().Sub(start), wait)
		}
	}
	x.advance(time.Nanosecond)
	x.renewAll("n2", "n3")
	x.settle()
	if b, _ := x.holder("vip:0"); b.Node == "n1" || b.Node == "" {
		t.Fatalf("not reassigned after the new leader's wait: %+v", b)
	}
}

func TestNewLeaderKeepsLiveHolder(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.lead()
	for i := 0; i < 20; i++ {
		x.advance(50 * time.Millisecond)
		x.renew("n1", x.fsm.Index(), running(a))
		x.renewAll("n2", "n3")
		x.settle()
	}
	if b, _ := x.holder("vip:0"); b != a {
		t.Fatalf("a live holder lost its slot after a leader change: %+v -> %+v", a, b)
	}
}

func TestNewLeaderDoesNotStartUnassignedExclusiveEarly(t *testing.T) {
	// No assignment exists, but a node the new leader has not heard from may
	// still run it under an unset it has not applied: wait for it (or its lease).
	x := newHarness(t, vip())
	for i := 0; i < 3; i++ {
		x.renewAll(nodes3...)
		x.settle()
	}
	x.raft.Propose(context.Background(), &state.Command{Type: state.CmdPlan, Unset: []string{"vip:0"}})
	on := true
	x.raft.Propose(context.Background(), &state.Command{Type: state.CmdNodeAdmin, NodeName: "n1", Standby: &on})
	x.lead()
	start := x.clk.Now()
	x.renewAll("n2", "n3") // n1 silent
	x.settle()
	if b, ok := x.holder("vip:0"); ok {
		t.Fatalf("placed on %s while n1 was unheard of", b.Node)
	}
	x.clk.Set(start.Add(lp.LeaderLeaseTimeout + lp.L + lp.Margin + time.Millisecond))
	x.table.Confirmed(x.clk.Now())
	x.renewAll("n2", "n3")
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node == "n1" {
		t.Fatalf("after n1's possible lease ended: %+v %v", b, ok)
	}
}

func withOnFail(r spec.Resource, onFail string) spec.Resource {
	r.OnFail = onFail
	return r
}

func (x *h) fail(node, res string) {
	x.t.Helper()
	if err := x.c.Failure(context.Background(), api.Failure{Node: node, Resource: res, Reason: "exit 1"}); err != nil {
		x.t.Fatal(err)
	}
}

func TestOnFailStopBlocks(t *testing.T) {
	x := newHarness(t, withOnFail(vip(), spec.OnFailStop))
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	x.fail("n1", "vip")
	x.settle()
	if b, ok := x.holder("vip:0"); ok {
		t.Fatalf("still assigned after onFail stop: %+v", b)
	}
	var blocked bool
	x.fsm.Read(func(s *state.State) { _, blocked = s.Blocked["vip"] })
	if !blocked {
		t.Fatal("not blocked")
	}
	for i := 0; i < 3; i++ {
		x.advance(50 * time.Millisecond)
		x.renewAll(nodes3...)
		x.settle()
	}
	if b, ok := x.holder("vip:0"); ok {
		t.Fatalf("a blocked resource was started again on %s", b.Node)
	}
}

func TestOnFailMigrateMovesAfterOne(t *testing.T) {
	x := newHarness(t, withOnFail(vip(), spec.OnFailMigrate))
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	x.fail("n1", "vip")
	x.settle()
	if _, ok := x.holder("vip:0"); ok {
		t.Fatal("not stopped on n1 after one failure")
	}
	x.renewAll(nodes3...) // n1 stopped it
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node == "n1" {
		t.Fatalf("after one failure with onFail migrate: %+v %v", b, ok)
	}
}

func TestOnFailRestartMovesAtThreshold(t *testing.T) {
	x := newHarness(t, vip()) // default: restart, migrationThreshold 3
	a := placeVIP(x)
	for i := 1; i <= 2; i++ {
		x.fail("n1", "vip")
		x.renew("n1", x.fsm.Index(), running(a))
		x.renewAll("n2", "n3")
		x.settle()
		if b, _ := x.holder("vip:0"); b != a {
			t.Fatalf("moved after %d failures: %+v", i, b)
		}
	}
	x.fail("n1", "vip")
	x.settle()
	if _, ok := x.holder("vip:0"); ok {
		t.Fatal("not stopped after 3 failures")
	}
	x.renewAll(nodes3...)
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node == "n1" {
		t.Fatalf("after threshold: %+v %v", b, ok)
	}
}

func TestOnFailIgnoreDoesNotCount(t *testing.T) {
	x := newHarness(t, withOnFail(vip(), spec.OnFailIgnore))
	a := placeVIP(x)
	for i := 0; i < 5; i++ {
		x.fail("n1", "vip")
	}
	x.renew("n1", x.fsm.Index(), running(a))
	x.renewAll("n2", "n3")
	x.settle()
	var count int
	x.fsm.Read(func(s *state.State) { count = s.FailCount("vip", "n1") })
	if b, _ := x.holder("vip:0"); b != a || count != 0 {
		t.Fatalf("ignore: holder %+v count %d", b, count)
	}
	if ev := x.events("resource-failed"); len(ev) != 5 {
		t.Fatalf("%d failure events, want 5 (recorded, not counted)", len(ev))
	}
}

func TestFailureOfUnknownResourceIsDropped(t *testing.T) {
	x := newHarness(t, vip())
	n := x.raft.proposals(state.CmdFailure)
	x.fail("n1", "gone")
	if x.raft.proposals(state.CmdFailure) != n {
		t.Fatal("failure of a resource not in the spec was proposed")
	}
}

func TestFailureTimeoutCleansUp(t *testing.T) {
	r := vip()
	r.FailureTimeout = spec.Duration(time.Minute)
	x := newHarness(t, r)
	placeVIP(x)
	x.fail("n2", "vip")
	x.advance(time.Minute)
	x.renewAll(nodes3...)
	x.settle()
	count := func() (c int) { x.fsm.Read(func(s *state.State) { c = s.FailCount("vip", "n2") }); return }
	if count() != 1 {
		t.Fatal("fail count cleared before failureTimeout")
	}
	x.advance(time.Millisecond)
	x.renewAll(nodes3...)
	x.settle()
	if count() != 0 {
		t.Fatal("fail count kept after failureTimeout")
	}
}

func TestRenewRefusals(t *testing.T) {
	x := newHarness(t, vip())
	ack := x.c.Renew(api.Renew{Node: "n9", Cluster: "other", Role: state.RoleControl, APIAddr: "n9:1"})
	if ack.OK || !strings.Contains(ack.Reason, `cluster "other"`) {
		t.Fatalf("foreign cluster: %+v", ack)
	}
	x.settle()
	if x.node("n9").Name != "" {
		t.Fatal("a node of another cluster was registered")
	}
	if !x.table.LastAck("n9").IsZero() {
		t.Fatal("a node of another cluster got a lease")
	}
	// Leadership not confirmed recently: no lease.
	x.clk.Set(x.clk.Now().Add(lp.LeaderLeaseTimeout))
	if ack := x.c.Renew(api.Renew{Node: "n1", Cluster: "c1"}); ack.OK {
		t.Fatal("acknowledged without a recent quorum confirmation")
	}
	// Not leading at all.
	x.c.mu.Lock()
	x.c.running = false
	x.c.mu.Unlock()
	x.table.Confirmed(x.clk.Now())
	if ack := x.c.Renew(api.Renew{Node: "n1", Cluster: "c1"}); ack.OK || ack.Reason != "not leading" {
		t.Fatalf("not leading: %+v", ack)
	}
}

func TestNodeRecordsFollowLeases(t *testing.T) {
	x := newHarness(t)
	x.renew("n1", 0)
	x.settle()
	if n := x.node("n1"); !n.Online || n.APIAddr != "n1:7480" || n.Role != state.RoleControl {
		t.Fatalf("after first renewal: %+v", n)
	}
	// Address changes are recorded.
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:9999", Labels: map[string]string{"zone": "b"}})
	x.settle()
	if n := x.node("n1"); n.APIAddr != "n1:9999" || n.Labels["zone"] != "b" {
		t.Fatalf("after address change: %+v", n)
	}
	// Silence past the lease: offline. (A fresh leader also covers leases
	// an earlier leader may have granted until leaderSince+LeaderLeaseTimeout.)
	x.advance(x.table.ExpiresAt("n1").Sub(x.clk.Now()))
	x.settle()
	if !x.node("n1").Online {
		t.Fatal("offline at the lease boundary")
	}
	x.advance(time.Millisecond)
	x.settle()
	if x.node("n1").Online {
		t.Fatal("still online after its lease expired")
	}
	if ev := x.events("node-offline"); len(ev) != 1 || !strings.Contains(ev[0].Message, "lease expired") {
		t.Fatalf("offline events %+v", ev)
	}
	// Back.
	x.renew("n1", x.fsm.Index())
	x.settle()
	if !x.node("n1").Online {
		t.Fatal("not online again after renewing")
	}
	// A clean shutdown takes it offline at once.
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:9999", Labels: map[string]string{"zone": "b"}, Leaving: true})
	x.settle()
	if x.node("n1").Online {
		t.Fatal("leaving node still online")
	}
	if ev := x.events("node-offline"); len(ev) != 2 || !strings.Contains(ev[1].Message, "shut down cleanly") {
		t.Fatalf("offline events %+v", ev)
	}
}

func TestLeavingNodeReleasesExclusiveAtOnce(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	// n1 shuts down and reports it runs nothing: no need to wait for its lease.
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:7480", Applied: x.fsm.Index(), Leaving: true})
	x.renewAll("n2", "n3")
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node == "n1" {
		t.Fatalf("after n1 left cleanly: %+v %v", b, ok)
	}
}

func TestCloneMovesWithoutWaiting(t *testing.T) {
	r := vip()
	r.Name, r.Mode, r.Replicas = "web", spec.ModeClone, 2
	x := newHarness(t, r)
	for i := 0; i < 3; i++ {
		x.renewAll("n1", "n2")
		x.settle()
	}
	a0, ok0 := x.holder("web:0")
	a1, ok1 := x.holder("web:1")
	if !ok0 || !ok1 || a0.Node == a1.Node {
		t.Fatalf("clones %+v %+v", a0, a1)
	}
	// A third node; the holder of web:0 goes to standby: the clone moves in one plan.
	x.renewAll("n3")
	x.settle()
	on := true
	x.raft.Propose(context.Background(), &state.Command{Type: state.CmdNodeAdmin, NodeName: a0.Node, Standby: &on})
	x.settle()
	if b, ok := x.holder("web:0"); !ok || b.Node == a0.Node {
		t.Fatalf("clone not moved: %+v", b)
	}
}

func TestInstanceStatesAndAssignmentCache(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	if st := x.c.InstanceStates(); st["n1"]["vip:0"] != "running" || len(st["n2"]) != 0 {
		t.Fatalf("instance states %v", st)
	}
	var cache AssignmentCache
	got := cache.For(x.fsm, "n1")
	if got.Index != x.fsm.Index() || len(got.Items) != 1 || got.Items[0].Epoch != a.Epoch || len(got.Items[0].Def) == 0 {
		t.Fatalf("assignments %+v", got)
	}
	var def spec.Resource
	if err := jsonUnmarshal(got.Items[0].Def, &def); err != nil || def.Name != "vip" || def.OnFail != spec.OnFailRestart {
		t.Fatalf("definition %s (%v): want the resource with defaults", got.Items[0].Def, err)
	}
	if other := cache.For(x.fsm, "n2"); len(other.Items) != 0 || other.Index != got.Index {
		t.Fatalf("n2 assignments %+v", other)
	}
}

func TestActiveReportsIsACopy(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	got := x.c.ActiveReports()
	if len(got["n1"]) != 1 || got["n1"][0].Resource != "vip" || got["n1"][0].State != "running" || got["n1"][0].Epoch != a.Epoch {
		t.Fatalf("reports %+v", got)
	}
	got["n1"][0].State = "failed"
	if again := x.c.ActiveReports(); again["n1"][0].State != "running" {
		t.Fatalf("ActiveReports shares its slices: %+v", again)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// The scheduler wants the slot elsewhere (its holder went to standby) while
// the holder is silent and was never heard by this new leader: the move
// waits for the holder's possible lease to end, it is not a graceful stop.
func TestNewLeaderSilentHolderOnStandbyWaits(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.renew("n1", x.fsm.Index(), running(a))
	x.lead()
	on := true
	x.raft.Propose(context.Background(), &state.Command{Type: state.CmdNodeAdmin, NodeName: "n1", Standby: &on})
	start := x.clk.Now()
	for x.clk.Now().Before(x.table.ExpiresAt("n1")) {
		x.renewAll("n2", "n3")
		x.settle()
		if b, ok := x.holder("vip:0"); !ok || b.Node != "n1" {
			t.Fatalf("slot changed to %+v (present=%v) %v after a leader change, before n1's lease could have ended", b, ok, x.clk.Now().Sub(start))
		}
		x.advance(20 * time.Millisecond)
	}
	x.advance(time.Millisecond)
	x.renewAll("n2", "n3")
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node == "n1" {
		t.Fatalf("not moved after n1's lease ended: %+v %v", b, ok)
	}
}

// A report sent before "leaving" that arrives after it (same process, lower
// sequence number) must not undo the release: the slot moves at once and
// the event says the node shut down cleanly, not that its lease expired.
func TestLateReportDoesNotUndoLeaving(t *testing.T) {
	x := newHarness(t, vip())
	a := placeVIP(x)
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:7480", Applied: x.fsm.Index(),
		Active: []api.ActiveInstance{running(a)}, Incarnation: "p1", Seq: 5})
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:7480", Applied: x.fsm.Index(),
		Leaving: true, Incarnation: "p1", Seq: 7})
	// The overtaken report (seq 6, still running) arrives last.
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:7480", Applied: x.fsm.Index(),
		Active: []api.ActiveInstance{running(a)}, Incarnation: "p1", Seq: 6})
	x.renewAll("n2", "n3")
	x.settle()
	b, ok := x.holder("vip:0")
	if !ok || b.Node == "n1" {
		t.Fatalf("a stale report kept the slot on the leaving node: %+v %v", b, ok)
	}
	for _, e := range x.events("resource-recover") {
		if !strings.Contains(e.Message, "shut down cleanly") {
			t.Fatalf("recovery event %q", e.Message)
		}
	}
	// A new process of the same node (new incarnation) is heard again.
	x.c.Renew(api.Renew{Node: "n1", Cluster: "c1", Role: state.RoleControl, APIAddr: "n1:7480", Applied: x.fsm.Index(), Incarnation: "p2", Seq: 1})
	x.settle()
	if !x.node("n1").Online {
		t.Fatal("restarted node not online")
	}
}
