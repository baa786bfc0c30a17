package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

func runningInst(res string, slot int, epoch uint64) api.ActiveInstance {
	return api.ActiveInstance{Resource: res, Slot: slot, Epoch: epoch, State: "running"}
}

func intPtr(v int) *int { return &v }

func setConstraints(x *h, c spec.Constraints) {
	x.t.Helper()
	var sp *spec.Spec
	x.fsm.Read(func(s *state.State) { sp = s.Spec.Clone() })
	sp.Constraints = &c
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdSetSpec, Spec: sp}); res.Err != nil {
		x.t.Fatal(res.Err)
	}
}

// An order makes the second resource wait until the first runs (as
// reported), not merely until it is assigned.
func TestOrderWaitsForReportedStart(t *testing.T) {
	db, web := vip(), vip()
	db.Name, web.Name = "db", "web"
	x := newHarness(t, db, web)
	setConstraints(x, spec.Constraints{Order: []spec.Order{{First: "db", Then: "web"}}})
	x.renewAll("n1", "n2")
	x.settle()
	a, ok := x.holder("db:0")
	if !ok {
		t.Fatal("db not assigned")
	}
	if _, ok := x.holder("web:0"); ok {
		t.Fatal("web assigned before db runs")
	}
	// db reported running: web may start.
	x.renew(a.Node, x.fsm.Index(), runningInst("db", 0, a.Epoch))
	x.settle()
	if _, ok := x.holder("web:0"); !ok {
		t.Fatal("web not assigned after db runs")
	}
}

// A promotable resource is promoted only once the instance runs and the
// agent reported a promotion score; a better score elsewhere moves the
// role only after the old promoted instance reports its demotion.
func TestPromotionFollowsReports(t *testing.T) {
	db := vip()
	db.Name, db.Class, db.Params, db.Mode, db.Replicas = "db", "ocf:pacemaker:Stateful", spec.Params{}, spec.ModePromotable, 2
	x := newHarness(t, db)
	x.renewAll("n1", "n2")
	x.settle()
	a0, _ := x.holder("db:0")
	a1, _ := x.holder("db:1")
	if a0.Role != "" || a1.Role != "" {
		t.Fatal("promoted before running")
	}
	inst := func(a state.Assignment, score int, role string) api.ActiveInstance {
		i := runningInst("db", a.Slot, a.Epoch)
		i.PromotionScore, i.Role = intPtr(score), role
		return i
	}
	x.renew(a0.Node, x.fsm.Index(), inst(a0, 10, ""))
	x.renew(a1.Node, x.fsm.Index(), inst(a1, 5, ""))
	x.settle()
	p0, _ := x.holder("db:0")
	if p0.Role != spec.RolePromoted {
		t.Fatalf("db:0 (score 10) not promoted: %+v", p0)
	}
	// The node reports it promoted; then db:1's node prefers itself more.
	x.renew(a0.Node, x.fsm.Index(), inst(p0, 10, spec.RolePromoted))
	x.renew(a1.Node, x.fsm.Index(), inst(a1, 50, ""))
	x.settle()
	p0, _ = x.holder("db:0")
	p1, _ := x.holder("db:1")
	if p0.Role != "" {
		t.Fatalf("db:0 not demoted: %+v", p0)
	}
	if p1.Role == spec.RolePromoted {
		t.Fatal("db:1 promoted while db:0 still reports promoted: two promoted at once")
	}
	x.renew(a0.Node, x.fsm.Index(), inst(p0, 10, ""))
	x.settle()
	if p1, _ = x.holder("db:1"); p1.Role != spec.RolePromoted {
		t.Fatalf("db:1 not promoted after db:0's demotion was reported: %+v", p1)
	}
}

// A failed start with startFailureIsFatal bans the node at once.
func TestStartFailureIsFatal(t *testing.T) {
	x := newHarness(t, vip())
	x.renewAll("n1", "n2")
	x.settle()
	a, _ := x.holder("vip:0")
	if err := x.c.Failure(context.Background(), api.Failure{Node: a.Node, Resource: "vip", Slot: 0, Epoch: a.Epoch, Op: "start", Reason: "exit 1"}); err != nil {
		t.Fatal(err)
	}
	x.renew(a.Node, x.fsm.Index())
	x.settle()
	b, _ := x.holder("vip:0")
	if b.Node == a.Node {
		t.Fatalf("still on %s after a fatal start failure", a.Node)
	}
}

// A move with a lifetime disappears by itself; the resource stays where it
// went (stickiness), and no constraint is left behind.
func TestOperatorConstraintExpires(t *testing.T) {
	x := newHarness(t, vip())
	x.renewAll("n1", "n2")
	x.settle()
	a, _ := x.holder("vip:0")
	other := map[string]string{"n1": "n2", "n2": "n1"}[a.Node]
	exp := x.clk.Now().Add(time.Minute)
	cmd := &state.Command{Type: state.CmdConstraintAdd, Time: x.clk.Now(), Operator: &state.OperatorArgs{Constraint: &state.OperatorConstraint{
		ID: state.ConstraintID("move", "vip", other), Kind: "move", Resource: "vip", Node: other, Created: x.clk.Now(), Expires: exp}}}
	if res, _ := x.raft.Propose(context.Background(), cmd); res.Err != nil {
		t.Fatal(res.Err)
	}
	x.renewAll("n1", "n2")
	x.settle()
	x.renew(a.Node, x.fsm.Index())
	x.settle()
	if b, _ := x.holder("vip:0"); b.Node != other {
		t.Fatalf("not moved to %s: %+v", other, b)
	}
	x.advance(2 * time.Minute)
	x.renewAll("n1", "n2")
	x.settle()
	var left int
	x.fsm.Read(func(s *state.State) { left = len(s.Constraints) })
	if left != 0 {
		t.Fatalf("%d operator constraints left behind after their lifetime", left)
	}
	if b, _ := x.holder("vip:0"); b.Node != other {
		t.Fatalf("moved back after the constraint expired: %+v", b)
	}
}

// Nothing starts before every probing node reported its probe; probed
// instances found running are adopted where they run.
func TestProbesBeforeStart(t *testing.T) {
	d := vip()
	d.Name, d.Class, d.Params = "dummy", "ocf:heartbeat:Dummy", spec.Params{}
	x := newHarness(t, d)
	var cache AssignmentCache
	as := cache.For(x.fsm, "n1")
	if len(as.Probes) != 1 || as.Probes[0].Resource != "dummy" || as.Probes[0].Key == "" {
		t.Fatalf("probes for n1: %+v", as.Probes)
	}
	key := as.Probes[0].Key
	rn := func(node string, done []string, active ...api.ActiveInstance) {
		ack := x.c.Renew(api.Renew{Node: node, Cluster: "c1", Role: state.RoleControl, APIAddr: node + ":7480", Applied: x.fsm.Index(), Active: active, ProbesDone: done})
		if !ack.OK {
			t.Fatal(ack.Reason)
		}
	}
	rn("n1", []string{})
	rn("n2", []string{})
	x.settle()
	if _, ok := x.holder("dummy:0"); ok {
		t.Fatal("started before the probes finished")
	}
	// n2's probe finds it running there; n1's finds nothing.
	rn("n1", []string{key})
	rn("n2", []string{key}, api.ActiveInstance{Resource: "dummy", Slot: -1, State: "running", Probed: true})
	x.settle()
	a, ok := x.holder("dummy:0")
	if !ok || a.Node != "n2" {
		t.Fatalf("want it adopted on n2 where the probe found it: %+v %v", a, ok)
	}
}

// Assignments carry the role, the restart generation and, for notify
// clones, every peer.
func TestAssignmentsCarryRolesPeersGenerations(t *testing.T) {
	c := vip()
	c.Name, c.Class, c.Params, c.Mode, c.Replicas, c.Notify = "q", "ocf:heartbeat:Dummy", spec.Params{}, spec.ModeClone, 2, true
	x := newHarness(t, c)
	x.renewAll("n1", "n2")
	x.settle()
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdRestart, Resource: "q", Time: x.clk.Now()}); res.Err != nil {
		t.Fatal(res.Err)
	}
	var cache AssignmentCache
	as := cache.For(x.fsm, "n1")
	if len(as.Items) != 1 || len(as.Items[0].Peers) != 2 || as.Items[0].Generation != 1 {
		t.Fatalf("assignments for n1: %+v", as.Items)
	}
}

// cluster.batchLimit bounds the starts committed per planning round.
func TestBatchLimit(t *testing.T) {
	var rs []spec.Resource
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		r := vip()
		r.Name = n
		rs = append(rs, r)
	}
	x := newHarness(t, rs...)
	var sp *spec.Spec
	x.fsm.Read(func(s *state.State) { sp = s.Spec.Clone() })
	sp.Cluster.BatchLimit = 2
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdSetSpec, Spec: sp}); res.Err != nil {
		t.Fatal(res.Err)
	}
	x.renewAll("n1", "n2")
	count := func() int {
		n := 0
		x.fsm.Read(func(s *state.State) { n = len(s.Assignments) })
		return n
	}
	for i := 0; i < 10 && count() == 0; i++ {
		x.c.reconcile(context.Background())
	}
	if got := count(); got != 2 {
		t.Fatalf("first round with starts committed %d, want 2 (batchLimit)", got)
	}
	x.settle()
	if got := count(); got != 5 {
		t.Fatalf("after settling %d assigned, want 5", got)
	}
}

// onFail block leaves the resource exactly where it is (not stopped, not
// moved) until cleanup; onFail stop stops it.
func TestOnFailBlockFreezes(t *testing.T) {
	r := vip()
	r.OnFail = spec.OnFailBlock
	x := newHarness(t, r)
	x.renewAll("n1", "n2")
	x.settle()
	a, _ := x.holder("vip:0")
	if err := x.c.Failure(context.Background(), api.Failure{Node: a.Node, Resource: "vip", Slot: 0, Epoch: a.Epoch, Op: "monitor", Reason: "not running"}); err != nil {
		t.Fatal(err)
	}
	// Even when its node goes standby, a frozen resource stays.
	yes := true
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdNodeAdmin, NodeName: a.Node, Standby: &yes}); res.Err != nil {
		t.Fatal(res.Err)
	}
	x.renewAll("n1", "n2")
	x.settle()
	if b, ok := x.holder("vip:0"); !ok || b.Node != a.Node {
		t.Fatalf("frozen resource moved or stopped: %+v %v", b, ok)
	}
	if res, _ := x.raft.Propose(context.Background(), &state.Command{Type: state.CmdCleanup, Resource: "vip", Time: x.clk.Now()}); res.Err != nil {
		t.Fatal(res.Err)
	}
	x.renewAll("n1", "n2")
	x.settle()
	x.renew(a.Node, x.fsm.Index())
	x.settle()
	if b, _ := x.holder("vip:0"); b.Node == a.Node {
		t.Fatalf("after cleanup it should leave the standby node %s", a.Node)
	}
}

// A silent node's script-class exclusive resource is recovered elsewhere
// only after the node's lease expired AND its self-fence had time to run
// the stop script (the stop timeout): a process is SIGKILLed at once, a
// script is not.
func TestScriptClassWaitsForSelfFenceStop(t *testing.T) {
	r := vip()
	r.Class, r.Params = "ocf:heartbeat:IPaddr2", spec.Params{Values: map[string]string{"ip": "192.0.2.10"}}
	r.Operations = []spec.Operation{{Name: "stop", Timeout: spec.Duration(3 * time.Second)}}
	x := newHarness(t, r)
	a := placeVIP(x)
	rep := running(a)
	x.renew(a.Node, x.fsm.Index(), rep)
	expiry := x.table.ExpiresAt(a.Node)
	others := []string{}
	for _, n := range nodes3 {
		if n != a.Node {
			others = append(others, n)
		}
	}
	x.clk.Set(expiry.Add(time.Millisecond))
	x.table.Confirmed(x.clk.Now())
	for x.clk.Now().Before(expiry.Add(3 * time.Second)) {
		x.renewAll(others...)
		x.settle()
		if b, _ := x.holder("vip:0"); b.Node != a.Node {
			t.Fatalf("reassigned to %s %v after the lease expired: the stop script may still run for 3s", b.Node, x.clk.Now().Sub(expiry))
		}
		x.advance(250 * time.Millisecond)
	}
	x.advance(10 * time.Millisecond)
	x.renewAll(others...)
	x.settle()
	if b, _ := x.holder("vip:0"); b.Node == a.Node {
		t.Fatalf("not recovered after lease + stop timeout")
	}
}

// A single resource found running on two nodes: one copy is adopted, the
// other node is told to stop its copy (the resource leaves its probe list).
func TestProbeFindsTwoCopies(t *testing.T) {
	d := vip()
	d.Name, d.Class, d.Params = "dummy", "ocf:heartbeat:Dummy", spec.Params{}
	x := newHarness(t, d)
	var cache AssignmentCache
	key := cache.For(x.fsm, "n1").Probes[0].Key
	found := api.ActiveInstance{Resource: "dummy", Slot: -1, State: "running", Probed: true}
	rn := func(node string, active ...api.ActiveInstance) {
		if ack := x.c.Renew(api.Renew{Node: node, Cluster: "c1", Role: state.RoleControl, APIAddr: node + ":7480", Applied: x.fsm.Index(), Active: active, ProbesDone: []string{key}}); !ack.OK {
			t.Fatal(ack.Reason)
		}
	}
	rn("n1", found)
	rn("n2", found)
	x.settle()
	a, ok := x.holder("dummy:0")
	if !ok {
		t.Fatal("not adopted anywhere")
	}
	other := map[string]string{"n1": "n2", "n2": "n1"}[a.Node]
	for _, p := range cache.For(x.fsm, other).Probes {
		if p.Resource == "dummy" {
			t.Fatalf("%s still probes dummy: it would never stop its copy", other)
		}
	}
	if len(cache.For(x.fsm, a.Node).Probes) != 1 {
		t.Fatal("the adopting node lost its probe")
	}
	// Its copy gone, nothing more happens; no second start anywhere.
	rn(a.Node, runningInst("dummy", 0, a.Epoch))
	rn(other)
	x.settle()
	if b, _ := x.holder("dummy:0"); b.Node != a.Node || b.Epoch != a.Epoch {
		t.Fatalf("moved after the extra copy stopped: %+v", b)
	}
}

// Node attributes agents set (ocf:pacemaker:ping's pingd) reach location
// rules: a node that lost connectivity is left.
func TestAgentNodeAttributesInRules(t *testing.T) {
	x := newHarness(t, vip())
	setConstraints(x, spec.Constraints{Location: []spec.Location{{Resource: "vip", Rules: []spec.Rule{{Score: -spec.Infinity, Match: "any",
		Expressions: []spec.Expression{{Attribute: "pingd", Op: "notDefined"}, {Attribute: "pingd", Op: "lt", Value: "1", Type: "integer"}}}}}}})
	rn := func(node, pingd string, active ...api.ActiveInstance) {
		if ack := x.c.Renew(api.Renew{Node: node, Cluster: "c1", Role: state.RoleControl, APIAddr: node + ":7480", Applied: x.fsm.Index(),
			Active: active, Attributes: map[string]string{"pingd": pingd}}); !ack.OK {
			t.Fatal(ack.Reason)
		}
	}
	rn("n1", "100")
	rn("n2", "100")
	x.settle()
	a, ok := x.holder("vip:0")
	if !ok {
		t.Fatal("not placed")
	}
	other := map[string]string{"n1": "n2", "n2": "n1"}[a.Node]
	// The holder loses connectivity: its ping agent sets pingd=0.
	rn(a.Node, "0", runningInst("vip", 0, a.Epoch))
	rn(other, "100")
	x.settle()
	if _, ok := x.holder("vip:0"); ok {
		t.Fatal("still assigned to the node without connectivity (a graceful move stops it first)")
	}
	rn(a.Node, "0")
	x.settle()
	if b, _ := x.holder("vip:0"); b.Node != other {
		t.Fatalf("not moved to %s: %+v", other, b)
	}
}
