// Package scheduler is the pure placement function of paceline:
// (spec, cluster state) → desired placement of every resource slot.
//
// It reads no clock, no randomness and no global state; the same input
// always yields the same output. Safety across moves (stop on the old node
// before an exclusive resource starts on the new one) is the coordinator's
// job; the scheduler only says where things should be.
package scheduler

import (
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
	// Frozen resources stay exactly as they are (onFail: block).
	Frozen map[string]bool
	// Roles maps slot key → current role ("promoted"; absent: started).
	Roles map[string]string
	// Extra are location constraints from outside the spec (operator moves
	// and bans); expired ones must already be left out.
	Extra []spec.Location
	// PromotionScore returns the preference for promoting resource on node
	// that its agent reported there (ok false when none was reported).
	PromotionScore func(resource, node string) (score int, ok bool)
	// Running and RunningRoles are what nodes report actually running
	// (slot → node, slot → "promoted"); the transition starts from them.
	// When Running is nil, Current and Roles are taken as what runs.
	Running      map[string]string
	RunningRoles map[string]string
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
