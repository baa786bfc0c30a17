package spec

import "strconv"

// Relations are the constraints between resources with groups and resource
// sets expanded into pairs of resources (never group names). Both the
// validator (cycles, contradictions) and the scheduler use this one expansion.
type Relations struct {
	Colocations []Coloc
	Orders      []Ord
}

// Coloc says Dep is placed relative to Primary.
type Coloc struct {
	Dep, Primary         string
	Score                Score
	DepRole, PrimaryRole string // "" (any), started, promoted, unpromoted
	// Source names where it came from ("constraints.colocation[2]", "groups[0]").
	Source string
}

// Ord says ThenAction of Then follows FirstAction of First.
type Ord struct {
	First, Then             string
	FirstAction, ThenAction string // start, stop, promote, demote
	Kind                    string // mandatory, optional, serialize
	Symmetrical             bool
	// AnyOf is non-zero for orders from a set with requireAll: false: Then
	// may go once any First of the same AnyOf group has done its action.
	AnyOf int
	// Interleave relates the actions per node (a cloned group: each
	// member instance waits for the previous member's instance on its node).
	Interleave bool
	Source     string
}

// GroupOf maps each group member to its group.
func (s *Spec) GroupOf() map[string]*Group {
	m := map[string]*Group{}
	for i := range s.Groups {
		for _, mem := range s.Groups[i].Members {
			if _, ok := m[mem]; !ok {
				m[mem] = &s.Groups[i]
			}
		}
	}
	return m
}

// Relations expands groups and sets into pairs. References to unknown
// names are kept as written (the validator reports them).
func (s *Spec) Relations() Relations {
	var rel Relations
	groups := map[string]*Group{}
	for i := range s.Groups {
		groups[s.Groups[i].Name] = &s.Groups[i]
	}
	// A group is a chain: member i+1 runs with member i and starts after it
	// (per node, for a cloned group).
	cloned := map[string]bool{}
	for _, r := range s.Resources {
		cloned[r.Name] = r.Clone()
	}
	for i, g := range s.Groups {
		src := "groups[" + strconv.Itoa(i) + "]"
		for j := 1; j < len(g.Members); j++ {
			rel.Colocations = append(rel.Colocations, Coloc{Dep: g.Members[j], Primary: g.Members[j-1], Score: Infinity, Source: src})
			rel.Orders = append(rel.Orders, Ord{First: g.Members[j-1], Then: g.Members[j], FirstAction: "start", ThenAction: "start",
				Kind: OrderMandatory, Symmetrical: true, Interleave: cloned[g.Members[j]], Source: src})
		}
	}
	// As a primary (something placed with it, or after it starts) a group
	// is its first member for placement and its last member for order; as
	// a dependent, its first member.
	first := func(n string) string {
		if g, ok := groups[n]; ok && len(g.Members) > 0 {
			return g.Members[0]
		}
		return n
	}
	last := func(n string) string {
		if g, ok := groups[n]; ok && len(g.Members) > 0 {
			return g.Members[len(g.Members)-1]
		}
		return n
	}
	if s.Constraints == nil {
		return rel
	}
	for i, c := range s.Constraints.Colocation {
		src := "constraints.colocation[" + strconv.Itoa(i) + "]"
		if len(c.Sets) == 0 {
			rel.Colocations = append(rel.Colocations, Coloc{Dep: first(c.Resource), Primary: last(c.With), Score: c.Score,
				DepRole: c.Role, PrimaryRole: c.WithRole, Source: src})
			continue
		}
		// Within a sequential set each member follows the previous one;
		// between sets, the next set's head (or every member, when not
		// sequential) follows the previous set's tail (or every member).
		var prev []string
		var prevRole string
		for _, set := range c.Sets {
			role := set.Role
			if seq(set.Sequential) {
				for j := 1; j < len(set.Resources); j++ {
					rel.Colocations = append(rel.Colocations, Coloc{Dep: first(set.Resources[j]), Primary: last(set.Resources[j-1]), Score: c.Score,
						DepRole: role, PrimaryRole: role, Source: src})
				}
			}
			var heads []string
			if seq(set.Sequential) && len(set.Resources) > 0 {
				heads = set.Resources[:1]
			} else {
				heads = set.Resources
			}
			for _, p := range prev {
				for _, h := range heads {
					rel.Colocations = append(rel.Colocations, Coloc{Dep: first(h), Primary: last(p), Score: c.Score,
						DepRole: role, PrimaryRole: prevRole, Source: src})
				}
			}
			if seq(set.Sequential) && len(set.Resources) > 0 {
				prev = set.Resources[len(set.Resources)-1:]
			} else {
				prev = set.Resources
			}
			prevRole = role
		}
	}
	anyOf := 0
	for i, o := range s.Constraints.Order {
		src := "constraints.order[" + strconv.Itoa(i) + "]"
		kind := o.Kind
		if kind == "" {
			kind = OrderMandatory
		}
		sym := kind != OrderSerialize
		if o.Symmetrical != nil {
			sym = *o.Symmetrical
		}
		if len(o.Sets) == 0 {
			rel.Orders = append(rel.Orders, Ord{First: last(o.First), Then: first(o.Then), FirstAction: action(o.FirstAction, "start"),
				ThenAction: action(o.ThenAction, action(o.FirstAction, "start")), Kind: kind, Symmetrical: sym, Source: src})
			continue
		}
		var prev []string
		var prevAction string
		prevAny := 0
		for _, set := range o.Sets {
			act := action(set.Action, "start")
			if seq(set.Sequential) {
				for j := 1; j < len(set.Resources); j++ {
					rel.Orders = append(rel.Orders, Ord{First: last(set.Resources[j-1]), Then: first(set.Resources[j]), FirstAction: act, ThenAction: act,
						Kind: kind, Symmetrical: sym, Source: src})
				}
			}
			heads := set.Resources
			if seq(set.Sequential) && len(set.Resources) > 0 {
				heads = set.Resources[:1]
			}
			for _, h := range heads {
				for _, p := range prev {
					rel.Orders = append(rel.Orders, Ord{First: last(p), Then: first(h), FirstAction: prevAction, ThenAction: act,
						Kind: kind, Symmetrical: sym, AnyOf: prevAny, Source: src})
				}
			}
			prevAny = 0
			if set.RequireAll != nil && !*set.RequireAll && len(set.Resources) > 0 {
				anyOf++
				prevAny = anyOf
			}
			if seq(set.Sequential) && len(set.Resources) > 0 {
				prev = set.Resources[len(set.Resources)-1:]
			} else {
				prev = set.Resources
			}
			prevAction = act
		}
	}
	return rel
}

func seq(b *bool) bool { return b == nil || *b }

func action(a, def string) string {
	if a == "" {
		return def
	}
	return a
}
