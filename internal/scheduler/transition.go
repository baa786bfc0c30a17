package scheduler

import (
	"fmt"
	"slices"
	"sort"

	"github.com/paceline/paceline/internal/spec"
)

// Action kinds of a transition.
const (
	OpStart   = "start"
	OpStop    = "stop"
	OpPromote = "promote"
	OpDemote  = "demote"
)

// Action is one step of a transition: Op of a slot on Node. After lists
// the IDs of actions that must complete first.
type Action struct {
	ID       int
	Op       string
	Slot     string // slot key, "name:N"; empty for an unslotted active instance
	Resource string
	Node     string
	After    []int
	// Reason says why (for apply --dry-run and simulate).
	Reason string
}

func (a Action) String() string {
	s := fmt.Sprintf("%s %s on %s", a.Op, a.Slot, a.Node)
	if a.Slot == "" {
		s = fmt.Sprintf("%s %s on %s", a.Op, a.Resource, a.Node)
	}
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// Transition is the set of actions from what runs now to the placement.
// Actions are listed so that each comes after every action it waits for.
type Transition struct {
	Actions []Action
	// Blocked explains starts left out because a mandatory order cannot be
	// satisfied (the first resource will not run); each starts with the
	// slot key ("web:0: start on n2 not done: ...").
	Blocked []string
}

// Runnable returns the actions whose prerequisites are all done: in a
// transition computed from what nodes report, an action still listed is
// not done, so these are the actions with no After.
func (t Transition) Runnable() []Action {
	var out []Action
	for _, a := range t.Actions {
		if len(a.After) == 0 {
			out = append(out, a)
		}
	}
	return out
}

// Plan computes the placement and the transition that reaches it from
// what runs now (Input.Running, or Current when Running is nil).
func Plan(in Input) (Output, Transition) {
	out := Place(in)
	return out, Build(in, out)
}

// Build computes the transition from what runs now to out.
func Build(in Input, out Output) Transition {
	b := &builder{in: in, out: out, byRes: map[string][]int{}}
	if in.Spec == nil {
		return Transition{}
	}
	b.res = map[string]*spec.Resource{}
	for i := range in.Spec.Resources {
		b.res[in.Spec.Resources[i].Name] = &in.Spec.Resources[i]
	}
	running, roles := b.running()
	keys := map[string]bool{}
	for k := range running {
		keys[k] = true
	}
	for k := range out.Desired {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		cur, has := running[k]
		want, wanted := out.Desired[k]
		res := out.Resource[k]
		if res == "" {
			res = resourceOfKey(k)
		}
		curProm := has && roles[k] == spec.RolePromoted
		wantProm := wanted && out.Roles[k] == spec.RolePromoted
		stop := -1
		if has && (!wanted || want != cur) {
			if curProm {
				d := b.add(OpDemote, k, res, cur, "before stopping it")
				stop = b.add(OpStop, k, res, cur, b.stopReason(k, want, wanted), d)
			} else {
				stop = b.add(OpStop, k, res, cur, b.stopReason(k, want, wanted))
			}
		}
		if wanted && (!has || want != cur) {
			reason := "not running"
			if has {
				reason = "moving from " + cur
			}
			var start int
			if stop >= 0 {
				start = b.add(OpStart, k, res, want, reason, stop)
			} else {
				start = b.add(OpStart, k, res, want, reason)
			}
			if wantProm {
				b.add(OpPromote, k, res, want, "best promotion score", start)
			}
			continue
		}
		if wanted && has && want == cur {
			switch {
			case wantProm && !curProm:
				b.add(OpPromote, k, res, want, "best promotion score")
			case !wantProm && curProm:
				b.add(OpDemote, k, res, want, "another instance is preferred, or promotion is no longer allowed")
			}
		}
	}
	// Instances running outside any slot (found by probes) that the
	// placement did not adopt.
	adopted := map[string]bool{}
	for k, n := range running {
		adopted[resourceOfKey(k)+"@"+n] = true
	}
	for _, a := range in.Active {
		if adopted[a.Resource+"@"+a.Node] {
			continue
		}
		// Copies of what paceline must leave alone stay (unmanaged,
		// maintenance, frozen, or multipleActive: block).
		if r := b.res[a.Resource]; r != nil && (!r.IsManaged() || in.Frozen[r.Name] || in.Spec.Cluster.Maintenance || r.MultipleActive == spec.MultipleBlock) {
			continue
		}
		adopted[a.Resource+"@"+a.Node] = true
		b.add(OpStop, "", a.Resource, a.Node, "found running where it should not (probe or multiple-active)")
	}
	b.orders()
	return b.finish()
}

// running returns what runs now: Input.Running (or Current), plus
// instances found outside any slot, counted in the slot the placement
// gives their node (adoption).
func (b *builder) running() (map[string]string, map[string]string) {
	in, out := b.in, b.out
	running, roles := in.Running, in.RunningRoles
	if running == nil {
		running, roles = in.Current, in.Roles
	}
	if len(in.Active) == 0 {
		return running, roles
	}
	r2, ro2 := map[string]string{}, map[string]string{}
	for k, v := range running {
		r2[k] = v
	}
	for k, v := range roles {
		ro2[k] = v
	}
	taken := map[string]bool{}
	for k, n := range r2 {
		taken[resourceOfKey(k)+"@"+n] = true
	}
	desired := make([]string, 0, len(out.Desired))
	for k := range out.Desired {
		desired = append(desired, k)
	}
	sort.Strings(desired)
	for _, a := range in.Active {
		if taken[a.Resource+"@"+a.Node] {
			continue
		}
		for _, k := range desired {
			if _, busy := r2[k]; !busy && out.Resource[k] == a.Resource && out.Desired[k] == a.Node {
				r2[k] = a.Node
				if a.Role == spec.RolePromoted {
					ro2[k] = spec.RolePromoted
				}
				taken[a.Resource+"@"+a.Node] = true
				break
			}
		}
	}
	return r2, ro2
}

func resourceOfKey(k string) string {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == ':' {
			return k[:i]
		}
	}
	return k
}

type builder struct {
	in    Input
	out   Output
	res   map[string]*spec.Resource
	acts  []Action
	byRes map[string][]int
	drop  map[int]string
}

func (b *builder) add(op, slot, res, node, reason string, after ...int) int {
	id := len(b.acts)
	b.acts = append(b.acts, Action{ID: id, Op: op, Slot: slot, Resource: res, Node: node, Reason: reason, After: slices.Clone(after)})
	b.byRes[res] = append(b.byRes[res], id)
	return id
}

func (b *builder) stopReason(k, want string, wanted bool) string {
	if wanted {
		return "moving to " + want
	}
	r := b.res[resourceOfKey(k)]
	switch {
	case r == nil:
		return "no longer in the spec"
	case r.TargetRole == spec.RoleStopped:
		return "targetRole is stopped"
	case b.in.Blocked[r.Name]:
		return "blocked after a failure"
	}
	return "cannot run anywhere now"
}

// willRun reports whether res runs (promoted, for action promote) after the transition.
func (b *builder) willRun(res, action string) bool {
	for k, n := range b.out.Desired {
		if b.out.Resource[k] != res || n == "" {
			continue
		}
		if action == OpPromote && b.out.Roles[k] != spec.RolePromoted {
			continue
		}
		return true
	}
	return false
}

// orders adds the waits that order constraints (and groups) require.
func (b *builder) orders() {
	b.drop = map[int]string{}
	for _, o := range b.in.Spec.Relations().Orders {
		fr, tr := b.res[o.First], b.res[o.Then]
		if fr == nil || tr == nil {
			continue
		}
		interleave := o.Interleave || (fr.Clone() && tr.Clone() && tr.Interleave)
		// then-action waits for first-action (for "any of" orders, for one
		// instance only, and not at all when one already runs).
		if o.AnyOf != 0 {
			b.linkAny(o.First, o.FirstAction, o.Then, o.ThenAction)
		} else {
			b.link(o.First, o.FirstAction, o.Then, o.ThenAction, interleave)
		}
		if o.Kind == spec.OrderMandatory && (o.ThenAction == OpStart || o.ThenAction == OpPromote) && o.AnyOf == 0 {
			// Mandatory: then may only start while first runs.
			if !b.willRun(o.First, o.FirstAction) {
				for _, id := range b.byRes[o.Then] {
					if b.acts[id].Op == o.ThenAction {
						b.drop[id] = fmt.Sprintf("%s %s waits for %s %s (%s), which will not happen", o.Then, o.ThenAction, o.First, o.FirstAction, o.Source)
					}
				}
			}
		}
		if o.Symmetrical {
			if ia, ib := inverseOp(o.ThenAction), inverseOp(o.FirstAction); ia != "" && ib != "" {
				b.link(o.Then, ia, o.First, ib, interleave)
			}
		}
	}
}

// link makes every thenAct action of then wait for every firstAct action
// of first (same node only when interleaved).
func (b *builder) link(first, firstAct, then, thenAct string, sameNode bool) {
	for _, t := range b.byRes[then] {
		if b.acts[t].Op != thenAct {
			continue
		}
		for _, f := range b.byRes[first] {
			if b.acts[f].Op != firstAct || (sameNode && b.acts[f].Node != b.acts[t].Node) {
				continue
			}
			if !slices.Contains(b.acts[t].After, f) {
				b.acts[t].After = append(b.acts[t].After, f)
			}
		}
	}
}

// linkAny makes thenAct actions of then wait for one firstAct action of
// first, unless an instance of first already runs (in the role).
func (b *builder) linkAny(first, firstAct, then, thenAct string) {
	running, roles := b.running()
	for k, n := range running {
		if resourceOfKey(k) == first && n != "" && (firstAct != OpPromote || roles[k] == spec.RolePromoted) {
			return
		}
	}
	one := -1
	for _, f := range b.byRes[first] {
		if b.acts[f].Op == firstAct {
			one = f
			break
		}
	}
	if one < 0 {
		return
	}
	for _, t := range b.byRes[then] {
		if b.acts[t].Op == thenAct && !slices.Contains(b.acts[t].After, one) {
			b.acts[t].After = append(b.acts[t].After, one)
		}
	}
}

func inverseOp(a string) string {
	switch a {
	case OpStart:
		return OpStop
	case OpStop:
		return OpStart
	case OpPromote:
		return OpDemote
	case OpDemote:
		return OpPromote
	}
	return ""
}

// finish drops blocked starts (and the starts and promotions that wait for
// them), breaks any cycle (reported, never silently), renumbers and sorts
// topologically.
func (b *builder) finish() Transition {
	var t Transition
	for changed := true; changed; {
		changed = false
		for i, a := range b.acts {
			if _, ok := b.drop[i]; ok {
				continue
			}
			for _, d := range a.After {
				if why, ok := b.drop[d]; ok && (a.Op == OpStart || a.Op == OpPromote) {
					b.drop[i] = why
					changed = true
					break
				}
			}
		}
	}
	keep := map[int]bool{}
	for i := range b.acts {
		if why, ok := b.drop[i]; ok {
			t.Blocked = append(t.Blocked, fmt.Sprintf("%s: %s on %s not done: %s", b.acts[i].Slot, b.acts[i].Op, b.acts[i].Node, why))
			continue
		}
		keep[i] = true
	}
	// Kahn's algorithm, smallest ID first for determinism.
	indeg := map[int]int{}
	next := map[int][]int{}
	for i := range b.acts {
		if !keep[i] {
			continue
		}
		var after []int
		for _, d := range b.acts[i].After {
			if keep[d] {
				after = append(after, d)
				next[d] = append(next[d], i)
			}
		}
		b.acts[i].After = after
		indeg[i] = len(after)
	}
	var ready []int
	for i := range b.acts {
		if keep[i] && indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	var order []int
	done := map[int]bool{}
	for len(order) < len(keep) {
		if len(ready) == 0 {
			// A cycle (orders contradicting the implicit stop-before-start):
			// release the smallest waiting action and say so.
			for i := range b.acts {
				if keep[i] && !done[i] {
					t.Blocked = append(t.Blocked, fmt.Sprintf("ordering cycle around %s %s on %s: its waits were dropped", b.acts[i].Op, b.acts[i].Slot, b.acts[i].Node))
					b.acts[i].After = nil
					ready = append(ready, i)
					break
				}
			}
		}
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		if done[i] {
			continue
		}
		done[i] = true
		order = append(order, i)
		for _, j := range next[i] {
			indeg[j]--
			if indeg[j] == 0 && !done[j] {
				ready = append(ready, j)
			}
		}
	}
	newID := map[int]int{}
	for n, i := range order {
		newID[i] = n
	}
	for _, i := range order {
		a := b.acts[i]
		a.ID = newID[i]
		var after []int
		for _, d := range a.After {
			if id, ok := newID[d]; ok && slices.Index(order, d) < slices.Index(order, i) {
				after = append(after, id)
			}
		}
		sort.Ints(after)
		a.After = after
		t.Actions = append(t.Actions, a)
	}
	return t
}
