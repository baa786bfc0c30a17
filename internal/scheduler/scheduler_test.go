package scheduler

import (
	"reflect"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/spec"
)

func intp(i int) *int { return &i }

// single returns an active/passive resource.
func single(name string) spec.Resource {
	return spec.Resource{Name: name, Class: spec.ClassProcess, Params: spec.Params{Command: []string{"true"}}}
}

func clone(name string, replicas, maxPerNode int) spec.Resource {
	r := single(name)
	r.Mode = spec.ModeClone
	r.Replicas = replicas
	r.MaxPerNode = maxPerNode
	return r
}

func mkSpec(rs ...spec.Resource) *spec.Spec {
	s := &spec.Spec{APIVersion: spec.APIVersion, Cluster: spec.Cluster{Name: "c"}, Resources: rs}
	return s.WithDefaults()
}

func online(names ...string) []Node {
	var out []Node
	for _, n := range names {
		out = append(out, Node{Name: n, Online: true})
	}
	return out
}

func fails(m map[string]int) func(r, n string) int {
	return func(r, n string) int { return m[r+"@"+n] }
}

// harness is one placement scenario and its expected outcome.
type harness struct {
	name     string
	spec     *spec.Spec
	nodes    []Node
	current  map[string]string
	fails    map[string]int // "res@node" → count
	blocked  map[string]bool
	want     map[string]string
	unplaced []string // substrings, one per expected Unplaced entry, in order
}

func (h harness) run(t *testing.T) Output {
	t.Helper()
	out := Place(Input{Spec: h.spec, Nodes: h.nodes, Current: h.current, FailCount: fails(h.fails), Blocked: h.blocked})
	want := h.want
	if want == nil {
		want = map[string]string{}
	}
	if !reflect.DeepEqual(out.Desired, want) {
		t.Errorf("desired %v, want %v (unplaced %q)", out.Desired, want, out.Unplaced)
	}
	if len(out.Unplaced) != len(h.unplaced) {
		t.Fatalf("unplaced %q, want %d entries like %q", out.Unplaced, len(h.unplaced), h.unplaced)
	}
	for i, sub := range h.unplaced {
		if !strings.Contains(out.Unplaced[i], sub) {
			t.Errorf("unplaced[%d] = %q, want it to contain %q", i, out.Unplaced[i], sub)
		}
	}
	return out
}

func TestPlaceHarness(t *testing.T) {
	withNodes := func(r spec.Resource, nodes ...string) spec.Resource { r.Nodes = nodes; return r }
	withLabels := func(r spec.Resource, l map[string]string) spec.Resource { r.NodeLabels = l; return r }
	withOnFail := func(r spec.Resource, of string, th *int) spec.Resource {
		r.OnFail = of
		r.MigrationThreshold = th
		return r
	}
	stopped := single("a")
	stopped.TargetRole = "stopped"
	maint := mkSpec(single("a"), single("b"))
	maint.Cluster.Maintenance = true

	cases := []harness{
		{name: "empty spec", spec: mkSpec(), nodes: online("n1")},
		{name: "no nodes", spec: mkSpec(single("a")), unplaced: []string{"a:0: no eligible node (no nodes)"}},
		{name: "first node by name", spec: mkSpec(single("a")), nodes: online("n3", "n1", "n2"), want: map[string]string{"a:0": "n1"}},
		{name: "least loaded", spec: mkSpec(single("a"), single("b"), single("c")), nodes: online("n1", "n2"),
			want: map[string]string{"a:0": "n1", "b:0": "n2", "c:0": "n1"}},
		{name: "sticky", spec: mkSpec(single("a")), nodes: online("n1", "n2", "n3"), current: map[string]string{"a:0": "n3"},
			want: map[string]string{"a:0": "n3"}},
		{name: "current node offline", spec: mkSpec(single("a")), nodes: []Node{{Name: "n1"}, {Name: "n2", Online: true}},
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n2"}},
		{name: "current node unknown", spec: mkSpec(single("a")), nodes: online("n2"),
			current: map[string]string{"a:0": "gone"}, want: map[string]string{"a:0": "n2"}},
		{name: "standby moves away", spec: mkSpec(single("a")), nodes: []Node{{Name: "n1", Online: true, Standby: true}, {Name: "n2", Online: true}},
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n2"}},
		{name: "node maintenance keeps current, places nothing new there", spec: mkSpec(single("a"), single("b")),
			nodes:   []Node{{Name: "n1", Online: true, Maintenance: true}, {Name: "n2", Online: true}},
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n1", "b:0": "n2"}},
		{name: "node maintenance keeps even an offline node's slot", spec: mkSpec(single("a")),
			nodes:   []Node{{Name: "n1", Maintenance: true}, {Name: "n2", Online: true}},
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n1"}},
		{name: "cluster maintenance keeps current, starts nothing", spec: maint, nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n2", "zombie:0": "n1"}, want: map[string]string{"a:0": "n2"}},
		{name: "nodes restriction", spec: mkSpec(withNodes(single("a"), "n3")), nodes: online("n1", "n2", "n3"),
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"a:0": "n3"}},
		{name: "nodes restriction unplaceable", spec: mkSpec(withNodes(single("a"), "n9")), nodes: online("n1"),
			unplaced: []string{"n1: excluded by nodes/nodeLabels"}},
		{name: "node labels", spec: mkSpec(withLabels(single("a"), map[string]string{"zone": "b", "disk": "ssd"})),
			nodes: []Node{{Name: "n1", Online: true, Labels: map[string]string{"zone": "b"}}, {Name: "n2", Online: true, Labels: map[string]string{"zone": "b", "disk": "ssd", "x": "y"}}},
			want:  map[string]string{"a:0": "n2"}},
		{name: "below migration threshold stays", spec: mkSpec(single("a")), nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n1"}, fails: map[string]int{"a@n1": 2}, want: map[string]string{"a:0": "n1"}},
		{name: "at migration threshold moves", spec: mkSpec(single("a")), nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n1"}, fails: map[string]int{"a@n1": 3}, want: map[string]string{"a:0": "n2"}},
		{name: "custom threshold", spec: mkSpec(withOnFail(single("a"), spec.OnFailRestart, intp(5))), nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n1"}, fails: map[string]int{"a@n1": 4}, want: map[string]string{"a:0": "n1"}},
		{name: "migrate moves after one failure", spec: mkSpec(withOnFail(single("a"), spec.OnFailMigrate, intp(10))), nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n1"}, fails: map[string]int{"a@n1": 1}, want: map[string]string{"a:0": "n2"}},
		{name: "threshold 0 never moves", spec: mkSpec(withOnFail(single("a"), spec.OnFailRestart, intp(0))), nodes: online("n1", "n2"),
			current: map[string]string{"a:0": "n1"}, fails: map[string]int{"a@n1": 100}, want: map[string]string{"a:0": "n1"}},
		{name: "failed everywhere explains with a cleanup hint", spec: mkSpec(single("a")), nodes: online("n1"),
			fails: map[string]int{"a@n1": 3}, unplaced: []string{"n1: fail count 3 reached migrationThreshold 3; run `paceline resource cleanup a`"}},
		{name: "blocked stays stopped", spec: mkSpec(single("a"), single("b")), nodes: online("n1"), blocked: map[string]bool{"a": true},
			current: map[string]string{"a:0": "n1"}, want: map[string]string{"b:0": "n1"}},
		{name: "targetRole stopped", spec: mkSpec(stopped), nodes: online("n1"), current: map[string]string{"a:0": "n1"}},
		{name: "clone spreads", spec: mkSpec(clone("w", 3, 0)), nodes: online("n1", "n2", "n3"),
			want: map[string]string{"w:0": "n1", "w:1": "n2", "w:2": "n3"}},
		{name: "clone maxPerNode", spec: mkSpec(clone("w", 3, 2)), nodes: online("n1", "n2"),
			want: map[string]string{"w:0": "n1", "w:1": "n2", "w:2": "n1"}},
		{name: "clone over capacity", spec: mkSpec(clone("w", 3, 1)), nodes: online("n1", "n2"),
			want: map[string]string{"w:0": "n1", "w:1": "n2"}, unplaced: []string{"w:2: no eligible node (n1: already holds its share of instances; n2: already holds its share of instances)"}},
		{name: "clone per eligible node counts offline ones", spec: mkSpec(clone("w", 0, 0)),
			nodes: []Node{{Name: "n1", Online: true}, {Name: "n2"}, {Name: "n3", Online: true}},
			want:  map[string]string{"w:0": "n1", "w:1": "n3"}, unplaced: []string{"w:2: no eligible node (n1: already holds its share of instances; n2: offline; n3: already holds its share of instances)"}},
		{name: "clone two on one current node, max 1", spec: mkSpec(clone("w", 2, 1)), nodes: online("n1", "n2"),
			current: map[string]string{"w:0": "n1", "w:1": "n1"}, want: map[string]string{"w:0": "n1", "w:1": "n2"}},
		{name: "clone scale down drops high slots", spec: mkSpec(clone("w", 1, 1)), nodes: online("n1", "n2"),
			current: map[string]string{"w:0": "n2", "w:1": "n1"}, want: map[string]string{"w:0": "n2"}},
		{name: "why not, every reason", spec: mkSpec(withNodes(single("a"), "n1", "n2", "n3", "n4")),
			nodes: []Node{{Name: "n1"}, {Name: "n2", Online: true, Standby: true}, {Name: "n3", Online: true, Maintenance: true}, {Name: "n4", Online: true}, {Name: "n5", Online: true}},
			fails: map[string]int{"a@n4": 7},
			unplaced: []string{"a:0: no eligible node (n1: offline; n2: standby; n3: maintenance; n4: fail count 7 reached migrationThreshold 3; " +
				"run `paceline resource cleanup a`; n5: excluded by nodes/nodeLabels)"}},
	}
	for _, h := range cases {
		t.Run(h.name, func(t *testing.T) { h.run(t) })
	}
}

func TestPlaceExclusiveFlags(t *testing.T) {
	out := Place(Input{Spec: mkSpec(single("a"), clone("w", 2, 1)), Nodes: online("n1", "n2")})
	want := map[string]bool{"a:0": true, "w:0": false, "w:1": false}
	if !reflect.DeepEqual(out.Exclusive, want) {
		t.Fatalf("exclusive %v, want %v", out.Exclusive, want)
	}
	if out.Resource["w:1"] != "w" || out.Resource["a:0"] != "a" {
		t.Fatalf("resource %v", out.Resource)
	}
}

func TestPlaceNilSpec(t *testing.T) {
	out := Place(Input{Nodes: online("n1"), Current: map[string]string{"a:0": "n1"}})
	if len(out.Desired) != 0 || len(out.Unplaced) != 0 {
		t.Fatalf("nil spec placed %v", out)
	}
}

func TestPlaceDoesNotMutateInput(t *testing.T) {
	nodes := online("n2", "n1")
	cur := map[string]string{"a:0": "n2"}
	sp := mkSpec(single("a"), clone("w", 0, 0))
	before := sp.JSON()
	Place(Input{Spec: sp, Nodes: nodes, Current: cur})
	if nodes[0].Name != "n2" || cur["a:0"] != "n2" || len(cur) != 1 || string(sp.JSON()) != string(before) {
		t.Fatal("Place modified its input")
	}
}
