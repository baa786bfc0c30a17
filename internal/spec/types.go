// Package spec holds the cluster specification: the one YAML document an
// operator applies (resources, their modes and policies), its strict decoding
// with errors that name the field path and line, validation, and diffs between
// versions. The spec is stored in the replicated state as canonical JSON.
package spec

import (
	"time"
)

// APIVersion is the only spec apiVersion this release understands.
const APIVersion = "paceline/v1"

// Spec is one version of the whole cluster specification.
type Spec struct {
	APIVersion string  `json:"apiVersion" yaml:"apiVersion"`
	Cluster    Cluster `json:"cluster" yaml:"cluster"`
	// Nodes optionally declares node attributes (for location rules) and
	// capacities (for utilization placement). Nodes themselves join by
	// running an agent; a node listed here need not exist yet.
	Nodes     []NodeSpec `json:"nodes,omitempty" yaml:"nodes"`
	Resources []Resource `json:"resources,omitempty" yaml:"resources"`
	// Groups are ordered, colocated lists of single resources (Pacemaker groups).
	Groups []Group `json:"groups,omitempty" yaml:"groups"`
	// Constraints relate resources to nodes and to each other.
	Constraints *Constraints `json:"constraints,omitempty" yaml:"constraints"`
	// Fencing lists fence devices and how recovery uses them.
	Fencing *Fencing `json:"fencing,omitempty" yaml:"fencing"`
	// LoadBalancers configure paceline's built-in load balancer (docs/lb.md).
	LoadBalancers []LoadBalancer `json:"loadBalancers,omitempty" yaml:"loadBalancers"`
}

// Cluster holds cluster-wide policy.
type Cluster struct {
	// Name must equal the name the agents were started with (config clusterName).
	Name string `json:"name" yaml:"name"`
	// NoQuorumPolicy is what a node without quorum (its hold lease ran
	// out) does with its resources: stop (default: exclusive resources
	// are stopped at the lease deadline), demote (promoted instances are
	// demoted, other exclusive resources stopped), freeze (everything
	// keeps running, nothing new starts) or ignore (keeps running and
	// restarts local failures). freeze and ignore need fencing: the rest
	// of the cluster recovers that node's exclusive resources only after
	// fencing it (docs/fencing.md).
	NoQuorumPolicy string `json:"noQuorumPolicy,omitempty" yaml:"noQuorumPolicy"`
	// Maintenance, when true, leaves every resource as it is (nothing started or stopped).
	Maintenance bool `json:"maintenance,omitempty" yaml:"maintenance"`
	// Stickiness is the default stickiness of resources that set none (100).
	Stickiness *int `json:"stickiness,omitempty" yaml:"stickiness"`
	// Symmetric (default true): a resource may run on any node unless a
	// constraint says otherwise. When false, only nodes with a positive
	// location score are allowed (opt-in, Pacemaker's symmetric-cluster=false).
	Symmetric *bool `json:"symmetric,omitempty" yaml:"symmetric"`
	// PlacementStrategy is default (utilization ignored), utilization
	// (capacity enforced), balanced (capacity enforced, most free capacity
	// first) or minimal (capacity enforced, pack onto few nodes).
	PlacementStrategy string `json:"placementStrategy,omitempty" yaml:"placementStrategy"`
	// StartFailureIsFatal (default true): a failed start bans the resource
	// from that node until cleanup, instead of counting one failure.
	StartFailureIsFatal *bool `json:"startFailureIsFatal,omitempty" yaml:"startFailureIsFatal"`
	// BatchLimit is the most actions started in parallel per planning round
	// (0: no limit).
	BatchLimit int `json:"batchLimit,omitempty" yaml:"batchLimit"`
}

// PlacementStrategy values.
const (
	PlacementDefault     = "default"
	PlacementUtilization = "utilization"
	PlacementBalanced    = "balanced"
	PlacementMinimal     = "minimal"
)

// NodeSpec declares attributes and capacity of one node.
type NodeSpec struct {
	Name string `json:"name" yaml:"name"`
	// Attributes are matched by location rules (together with the labels
	// the node's agent was started with; attributes here win).
	Attributes map[string]string `json:"attributes,omitempty" yaml:"attributes"`
	// Capacity is what the node offers for utilization placement, e.g. {cpu: 8, memory: 16384}.
	Capacity map[string]int `json:"capacity,omitempty" yaml:"capacity"`
}

// Mode values.
const (
	ModeSingle     = "single"     // exclusive, active/passive, under the hold lease
	ModeClone      = "clone"      // N replicas spread over nodes
	ModePromotable = "promotable" // clone whose instances are promoted (at most promotedMax) or unpromoted
)

// noQuorumPolicy values.
const (
	NoQuorumStop   = "stop"
	NoQuorumDemote = "demote"
	NoQuorumFreeze = "freeze"
	NoQuorumIgnore = "ignore"
)

// OnFail values.
const (
	OnFailRestart = "restart" // restart in place, move after migrationThreshold failures
	OnFailMigrate = "migrate" // move to another node at the first failure
	OnFailStop    = "stop"    // stop it and leave it stopped
	OnFailIgnore  = "ignore"  // record the failure, do nothing
	OnFailBlock   = "block"   // leave it as it is (failed) and stop managing it until cleanup
	OnFailStandby = "standby" // move every resource away from the node (the node goes standby)
	OnFailDemote  = "demote"  // demote a promoted instance, do not stop it (promotable only)
	OnFailFence   = "fence"   // fence the node (needs fencing devices); its resources recover elsewhere
)

// Role values (targetRole, constraint roles, operation roles).
const (
	RoleStarted    = "started"
	RoleStopped    = "stopped"
	RolePromoted   = "promoted"
	RoleUnpromoted = "unpromoted"
)

// MultipleActive values: what to do when a single resource is found active
// on more than one node (after a probe or a partition heals).
const (
	MultipleStopStart      = "stopStart"      // stop it everywhere, start it once (default)
	MultipleStopOnly       = "stopOnly"       // stop it everywhere
	MultipleBlock          = "block"          // leave it alone and stop managing it
	MultipleStopUnexpected = "stopUnexpected" // stop the instances that are not where it belongs
)

// Resource is one managed resource.
type Resource struct {
	Name string `json:"name" yaml:"name"`
	// Class is the agent class: process, ocf:PROVIDER:TYPE, lsb:NAME or systemd:UNIT.
	Class string `json:"class" yaml:"class"`
	// Params are the class parameters (see Params).
	Params Params `json:"params" yaml:"params"`
	// Mode is single (default), clone or promotable.
	Mode string `json:"mode,omitempty" yaml:"mode"`
	// Replicas is the number of clone instances (clone mode; default: one per eligible node).
	Replicas int `json:"replicas,omitempty" yaml:"replicas"`
	// MaxPerNode is the number of clone instances allowed on one node (default 1).
	MaxPerNode int `json:"maxPerNode,omitempty" yaml:"maxPerNode"`
	// Health is an optional active health check.
	Health *Health `json:"health,omitempty" yaml:"health"`
	// OnFail is what a failure triggers (default restart).
	OnFail string `json:"onFail,omitempty" yaml:"onFail"`
	// MigrationThreshold is the number of failures on a node after which the
	// resource moves away from it (default 3; 0 means never move).
	MigrationThreshold *int `json:"migrationThreshold,omitempty" yaml:"migrationThreshold"`
	// FailureTimeout forgets failures older than this (0: never).
	FailureTimeout Duration `json:"failureTimeout,omitempty" yaml:"failureTimeout"`
	// Stickiness is the preference to stay where it runs (default 100).
	Stickiness *int `json:"stickiness,omitempty" yaml:"stickiness"`
	// Nodes optionally restricts where it may run (node names).
	Nodes []string `json:"nodes,omitempty" yaml:"nodes"`
	// Labels optionally restricts placement to nodes carrying all these labels.
	NodeLabels map[string]string `json:"nodeLabels,omitempty" yaml:"nodeLabels"`
	// TargetRole is started (default), stopped, unpromoted (promotable:
	// run but never promote) or promoted (the same as started).
	TargetRole string `json:"targetRole,omitempty" yaml:"targetRole"`

	// PromotedMax is how many instances of a promotable resource are
	// promoted at once (default 1); PromotedMaxPerNode per node (default 1).
	PromotedMax        int `json:"promotedMax,omitempty" yaml:"promotedMax"`
	PromotedMaxPerNode int `json:"promotedMaxPerNode,omitempty" yaml:"promotedMaxPerNode"`
	// Interleave (clones): an order or colocation with another clone relates
	// instances on the same node rather than the whole clone.
	Interleave bool `json:"interleave,omitempty" yaml:"interleave"`
	// Notify (clones, ocf class): run the agent's notify action on every
	// instance before and after instances start, stop, promote or demote.
	Notify bool `json:"notify,omitempty" yaml:"notify"`
	// Operations set timeouts, monitor intervals and onFail per operation.
	Operations []Operation `json:"operations,omitempty" yaml:"operations"`
	// Priority decides which resources keep running when not all can (higher first; default 0).
	Priority int `json:"priority,omitempty" yaml:"priority"`
	// Utilization is what one instance needs of node capacity, e.g. {cpu: 2}.
	Utilization map[string]int `json:"utilization,omitempty" yaml:"utilization"`
	// Managed (default true): when false paceline neither starts, stops nor
	// recovers the resource; it only watches (Pacemaker is-managed=false).
	Managed *bool `json:"managed,omitempty" yaml:"managed"`
	// Maintenance: like managed: false, and monitors stop too.
	Maintenance bool `json:"maintenance,omitempty" yaml:"maintenance"`
	// MultipleActive is what happens when a single resource is found active
	// on several nodes: stopStart (default), stopOnly, block or stopUnexpected.
	MultipleActive string `json:"multipleActive,omitempty" yaml:"multipleActive"`
	// Bootstrap orders a cold start (nothing of the resource runs
	// anywhere, e.g. after a full-cluster power loss): the first instance
	// starts on the node whose rank command prints the highest number
	// (Galera: the highest seqno), the others once it runs (bootstrap.go).
	Bootstrap *Bootstrap `json:"bootstrap,omitempty" yaml:"bootstrap"`
}

// Operation configures one operation of a resource.
type Operation struct {
	// Name is start, stop, monitor, promote, demote, notify or reload-agent.
	Name string `json:"name" yaml:"name"`
	// Interval is the monitor interval (monitor only; required there).
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	// Timeout kills the action after this long (default 20s).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
	// OnFail is what a failure of this operation triggers (default: restart,
	// for stop: block, since a resource that did not stop may still run).
	OnFail string `json:"onFail,omitempty" yaml:"onFail"`
	// Role limits a monitor to instances in this role (promoted or
	// unpromoted), e.g. a faster monitor for the promoted instance.
	Role string `json:"role,omitempty" yaml:"role"`
	// Depth is the monitor depth (OCF_CHECK_LEVEL).
	Depth int `json:"depth,omitempty" yaml:"depth"`
}

// Group is an ordered, colocated list of single resources: members start in
// order on one node and stop in reverse order; a member that cannot run
// stops every member after it.
type Group struct {
	Name    string   `json:"name" yaml:"name"`
	Members []string `json:"members" yaml:"members"`
}

// Score is a placement preference; ±Infinity make it mandatory.
// In YAML it is a whole number or INFINITY / -INFINITY.
type Score int64

// Infinity is Pacemaker's INFINITY: scores add up but saturate here.
const Infinity Score = 1000000

// Add adds scores the way Pacemaker does: saturating at ±Infinity, and
// -Infinity wins over +Infinity.
func (s Score) Add(o Score) Score {
	switch {
	case s <= -Infinity || o <= -Infinity:
		return -Infinity
	case s >= Infinity || o >= Infinity:
		return Infinity
	}
	v := s + o
	if v >= Infinity {
		return Infinity
	}
	if v <= -Infinity {
		return -Infinity
	}
	return v
}

// Constraints relate resources (or groups) to nodes and to each other.
type Constraints struct {
	Location   []Location   `json:"location,omitempty" yaml:"location"`
	Colocation []Colocation `json:"colocation,omitempty" yaml:"colocation"`
	Order      []Order      `json:"order,omitempty" yaml:"order"`
}

// Location scores a resource's placement on nodes: either Node with Score,
// or Rules matched against node attributes.
type Location struct {
	Resource string `json:"resource" yaml:"resource"`
	// Role limits the constraint to the promoted (or unpromoted) role.
	Role  string `json:"role,omitempty" yaml:"role"`
	Node  string `json:"node,omitempty" yaml:"node"`
	Score *Score `json:"score,omitempty" yaml:"score"`
	Rules []Rule `json:"rules,omitempty" yaml:"rules"`
	// Discovery is always (default), never or exclusive: where paceline
	// probes for the resource (exclusive: only nodes this constraint allows).
	Discovery string `json:"discovery,omitempty" yaml:"discovery"`
}

// Rule gives Score to nodes whose attributes match its expressions.
type Rule struct {
	Score Score `json:"score" yaml:"score"`
	// Match is all (default) or any.
	Match       string       `json:"match,omitempty" yaml:"match"`
	Expressions []Expression `json:"expressions" yaml:"expressions"`
}

// Expression tests one node attribute. "#uname" is the node name.
type Expression struct {
	Attribute string `json:"attribute" yaml:"attribute"`
	// Op is eq, ne, lt, gt, lte, gte, defined or notDefined.
	Op    string `json:"op" yaml:"op"`
	Value string `json:"value,omitempty" yaml:"value"`
	// Type is string (default), integer, number or version.
	Type string `json:"type,omitempty" yaml:"type"`
}

// Colocation places Resource relative to With (Resource follows With):
// +Infinity on the same node, -Infinity never on the same node, other
// scores are preferences. Sets (instead of Resource/With) colocate lists.
type Colocation struct {
	Resource string `json:"resource,omitempty" yaml:"resource"`
	With     string `json:"with,omitempty" yaml:"with"`
	Score    Score  `json:"score" yaml:"score"`
	Role     string `json:"role,omitempty" yaml:"role"`
	WithRole string `json:"withRole,omitempty" yaml:"withRole"`
	Sets     []Set  `json:"sets,omitempty" yaml:"sets"`
}

// Order kinds.
const (
	OrderMandatory = "mandatory" // then waits for first; stopping first stops then
	OrderOptional  = "optional"  // only when both change in the same transition
	OrderSerialize = "serialize" // never run the two actions at the same time
)

// Order sequences actions: ThenAction of Then happens after FirstAction of
// First. Sets (instead of First/Then) order lists.
type Order struct {
	First       string `json:"first,omitempty" yaml:"first"`
	Then        string `json:"then,omitempty" yaml:"then"`
	FirstAction string `json:"firstAction,omitempty" yaml:"firstAction"`
	ThenAction  string `json:"thenAction,omitempty" yaml:"thenAction"`
	Kind        string `json:"kind,omitempty" yaml:"kind"`
	// Symmetrical (default true for mandatory): stops happen in the reverse order.
	Symmetrical *bool `json:"symmetrical,omitempty" yaml:"symmetrical"`
	Sets        []Set `json:"sets,omitempty" yaml:"sets"`
}

// Set is a resource set of a colocation or order.
type Set struct {
	Resources []string `json:"resources" yaml:"resources"`
	// Sequential (default true): the members relate to each other in list order.
	Sequential *bool `json:"sequential,omitempty" yaml:"sequential"`
	// RequireAll (default true; order sets): false means any one member suffices.
	RequireAll *bool  `json:"requireAll,omitempty" yaml:"requireAll"`
	Role       string `json:"role,omitempty" yaml:"role"`
	Action     string `json:"action,omitempty" yaml:"action"`
}

// Params are the class parameters. For class process:
//
//	command: [argv...]   (required)
//	env: {K: V}
//	dir: /path
//	stopTimeout: 10s     (SIGTERM, then SIGKILL after this)
//	startTimeout: 20s    (health must pass within this, when a health check is set)
//
// For the script classes (ocf, lsb, systemd) params are a flat mapping of
// strings, held in Values: OCF agents get them as OCF_RESKEY_<name>.
type Params struct {
	Command      []string          `json:"command,omitempty" yaml:"command"`
	Env          map[string]string `json:"env,omitempty" yaml:"env"`
	Dir          string            `json:"dir,omitempty" yaml:"dir"`
	StopTimeout  Duration          `json:"stopTimeout,omitempty" yaml:"stopTimeout"`
	StartTimeout Duration          `json:"startTimeout,omitempty" yaml:"startTimeout"`
	// Values are the parameters of a script class (not process).
	Values map[string]string `json:"-" yaml:"-"`
}

// Health is an active health check; exactly one of HTTP, TCP, Exec is set.
type Health struct {
	HTTP     string   `json:"http,omitempty" yaml:"http"`
	TCP      string   `json:"tcp,omitempty" yaml:"tcp"`
	Exec     []string `json:"exec,omitempty" yaml:"exec"`
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	Timeout  Duration `json:"timeout,omitempty" yaml:"timeout"`
	// Fall is the number of consecutive failed checks that count as one failure (default 1).
	Fall int `json:"fall,omitempty" yaml:"fall"`
}

// Duration is a time.Duration written as "2s", "100ms", "10m" in YAML and JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
