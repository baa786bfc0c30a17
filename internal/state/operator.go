package state

import (
	"fmt"
	"sort"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

// Operator command types (paceline resource move|ban|clear|restart|
// enable|disable|manage|unmanage).
const (
	// CmdConstraintAdd adds (or replaces, by ID) an operator constraint:
	// Operator.Constraint with Kind, Resource, Node, Role and Expires (zero:
	// until cleared). ID, Created and Author are filled in by Apply.
	CmdConstraintAdd = "constraint-add"
	// CmdConstraintRemove removes the operator constraints of Resource (on
	// NodeName only, when set): paceline resource clear.
	CmdConstraintRemove = "constraint-remove"
	// CmdConstraintExpire removes the constraints listed in Operator.IDs
	// (every constraint when empty) whose expiry is at or before the
	// command's Time. A listed constraint that was renewed in the meantime
	// (a new move with a later expiry) stays.
	CmdConstraintExpire = "constraint-expire"
	// CmdRestart bumps the restart generation of Resource (every member of
	// a group): each node running an instance restarts it once.
	CmdRestart = "restart"
	// CmdResourceSet changes Resource's targetRole and/or managed flag (for
	// a group: every member) and applies the result as a new spec version,
	// exactly like set-spec (history, rollback, events).
	CmdResourceSet = "resource-set"
)

// Kinds of operator constraints.
const (
	KindMove = "move" // +INFINITY on Node (crm_resource --move: cli-prefer-*)
	KindBan  = "ban"  // -INFINITY on Node (crm_resource --ban: cli-ban-*)
)

// OperatorArgs are the arguments of the operator commands.
type OperatorArgs struct {
	Constraint *OperatorConstraint `json:"constraint,omitempty"`
	// IDs are the constraints a constraint-expire removes.
	IDs []string `json:"ids,omitempty"`
	// TargetRole for resource-set: "" leaves it, "default" removes it
	// (started), otherwise the new value (stopped, started, ...).
	TargetRole string `json:"targetRole,omitempty"`
	// Managed for resource-set: nil leaves it; true removes the field
	// (the default, managed), false sets managed: false.
	Managed *bool `json:"managed,omitempty"`
}

// OperatorConstraint is a location constraint an operator added from the
// command line. It lives in the replicated state, not in the spec, and
// disappears at Expires (when set) or on paceline resource clear.
type OperatorConstraint struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Resource string `json:"resource"`
	Node     string `json:"node"`
	// Role limits the constraint to the promoted role (promotable resources).
	Role    string    `json:"role,omitempty"`
	Created time.Time `json:"created"`
	// Expires is when it disappears by itself; zero: only on clear.
	Expires time.Time `json:"expires"`
	Author  string    `json:"author,omitempty"`
}

// ConstraintID is the ID of an operator constraint; the names are
// Pacemaker's (cli-prefer-RES, cli-ban-RES-on-NODE), so a new move
// replaces the previous move and a second ban on a node replaces the first.
func ConstraintID(kind, resource, node string) string {
	if kind == KindMove {
		return "cli-prefer-" + resource
	}
	return "cli-ban-" + resource + "-on-" + node
}

// Score is the constraint's location score.
func (c *OperatorConstraint) Score() spec.Score {
	if c.Kind == KindMove {
		return spec.Infinity
	}
	return -spec.Infinity
}

// Expired reports whether the constraint is gone at now.
func (c *OperatorConstraint) Expired(now time.Time) bool {
	return !c.Expires.IsZero() && !c.Expires.After(now)
}

// Location returns the constraint as a spec location constraint.
func (c *OperatorConstraint) Location() spec.Location {
	sc := c.Score()
	return spec.Location{Resource: c.Resource, Role: c.Role, Node: c.Node, Score: &sc}
}

// Describe is a one-line description for events and the CLI.
func (c *OperatorConstraint) Describe() string {
	role := ""
	if c.Role != "" {
		role = ", " + c.Role + " role"
	}
	return fmt.Sprintf("%s (%s %s on %s%s)", c.ID, c.Resource, ScoreString(c.Score()), c.Node, role)
}

// ScoreString writes a score the way Pacemaker does (+INFINITY, -INFINITY).
func ScoreString(s spec.Score) string {
	switch s {
	case spec.Infinity:
		return "+INFINITY"
	case -spec.Infinity:
		return "-INFINITY"
	}
	return fmt.Sprint(int64(s))
}

// OperatorConstraints returns the constraints not expired at now, sorted
// by ID (for status and resource show). A zero now returns all of them.
func (s *State) OperatorConstraints(now time.Time) []OperatorConstraint {
	out := make([]OperatorConstraint, 0, len(s.Constraints))
	for _, c := range s.Constraints {
		if now.IsZero() || !c.Expired(now) {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// OperatorLocations returns the operator constraints in force at now as
// location constraints for scheduler.Input.Extra (expired ones left out,
// even before the leader has removed them), sorted by ID.
func (s *State) OperatorLocations(now time.Time) []spec.Location {
	var out []spec.Location
	for _, c := range s.OperatorConstraints(now) {
		out = append(out, c.Location())
	}
	return out
}

// ExpiredConstraints returns the IDs of the operator constraints expired at
// now, sorted. The leader proposes ExpireConstraintsCommand(ids) for them.
func (s *State) ExpiredConstraints(now time.Time) []string {
	var out []string
	for id, c := range s.Constraints {
		if c.Expired(now) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// NextConstraintExpiry returns the earliest expiry after now among the
// operator constraints (zero when none expires later): the leader plans
// again then.
func (s *State) NextConstraintExpiry(now time.Time) time.Time {
	var next time.Time
	for _, c := range s.Constraints {
		if !c.Expires.IsZero() && c.Expires.After(now) && (next.IsZero() || c.Expires.Before(next)) {
			next = c.Expires
		}
	}
	return next
}

// ExpireConstraintsCommand is the command that removes the given expired
// constraints; the proposer sets its Time (the leader's now).
func ExpireConstraintsCommand(ids []string) *Command {
	return &Command{Type: CmdConstraintExpire, Author: "lifetime", Operator: &OperatorArgs{IDs: append([]string(nil), ids...)}}
}

// Generation returns the restart generation of a resource (0 until the
// first paceline resource restart). It goes to nodes in
// api.NodeAssignment.Generation.
func (s *State) Generation(resource string) uint64 { return s.Generations[resource] }

// HasResource reports whether name is a resource or a group of the spec.
func (s *State) HasResource(name string) bool {
	_, ok := s.members(name)
	return ok
}

// members returns the resources a name stands for: itself, or a group's members.
func (s *State) members(name string) ([]string, bool) {
	if s.Spec == nil || name == "" {
		return nil, false
	}
	for _, r := range s.Spec.Resources {
		if r.Name == name {
			return []string{name}, true
		}
	}
	for _, g := range s.Spec.Groups {
		if g.Name == name {
			return append([]string(nil), g.Members...), true
		}
	}
	return nil, false
}

// knownNode reports whether a node has joined or is declared in the spec.
func (s *State) knownNode(name string) bool {
	if _, ok := s.Nodes[name]; ok {
		return true
	}
	if s.Spec != nil {
		for _, n := range s.Spec.Nodes {
			if n.Name == name {
				return true
			}
		}
	}
	return false
}

// applyOperator applies the operator commands.
func (s *State) applyOperator(idx uint64, c *Command) Result {
	res := Result{Index: idx}
	reject := func(format string, a ...any) Result {
		res.Err = fmt.Errorf("%w: "+format, append([]any{ErrRejected}, a...)...)
		return res
	}
	op := c.Operator
	if op == nil {
		op = &OperatorArgs{}
	}
	by := orUnknown(c.Author)
	switch c.Type {
	case CmdConstraintAdd:
		oc := op.Constraint
		if oc == nil {
			return reject("constraint-add without a constraint")
		}
		if oc.Kind != KindMove && oc.Kind != KindBan {
			return reject("constraint kind %q is neither move nor ban", oc.Kind)
		}
		if !s.HasResource(oc.Resource) {
			return reject("no resource or group %q in the spec", oc.Resource)
		}
		if !s.knownNode(oc.Node) {
			return reject("unknown node %q", oc.Node)
		}
		if !oc.Expires.IsZero() && !oc.Expires.After(c.Time) {
			return reject("constraint would expire at %s, not after the command's time %s", oc.Expires.Format(time.RFC3339), c.Time.Format(time.RFC3339))
		}
		n := OperatorConstraint{Kind: oc.Kind, Resource: oc.Resource, Node: oc.Node, Role: oc.Role, Created: c.Time, Expires: oc.Expires, Author: c.Author}
		n.ID = ConstraintID(n.Kind, n.Resource, n.Node)
		// Pacemaker's ban names can collide ("a-on-b" on c, "a" on "b-on-c"):
		// a different resource/node pair gets a suffixed ID instead of
		// replacing the other ban. (A move's ID names only the resource: a
		// new move replaces the previous one.)
		for o := s.Constraints[n.ID]; n.Kind == KindBan && o != nil && (o.Resource != n.Resource || o.Node != n.Node); o = s.Constraints[n.ID] {
			n.ID += "+"
		}
		if s.Constraints == nil {
			s.Constraints = map[string]*OperatorConstraint{}
		}
		// A move to a node lifts a ban from it, and a ban on a node
		// replaces a move to it: the two never contradict each other.
		for _, id := range sortedIDs(s.Constraints) {
			o := s.Constraints[id]
			if o.Resource == n.Resource && o.Node == n.Node && o.Kind != n.Kind {
				delete(s.Constraints, id)
				s.addEvent(idx, c.Time, "constraint-removed", o.Node, o.Resource, fmt.Sprintf("operator constraint %s removed: replaced by %s (by %s)", o.ID, n.ID, by), 0)
			}
		}
		s.Constraints[n.ID] = &n
		until := "until cleared"
		if !n.Expires.IsZero() {
			until = "until " + n.Expires.UTC().Format(time.RFC3339) + " (lifetime " + n.Expires.Sub(c.Time).String() + ")"
		}
		s.addEvent(idx, c.Time, "constraint-added", n.Node, n.Resource, fmt.Sprintf("operator constraint %s %s (by %s)", n.Describe(), until, by), 0)
	case CmdConstraintRemove:
		if c.Resource == "" {
			return reject("constraint-remove without a resource")
		}
		for _, id := range sortedIDs(s.Constraints) {
			oc := s.Constraints[id]
			if oc.Resource != c.Resource || (c.NodeName != "" && oc.Node != c.NodeName) {
				continue
			}
			delete(s.Constraints, id)
			s.addEvent(idx, c.Time, "constraint-removed", oc.Node, oc.Resource, fmt.Sprintf("operator constraint %s cleared (by %s)", oc.ID, by), 0)
		}
	case CmdConstraintExpire:
		ids := op.IDs
		if len(ids) == 0 {
			ids = sortedIDs(s.Constraints)
		}
		for _, id := range ids {
			oc := s.Constraints[id]
			if oc == nil || !oc.Expired(c.Time) {
				continue
			}
			delete(s.Constraints, id)
			s.addEvent(idx, c.Time, "constraint-expired", oc.Node, oc.Resource, fmt.Sprintf("operator constraint %s expired (set by %s at %s)", oc.Describe(), orUnknown(oc.Author), oc.Created.UTC().Format(time.RFC3339)), 0)
		}
	case CmdRestart:
		mem, ok := s.members(c.Resource)
		if !ok {
			return reject("no resource or group %q in the spec", c.Resource)
		}
		if s.Generations == nil {
			s.Generations = map[string]uint64{}
		}
		for _, r := range mem {
			s.Generations[r]++
			for _, a := range s.Assignments {
				if a.Resource == r {
					s.NodeVersion[a.Node] = idx
				}
			}
		}
		s.addEvent(idx, c.Time, "resource-restart", "", c.Resource, fmt.Sprintf("restart of %s requested (by %s)", c.Resource, by), 0)
	case CmdResourceSet:
		mem, ok := s.members(c.Resource)
		if !ok {
			return reject("no resource or group %q in the spec", c.Resource)
		}
		next, changed := ResourceSetSpec(s.Spec, mem, *op)
		if !changed {
			return reject("%s already has that setting; nothing to change", c.Resource)
		}
		comment := c.Comment
		if comment == "" {
			comment = "resource-set " + c.Resource
		}
		sub := Command{Type: CmdSetSpec, Time: c.Time, Author: c.Author, Comment: comment, Spec: next}
		return s.apply(idx, &sub)
	default:
		return reject("unknown operator command %q", c.Type)
	}
	return res
}

// ResourceSetSpec returns a copy of sp with the targetRole and managed
// settings of op applied to the named resources, and whether anything
// changed. resource-set applies it; the API uses it to preview the change.
func ResourceSetSpec(sp *spec.Spec, names []string, op OperatorArgs) (*spec.Spec, bool) {
	next, changed := sp.Clone(), false
	in := map[string]bool{}
	for _, m := range names {
		in[m] = true
	}
	for i := range next.Resources {
		r := &next.Resources[i]
		if !in[r.Name] {
			continue
		}
		switch op.TargetRole {
		case "":
		case "default":
			changed = changed || r.TargetRole != ""
			r.TargetRole = ""
		default:
			changed = changed || r.TargetRole != op.TargetRole
			r.TargetRole = op.TargetRole
		}
		if op.Managed != nil {
			var want *bool
			if !*op.Managed {
				f := false
				want = &f
			}
			changed = changed || (r.Managed == nil) != (want == nil) || (r.Managed != nil && *r.Managed != *want)
			r.Managed = want
		}
	}
	return next, changed
}

// Members returns the resources a name stands for: itself, or a group's
// members (ok false: neither a resource nor a group of the spec).
func (s *State) Members(name string) ([]string, bool) { return s.members(name) }

// dropOrphanConstraints removes operator constraints and restart
// generations of resources the spec no longer has (after set-spec), so
// nothing is left behind.
func (s *State) dropOrphanConstraints(idx uint64, t time.Time) {
	for _, id := range sortedIDs(s.Constraints) {
		oc := s.Constraints[id]
		if !s.HasResource(oc.Resource) {
			delete(s.Constraints, id)
			s.addEvent(idx, t, "constraint-removed", oc.Node, oc.Resource, fmt.Sprintf("operator constraint %s removed: %s is no longer in the spec", oc.ID, oc.Resource), 0)
		}
	}
	for r := range s.Generations {
		if !s.HasResource(r) {
			delete(s.Generations, r)
		}
	}
}

// dropNodeConstraints removes operator constraints on a removed node.
func (s *State) dropNodeConstraints(idx uint64, node string, t time.Time) {
	for _, id := range sortedIDs(s.Constraints) {
		oc := s.Constraints[id]
		if oc.Node == node {
			delete(s.Constraints, id)
			s.addEvent(idx, t, "constraint-removed", oc.Node, oc.Resource, fmt.Sprintf("operator constraint %s removed: node %s was removed", oc.ID, node), 0)
		}
	}
}

func sortedIDs(m map[string]*OperatorConstraint) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ConstraintsFor returns the operator constraints of resource in force at
// now (a zero now: all), sorted by ID.
func (s *State) ConstraintsFor(resource string, now time.Time) []OperatorConstraint {
	var out []OperatorConstraint
	for _, c := range s.OperatorConstraints(now) {
		if c.Resource == resource {
			out = append(out, c)
		}
	}
	return out
}

// ResourceNames returns the names of the spec's resources and groups, for
// suggestions.
func (s *State) ResourceNames() []string {
	if s.Spec == nil {
		return nil
	}
	var out []string
	for _, r := range s.Spec.Resources {
		out = append(out, r.Name)
	}
	for _, g := range s.Spec.Groups {
		out = append(out, g.Name)
	}
	sort.Strings(out)
	return out
}
