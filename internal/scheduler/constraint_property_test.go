package scheduler

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/paceline/paceline/internal/spec"
)

// genConstrained draws a world with constraints: mandatory and advisory
// colocations and orders (acyclic: always from a later resource to an
// earlier one), location scores and bans, a group, promotable resources
// with promotion scores, and a current placement that is a valid earlier
// placement or noise.
func genConstrained(t *rapid.T) (Input, map[string]int) {
	w := genWorld(t, false)
	sp := w.in.Spec
	for i := range sp.Resources {
		r := &sp.Resources[i]
		if r.Mode == spec.ModeSingle && rare(t, r.Name+".promotable", 20) {
			r.Mode = spec.ModePromotable
			r.Class = "ocf:pacemaker:Stateful"
			r.Params = spec.Params{}
			r.Replicas = rapid.IntRange(1, 3).Draw(t, r.Name+".preplicas")
			r.PromotedMax = rapid.IntRange(1, 2).Draw(t, r.Name+".promotedMax")
			r.PromotedMaxPerNode = 1
		}
		r.Priority = rapid.IntRange(0, 2).Draw(t, r.Name+".priority")
	}
	c := &spec.Constraints{}
	n := len(sp.Resources)
	scores := []spec.Score{spec.Infinity, -spec.Infinity, 50, -50, 200}
	for i := 1; i < n; i++ {
		if rare(t, fmt.Sprintf("coloc%d", i), 40) {
			j := rapid.IntRange(0, i-1).Draw(t, fmt.Sprintf("coloc%d.with", i))
			c.Colocation = append(c.Colocation, spec.Colocation{Resource: sp.Resources[i].Name, With: sp.Resources[j].Name,
				Score: rapid.SampledFrom(scores).Draw(t, fmt.Sprintf("coloc%d.score", i))})
		}
		if rare(t, fmt.Sprintf("order%d", i), 40) {
			j := rapid.IntRange(0, i-1).Draw(t, fmt.Sprintf("order%d.first", i))
			c.Order = append(c.Order, spec.Order{First: sp.Resources[j].Name, Then: sp.Resources[i].Name,
				Kind: rapid.SampledFrom([]string{"", spec.OrderOptional}).Draw(t, fmt.Sprintf("order%d.kind", i))})
		}
	}
	for i := range sp.Resources {
		if rare(t, fmt.Sprintf("loc%d", i), 40) {
			s := rapid.SampledFrom(scores).Draw(t, fmt.Sprintf("loc%d.score", i))
			c.Location = append(c.Location, spec.Location{Resource: sp.Resources[i].Name,
				Node: rapid.SampledFrom(propNodeNames).Draw(t, fmt.Sprintf("loc%d.node", i)), Score: &s})
		}
	}
	// Sometimes an "any of" order set, and a group of two resources of the
	// same kind (single, or clones with equal counts: a cloned group).
	if n >= 3 && rare(t, "anyset", 25) {
		no := false
		c.Order = append(c.Order, spec.Order{Sets: []spec.Set{
			{Resources: []string{sp.Resources[0].Name, sp.Resources[1].Name}, Sequential: &no, RequireAll: &no},
			{Resources: []string{sp.Resources[2].Name}}}})
	}
	if n >= 2 && rare(t, "group", 30) {
		a, b := &sp.Resources[n-2], &sp.Resources[n-1]
		if a.Mode == b.Mode && a.Mode != spec.ModePromotable {
			if a.Clone() {
				b.Replicas, b.MaxPerNode = a.Replicas, a.MaxPerNode
			}
			sp.Groups = []spec.Group{{Name: "g", Members: []string{a.Name, b.Name}}}
		}
	}
	sp.Constraints = c
	if sp.Validate() != nil {
		sp.Groups = nil
	}
	if sp.Validate() != nil {
		// Contradictions (e.g. both ±INFINITY for a pair) are refused at
		// apply; they never reach the scheduler.
		sp.Constraints = nil
	}
	prom := map[string]int{}
	for _, r := range sp.Resources {
		for _, nd := range propNodeNames {
			if rapid.Bool().Draw(t, r.Name+"@"+nd+".pscore") {
				prom[r.Name+"@"+nd] = rapid.IntRange(-5, 20).Draw(t, r.Name+"@"+nd+".pscoreV")
			}
		}
	}
	in := w.in
	in.PromotionScore = func(r, n string) (int, bool) { v, ok := prom[r+"@"+n]; return v, ok }
	return in, prom
}

// Every mandatory constraint holds in the placement, no single resource
// gets two slots, and promotion respects promotedMax.
func TestPropertyConstraintsHonoured(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in, _ := genConstrained(t)
		out := Place(in)
		sp := in.Spec
		nodesOf := func(res string) []string {
			var ns []string
			for k, n := range out.Desired {
				if out.Resource[k] == res {
					ns = append(ns, n)
				}
			}
			return ns
		}
		for _, r := range sp.Resources {
			if r.Exclusive() && len(nodesOf(r.Name)) > 1 {
				t.Fatalf("single resource %s placed %d times", r.Name, len(nodesOf(r.Name)))
			}
			promoted := 0
			for k, role := range out.Roles {
				if out.Resource[k] == r.Name && role == spec.RolePromoted {
					promoted++
				}
			}
			if promoted > max(1, r.PromotedMax) || (r.Mode != spec.ModePromotable && promoted > 0) {
				t.Fatalf("%s promoted %d times (promotedMax %d)", r.Name, promoted, r.PromotedMax)
			}
		}
		if sp.Constraints == nil {
			return
		}
		for _, l := range sp.Constraints.Location {
			if *l.Score <= -spec.Infinity && slices.Contains(nodesOf(l.Resource), l.Node) {
				t.Fatalf("%s placed on %s despite -INFINITY", l.Resource, l.Node)
			}
		}
		for _, c := range sp.Constraints.Colocation {
			dep, prim := nodesOf(c.Resource), nodesOf(c.With)
			for _, d := range dep {
				switch {
				case c.Score >= spec.Infinity && !slices.Contains(prim, d):
					t.Fatalf("%s on %s without %s (INFINITY); %s on %v", c.Resource, d, c.With, c.With, prim)
				case c.Score <= -spec.Infinity && slices.Contains(prim, d):
					t.Fatalf("%s on %s with %s (-INFINITY)", c.Resource, d, c.With)
				}
			}
		}
	})
}

// The transition is well formed: waits point backwards, mandatory orders
// are respected, and applying it (taking the placement as current) leaves
// nothing to do.
func TestPropertyTransition(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in, _ := genConstrained(t)
		out, tr := Plan(in)
		pos := map[int]int{}
		for i, a := range tr.Actions {
			pos[a.ID] = i
			for _, d := range a.After {
				if p, ok := pos[d]; !ok || p >= i {
					t.Fatalf("action %v waits for %d, not listed before it", a, d)
				}
			}
		}
		if in.Spec.Constraints != nil {
			for _, o := range in.Spec.Relations().Orders {
				if o.Kind != spec.OrderMandatory {
					continue
				}
				fr, th := resourceOf(in.Spec, o.First), resourceOf(in.Spec, o.Then)
				perNode := o.Interleave || (fr.Clone() && th.Clone() && th.Interleave)
				for _, a := range tr.Actions {
					if a.Resource != o.Then || a.Op != OpStart {
						continue
					}
					if o.AnyOf != 0 {
						// "Any of": unless one of them already runs, it waits
						// for at least one of their starts.
						running, waits := false, false
						for _, x := range in.Spec.Relations().Orders {
							if x.AnyOf != o.AnyOf || x.Then != o.Then {
								continue
							}
							for k := range in.Current {
								running = running || resourceOfKey(k) == x.First
							}
							for _, b := range tr.Actions {
								waits = waits || (b.Resource == x.First && b.Op == OpStart && slices.Contains(a.After, b.ID))
							}
						}
						if !running && !waits && slices.ContainsFunc(tr.Actions, func(b Action) bool { return b.Resource == o.First && b.Op == OpStart }) {
							t.Fatalf("%v waits for none of its 'any of' firsts (order %s)", a, o.Source)
						}
						continue
					}
					for _, b := range tr.Actions {
						if b.Resource == o.First && b.Op == OpStart && (!perNode || b.Node == a.Node) && !slices.Contains(a.After, b.ID) {
							t.Fatalf("%v does not wait for %v (order %s)", a, b, o.Source)
						}
					}
				}
			}
		}
		// Converged: with the placement as what runs, nothing is left.
		in2 := in
		in2.Current, in2.Roles, in2.Running, in2.RunningRoles, in2.Active = out.Desired, out.Roles, nil, nil, nil
		out2, tr2 := Plan(in2)
		if !reflect.DeepEqual(out.Desired, out2.Desired) {
			t.Fatalf("placement not stable:\nfirst  %v\nsecond %v", out.Desired, out2.Desired)
		}
		if len(tr2.Actions) != 0 {
			t.Fatalf("after the transition there is more to do: %v (roles %v -> %v)", tr2.Actions, out.Roles, out2.Roles)
		}
	})
}

// Same input, same output, whatever the order of nodes.
func TestPropertyConstrainedDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in, _ := genConstrained(t)
		out, tr := Plan(in)
		in2 := in
		in2.Nodes = rapid.Permutation(in.Nodes).Draw(t, "shuffled")
		out2, tr2 := Plan(in2)
		if !reflect.DeepEqual(out, out2) || !reflect.DeepEqual(tr, tr2) {
			t.Fatalf("node order changed the result")
		}
	})
}
