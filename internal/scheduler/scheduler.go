// Package scheduler is the pure placement function of paceline:
// (spec, cluster state) → desired placement of every resource slot.
//
// It reads no clock, no randomness and no global state; the same input
// always yields the same output. Safety across moves (stop on the old node
// before an exclusive resource starts on the new one) is the coordinator's
// job; the scheduler only says where things should be.
package scheduler

import (
	"fmt"
	"sort"

	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Node is a node as the scheduler sees it.
type Node struct {
	Name        string
	Online      bool
	Standby     bool
	Maintenance bool
	// Labels are the node's attributes for location rules: the labels its
	// agent declared, overlaid with spec nodes[].attributes.
	Labels map[string]string
	// Capacity is the node's capacity for utilization placement.
	Capacity map[string]int
}

// Input is everything a placement depends on.
type Input struct {
	// Spec with defaults applied.
	Spec  *spec.Spec
	Nodes []Node
	// Current maps slot key → node.
	Current map[string]string
	// FailCount returns the fail count of a resource on a node.
	FailCount func(resource, node string) int
	// Blocked resources stay stopped.
	Blocked map[string]bool
	// Roles maps slot key → current role ("promoted"; absent: started).
	Roles map[string]string
	// Extra are location constraints from outside the spec (operator moves
	// and bans); expired ones must already be left out.
	Extra []spec.Location
	// PromotionScore returns the preference for promoting resource on node
	// that its agent reported there (ok false when none was reported).
	PromotionScore func(resource, node string) (score int, ok bool)
	// Active lists what nodes report running that is not in Current:
	// instances found by probes (Slot -1) and instances still running
	// after a partition. The scheduler stops them or adopts them.
	Active []Instance
}

// Instance is a running instance as reported by a node.
type Instance struct {
	Resource string
	Slot     int
	Node     string
	Role     string // "promoted" or empty
}

// Output is a placement.
type Output struct {
	// Desired maps slot key → node for every slot that should run.
	Desired map[string]string
	// Exclusive tells, per slot key, whether the slot is exclusive.
	Exclusive map[string]bool
	// Resource maps slot key → resource name.
	Resource map[string]string
	// Roles maps slot key → "promoted" for slots that should be promoted.
	Roles map[string]string
	// Unplaced explains slots that could not be placed anywhere.
	Unplaced []string
}

// SlotKey is the key of a slot: "name:N", the same key the replicated
// state uses for assignments.
func SlotKey(resource string, slot int) string { return state.SlotKey(resource, slot) }

// Place computes the desired placement.
func Place(in Input) Output {
	out := Output{Desired: map[string]string{}, Exclusive: map[string]bool{}, Resource: map[string]string{}}
	if in.Spec == nil {
		return out
	}
	fails := in.FailCount
	if fails == nil {
		fails = func(string, string) int { return 0 }
	}
	nodes := append([]Node(nil), in.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	byName := map[string]Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	load := map[string]int{}
	maint := in.Spec.Cluster.Maintenance

	type slotRef struct {
		res  *spec.Resource
		slot int
		key  string
	}
	var slots []slotRef
	for i := range in.Spec.Resources {
		r := &in.Spec.Resources[i]
		n := 1
		if r.Mode == spec.ModeClone {
			n = r.Replicas
			if n == 0 {
				n = len(allowedIgnoringState(r, nodes)) * max(1, r.MaxPerNode)
			}
		}
		for s := 0; s < n; s++ {
			k := SlotKey(r.Name, s)
			out.Exclusive[k] = r.Mode != spec.ModeClone
			out.Resource[k] = r.Name
			slots = append(slots, slotRef{r, s, k})
		}
	}
	// First pass: keep what may stay (no move without a cause).
	perNode := map[string]map[string]int{} // resource → node → count
	count := func(res, node string) int { return perNode[res][node] }
	place := func(res, key, node string) {
		out.Desired[key] = node
		load[node]++
		if perNode[res] == nil {
			perNode[res] = map[string]int{}
		}
		perNode[res][node]++
	}
	var pending []slotRef
	for _, s := range slots {
		r := s.res
		cur, has := in.Current[s.key]
		curNode, known := byName[cur]
		// A node in maintenance, or the whole cluster in maintenance, keeps what it has.
		if has && (maint || (known && curNode.Maintenance)) {
			place(r.Name, s.key, cur)
			continue
		}
		if maint || in.Blocked[r.Name] || r.TargetRole == "stopped" {
			continue
		}
		if has && known && allowed(r, curNode, fails) && count(r.Name, cur) < max(1, r.MaxPerNode) {
			place(r.Name, s.key, cur)
			continue
		}
		pending = append(pending, s)
	}
	// Second pass: place the rest on the least loaded allowed node.
	for _, s := range pending {
		r := s.res
		best := ""
		for _, n := range nodes {
			if !allowed(r, n, fails) || count(r.Name, n.Name) >= max(1, r.MaxPerNode) {
				continue
			}
			if best == "" || load[n.Name] < load[best] {
				best = n.Name
			}
		}
		if best == "" {
			out.Unplaced = append(out.Unplaced, fmt.Sprintf("%s: no eligible node (%s)", s.key, whyNot(r, nodes, fails)))
			continue
		}
		place(r.Name, s.key, best)
	}
	return out
}

func threshold(r *spec.Resource) int {
	if r.OnFail == spec.OnFailMigrate {
		return 1
	}
	if r.MigrationThreshold == nil {
		return 3
	}
	return *r.MigrationThreshold
}

func staticAllowed(r *spec.Resource, n Node) bool {
	if len(r.Nodes) > 0 {
		ok := false
		for _, x := range r.Nodes {
			if x == n.Name {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range r.NodeLabels {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

func allowedIgnoringState(r *spec.Resource, nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		if staticAllowed(r, n) {
			out = append(out, n.Name)
		}
	}
	return out
}

func allowed(r *spec.Resource, n Node, fails func(string, string) int) bool {
	if !n.Online || n.Standby || n.Maintenance || !staticAllowed(r, n) {
		return false
	}
	if t := threshold(r); t > 0 && fails(r.Name, n.Name) >= t {
		return false
	}
	return true
}

func whyNot(r *spec.Resource, nodes []Node, fails func(string, string) int) string {
	if len(nodes) == 0 {
		return "no nodes"
	}
	var reasons []string
	for _, n := range nodes {
		var why string
		switch {
		case !staticAllowed(r, n):
			why = "excluded by nodes/nodeLabels"
		case !n.Online:
			why = "offline"
		case n.Standby:
			why = "standby"
		case n.Maintenance:
			why = "maintenance"
		case threshold(r) > 0 && fails(r.Name, n.Name) >= threshold(r):
			why = fmt.Sprintf("fail count %d reached migrationThreshold %d; run `paceline resource cleanup %s`", fails(r.Name, n.Name), threshold(r), r.Name)
		default:
			why = "already holds its share of instances"
		}
		reasons = append(reasons, n.Name+": "+why)
	}
	return joinSemi(reasons)
}

func joinSemi(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}
