package agent

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/scheduler"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// schedulerInput is the one scheduler input builder the leader's
// coordinator also uses (scheduler.FromState): sp (the current spec, or one
// being previewed) against the replicated state at now. apply --dry-run,
// simulate and the operator commands' previews all go through it.
func schedulerInput(s *state.State, sp *spec.Spec, now time.Time) scheduler.Input {
	return scheduler.FromState(s, sp, now)
}

// plan runs the scheduler, turning a panic (the scheduler is a pure
// function, but a bug there must not take the API down) into an error.
func plan(in scheduler.Input) (out scheduler.Output, tr scheduler.Transition, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the scheduler failed on this input: %v (please report it with `paceline simulate --json`)", p)
		}
	}()
	out, tr = scheduler.Plan(in)
	return out, tr, nil
}

func toAPIActions(tr scheduler.Transition) []api.TransitionAction {
	out := []api.TransitionAction{}
	for _, a := range tr.Actions {
		out = append(out, api.TransitionAction{ID: a.ID, Op: a.Op, Slot: a.Slot, Resource: a.Resource, Node: a.Node, After: append([]int(nil), a.After...), Reason: a.Reason})
	}
	return out
}

// planLines lists what would start, stop or move (the short form of a
// transition that apply has always shown).
func planLines(in scheduler.Input, out scheduler.Output) []string {
	keys := map[string]bool{}
	for k := range in.Current {
		keys[k] = true
	}
	for k := range out.Desired {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		cur, want := in.Current[k], out.Desired[k]
		switch {
		case cur == want:
		case cur == "":
			lines = append(lines, fmt.Sprintf("start %s on %s", k, want))
		case want == "":
			lines = append(lines, fmt.Sprintf("stop  %s on %s", k, cur))
		default:
			lines = append(lines, fmt.Sprintf("move  %s from %s to %s", k, cur, want))
		}
	}
	sort.Strings(lines)
	for _, u := range out.Unplaced {
		lines = append(lines, "cannot place "+u)
	}
	return lines
}

// previewed is a plan of the current state for a spec.
type previewed struct {
	in  scheduler.Input
	out scheduler.Output
	tr  scheduler.Transition
}

// preview plans sp (nil: the current spec) against the FSM's state at now.
// The input is built under the FSM's read lock; the scheduler runs outside.
// ok is false when there is no spec.
func (a *Agent) preview(sp *spec.Spec, now time.Time) (p previewed, ok bool, err error) {
	a.fsm.Read(func(s *state.State) {
		if sp == nil {
			sp = s.Spec
		}
		if sp != nil {
			p.in, ok = schedulerInput(s, sp, now), true
		}
	})
	if !ok {
		return p, false, nil
	}
	p.out, p.tr, err = plan(p.in)
	return p, err == nil, err
}

// placedOn returns the nodes the plan places any of the resources on.
func (p previewed) placedOn(resources []string) []string {
	want := map[string]bool{}
	for _, r := range resources {
		want[r] = true
	}
	seen := map[string]bool{}
	var out []string
	for k, n := range p.out.Desired {
		r := p.out.Resource[k]
		if r == "" {
			r, _ = splitSlot(k)
		}
		if want[r] && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// unplaced returns the plan's explanations for slots of the resources it
// cannot place.
func (p previewed) unplaced(resources []string) []string {
	var out []string
	for _, u := range p.out.Unplaced {
		for _, r := range resources {
			if strings.HasPrefix(u, r+":") {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// toAPIConstraint converts an operator constraint, with the time left at now.
func toAPIConstraint(c state.OperatorConstraint, now time.Time) api.OperatorConstraint {
	o := api.OperatorConstraint{ID: c.ID, Kind: c.Kind, Resource: c.Resource, Node: c.Node, Role: c.Role,
		Score: state.ScoreString(c.Score()), Created: c.Created, Author: c.Author}
	if !c.Expires.IsZero() {
		e := c.Expires
		o.Expires = &e
		if left := e.Sub(now); left > 0 {
			o.RemainingMS = left.Milliseconds()
		}
	}
	return o
}

func toAPIConstraints(cs []state.OperatorConstraint, now time.Time) []api.OperatorConstraint {
	out := []api.OperatorConstraint{}
	for _, c := range cs {
		out = append(out, toAPIConstraint(c, now))
	}
	return out
}

// --- names and suggestions ---

func suggest(s string, candidates []string) string { return spec.Suggest(s, candidates) }

func unknownResource(s *state.State, name string) error {
	if s.Spec == nil {
		return fmt.Errorf("%w: no spec applied yet, so there is no resource %q; run `paceline apply -f spec.yaml` first", errs.ErrNotFound, name)
	}
	hint := ""
	if m := suggest(name, s.ResourceNames()); m != "" {
		hint = fmt.Sprintf(" (did you mean %s?)", m)
	}
	return fmt.Errorf("%w: no resource or group %q in the spec%s; `paceline resource list` shows them", errs.ErrNotFound, name, hint)
}

// nodeNames are the nodes that joined plus those the spec declares.
func nodeNames(s *state.State) []string {
	seen := map[string]bool{}
	out := s.NodeNames()
	for _, n := range out {
		seen[n] = true
	}
	if s.Spec != nil {
		for _, n := range s.Spec.Nodes {
			if !seen[n.Name] {
				seen[n.Name] = true
				out = append(out, n.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func checkNode(s *state.State, node string) error {
	names := nodeNames(s)
	for _, n := range names {
		if n == node {
			return nil
		}
	}
	hint := ""
	if m := suggest(node, names); m != "" {
		hint = fmt.Sprintf("did you mean %s? ", m)
	}
	return fmt.Errorf("%w: no node %q (%snodes: %s); `paceline node list` shows them", errs.ErrNotFound, node, hint, strings.Join(names, ", "))
}

// --- resource views ---

type resView struct {
	groupOf map[string]string
	states  map[string]map[string]string
	hasC    bool
	unplace []string
	now     time.Time
}

func (a *Agent) resView() resView {
	v := resView{now: time.Now()}
	if c := a.coordinator(); c != nil {
		v.hasC = true
		v.states = c.InstanceStates()
		v.unplace = c.Unplaced()
	}
	return v
}

func (v resView) summary(s *state.State, r spec.Resource, byRes map[string][]state.Assignment) api.ResourceSummary {
	rs := api.ResourceSummary{Name: r.Name, Class: r.Class, Mode: r.Mode, Group: v.groupOf[r.Name], TargetRole: r.TargetRole,
		Managed: r.Managed == nil || *r.Managed, Maintenance: r.Maintenance, Blocked: s.Blocked[r.Name], Instances: []api.ResourceInstance{},
		Generation: s.Generation(r.Name)}
	for node, f := range s.Fails[r.Name] {
		if rs.FailCount == nil {
			rs.FailCount = map[string]int{}
		}
		rs.FailCount[node] = f.Count
	}
	for _, as := range byRes[r.Name] {
		phase := "unknown"
		if v.hasC {
			phase = "pending"
			if x := v.states[as.Node][as.Key()]; x != "" {
				phase = x
			}
		}
		rs.Instances = append(rs.Instances, api.ResourceInstance{Slot: as.Slot, Node: as.Node, Epoch: as.Epoch, State: phase, Role: as.Role})
	}
	for _, c := range s.OperatorConstraints(v.now) {
		if c.Resource == r.Name || (rs.Group != "" && c.Resource == rs.Group) {
			rs.Constraints = append(rs.Constraints, toAPIConstraint(c, v.now))
		}
	}
	for _, u := range v.unplace {
		if strings.HasPrefix(u, r.Name+":") {
			rs.Unplaced = append(rs.Unplaced, u)
		}
	}
	return rs
}

func byResource(s *state.State) map[string][]state.Assignment {
	m := map[string][]state.Assignment{}
	for _, as := range s.SortedAssignments() {
		m[as.Resource] = append(m[as.Resource], as)
	}
	return m
}

// Resources implements httpapi.Backend.
func (a *Agent) Resources(ctx context.Context) (*api.ResourceList, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	v := a.resView()
	l := &api.ResourceList{Resources: []api.ResourceSummary{}}
	a.fsm.Read(func(s *state.State) {
		l.SpecVersion = s.SpecVersion
		if s.Spec == nil {
			return
		}
		d := s.Spec.WithDefaults()
		v.groupOf = map[string]string{}
		for _, g := range d.Groups {
			if l.Groups == nil {
				l.Groups = map[string][]string{}
			}
			l.Groups[g.Name] = append([]string(nil), g.Members...)
			for _, m := range g.Members {
				v.groupOf[m] = g.Name
			}
		}
		br := byResource(s)
		for _, r := range d.Resources {
			l.Resources = append(l.Resources, v.summary(s, r, br))
		}
	})
	return l, nil
}

// Resource implements httpapi.Backend.
func (a *Agent) Resource(ctx context.Context, name string) (*api.ResourceDetail, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	v := a.resView()
	var out *api.ResourceDetail
	var err error
	a.fsm.Read(func(s *state.State) {
		mem, ok := s.Members(name)
		if !ok {
			err = unknownResource(s, name)
			return
		}
		d := s.Spec.WithDefaults()
		v.groupOf = map[string]string{}
		var group *spec.Group
		for i, g := range s.Spec.Groups {
			for _, m := range g.Members {
				v.groupOf[m] = g.Name
			}
			if g.Name == name {
				group = &s.Spec.Groups[i]
			}
		}
		br := byResource(s)
		det := &api.ResourceDetail{SpecVersion: s.SpecVersion, Events: []api.Event{}}
		var defs []any
		if group != nil {
			det.Name, det.Mode, det.Members = name, "group", append([]string(nil), group.Members...)
			det.Instances = []api.ResourceInstance{}
			det.Managed = true
			det.TargetRole = spec.RoleStarted
			defs = append(defs, map[string]any{"groups": []spec.Group{*group}})
			var raw []spec.Resource
			for _, r := range s.Spec.Resources {
				for _, m := range mem {
					if r.Name == m {
						raw = append(raw, r)
					}
				}
			}
			defs = append(defs, map[string]any{"resources": raw})
			for _, r := range d.Resources {
				if v.groupOf[r.Name] != name {
					continue
				}
				sum := v.summary(s, r, br)
				det.Instances = append(det.Instances, sum.Instances...)
				if !sum.Managed {
					det.Managed = false
				}
				if sum.TargetRole == spec.RoleStopped {
					det.TargetRole = spec.RoleStopped
				}
				for n, c := range sum.FailCount {
					if det.FailCount == nil {
						det.FailCount = map[string]int{}
					}
					det.FailCount[n] += c
				}
				det.Unplaced = append(det.Unplaced, sum.Unplaced...)
			}
			det.Constraints = toAPIConstraints(s.ConstraintsFor(name, v.now), v.now)
		} else {
			for _, r := range d.Resources {
				if r.Name == name {
					det.ResourceSummary = v.summary(s, r, br)
				}
			}
			for _, r := range s.Spec.Resources {
				if r.Name == name {
					defs = append(defs, r)
				}
			}
		}
		var b strings.Builder
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		for _, x := range defs {
			_ = enc.Encode(x)
		}
		_ = enc.Close()
		det.YAML = strings.ReplaceAll(b.String(), "---\n", "")
		names := map[string]bool{name: true}
		for _, m := range mem {
			names[m] = true
		}
		if g := v.groupOf[name]; g != "" {
			names[g] = true
		}
		det.SpecConstraints = specConstraintLines(s.Spec, names)
		for _, m := range mem {
			for _, node := range sortedFailNodes(s.Fails[m]) {
				f := s.Fails[m][node]
				fi := api.FailInfo{Node: node, Count: f.Count, Last: f.Last, Reason: f.Reason}
				if group != nil {
					fi.Resource = m
				}
				det.Fails = append(det.Fails, fi)
			}
		}
		for _, e := range s.EventsAfter(0, 0) {
			if names[e.Resource] {
				det.Events = append(det.Events, toAPIEvent(e))
			}
		}
		if len(det.Events) > 20 {
			det.Events = det.Events[len(det.Events)-20:]
		}
		out = det
	})
	return out, err
}

func sortedFailNodes(m map[string]*state.Fail) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// specConstraintLines describes the spec's constraints naming any of names.
func specConstraintLines(sp *spec.Spec, names map[string]bool) []string {
	if sp == nil || sp.Constraints == nil {
		return nil
	}
	inSets := func(sets []spec.Set) bool {
		for _, st := range sets {
			for _, r := range st.Resources {
				if names[r] {
					return true
				}
			}
		}
		return false
	}
	setsString := func(sets []spec.Set) string {
		var parts []string
		for _, st := range sets {
			parts = append(parts, "["+strings.Join(st.Resources, " ")+"]")
		}
		return strings.Join(parts, " ")
	}
	role := func(r string) string {
		if r == "" {
			return ""
		}
		return " (" + r + ")"
	}
	var out []string
	for i, l := range sp.Constraints.Location {
		if !names[l.Resource] {
			continue
		}
		if l.Node != "" {
			sc := "?"
			if l.Score != nil {
				sc = state.ScoreString(*l.Score)
			}
			out = append(out, fmt.Sprintf("constraints.location[%d]: %s%s on %s: %s", i, l.Resource, role(l.Role), l.Node, sc))
		} else {
			out = append(out, fmt.Sprintf("constraints.location[%d]: %s%s by %d rule(s)", i, l.Resource, role(l.Role), len(l.Rules)))
		}
	}
	for i, c := range sp.Constraints.Colocation {
		switch {
		case len(c.Sets) > 0 && inSets(c.Sets):
			out = append(out, fmt.Sprintf("constraints.colocation[%d]: sets %s: %s", i, setsString(c.Sets), state.ScoreString(c.Score)))
		case names[c.Resource] || names[c.With]:
			out = append(out, fmt.Sprintf("constraints.colocation[%d]: %s%s with %s%s: %s", i, c.Resource, role(c.Role), c.With, role(c.WithRole), state.ScoreString(c.Score)))
		}
	}
	for i, o := range sp.Constraints.Order {
		act := func(a string) string {
			if a == "" {
				return "start"
			}
			return a
		}
		kind := o.Kind
		if kind == "" {
			kind = spec.OrderMandatory
		}
		switch {
		case len(o.Sets) > 0 && inSets(o.Sets):
			out = append(out, fmt.Sprintf("constraints.order[%d]: sets %s (%s)", i, setsString(o.Sets), kind))
		case names[o.First] || names[o.Then]:
			out = append(out, fmt.Sprintf("constraints.order[%d]: %s %s, then %s %s (%s)", i, act(o.FirstAction), o.First, act(o.ThenAction), o.Then, kind))
		}
	}
	return out
}

// FailCounts implements httpapi.Backend.
func (a *Agent) FailCounts(ctx context.Context, name, node string) ([]api.FailInfo, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	out := []api.FailInfo{}
	var err error
	a.fsm.Read(func(s *state.State) {
		mem, ok := s.Members(name)
		if !ok {
			err = unknownResource(s, name)
			return
		}
		if node != "" {
			if err = checkNode(s, node); err != nil {
				return
			}
		}
		for _, m := range mem {
			for _, n := range sortedFailNodes(s.Fails[m]) {
				if node != "" && n != node {
					continue
				}
				f := s.Fails[m][n]
				out = append(out, api.FailInfo{Resource: m, Node: n, Count: f.Count, Last: f.Last, Reason: f.Reason})
			}
		}
	})
	return out, err
}

// --- operator constraints ---

// resourceFacts is what the constraint commands need to know about a resource.
type resourceFacts struct {
	members   []string
	mode      string // single, clone, promotable, group
	running   []string
	promoted  []string
	nodes     []string
	available map[string]bool // online, not standby, not in maintenance
	bans      map[string]bool // nodes with a ban in force for this name
	cur       *spec.Spec
}

func facts(s *state.State, name string, now time.Time) (resourceFacts, error) {
	f := resourceFacts{available: map[string]bool{}, bans: map[string]bool{}, cur: s.Spec}
	mem, ok := s.Members(name)
	if !ok {
		return f, unknownResource(s, name)
	}
	f.members = mem
	f.mode = "group"
	d := s.Spec.WithDefaults()
	for _, r := range d.Resources {
		if r.Name == name {
			f.mode = r.Mode
		}
	}
	seen := map[string]bool{}
	for _, as := range s.SortedAssignments() {
		if as.Resource != mem[0] {
			continue
		}
		if !seen[as.Node] {
			seen[as.Node] = true
			f.running = append(f.running, as.Node)
		}
		if as.Role == spec.RolePromoted {
			f.promoted = append(f.promoted, as.Node)
		}
	}
	f.nodes = nodeNames(s)
	for _, n := range s.Nodes {
		if n.Online && !n.Standby && !n.Maintenance {
			f.available[n.Name] = true
		}
	}
	for _, c := range s.ConstraintsFor(name, now) {
		if c.Kind == state.KindBan && c.Role == "" {
			f.bans[c.Node] = true
		}
	}
	return f, nil
}

// Move implements httpapi.Backend.
func (a *Agent) Move(ctx context.Context, name string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error) {
	return a.constrain(ctx, state.KindMove, name, req, author)
}

// Ban implements httpapi.Backend.
func (a *Agent) Ban(ctx context.Context, name string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error) {
	return a.constrain(ctx, state.KindBan, name, req, author)
}

func (a *Agent) constrain(ctx context.Context, kind, name string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error) {
	var lifetime time.Duration
	if req.Lifetime != "" {
		d, err := api.ParseLifetime(req.Lifetime)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errs.ErrBadRequest, err)
		}
		lifetime = d
	}
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	now := time.Now()
	res := &api.ConstraintResult{}
	oc := &state.OperatorConstraint{Kind: kind, Resource: name, Node: req.Node}
	if lifetime > 0 {
		oc.Expires = now.Add(lifetime)
	}
	var ferr error
	var f resourceFacts
	a.fsm.Read(func(s *state.State) {
		if f, ferr = facts(s, name, now); ferr != nil {
			return
		}
		if req.Node != "" {
			ferr = checkNode(s, req.Node)
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	verb := map[string]string{state.KindMove: "move", state.KindBan: "ban"}[kind]
	clone := f.mode == spec.ModeClone || f.mode == spec.ModePromotable
	if req.Promoted {
		if f.mode != spec.ModePromotable {
			return nil, fmt.Errorf("%w: --promoted applies to promotable resources only and %s is %s; leave --promoted out", errs.ErrBadRequest, name, f.mode)
		}
		oc.Role = spec.RolePromoted
	}
	if req.Node == "" {
		where := f.running
		if req.Promoted {
			where = f.promoted
		}
		switch {
		case req.Promoted && len(where) == 0:
			return nil, fmt.Errorf("%w: %s is not promoted anywhere, so there is no node to %s the promoted role away from; name a node: `paceline resource %s %s NODE --promoted`",
				errs.ErrConflict, name, verb, verb, name)
		case clone && !(req.Promoted && len(where) == 1):
			return nil, fmt.Errorf("%w: %s is a %s with instances on %s: a %s without a node does not say which instance to move. "+
				"Name a node: `paceline resource ban %s NODE` keeps it off NODE, `paceline resource move %s NODE` prefers NODE%s",
				errs.ErrBadRequest, name, f.mode, orNone(where), verb, name, name, promotedHint(f.mode, name))
		case len(where) == 0:
			return nil, fmt.Errorf("%w: %s is not running anywhere, so there is no node to %s it away from; name a node: `paceline resource %s %s NODE`",
				errs.ErrConflict, name, verb, verb, name)
		}
		// pcs and crm_resource: a move without a destination bans the
		// node it runs on.
		oc.Kind, oc.Node = state.KindBan, where[0]
		res.Warnings = append(res.Warnings, fmt.Sprintf("no node given: banning %s from %s, where it runs now", name, where[0]))
	}
	// What the operator may not expect.
	banWarned := false
	if oc.Kind == state.KindMove {
		if !f.available[oc.Node] {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is not available (offline, standby or in maintenance): %s runs elsewhere until it is", oc.Node, name))
		}
		for _, n := range f.running {
			if n == oc.Node && !clone {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s already runs on %s; the constraint keeps it there", name, oc.Node))
			}
		}
	} else if oc.Role == "" {
		bans := map[string]bool{oc.Node: true}
		for n := range f.bans {
			bans[n] = true
		}
		var left, usable []string
		for _, n := range f.nodes {
			if !bans[n] {
				left = append(left, n)
				if f.available[n] {
					usable = append(usable, n)
				}
			}
		}
		banWarned = len(left) == 0 || len(usable) == 0
		switch {
		case len(left) == 0:
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is now banned from every node (%s): it cannot run anywhere until you run `paceline resource clear %s`",
				name, strings.Join(f.nodes, ", "), name))
		case len(usable) == 0:
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s may only run on %s, and none of them is available now: it stays stopped until one is, or until `paceline resource clear %s`",
				name, strings.Join(left, ", "), name))
		}
	}
	var before []state.OperatorConstraint
	a.fsm.Read(func(s *state.State) { before = s.ConstraintsFor(name, time.Time{}) })
	if _, err := a.Propose(ctx, &state.Command{Type: state.CmdConstraintAdd, Time: now, Author: author, Operator: &state.OperatorArgs{Constraint: oc}}); err != nil {
		return nil, err
	}
	id := ""
	a.fsm.Read(func(s *state.State) {
		for _, c := range s.ConstraintsFor(name, time.Time{}) {
			if c.Kind == oc.Kind && c.Node == oc.Node {
				x := toAPIConstraint(c, now)
				res.Added, id = &x, c.ID
			}
		}
		after := map[string]bool{}
		for _, c := range s.ConstraintsFor(name, time.Time{}) {
			after[c.ID] = true
		}
		for _, c := range before {
			if !after[c.ID] || c.ID == id {
				res.Removed = append(res.Removed, toAPIConstraint(c, now))
			}
		}
		res.Active = toAPIConstraints(s.ConstraintsFor(name, now), now)
	})
	if p, ok, _ := a.preview(nil, now); ok {
		res.Transition = toAPIActions(p.tr)
		res.Warnings = append(res.Warnings, planWarnings(p, name, f.members, oc, banWarned, f.available[oc.Node])...)
	}
	return res, nil
}

// planWarnings explains, from the scheduler's plan after the change, what
// the new constraint does not achieve.
func planWarnings(p previewed, name string, members []string, oc *state.OperatorConstraint, banWarned, destAvailable bool) []string {
	var w []string
	if un := p.unplaced(members); len(un) > 0 && !banWarned {
		w = append(w, fmt.Sprintf("the scheduler cannot place %s now: %s", name, strings.Join(un, "; ")))
	}
	if p.in.Spec != nil && p.in.Spec.Cluster.Maintenance {
		w = append(w, "the cluster is in maintenance mode: nothing is started or stopped until it ends")
	}
	on := p.placedOn(members[:1])
	if oc.Kind == state.KindMove && oc.Role == "" && destAvailable && len(on) > 0 {
		found := false
		for _, n := range on {
			found = found || n == oc.Node
		}
		if !found {
			w = append(w, fmt.Sprintf("even so, the scheduler places %s on %s, not on %s: something else rules %s out (a ban, a -INFINITY location or colocation, nodes/nodeLabels, its fail count there); `paceline resource show %s` and `paceline simulate` show what",
				name, strings.Join(on, ", "), oc.Node, oc.Node, name))
		}
	}
	if oc.Kind == state.KindBan && oc.Role == "" {
		for _, n := range on {
			if n == oc.Node {
				w = append(w, fmt.Sprintf("even so, the scheduler keeps %s on %s (the cluster or %s is in maintenance, or %s is unmanaged)", name, n, n, name))
			}
		}
	}
	return w
}

func orNone(nodes []string) string {
	if len(nodes) == 0 {
		return "no node"
	}
	return strings.Join(nodes, ", ")
}

func promotedHint(mode, name string) string {
	if mode != spec.ModePromotable {
		return ""
	}
	return fmt.Sprintf("; to move the promoted role away from where it is promoted: `paceline resource move %s --promoted`", name)
}

// Clear implements httpapi.Backend.
func (a *Agent) Clear(ctx context.Context, name, node, author string) (*api.ConstraintResult, error) {
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	now := time.Now()
	var before []state.OperatorConstraint
	var err error
	a.fsm.Read(func(s *state.State) {
		// A constraint may outlive its resource in a spec being edited;
		// clearing by the constraint's name still works then.
		before = s.ConstraintsFor(name, time.Time{})
		if !s.HasResource(name) && len(before) == 0 {
			err = unknownResource(s, name)
			return
		}
		if node != "" {
			err = checkNode(s, node)
		}
	})
	if err != nil {
		return nil, err
	}
	res := &api.ConstraintResult{Active: []api.OperatorConstraint{}}
	var match []state.OperatorConstraint
	for _, c := range before {
		if node == "" || c.Node == node {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		res.Active = toAPIConstraints(before, now)
		return res, nil
	}
	if _, err := a.Propose(ctx, &state.Command{Type: state.CmdConstraintRemove, Time: now, Author: author, Resource: name, NodeName: node}); err != nil {
		return nil, err
	}
	res.Removed = toAPIConstraints(match, now)
	a.fsm.Read(func(s *state.State) { res.Active = toAPIConstraints(s.ConstraintsFor(name, now), now) })
	if p, ok, _ := a.preview(nil, now); ok {
		res.Transition = toAPIActions(p.tr)
	}
	return res, nil
}

// Restart implements httpapi.Backend.
func (a *Agent) Restart(ctx context.Context, name, author string) (*api.ResourceChange, error) {
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	var err error
	var running []string
	a.fsm.Read(func(s *state.State) {
		var f resourceFacts
		if f, err = facts(s, name, time.Now()); err != nil {
			return
		}
		running = f.running
		d := s.Spec.WithDefaults()
		for _, r := range d.Resources {
			for _, m := range f.members {
				if r.Name != m {
					continue
				}
				if r.Managed != nil && !*r.Managed {
					err = fmt.Errorf("%w: %s is unmanaged: paceline neither stops nor starts it; run `paceline resource manage %s` first", errs.ErrConflict, m, m)
					return
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if len(running) == 0 {
		return nil, fmt.Errorf("%w: %s is not placed on any node, so there is nothing to restart; `paceline resource show %s` says why (disabled? banned? blocked?)", errs.ErrConflict, name, name)
	}
	if _, err := a.Propose(ctx, &state.Command{Type: state.CmdRestart, Time: time.Now(), Author: author, Resource: name}); err != nil {
		return nil, err
	}
	res := &api.ResourceChange{Message: fmt.Sprintf("restart of %s requested on %s", name, strings.Join(running, ", "))}
	a.fsm.Read(func(s *state.State) {
		mem, _ := s.Members(name)
		if len(mem) > 0 {
			res.Generation = s.Generation(mem[0])
		}
	})
	return res, nil
}

// SetResource implements httpapi.Backend: enable, disable, manage and
// unmanage, each a new spec version through the replicated set-spec path.
func (a *Agent) SetResource(ctx context.Context, name, action, author string) (*api.ResourceChange, error) {
	var op state.OperatorArgs
	t, f := true, false
	var done string
	switch action {
	case "enable":
		op.TargetRole, done = "default", "enabled"
	case "disable":
		op.TargetRole, done = spec.RoleStopped, "disabled"
	case "manage":
		op.Managed, done = &t, "managed"
	case "unmanage":
		op.Managed, done = &f, "unmanaged"
	default:
		return nil, fmt.Errorf("%w: unknown resource action %q (enable | disable | manage | unmanage)", errs.ErrBadRequest, action)
	}
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	now := time.Now()
	var cur, next *spec.Spec
	var changed bool
	var err error
	res := &api.ResourceChange{}
	a.fsm.Read(func(s *state.State) {
		mem, ok := s.Members(name)
		if !ok {
			err = unknownResource(s, name)
			return
		}
		cur = s.Spec
		next, changed = state.ResourceSetSpec(s.Spec, mem, op)
	})
	if err != nil {
		return nil, err
	}
	if changed {
		if p, ok, _ := a.preview(next, now); ok {
			res.Transition = toAPIActions(p.tr)
		}
	}
	if !changed || sameSettings(cur, next) {
		res.Message = fmt.Sprintf("%s is already %s; nothing changed", name, done)
		return res, nil
	}
	comment := fmt.Sprintf("paceline resource %s %s", action, name)
	ev := state.Event{Type: "resource-" + action, Resource: name, Message: fmt.Sprintf("%s %s (by %s)", name, done, author)}
	r, err := a.Propose(ctx, &state.Command{Type: state.CmdResourceSet, Time: now, Author: author, Comment: comment, Resource: name, Operator: &op, Events: []state.Event{ev}})
	if err != nil {
		return nil, err
	}
	res.Version = r.Version
	for _, c := range spec.Diff(orEmpty(cur), next) {
		res.Changes = append(res.Changes, c.String())
	}
	res.Message = fmt.Sprintf("%s %s (spec version %d: %s)", name, done, r.Version, comment)
	if action == "unmanage" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("paceline will neither start, stop nor recover %s until `paceline resource manage %s`", name, name))
	}
	return res, nil
}

// sameSettings reports whether the resources of a and b have the same
// effective targetRole and managed settings (managed: true written out and
// left out are the same).
func sameSettings(a, b *spec.Spec) bool {
	eff := func(s *spec.Spec) string {
		var parts []string
		for _, r := range s.Resources {
			parts = append(parts, r.Name+"="+strconv.FormatBool(r.Managed == nil || *r.Managed)+"/"+orDefault(r.TargetRole))
		}
		return strings.Join(parts, ",")
	}
	return eff(a) == eff(b)
}

func orDefault(role string) string {
	if role == "" {
		return spec.RoleStarted
	}
	return role
}

// --- simulate ---

// Simulate implements httpapi.Backend: the scheduler's plan from the
// current state, after the hypothetical changes (nodes down, another spec).
func (a *Agent) Simulate(ctx context.Context, req api.SimulateRequest) (*api.Simulation, error) {
	var sp *spec.Spec
	if strings.TrimSpace(req.Spec) != "" {
		p, err := spec.Parse([]byte(req.Spec))
		if err != nil {
			return nil, err
		}
		sp = p
	}
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	now := time.Now()
	sim := &api.Simulation{NodesDown: req.NodesDown, Resources: []api.SimResource{}, Nodes: []api.Node{}}
	var in scheduler.Input
	var err error
	a.fsm.Read(func(s *state.State) {
		sim.Index, sim.SpecVersion = s.Index, s.SpecVersion
		for _, n := range req.NodesDown {
			if err = checkNode(s, n); err != nil {
				return
			}
		}
		use := s.Spec
		if sp != nil {
			for _, c := range spec.Diff(orEmpty(s.Spec), sp) {
				sim.Changes = append(sim.Changes, c.String())
			}
			use = sp
		}
		if use == nil {
			err = fmt.Errorf("%w: no spec applied yet; pass one with --spec FILE, or run `paceline apply -f spec.yaml`", errs.ErrNotFound)
			return
		}
		in = schedulerInput(s, use, now)
		sim.Constraints = toAPIConstraints(s.OperatorConstraints(now), now)
		for _, name := range s.NodeNames() {
			n := s.Nodes[name]
			sim.Nodes = append(sim.Nodes, api.Node{Name: n.Name, Role: n.Role, APIAddr: n.APIAddr, Online: n.Online, Standby: n.Standby, Maintenance: n.Maintenance, Labels: n.Labels, Since: n.Since})
		}
	})
	if err != nil {
		return nil, err
	}
	down := map[string]bool{}
	for _, n := range req.NodesDown {
		down[n] = true
	}
	for i := range in.Nodes {
		if down[in.Nodes[i].Name] {
			in.Nodes[i].Online = false
		}
	}
	for i := range sim.Nodes {
		if down[sim.Nodes[i].Name] {
			sim.Nodes[i].Online = false
		}
	}
	// On the leader, plan from what nodes report, as the leader does:
	// instances running and their roles, probe finds, promotion scores.
	if c := a.coordinator(); c != nil {
		c.Observe(&in)
		for k, n := range in.Running {
			if down[n] {
				delete(in.Running, k)
				delete(in.RunningRoles, k)
			}
		}
		var active []scheduler.Instance
		for _, x := range in.Active {
			if !down[x.Node] {
				active = append(active, x)
			}
		}
		in.Active = active
	}
	out, tr, err := plan(in)
	if err != nil {
		return nil, err
	}
	sim.Transition = toAPIActions(tr)
	sim.Unplaced = out.Unplaced
	slotsOf := map[string][]string{}
	for k := range in.Current {
		r, _ := splitSlot(k)
		slotsOf[r] = append(slotsOf[r], k)
	}
	for k := range out.Desired {
		if _, ok := in.Current[k]; ok {
			continue
		}
		r := out.Resource[k]
		if r == "" {
			r, _ = splitSlot(k)
		}
		slotsOf[r] = append(slotsOf[r], k)
	}
	for _, r := range in.Spec.Resources {
		sr := api.SimResource{Name: r.Name, Mode: r.Mode, Slots: []api.SimSlot{}}
		keys := slotsOf[r.Name]
		sort.Slice(keys, func(i, j int) bool {
			_, a := splitSlot(keys[i])
			_, b := splitSlot(keys[j])
			return a < b
		})
		for _, k := range keys {
			sr.Slots = append(sr.Slots, api.SimSlot{Slot: k, Current: in.Current[k], CurrentRole: in.Roles[k], Planned: out.Desired[k], PlannedRole: out.Roles[k]})
		}
		sim.Resources = append(sim.Resources, sr)
	}
	return sim, nil
}

// splitSlot splits "name:N".
func splitSlot(k string) (string, int) {
	i := strings.LastIndexByte(k, ':')
	if i < 0 {
		return k, 0
	}
	n, err := strconv.Atoi(k[i+1:])
	if err != nil {
		return k, 0
	}
	return k[:i], n
}
