// Package state is the replicated, deterministic state machine of the
// cluster: the versioned spec and its history, node records, assignments of
// resource instances to nodes with their epochs, fail counts, bootstrap
// token hashes and the event log.
//
// Apply is deterministic: it never reads a clock or a random source. Every
// timestamp and random value travels inside the command, chosen by the
// proposer (the raft leader) before proposing.
package state

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

// MaxEvents is how many events the log keeps (older ones are dropped).
const MaxEvents = 2000

// MaxHistory is how many spec versions are kept for history and rollback.
const MaxHistory = 100

// Role of a node.
const (
	RoleControl = "control"
	RoleRemote  = "remote"
)

// Node is the replicated record of one node.
type Node struct {
	Name        string            `json:"name"`
	Role        string            `json:"role"`
	APIAddr     string            `json:"apiAddr"`
	RaftAddr    string            `json:"raftAddr,omitempty"`
	Online      bool              `json:"online"`
	Standby     bool              `json:"standby,omitempty"`
	Maintenance bool              `json:"maintenance,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Since is when Online last changed (leader's clock, carried in the command).
	Since time.Time `json:"since"`
	// LeaseMS and MarginMS are the hold-lease timings the node uses.
	LeaseMS  int64 `json:"leaseMs,omitempty"`
	MarginMS int64 `json:"marginMs,omitempty"`
}

// Assignment places one instance of a resource on a node. Epoch is the raft
// index of the entry that created it: agents act only on the newest epoch.
type Assignment struct {
	Resource string `json:"resource"`
	Slot     int    `json:"slot"`
	Node     string `json:"node"`
	Epoch    uint64 `json:"epoch"`
	// Role is "promoted" for a promoted instance, else empty.
	Role string `json:"role,omitempty"`
}

// Key identifies an assignment slot: "name" for slot 0 of a single
// resource, "name:N" for clone slots.
func (a Assignment) Key() string { return SlotKey(a.Resource, a.Slot) }

// SlotKey builds the key of a slot.
func SlotKey(resource string, slot int) string {
	return fmt.Sprintf("%s:%d", resource, slot)
}

// FailInfinity is the fail count of a fatal failure (Pacemaker's
// INFINITY): above any migrationThreshold.
const FailInfinity = 1000000

// Fail counts failures of one resource on one node.
type Fail struct {
	Count int       `json:"count"`
	Last  time.Time `json:"last"`
	// Reason of the last failure.
	Reason string `json:"reason,omitempty"`
}

// SpecVersion is one applied version of the spec.
type SpecVersion struct {
	Version int             `json:"version"`
	Index   uint64          `json:"index"`
	Time    time.Time       `json:"time"`
	Author  string          `json:"author,omitempty"`
	Comment string          `json:"comment,omitempty"`
	Spec    json.RawMessage `json:"spec"`
}

// Event is one entry of the cluster event log.
type Event struct {
	Seq      uint64    `json:"seq"`
	Index    uint64    `json:"index"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Node     string    `json:"node,omitempty"`
	Resource string    `json:"resource,omitempty"`
	Message  string    `json:"message"`
	// DowntimeMS is the measured downtime for recovery events.
	DowntimeMS int64 `json:"downtimeMs,omitempty"`
}

// State is the whole replicated state. Methods that read it are safe only
// under the FSM's lock or on a copy (see FSM.Read).
type State struct {
	Index       uint64                 `json:"index"`
	ClusterName string                 `json:"clusterName"`
	Spec        *spec.Spec             `json:"spec,omitempty"`
	SpecVersion int                    `json:"specVersion"`
	History     []SpecVersion          `json:"history,omitempty"`
	Nodes       map[string]*Node       `json:"nodes"`
	Assignments map[string]*Assignment `json:"assignments"`
	// Fails[resource][node]
	Fails map[string]map[string]*Fail `json:"fails,omitempty"`
	// Blocked resources were stopped by onFail: stop and wait for cleanup.
	Blocked map[string]string `json:"blocked,omitempty"`
	// ProbeRelease[node][resource] is the probe key of an instance a probe
	// found on node that the leader did not adopt: the resource leaves that
	// node's probe list for that definition, and the node stops it.
	ProbeRelease map[string]map[string]string `json:"probeRelease,omitempty"`
	// Frozen resources failed with onFail: block: left exactly as they are
	// (not stopped, not moved, not recovered) until cleanup.
	Frozen map[string]string `json:"frozen,omitempty"`
	// TokenHashes maps a SHA-256 hex of a bearer token to its role
	// ("operator" or "readonly").
	TokenHashes map[string]string `json:"tokenHashes,omitempty"`
	// NodeVersion is, per node, the last index at which anything that node
	// runs changed (its assignments, the spec, cluster maintenance): nodes
	// long-poll on it instead of on every entry.
	NodeVersion map[string]uint64 `json:"nodeVersion,omitempty"`
	Events      []Event           `json:"events,omitempty"`
	EventSeq    uint64            `json:"eventSeq"`
	// Constraints are the operator's location constraints (resource
	// move/ban), by ID; see operator.go.
	Constraints map[string]*OperatorConstraint `json:"operatorConstraints,omitempty"`
	// Generations counts operator restarts per resource.
	Generations map[string]uint64 `json:"generations,omitempty"`
	// FenceHistory is the replicated fence history, oldest first
	// (bounded by FenceHistorySize); Fenced maps a node to the time it
	// was last fenced and not unfenced since (fence.go).
	FenceHistory []FenceRecord        `json:"fenceHistory,omitempty"`
	Fenced       map[string]time.Time `json:"fenced,omitempty"`
}

// New returns an empty state.
func New() *State {
	return &State{
		Nodes:        map[string]*Node{},
		Assignments:  map[string]*Assignment{},
		Fails:        map[string]map[string]*Fail{},
		Blocked:      map[string]string{},
		Frozen:       map[string]string{},
		ProbeRelease: map[string]map[string]string{},
		TokenHashes:  map[string]string{},
		NodeVersion:  map[string]uint64{},
	}
}

// Copy returns a deep copy.
func (s *State) Copy() *State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("state: copy: %v", err))
	}
	c := New()
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("state: copy: %v", err))
	}
	c.fixNil()
	return c
}

func (s *State) fixNil() {
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Assignments == nil {
		s.Assignments = map[string]*Assignment{}
	}
	if s.Fails == nil {
		s.Fails = map[string]map[string]*Fail{}
	}
	if s.Blocked == nil {
		s.Blocked = map[string]string{}
	}
	if s.Frozen == nil {
		s.Frozen = map[string]string{}
	}
	if s.ProbeRelease == nil {
		s.ProbeRelease = map[string]map[string]string{}
	}
	if s.TokenHashes == nil {
		s.TokenHashes = map[string]string{}
	}
	if s.NodeVersion == nil {
		s.NodeVersion = map[string]uint64{}
	}
}

// NodeNames returns node names sorted.
func (s *State) NodeNames() []string {
	out := make([]string, 0, len(s.Nodes))
	for n := range s.Nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AssignmentsFor returns the assignments on one node, sorted by key.
func (s *State) AssignmentsFor(node string) []Assignment {
	var out []Assignment
	for _, a := range s.Assignments {
		if a.Node == node {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// SortedAssignments returns all assignments sorted by key.
func (s *State) SortedAssignments() []Assignment {
	out := make([]Assignment, 0, len(s.Assignments))
	for _, a := range s.Assignments {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// FailCount returns the fail count of resource on node.
func (s *State) FailCount(resource, node string) int {
	if m := s.Fails[resource]; m != nil {
		if f := m[node]; f != nil {
			return f.Count
		}
	}
	return 0
}

// EventsAfter returns events with Seq > after (at most limit, 0 = all).
func (s *State) EventsAfter(after uint64, limit int) []Event {
	i := sort.Search(len(s.Events), func(i int) bool { return s.Events[i].Seq > after })
	ev := s.Events[i:]
	if limit > 0 && len(ev) > limit {
		ev = ev[len(ev)-limit:]
	}
	return append([]Event(nil), ev...)
}

func (s *State) addEvent(idx uint64, t time.Time, typ, node, res, msg string, downtime time.Duration) {
	s.EventSeq++
	s.Events = append(s.Events, Event{Seq: s.EventSeq, Index: idx, Time: t, Type: typ, Node: node, Resource: res, Message: msg, DowntimeMS: downtime.Milliseconds()})
	if len(s.Events) > MaxEvents {
		s.Events = append([]Event(nil), s.Events[len(s.Events)-MaxEvents:]...)
	}
}

// NodeChanged returns the last index at which anything node runs changed.
func (s *State) NodeChanged(node string) uint64 {
	v := s.NodeVersion[node]
	if s.NodeVersion[""] > v {
		v = s.NodeVersion[""] // all nodes (spec changes)
	}
	return v
}
