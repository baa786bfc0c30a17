// Package cib parses a Pacemaker CIB (Cluster Information Base) XML document
// into a Go model. It is the groundwork for "paceline import-cib": a later
// step converts the Model into paceline's own spec.
//
// The parser is faithful rather than interpretive: values are kept as written
// (roles such as "Master" are not renamed, intervals are not converted),
// except scores, which are turned into integers (INFINITY is ±1000000).
// References are resolved where Pacemaker would resolve them: an element
// carrying only id-ref is replaced by the element it names, and a primitive
// with template= inherits the template's agent, attribute sets and
// operations. Every element the parser does not understand (bundles, tickets,
// fencing topology, ACLs, alerts, unknown children, ...) is listed in
// Model.Unsupported with its XML path and id, and what was approximated
// (for instance an attribute set guarded by a rule) is listed in Model.Notes;
// nothing is dropped silently. For an unsupported element only the element
// itself is listed, not each of its descendants.
package cib

import (
	"fmt"
	"strconv"
	"strings"
)

// Infinity is Pacemaker's INFINITY score.
const Infinity Score = 1000000

// Score is a Pacemaker score, clamped to [-Infinity, Infinity].
type Score int64

// ParseScore reads "INFINITY", "+INFINITY", "-INFINITY" or an integer
// (Pacemaker also accepts the role names "red", "yellow", "green" from
// node-health, which are not supported here).
func ParseScore(s string) (Score, error) {
	t := strings.TrimSpace(s)
	switch strings.ToUpper(t) {
	case "INFINITY", "+INFINITY":
		return Infinity, nil
	case "-INFINITY":
		return -Infinity, nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(t, "+"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cib: invalid score %q", s)
	}
	if n > int64(Infinity) {
		n = int64(Infinity)
	}
	if n < -int64(Infinity) {
		n = -int64(Infinity)
	}
	return Score(n), nil
}

// String writes the score the way Pacemaker does.
func (s Score) String() string {
	switch {
	case s >= Infinity:
		return "INFINITY"
	case s <= -Infinity:
		return "-INFINITY"
	}
	return strconv.FormatInt(int64(s), 10)
}

// Model is a parsed CIB.
type Model struct {
	// Attributes of the <cib> element (validate-with, epoch, admin_epoch, ...).
	CIB map[string]string

	Properties  NVSets // crm_config/cluster_property_set
	RscDefaults NVSets // rsc_defaults/meta_attributes
	OpDefaults  NVSets // op_defaults/meta_attributes

	Nodes       []Node
	Resources   []*Resource          // top-level resources in document order
	Templates   map[string]*Resource // <template> elements by id
	Tags        map[string][]string  // <tag> id -> referenced ids
	Locations   []Location
	Colocations []Colocation
	Orders      []Order
	Tickets     []Ticket // rsc_ticket: recorded, and also listed as unsupported

	NodeStates []NodeState // status section

	// Unsupported lists, as "path[@id=ID]: reason", every element the
	// parser did not interpret.
	Unsupported []string
	// Notes lists approximations made while parsing.
	Notes []string
}

// Property returns a cluster property (crm_config) by name.
func (m *Model) Property(name string) (string, bool) { return m.Properties.Get(name) }

// Resource finds a resource (at any depth) by id.
func (m *Model) Resource(id string) *Resource {
	var find func([]*Resource) *Resource
	find = func(rs []*Resource) *Resource {
		for _, r := range rs {
			if r.ID == id {
				return r
			}
			if c := find(r.Children); c != nil {
				return c
			}
		}
		return nil
	}
	return find(m.Resources)
}

// NVPair is one name/value pair of an attribute set.
type NVPair struct {
	ID, Name, Value string
}

// NVSet is an instance_attributes, meta_attributes, utilization or
// cluster_property_set element.
type NVSet struct {
	ID    string
	Score *Score // ordering among sets; nil if absent
	Rule  *Rule  // the set applies only when the rule holds; nil if none
	Pairs []NVPair
}

// NVSets is a list of attribute sets in document order.
type NVSets []NVSet

// Get returns the value of the first pair named name over all sets (rules
// and set scores are not evaluated).
func (s NVSets) Get(name string) (string, bool) {
	for _, set := range s {
		for _, p := range set.Pairs {
			if p.Name == name {
				return p.Value, true
			}
		}
	}
	return "", false
}

// Map flattens the sets: the first value of each name wins.
func (s NVSets) Map() map[string]string {
	m := map[string]string{}
	for _, set := range s {
		for _, p := range set.Pairs {
			if _, ok := m[p.Name]; !ok {
				m[p.Name] = p.Value
			}
		}
	}
	return m
}

// Node is a <node> of the configuration.
type Node struct {
	ID, Uname, Type string
	Instance        NVSets
	Utilization     NVSets
}

// ResourceKind says which element a Resource came from.
type ResourceKind string

// Resource kinds.
const (
	KindPrimitive ResourceKind = "primitive"
	KindGroup     ResourceKind = "group"
	KindClone     ResourceKind = "clone"
	KindMaster    ResourceKind = "master" // legacy promotable clone
	KindBundle    ResourceKind = "bundle" // recorded, not interpreted
	KindTemplate  ResourceKind = "template"
)

// Resource is a primitive, group, clone, master, bundle or template.
type Resource struct {
	Kind                  ResourceKind
	ID                    string
	Class, Provider, Type string // primitive and template
	Template              string // primitive: the template it was built from
	Description           string
	Instance              NVSets
	Meta                  NVSets
	Utilization           NVSets
	Ops                   []Op
	// Children: the members of a group in order, the single child of a
	// clone or master, the primitive of a bundle.
	Children []*Resource
	// Unsupported is set for kinds the parser only records (bundle).
	Unsupported bool
}

// MetaValue returns a meta attribute of the resource.
func (r *Resource) MetaValue(name string) (string, bool) { return r.Meta.Get(name) }

// Promotable reports a master resource or a clone with promotable=true.
func (r *Resource) Promotable() bool {
	if r.Kind == KindMaster {
		return true
	}
	if r.Kind != KindClone {
		return false
	}
	v, _ := r.Meta.Get("promotable")
	return IsTrue(v)
}

// IsTrue reads a Pacemaker boolean.
func IsTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "y", "1":
		return true
	}
	return false
}

// Op is an <op> of a primitive's operations.
type Op struct {
	ID, Name, Interval, Timeout, Role, OnFail string
	// Attrs holds every attribute of the element, including the above and
	// others such as start-delay, requires, enabled, record-pending.
	Attrs    map[string]string
	Meta     NVSets
	Instance NVSets
}

// Rule is a <rule>: its expressions and sub-rules combined by BooleanOp.
type Rule struct {
	ID             string
	Score          *Score
	ScoreAttribute string
	BooleanOp      string // "and" (the default when absent) or "or"
	Role           string
	Expressions    []Expression
	Rules          []*Rule
}

// Expression is an expression, date_expression, rsc_expression or
// op_expression inside a rule.
type Expression struct {
	Kind        string // element name
	ID          string
	Attribute   string
	Operation   string
	Value       string
	Type        string
	ValueSource string
	// Attrs holds every attribute (start, end, class, name, interval, ...).
	Attrs map[string]string
	// DateSpec and Duration hold the attributes of a date_expression's
	// date_spec and duration children.
	DateSpec, Duration map[string]string
}

// ResourceSet is a <resource_set> of a constraint.
type ResourceSet struct {
	ID         string
	Sequential string
	RequireAll string
	Ordering   string
	Action     string
	Role       string
	Kind       string
	Score      *Score
	Resources  []string
}

// Location is an rsc_location.
type Location struct {
	ID                string
	Rsc, RscPattern   string
	Node              string
	Score             *Score
	Role              string
	ResourceDiscovery string
	Rules             []*Rule
	Sets              []ResourceSet
}

// Colocation is an rsc_colocation.
type Colocation struct {
	ID                   string
	Rsc, WithRsc         string
	Score                *Score
	RscRole, WithRscRole string
	NodeAttribute        string
	Influence            string
	Sets                 []ResourceSet
}

// Order is an rsc_order.
type Order struct {
	ID                      string
	First, Then             string
	FirstAction, ThenAction string
	Kind                    string // Mandatory, Optional, Serialize, or "" (Mandatory)
	Symmetrical             string // "" when absent
	// RequireAll is the (undocumented but used) require-all of a plain
	// order between clones: "false" lets then start once any instance of
	// first runs. "" when absent.
	RequireAll string
	Score      *Score
	Sets       []ResourceSet
}

// Ticket is an rsc_ticket (recorded only).
type Ticket struct {
	ID, Ticket, Rsc, RscRole, LossPolicy string
	Sets                                 []ResourceSet
}

// NodeState is a node_state of the status section.
type NodeState struct {
	ID, Uname                   string
	InCCM, Crmd, Join, Expected string
	Attrs                       map[string]string // every attribute of node_state
	Transient                   NVSets            // transient_attributes
	LRM                         []LRMResource
}

// Online approximates Pacemaker: member of the cluster layer and the
// controller is up (values are "true"/"online" or, in newer CIBs, timestamps).
func (n NodeState) Online() bool {
	inccm := IsTrue(n.InCCM) || isPositiveInt(n.InCCM)
	crmd := n.Crmd == "online" || isPositiveInt(n.Crmd)
	return inccm && crmd
}

func isPositiveInt(s string) bool {
	v, err := strconv.ParseInt(s, 10, 64)
	return err == nil && v > 0
}

// Standby reports standby=on in the node's transient attributes.
func (n NodeState) Standby() bool {
	v, _ := n.Transient.Get("standby")
	return IsTrue(v)
}

// LRMResource is the operation history of one resource on a node.
type LRMResource struct {
	ID, Class, Provider, Type string
	Ops                       []LRMOp
}

// LRMOp is one lrm_rsc_op. Attrs holds every attribute.
type LRMOp struct {
	ID, Operation, CallID, RCCode, OpStatus, Interval string
	Attrs                                             map[string]string
}

// Standby reports whether the node is in standby, from its configured
// instance attributes or the transient attributes of its status.
func (m *Model) Standby(uname string) bool {
	for _, n := range m.Nodes {
		if n.Uname == uname {
			if v, _ := n.Instance.Get("standby"); IsTrue(v) {
				return true
			}
		}
	}
	for _, s := range m.NodeStates {
		if s.Uname == uname && s.Standby() {
			return true
		}
	}
	return false
}
