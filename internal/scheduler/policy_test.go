package scheduler

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/spec"
)

func sc(v spec.Score) *spec.Score { return &v }

func withCons(s *spec.Spec, c spec.Constraints) *spec.Spec {
	s.Constraints = &c
	return s
}

func promotable(name string) spec.Resource {
	r := single(name)
	r.Class = "ocf:pacemaker:Stateful"
	r.Params = spec.Params{}
	r.Mode = spec.ModePromotable
	r.Replicas = 2
	return r
}

func TestLocationScoresAndStickiness(t *testing.T) {
	loc := func(score spec.Score) *spec.Spec {
		return withCons(mkSpec(single("a")), spec.Constraints{Location: []spec.Location{{Resource: "a", Node: "n2", Score: sc(score)}}})
	}
	cases := []harness{
		{name: "preference places", spec: loc(50), nodes: online("n1", "n2"), want: map[string]string{"a:0": "n2"}},
		{name: "stickiness beats a weaker preference", spec: loc(50), nodes: online("n1", "n2"), current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n1"}},
		{name: "a stronger preference moves it", spec: loc(200), nodes: online("n1", "n2"), current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n2"}},
		{name: "-INFINITY bans", spec: loc(-spec.Infinity), nodes: online("n2"), unplaced: []string{"n2: banned by a location constraint"}},
		{name: "a negative score is ineligible", spec: loc(-10), nodes: online("n2"), unplaced: []string{"n2: score -10 (constraints)"}},
	}
	for _, h := range cases {
		t.Run(h.name, func(t *testing.T) { h.run(t) })
	}
}

func TestRulesAndOptIn(t *testing.T) {
	nodes := []Node{{Name: "n1", Online: true, Labels: map[string]string{"rack": "a", "ram": "64"}},
		{Name: "n2", Online: true, Labels: map[string]string{"rack": "b", "ram": "128"}}, {Name: "n3", Online: true}}
	rule := func(ru ...spec.Rule) *spec.Spec {
		return withCons(mkSpec(single("a")), spec.Constraints{Location: []spec.Location{{Resource: "a", Rules: ru}}})
	}
	cases := []harness{
		{name: "rule eq", spec: rule(spec.Rule{Score: 10, Expressions: []spec.Expression{{Attribute: "rack", Op: "eq", Value: "b"}}}), nodes: nodes, want: map[string]string{"a:0": "n2"}},
		{name: "rule integer gt", spec: rule(spec.Rule{Score: 10, Expressions: []spec.Expression{{Attribute: "ram", Op: "gt", Value: "100", Type: "integer"}}}), nodes: nodes, want: map[string]string{"a:0": "n2"}},
		{name: "rule not defined bans labelled nodes", spec: rule(spec.Rule{Score: -spec.Infinity, Expressions: []spec.Expression{{Attribute: "rack", Op: "defined"}}}), nodes: nodes, want: map[string]string{"a:0": "n3"}},
		{name: "rule #uname any", spec: rule(spec.Rule{Score: 5, Match: "any", Expressions: []spec.Expression{{Attribute: "#uname", Op: "eq", Value: "n3"}, {Attribute: "rack", Op: "eq", Value: "zz"}}}), nodes: nodes, want: map[string]string{"a:0": "n3"}},
	}
	optIn := withCons(mkSpec(single("a")), spec.Constraints{Location: []spec.Location{{Resource: "a", Node: "n3", Score: sc(0)}}})
	f := false
	optIn.Cluster.Symmetric = &f
	cases = append(cases, harness{name: "opt-in cluster uses only allowed nodes", spec: optIn, nodes: nodes, want: map[string]string{"a:0": "n3"}})
	for _, h := range cases {
		t.Run(h.name, func(t *testing.T) { h.run(t) })
	}
}

func TestColocationAndGroups(t *testing.T) {
	coloc := func(score spec.Score, rs ...spec.Resource) *spec.Spec {
		return withCons(mkSpec(rs...), spec.Constraints{
			Colocation: []spec.Colocation{{Resource: "b", With: "a", Score: score}},
			Location:   []spec.Location{{Resource: "a", Node: "n2", Score: sc(10)}},
		})
	}
	grp := mkSpec(single("ip"), single("db"), single("other"))
	grp.Groups = []spec.Group{{Name: "g", Members: []string{"ip", "db"}}}
	grp.Constraints = &spec.Constraints{Location: []spec.Location{{Resource: "db", Node: "n1", Score: sc(-spec.Infinity)}}}
	cases := []harness{
		{name: "INFINITY follows", spec: coloc(spec.Infinity, single("b"), single("a")), nodes: online("n1", "n2"), want: map[string]string{"a:0": "n2", "b:0": "n2"}},
		{name: "-INFINITY avoids", spec: coloc(-spec.Infinity, single("b"), single("a")), nodes: online("n1", "n2"), want: map[string]string{"a:0": "n2", "b:0": "n1"}},
		{name: "-INFINITY with one node leaves it stopped", spec: coloc(-spec.Infinity, single("b"), single("a")), nodes: online("n2"),
			want: map[string]string{"a:0": "n2"}, unplaced: []string{"b:0: no eligible node (n2: must not run with a"}},
		{name: "primary stopped stops dependent", spec: withCons(mkSpec(single("b"), func() spec.Resource { r := single("a"); r.TargetRole = "stopped"; return r }()),
			spec.Constraints{Colocation: []spec.Colocation{{Resource: "b", With: "a", Score: spec.Infinity}}}), nodes: online("n1"),
			unplaced: []string{"b:0: no eligible node (n1: must run with a"}},
		{name: "group goes where every member can run", spec: grp, nodes: online("n1", "n2"),
			want: map[string]string{"ip:0": "n2", "db:0": "n2", "other:0": "n1"}},
	}
	for _, h := range cases {
		t.Run(h.name, func(t *testing.T) { h.run(t) })
	}
}

func TestPromotion(t *testing.T) {
	scores := func(m map[string]int) func(string, string) (int, bool) {
		return func(r, n string) (int, bool) { v, ok := m[r+"@"+n]; return v, ok }
	}
	db := promotable("db")
	s := mkSpec(db)
	in := Input{Spec: s, Nodes: online("n1", "n2", "n3"), PromotionScore: scores(map[string]int{"db@n1": 5, "db@n2": 10})}
	out := Place(in)
	if len(out.Desired) != 2 {
		t.Fatalf("desired %v", out.Desired)
	}
	var promoted []string
	for k, r := range out.Roles {
		if r == spec.RolePromoted {
			promoted = append(promoted, out.Desired[k])
		}
	}
	if !reflect.DeepEqual(promoted, []string{"n2"}) {
		t.Fatalf("promoted on %v, want [n2] (best score); desired %v", promoted, out.Desired)
	}
	// No score reported anywhere: nothing is promoted.
	in.PromotionScore = nil
	if out := Place(in); len(out.Roles) != 0 {
		t.Fatalf("promoted without any promotion score: %v", out.Roles)
	}
	// A location for the promoted role decides; a vip follows the promoted instance.
	s2 := mkSpec(db, single("vip"))
	s2.Constraints = &spec.Constraints{
		Location:   []spec.Location{{Resource: "db", Role: spec.RolePromoted, Node: "n1", Score: sc(100)}},
		Colocation: []spec.Colocation{{Resource: "vip", With: "db", WithRole: spec.RolePromoted, Score: spec.Infinity}},
	}
	out = Place(Input{Spec: s2, Nodes: online("n1", "n2"), PromotionScore: scores(map[string]int{"db@n1": 5, "db@n2": 10})})
	var pk string
	for k, r := range out.Roles {
		if r == spec.RolePromoted {
			pk = k
		}
	}
	if out.Desired[pk] != "n1" || out.Desired["vip:0"] != "n1" {
		t.Fatalf("want db promoted on n1 and vip with it: desired %v roles %v", out.Desired, out.Roles)
	}
	// targetRole unpromoted: run, never promote.
	db.TargetRole = spec.RoleUnpromoted
	if out := Place(Input{Spec: mkSpec(db), Nodes: online("n1", "n2"), PromotionScore: scores(map[string]int{"db@n1": 5})}); len(out.Roles) != 0 || len(out.Desired) != 2 {
		t.Fatalf("targetRole unpromoted: desired %v roles %v", out.Desired, out.Roles)
	}
}

func TestUtilizationAndPriority(t *testing.T) {
	big := single("big")
	big.Utilization = map[string]int{"cpu": 6}
	big.Priority = 10
	small := single("small")
	small.Utilization = map[string]int{"cpu": 3}
	s := mkSpec(small, big)
	s.Cluster.PlacementStrategy = spec.PlacementUtilization
	nodes := []Node{{Name: "n1", Online: true, Capacity: map[string]int{"cpu": 8}}}
	out := Place(Input{Spec: s, Nodes: nodes})
	if !reflect.DeepEqual(out.Desired, map[string]string{"big:0": "n1"}) || len(out.Unplaced) != 1 || !strings.Contains(out.Unplaced[0], "not enough capacity") {
		t.Fatalf("priority first, then capacity: desired %v unplaced %q", out.Desired, out.Unplaced)
	}
	// Balanced: most free capacity first.
	s.Cluster.PlacementStrategy = spec.PlacementBalanced
	nodes = []Node{{Name: "n1", Online: true, Capacity: map[string]int{"cpu": 8}}, {Name: "n2", Online: true, Capacity: map[string]int{"cpu": 12}}}
	out = Place(Input{Spec: s, Nodes: nodes})
	if out.Desired["big:0"] != "n2" || out.Desired["small:0"] != "n1" {
		t.Fatalf("balanced: %v", out.Desired)
	}
}

func TestMultipleActiveAndProbes(t *testing.T) {
	s := mkSpec(single("a"))
	// Found running on n2 by a probe, nothing assigned: adopted there.
	in := Input{Spec: s, Nodes: online("n1", "n2"), Active: []Instance{{Resource: "a", Slot: -1, Node: "n2"}}}
	out, tr := Plan(in)
	if out.Desired["a:0"] != "n2" || len(tr.Actions) != 0 {
		t.Fatalf("probe adoption: desired %v actions %v", out.Desired, tr.Actions)
	}
	// Found on two nodes: one kept, the other stopped (stopStart).
	in.Active = []Instance{{Resource: "a", Slot: -1, Node: "n1"}, {Resource: "a", Slot: -1, Node: "n2"}}
	out, tr = Plan(in)
	if out.Desired["a:0"] != "n1" || len(tr.Actions) != 1 || tr.Actions[0].Op != OpStop || tr.Actions[0].Node != "n2" {
		t.Fatalf("multiple active: desired %v actions %v", out.Desired, tr.Actions)
	}
	// stopOnly: both stopped.
	s.Resources[0].MultipleActive = spec.MultipleStopOnly
	out, tr = Plan(in)
	if len(out.Desired) != 0 || len(tr.Actions) != 2 {
		t.Fatalf("stopOnly: desired %v actions %v", out.Desired, tr.Actions)
	}
	// block: left alone.
	s.Resources[0].MultipleActive = spec.MultipleBlock
	in.Current = map[string]string{"a:0": "n1"}
	_, tr = Plan(in)
	for _, a := range tr.Actions {
		if a.Op == OpStop && a.Node == "n1" {
			t.Fatalf("block stopped the assigned instance: %v", tr.Actions)
		}
	}
}

func opsOf(tr Transition) []string {
	var out []string
	for _, a := range tr.Actions {
		out = append(out, a.Op+" "+a.Slot+"@"+a.Node)
	}
	return out
}

func after(tr Transition, x, y string) bool {
	ix, iy := slices.Index(opsOf(tr), x), slices.Index(opsOf(tr), y)
	if ix < 0 || iy < 0 {
		return false
	}
	return slices.Contains(tr.Actions[ix].After, tr.Actions[iy].ID)
}

func TestTransitionOrders(t *testing.T) {
	s := withCons(mkSpec(single("a"), single("b")), spec.Constraints{Order: []spec.Order{{First: "a", Then: "b"}}})
	in := Input{Spec: s, Nodes: online("n1", "n2")}
	_, tr := Plan(in)
	if !after(tr, "start b:0@n2", "start a:0@n1") {
		t.Fatalf("b must start after a: %v", tr.Actions)
	}
	// Symmetrical: stopping both stops b first.
	s.Resources[0].TargetRole, s.Resources[1].TargetRole = "stopped", "stopped"
	in.Current = map[string]string{"a:0": "n1", "b:0": "n2"}
	_, tr = Plan(in)
	if !after(tr, "stop a:0@n1", "stop b:0@n2") {
		t.Fatalf("a must stop after b: %v", tr.Actions)
	}
	// Mandatory: b cannot start while a will not run.
	s.Resources[1].TargetRole = "started"
	in.Current = nil
	out, tr := Plan(in)
	if len(tr.Actions) != 0 || len(out.Unplaced) != 1 || !strings.Contains(out.Unplaced[0], "b:0: cannot run: it must start after a starts") {
		t.Fatalf("mandatory order with a stopped: actions %v unplaced %q", tr.Actions, out.Unplaced)
	}
	// ... and a running b is stopped when a stops.
	in.Current = map[string]string{"b:0": "n2"}
	_, tr = Plan(in)
	if len(tr.Actions) != 1 || tr.Actions[0].Op != OpStop {
		t.Fatalf("mandatory order: b must stop with a stopped: %v", tr.Actions)
	}
	in.Current = nil
	// Optional: b starts anyway.
	s.Constraints.Order[0].Kind = spec.OrderOptional
	_, tr = Plan(in)
	if len(tr.Actions) != 1 {
		t.Fatalf("optional order: %v %q", tr.Actions, tr.Blocked)
	}
}

func TestTransitionMovesAndRoles(t *testing.T) {
	db := promotable("db")
	s := mkSpec(single("a"), db)
	sc := map[string]int{"db@n2": 10, "db@n1": 1}
	in := Input{Spec: s, Nodes: []Node{{Name: "n1", Online: true, Standby: true}, {Name: "n2", Online: true}, {Name: "n3", Online: true}},
		Current:        map[string]string{"a:0": "n1", "db:0": "n1", "db:1": "n2"},
		Roles:          map[string]string{"db:0": spec.RolePromoted},
		PromotionScore: func(r, n string) (int, bool) { v, ok := sc[r+"@"+n]; return v, ok }}
	out, tr := Plan(in)
	ops := opsOf(tr)
	for _, want := range []string{"demote db:0@n1", "stop db:0@n1", "stop a:0@n1", "start a:0@n2"} {
		if !slices.Contains(ops, want) {
			t.Fatalf("missing %q in %v (desired %v roles %v)", want, ops, out.Desired, out.Roles)
		}
	}
	if !after(tr, "stop db:0@n1", "demote db:0@n1") || !after(tr, "start a:0@n2", "stop a:0@n1") {
		t.Fatalf("demote before stop, stop before start: %v", tr.Actions)
	}
	if !slices.Contains(ops, "promote db:1@n2") {
		t.Fatalf("db:1 on n2 has the best score and must be promoted: %v", ops)
	}
	for i, a := range tr.Actions {
		for _, d := range a.After {
			if d >= i {
				t.Fatalf("action %d waits for a later action %d: %v", i, d, tr.Actions)
			}
		}
	}
}

// A cloned group: members are clones with the same counts; each member
// instance runs on a node with the previous member's instance and starts
// after it on that node.
func TestClonedGroup(t *testing.T) {
	s := mkSpec(clone("a", 2, 1), clone("b", 2, 1))
	s.Groups = []spec.Group{{Name: "g", Members: []string{"a", "b"}}}
	s.Constraints = &spec.Constraints{Location: []spec.Location{{Resource: "a", Node: "n1", Score: sc(-spec.Infinity)}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	out, tr := Plan(Input{Spec: s, Nodes: online("n1", "n2", "n3")})
	on := func(res string) []string {
		var ns []string
		for k, n := range out.Desired {
			if out.Resource[k] == res {
				ns = append(ns, n)
			}
		}
		slices.Sort(ns)
		return ns
	}
	if !reflect.DeepEqual(on("a"), []string{"n2", "n3"}) || !reflect.DeepEqual(on("b"), []string{"n2", "n3"}) {
		t.Fatalf("a on %v, b on %v", on("a"), on("b"))
	}
	for _, act := range tr.Actions {
		if act.Resource != "b" {
			continue
		}
		if len(act.After) != 1 || tr.Actions[act.After[0]].Resource != "a" || tr.Actions[act.After[0]].Node != act.Node {
			t.Fatalf("%v should wait for a's start on its own node only: %v", act, tr.Actions)
		}
	}
}
