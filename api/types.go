// Package api holds paceline's HTTP API wire types and a Go client. It has
// no dependencies beyond the standard library; the paceline CLI uses only
// this package to talk to agents.
//
// All paths are under /v1. Public endpoints take a bearer token (operator
// or read-only); /v1/internal endpoints are for agents and take the join
// token in the X-Paceline-Join header.
package api

import (
	"encoding/json"
	"time"
)

// Error is the body of every non-2xx answer.
type Error struct {
	Status  int      `json:"status"`
	Message string   `json:"error"`
	Details []string `json:"details,omitempty"`
	// Leader is set on 421 answers: where to retry a write.
	Leader string `json:"leader,omitempty"`
}

func (e *Error) Error() string {
	s := e.Message
	for _, d := range e.Details {
		s += "\n  " + d
	}
	return s
}

// Node is a node's status.
type Node struct {
	Name string `json:"name"`
	// Role is control, remote or witness (a raft voter that runs nothing).
	Role        string            `json:"role"`
	APIAddr     string            `json:"apiAddr"`
	Online      bool              `json:"online"`
	Standby     bool              `json:"standby,omitempty"`
	Maintenance bool              `json:"maintenance,omitempty"`
	Leader      bool              `json:"leader,omitempty"`
	Voter       bool              `json:"voter,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Since       time.Time         `json:"since"`
	// Gossip is the node's state in the gossip pool as seen by the answering agent.
	Gossip string `json:"gossip,omitempty"`
}

// Instance is one placed instance of a resource.
type Instance struct {
	Slot  int    `json:"slot"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	// State as reported by the node: starting, running, stopping, failed, unknown.
	State string `json:"state"`
	// Role is "promoted" for the promoted instance of a promotable resource.
	Role string `json:"role,omitempty"`
}

// Resource is a resource's status.
type Resource struct {
	Name      string         `json:"name"`
	Class     string         `json:"class"`
	Mode      string         `json:"mode"`
	Target    string         `json:"target"`
	Instances []Instance     `json:"instances"`
	FailCount map[string]int `json:"failCount,omitempty"`
	Blocked   string         `json:"blocked,omitempty"`
	Unplaced  []string       `json:"unplaced,omitempty"`
	// Frozen is the failure that froze the resource where it is (onFail:
	// block) until cleanup.
	Frozen string `json:"frozen,omitempty"`
	// Unmanaged is set for a resource paceline only watches (managed: false
	// or maintenance: true).
	Unmanaged bool `json:"unmanaged,omitempty"`
}

// Event is one cluster event.
type Event struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Node       string    `json:"node,omitempty"`
	Resource   string    `json:"resource,omitempty"`
	Message    string    `json:"message"`
	DowntimeMS int64     `json:"downtimeMs,omitempty"`
}

// Status is what `paceline status` shows.
type Status struct {
	Cluster     string     `json:"cluster"`
	Answerer    string     `json:"answerer"`
	Leader      string     `json:"leader"`
	Quorum      bool       `json:"quorum"`
	Index       uint64     `json:"index"`
	SpecVersion int        `json:"specVersion"`
	Maintenance bool       `json:"maintenance,omitempty"`
	Nodes       []Node     `json:"nodes"`
	Resources   []Resource `json:"resources"`
	Events      []Event    `json:"events"`
	// Constraints are the operator constraints in force (resource move
	// and ban), with their remaining time.
	Constraints []OperatorConstraint `json:"constraints,omitempty"`
	// Warnings are health warnings the operator must act on (a failed
	// fence a recovery waits for, two voters without a witness, ...),
	// each saying what to do.
	Warnings []string `json:"warnings,omitempty"`
	// WaitingFor lists the control nodes wait-for-all still waits for
	// before anything starts (docs/quorum.md).
	WaitingFor []string `json:"waitingFor,omitempty"`
}

// ApplyResult answers POST /v1/spec.
type ApplyResult struct {
	DryRun  bool     `json:"dryRun"`
	Version int      `json:"version"`
	Changes []string `json:"changes"`
	// Plan lists what would start, stop or move.
	Plan []string `json:"plan"`
	// Transition is the scheduler's ordered actions for this spec (what
	// apply --dry-run shows).
	Transition []TransitionAction `json:"transition,omitempty"`
}

// SpecVersion is one entry of the spec history.
type SpecVersion struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Author  string    `json:"author,omitempty"`
	Comment string    `json:"comment,omitempty"`
	Current bool      `json:"current,omitempty"`
}

// SpecDocument answers GET /v1/spec.
type SpecDocument struct {
	Version int    `json:"version"`
	YAML    string `json:"yaml"`
}

// Diff answers POST /v1/spec/diff.
type Diff struct {
	Version int      `json:"version"`
	Changes []string `json:"changes"`
}

// --- agent-to-agent (internal) ---

// ActiveInstance is an instance a node is running (or starting/stopping).
type ActiveInstance struct {
	Resource string `json:"resource"`
	Slot     int    `json:"slot"`
	Epoch    uint64 `json:"epoch"`
	State    string `json:"state"`
	// Role is "promoted" for a promoted instance of a promotable resource, else empty.
	Role string `json:"role,omitempty"`
	// PromotionScore is the preference for promotion the agent reported
	// on this node (crm_master / ocf_promotion_score); nil when none.
	PromotionScore *int `json:"promotionScore,omitempty"`
	// Probed marks an instance found running by a probe without being
	// assigned here (Slot is then -1): the leader decides what to do.
	Probed bool `json:"probed,omitempty"`
}

// Renew is a lease renewal, also the node's report of what it runs.
type Renew struct {
	Node     string            `json:"node"`
	Cluster  string            `json:"cluster"`
	Role     string            `json:"role"`
	APIAddr  string            `json:"apiAddr"`
	RaftAddr string            `json:"raftAddr,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Applied is the assignments index the node's executor has acted on.
	Applied uint64           `json:"applied"`
	Active  []ActiveInstance `json:"active"`
	// Leaving tells the leader the node is shutting down and runs nothing anymore.
	Leaving bool `json:"leaving,omitempty"`
	// Incarnation identifies the agent process (random at start) and Seq
	// orders its reports, so a late report never overrides a newer one.
	Incarnation string `json:"incarnation,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
	// LeaseMS and MarginMS are the node's own hold-lease timings; the
	// leader judges this node's expiry with the same numbers.
	LeaseMS  int64 `json:"leaseMs,omitempty"`
	MarginMS int64 `json:"marginMs,omitempty"`
	// ProbesDone lists the ProbeItem keys whose probe finished here
	// (whatever it found); nil when the node does not probe. The leader
	// starts a resource only once every node it asked has probed it.
	ProbesDone []string `json:"probesDone"`
	// Attributes are node attributes agents set on this node (crm_attribute
	// -n, attrd_updater -n; e.g. ping's "pingd"), usable in location rules.
	// They live as long as the agent reports them (Pacemaker's transient
	// attributes).
	Attributes map[string]string `json:"attributes,omitempty"`
	// Ranks are the ordered-bootstrap ranks of resources with a bootstrap
	// hook that do not run on this node (resource → rank).
	Ranks map[string]BootstrapRank `json:"ranks,omitempty"`
	// WatchdogMS is the node's hardware watchdog timeout (0: none): a
	// node that keeps exclusive resources past its lease resets within
	// it (docs/safety.md).
	WatchdogMS int64 `json:"watchdogMs,omitempty"`
}

// BootstrapRank is the outcome of a resource's bootstrap rank command.
type BootstrapRank struct {
	OK   bool   `json:"ok"`
	Rank int64  `json:"rank,omitempty"`
	Err  string `json:"err,omitempty"`
	// At is when the command ran (node's clock).
	At time.Time `json:"at"`
}

// RenewAck answers a renewal. OK false means no lease was granted.
type RenewAck struct {
	OK        bool   `json:"ok"`
	Leader    string `json:"leader"`
	LeaderAPI string `json:"leaderApi,omitempty"`
	Index     uint64 `json:"index"`
	Reason    string `json:"reason,omitempty"`
}

// NodeAssignment is one instance assigned to a node, with the resource
// definition it needs to run it.
type NodeAssignment struct {
	Resource string          `json:"resource"`
	Slot     int             `json:"slot"`
	Epoch    uint64          `json:"epoch"`
	Def      json.RawMessage `json:"def"`
	// Role is "promoted" when this instance must be promoted; empty means
	// started (and demoted, if it was promoted).
	Role string `json:"role,omitempty"`
	// Generation changes when an operator asks for a restart: the node
	// stops and starts the instance once per change.
	Generation uint64 `json:"generation,omitempty"`
	// Peers lists every assigned instance of the same clone (notify: true
	// only), for the OCF notify environment.
	Peers []Peer `json:"peers,omitempty"`
	// Held: do not start this instance yet (ordered bootstrap: another
	// node starts first); an instance already running here stays.
	Held bool `json:"held,omitempty"`
}

// Peer is one assigned instance of a clone.
type Peer struct {
	Slot int    `json:"slot"`
	Node string `json:"node"`
	Role string `json:"role,omitempty"`
}

// ProbeItem asks a node to find out whether a resource already runs there
// (a probe: monitor with interval 0) before anything is started.
type ProbeItem struct {
	Resource string          `json:"resource"`
	Def      json.RawMessage `json:"def"`
	// Key identifies the definition probed (a digest of Def): a node
	// probes each key once and reports it in Renew.ProbesDone.
	Key string `json:"key"`
}

// Assignments answers GET /v1/internal/assignments.
type Assignments struct {
	Index       uint64           `json:"index"`
	Maintenance bool             `json:"maintenance,omitempty"`
	Items       []NodeAssignment `json:"items"`
	// Probes lists the resources this node must probe (once per
	// definition) and report when found running (ActiveInstance.Probed).
	Probes []ProbeItem `json:"probes,omitempty"`
}

// Failure is a node's report that an instance failed.
type Failure struct {
	Node     string `json:"node"`
	Resource string `json:"resource"`
	Slot     int    `json:"slot"`
	Epoch    uint64 `json:"epoch"`
	Reason   string `json:"reason"`
	// Restarted is true when the node restarted it in place already.
	Restarted bool `json:"restarted"`
	// Op is the failed operation: start, stop, monitor, promote, demote,
	// notify or reload-agent (empty: the instance failed while running).
	Op string `json:"op,omitempty"`
	// OnFail is the onFail that applies to the failed operation, resolved
	// by the node from the resource's operations and defaults.
	OnFail string `json:"onFail,omitempty"`
	// Hard is set for failures no retry on this node can fix: "node" (the
	// agent is not installed or not allowed here: OCF_ERR_INSTALLED,
	// OCF_ERR_PERM, or a failed start with startFailureIsFatal) or
	// "cluster" (the configuration is wrong everywhere: OCF_ERR_CONFIGURED).
	Hard string `json:"hard,omitempty"`
}

// Hello is the first call of a joining node.
type Hello struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Role    string `json:"role"`
}

// Welcome answers Hello with where to gossip.
type Welcome struct {
	Cluster string   `json:"cluster"`
	Fast    []string `json:"fast"`
	Coarse  []string `json:"coarse"`
	Leader  string   `json:"leader"`
}
