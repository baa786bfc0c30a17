package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/paceline/paceline/internal/spec"
)

var (
	propNodeNames = []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	propZones     = []string{"a", "b"}
)

type world struct {
	in    Input
	fails map[string]int
}

func genNode(t *rapid.T, name string) Node {
	n := Node{Name: name,
		Online:      !rare(t, name+".offline", 20),
		Standby:     rare(t, name+".standby", 15),
		Maintenance: rare(t, name+".maint", 10),
	}
	if rapid.Bool().Draw(t, name+".haslabel") {
		n.Labels = map[string]string{"zone": rapid.SampledFrom(propZones).Draw(t, name+".zone")}
	}
	return n
}

func genResource(t *rapid.T, name string) spec.Resource {
	r := single(name)
	if rapid.Bool().Draw(t, name+".clone") {
		r.Mode = spec.ModeClone
		r.Replicas = rapid.IntRange(0, 5).Draw(t, name+".replicas")
		r.MaxPerNode = rapid.IntRange(0, 3).Draw(t, name+".maxPerNode")
	}
	r.OnFail = rapid.SampledFrom([]string{"", spec.OnFailRestart, spec.OnFailMigrate, spec.OnFailStop, spec.OnFailIgnore}).Draw(t, name+".onFail")
	if rapid.Bool().Draw(t, name+".hasThreshold") {
		r.MigrationThreshold = intp(rapid.IntRange(0, 3).Draw(t, name+".threshold"))
	}
	if rare(t, name+".hasNodes", 25) {
		r.Nodes = rapid.SliceOfNDistinct(rapid.SampledFrom(propNodeNames), 1, 3, rapid.ID[string]).Draw(t, name+".nodes")
	}
	if rare(t, name+".hasLabels", 25) {
		r.NodeLabels = map[string]string{"zone": rapid.SampledFrom(propZones).Draw(t, name+".labelZone")}
	}
	if rare(t, name+".stopped", 10) {
		r.TargetRole = "stopped"
	}
	return r
}

// genWorld draws a cluster: nodes, a spec, fail counts, blocks and a
// current placement that may be anything (stale, on unknown nodes, over
// maxPerNode) when maintenance is off.
func genWorld(t *rapid.T, allowMaintenance bool) world {
	names := rapid.SliceOfNDistinct(rapid.SampledFrom(propNodeNames), 0, len(propNodeNames), rapid.ID[string]).Draw(t, "nodes")
	var nodes []Node
	for _, n := range names {
		nd := genNode(t, n)
		if !allowMaintenance {
			nd.Maintenance = false
		}
		nodes = append(nodes, nd)
	}
	nres := rapid.IntRange(0, 5).Draw(t, "nres")
	var rs []spec.Resource
	for i := 0; i < nres; i++ {
		rs = append(rs, genResource(t, fmt.Sprintf("r%d", i)))
	}
	sp := mkSpec(rs...)
	if allowMaintenance {
		sp.Cluster.Maintenance = rare(t, "clusterMaint", 10)
	}
	w := world{fails: map[string]int{}}
	blocked := map[string]bool{}
	cur := map[string]string{}
	for _, r := range rs {
		if rare(t, r.Name+".blocked", 10) {
			blocked[r.Name] = true
		}
		for _, n := range propNodeNames {
			if rare(t, r.Name+"@"+n+".failed", 15) {
				w.fails[r.Name+"@"+n] = rapid.IntRange(1, 4).Draw(t, r.Name+"@"+n+".fails")
			}
		}
		for s := 0; s < 6; s++ {
			if rare(t, fmt.Sprintf("%s:%d.cur", r.Name, s), 30) {
				cur[SlotKey(r.Name, s)] = rapid.SampledFrom(append(propNodeNames, "gone")).Draw(t, fmt.Sprintf("%s:%d.curNode", r.Name, s))
			}
		}
	}
	w.in = Input{Spec: sp, Nodes: nodes, Current: cur, FailCount: fails(w.fails), Blocked: blocked}
	return w
}

func resourceOf(sp *spec.Spec, name string) *spec.Resource {
	for i := range sp.Resources {
		if sp.Resources[i].Name == name {
			return &sp.Resources[i]
		}
	}
	return nil
}

func nodeOf(in Input, name string) (Node, bool) {
	for _, n := range in.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// eligible is the placement rule stated independently of the code under test.
func eligible(w world, r *spec.Resource, n Node) bool {
	if !n.Online || n.Standby || n.Maintenance {
		return false
	}
	if len(r.Nodes) > 0 && !contains(r.Nodes, n.Name) {
		return false
	}
	for k, v := range r.NodeLabels {
		if n.Labels[k] != v {
			return false
		}
	}
	th := 3
	if r.MigrationThreshold != nil {
		th = *r.MigrationThreshold
	}
	if r.OnFail == spec.OnFailMigrate {
		th = 1
	}
	return th == 0 || w.fails[r.Name+"@"+n.Name] < th
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// keptByMaintenance: the slot stays where it is because the cluster or its node is in maintenance.
func keptByMaintenance(in Input, key, node string) bool {
	if in.Current[key] != node {
		return false
	}
	if in.Spec.Cluster.Maintenance {
		return true
	}
	n, ok := nodeOf(in, node)
	return ok && n.Maintenance
}

func TestPropertySafety(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, true)
		in := w.in
		out := Place(in)
		perNode := map[string]map[string]int{}
		slots := map[string]int{}
		for k, r := range out.Resource {
			slots[r]++
			if !strings.HasPrefix(k, r+":") {
				t.Fatalf("slot %s names resource %s", k, r)
			}
		}
		for k, node := range out.Desired {
			rn, ok := out.Resource[k]
			if !ok {
				t.Fatalf("desired slot %s is not a slot of the spec", k)
			}
			r := resourceOf(in.Spec, rn)
			if keptByMaintenance(in, k, node) {
				continue
			}
			n, known := nodeOf(in, node)
			if !known {
				t.Fatalf("%s placed on unknown node %s", k, node)
			}
			if !eligible(w, r, n) {
				t.Fatalf("%s placed on ineligible node %+v (fails %d)", k, n, w.fails[rn+"@"+node])
			}
			if in.Blocked[rn] || r.TargetRole == "stopped" {
				t.Fatalf("%s placed though blocked=%v targetRole=%s", k, in.Blocked[rn], r.TargetRole)
			}
			if perNode[rn] == nil {
				perNode[rn] = map[string]int{}
			}
			perNode[rn][node]++
			if limit := max(1, r.MaxPerNode); perNode[rn][node] > limit {
				t.Fatalf("%s: %d instances on %s, maxPerNode %d", rn, perNode[rn][node], node, limit)
			}
		}
		for _, r := range in.Spec.Resources {
			if r.Exclusive() {
				if slots[r.Name] != 1 || !out.Exclusive[SlotKey(r.Name, 0)] {
					t.Fatalf("exclusive %s has %d slots (exclusive=%v)", r.Name, slots[r.Name], out.Exclusive[SlotKey(r.Name, 0)])
				}
			} else if r.Replicas > 0 && slots[r.Name] != r.Replicas {
				t.Fatalf("clone %s has %d slots, want %d", r.Name, slots[r.Name], r.Replicas)
			}
		}
	})
}

// Every slot that should run but does not is explained, and only those.
func TestPropertyUnplacedExplains(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, false)
		in := w.in
		out := Place(in)
		explained := map[string]string{}
		for _, u := range out.Unplaced {
			k, why, ok := strings.Cut(u, ": no eligible node (")
			if !ok {
				t.Fatalf("unplaced entry %q has no explanation", u)
			}
			explained[k] = why
		}
		for k, rn := range out.Resource {
			r := resourceOf(in.Spec, rn)
			_, placed := out.Desired[k]
			_, why := explained[k]
			wanted := !in.Blocked[rn] && r.TargetRole != "stopped"
			switch {
			case placed && why:
				t.Fatalf("%s is both placed and explained as unplaced", k)
			case wanted && !placed && !why:
				t.Fatalf("%s is neither placed nor explained", k)
			case !wanted && why:
				t.Fatalf("%s is stopped on purpose but reported unplaced", k)
			}
			if why {
				for _, n := range in.Nodes {
					if !strings.Contains(explained[k], n.Name+": ") {
						t.Fatalf("explanation of %s does not mention node %s: %s", k, n.Name, explained[k])
					}
				}
				if len(in.Nodes) == 0 && !strings.Contains(explained[k], "no nodes") {
					t.Fatalf("explanation %q", explained[k])
				}
			}
		}
		// An unplaced slot really has no room: every eligible node is full.
		for k := range explained {
			rn := out.Resource[k]
			r := resourceOf(in.Spec, rn)
			for _, n := range in.Nodes {
				if !eligible(w, r, n) {
					continue
				}
				c := 0
				for k2, n2 := range out.Desired {
					if out.Resource[k2] == rn && n2 == n.Name {
						c++
					}
				}
				if c < max(1, r.MaxPerNode) {
					t.Fatalf("%s unplaced although %s holds only %d of %s", k, n.Name, c, rn)
				}
			}
		}
	})
}

// Feeding a placement back as Current changes nothing.
func TestPropertyStable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, true)
		out := Place(w.in)
		in2 := w.in
		in2.Current = out.Desired
		out2 := Place(in2)
		if !reflect.DeepEqual(out.Desired, out2.Desired) {
			t.Fatalf("placement not stable:\nfirst  %v\nsecond %v", out.Desired, out2.Desired)
		}
		if !reflect.DeepEqual(out.Unplaced, out2.Unplaced) {
			t.Fatalf("unplaced not stable:\nfirst  %q\nsecond %q", out.Unplaced, out2.Unplaced)
		}
	})
}

// Adding an online node that nothing depends on moves nothing that is placed.
func TestPropertyNewNodeMovesNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, true)
		out := Place(w.in)
		in2 := w.in
		in2.Current = out.Desired
		extra := Node{Name: rapid.SampledFrom([]string{"a-new", "m-new", "zz-new"}).Draw(t, "extra"), Online: true}
		if rapid.Bool().Draw(t, "extraLabel") {
			extra.Labels = map[string]string{"zone": rapid.SampledFrom(propZones).Draw(t, "extraZone")}
		}
		in2.Nodes = append(append([]Node(nil), w.in.Nodes...), extra)
		out2 := Place(in2)
		for k, n := range out.Desired {
			if out2.Desired[k] != n {
				t.Fatalf("%s moved from %s to %q when %s joined", k, n, out2.Desired[k], extra.Name)
			}
		}
		if len(out2.Unplaced) > len(out.Unplaced)+countNewSlots(out, out2) {
			t.Fatalf("a new node made more slots unplaceable: %q -> %q", out.Unplaced, out2.Unplaced)
		}
	})
}

func countNewSlots(a, b Output) int {
	n := 0
	for k := range b.Resource {
		if _, ok := a.Resource[k]; !ok {
			n++
		}
	}
	return n
}

// Same input, same output, whatever the order of Nodes.
func TestPropertyDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, true)
		out := Place(w.in)
		again := Place(w.in)
		if !reflect.DeepEqual(out, again) {
			t.Fatalf("two runs differ:\n%+v\n%+v", out, again)
		}
		in2 := w.in
		in2.Nodes = rapid.Permutation(w.in.Nodes).Draw(t, "shuffled")
		if got := Place(in2); !reflect.DeepEqual(out, got) {
			t.Fatalf("node order changed the result:\n%+v\n%+v", out, got)
		}
	})
}

// Cluster maintenance: exactly the current placement of the spec's slots, nothing new.
func TestPropertyClusterMaintenanceKeepsPlacement(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, true)
		in := w.in
		in.Spec = in.Spec.Clone()
		in.Spec.Cluster.Maintenance = true
		out := Place(in)
		want := map[string]string{}
		for k, n := range in.Current {
			if _, ok := out.Resource[k]; ok {
				want[k] = n
			}
		}
		if !reflect.DeepEqual(out.Desired, want) {
			t.Fatalf("maintenance changed the placement:\ncurrent %v\ndesired %v", want, out.Desired)
		}
		if len(out.Unplaced) != 0 {
			t.Fatalf("maintenance reports unplaced slots: %q", out.Unplaced)
		}
	})
}

func TestPropertyNoMoveWithoutCause(t *testing.T) {
	// A slot whose current node is still eligible and within maxPerNode is never moved.
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t, false)
		in := w.in
		out := Place(in)
		for k, n := range out.Desired {
			cur, ok := in.Current[k]
			if !ok || cur == n {
				continue
			}
			cn, known := nodeOf(in, cur)
			r := resourceOf(in.Spec, out.Resource[k])
			if known && eligible(w, r, cn) {
				// moved away from an eligible node: only allowed if that node was over its share
				held := 0
				for k2, n2 := range out.Desired {
					if out.Resource[k2] == r.Name && n2 == cur {
						held++
					}
				}
				if held < max(1, r.MaxPerNode) {
					t.Fatalf("%s moved from eligible %s (holding %d) to %s without cause", k, cur, held, n)
				}
			}
		}
	})
}

func BenchmarkPlace(b *testing.B) {
	var rs []spec.Resource
	for i := 0; i < 2000; i++ {
		if i%4 == 0 {
			rs = append(rs, clone(fmt.Sprintf("c%d", i), 3, 1))
		} else {
			rs = append(rs, single(fmt.Sprintf("s%d", i)))
		}
	}
	sp := mkSpec(rs...)
	var nodes []Node
	for i := 0; i < 505; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("n%03d", i), Online: true})
	}
	in := Input{Spec: sp, Nodes: nodes}
	in.Current = Place(in).Desired
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Place(in)
	}
}

// rare is true with about pct percent probability. rapid draws small
// integers more often, so the rare outcome is put at the top of the range
// (a Float64Range(0, 1) < p draw would be true far more often than p).
func rare(t *rapid.T, label string, pct int) bool {
	return rapid.IntRange(0, 99).Draw(t, label) >= 100-pct
}
