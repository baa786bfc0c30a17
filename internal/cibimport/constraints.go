package cibimport

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/spec"
)

// refError says why a constraint reference cannot be converted.
type refError struct {
	why       string
	category  string
	placement bool
}

// ref resolves a resource, group, tag or template id to spec names.
func (c *converter) ref(id string) ([]string, *refError) {
	return c.refDepth(id, 0)
}

func (c *converter) refDepth(id string, depth int) ([]string, *refError) {
	if n, ok := c.rep.Resources[id]; ok {
		return []string{n}, nil
	}
	if g, ok := c.gone[id]; ok {
		return nil, &refError{why: id + " has no spec counterpart: " + g.why, category: g.category, placement: g.placement}
	}
	if members, ok := c.m.Tags[id]; ok && depth == 0 {
		var out []string
		for _, mbr := range members {
			ns, err := c.refDepth(mbr, depth+1)
			if err != nil {
				return nil, err
			}
			for _, n := range ns {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
		if len(out) == 0 {
			return nil, &refError{why: "tag " + id + " names no resource", category: CatConstraint, placement: false}
		}
		return out, nil
	}
	if _, ok := c.m.Templates[id]; ok && depth == 0 {
		if len(c.tmplUse[id]) == 0 {
			return nil, &refError{why: "no converted primitive uses template " + id, category: CatConstraint, placement: false}
		}
		return slices.Clone(c.tmplUse[id]), nil
	}
	if id == "" {
		return nil, &refError{why: "a resource reference is missing", category: CatConstraint, placement: false}
	}
	return nil, &refError{why: "no resource, group, tag or template is named " + id + " (Pacemaker ignores the constraint too)", category: CatConstraint, placement: false}
}

func (c *converter) constraints() {
	cons := &spec.Constraints{}
	c.locations(cons)
	c.colocations(cons)
	c.orders(cons)
	if len(cons.Location)+len(cons.Colocation)+len(cons.Order) > 0 {
		c.s.Constraints = cons
	}
}

func (c *converter) promotable(name string) bool {
	i, ok := c.index[name]
	return ok && c.s.Resources[i].Mode == spec.ModePromotable
}

// ---- location ----

func (c *converter) locations(cons *spec.Constraints) {
	for _, l := range c.m.Locations {
		item := func(what, why string, cat string, placement bool) {
			c.add(Item{Category: cat, Element: "rsc_location", ID: l.ID, What: what, Why: why, Placement: placement})
		}
		var targets []string
		setRole := ""
		switch {
		case l.Rsc != "":
			ns, err := c.ref(l.Rsc)
			if err != nil {
				item("rsc="+l.Rsc, err.why, err.category, err.placement && err.category != CatFencing)
				continue
			}
			targets = ns
		case l.RscPattern != "":
			pat, invert := l.RscPattern, false
			if strings.HasPrefix(pat, "!") {
				pat, invert = pat[1:], true
			}
			re, err := regexp.Compile(pat)
			if err != nil {
				item("rsc-pattern="+l.RscPattern, "not a regular expression paceline can read: "+err.Error(), CatConstraint, true)
				continue
			}
			var matched []string
			for _, r := range c.m.Resources {
				if re.MatchString(r.ID) == invert {
					continue
				}
				ns, rerr := c.ref(r.ID)
				if rerr != nil {
					item("rsc-pattern="+l.RscPattern+" matches "+r.ID, rerr.why, rerr.category, rerr.placement && rerr.category != CatFencing)
					continue
				}
				targets = append(targets, ns...)
				matched = append(matched, r.ID)
			}
			if len(matched) > 0 {
				c.note("rsc_location %s: rsc-pattern %s expanded to %s (resources added later are not matched)", l.ID, l.RscPattern, strings.Join(matched, ", "))
			}
			if len(targets) == 0 {
				c.note("rsc_location %s: rsc-pattern %s matches no resource; nothing to convert", l.ID, l.RscPattern)
				continue
			}
		case len(l.Sets) > 0:
			ok := true
			for _, set := range l.Sets {
				if set.Role != "" {
					if setRole != "" && !strings.EqualFold(setRole, set.Role) {
						item("resource sets with different roles", "not supported", CatConstraint, true)
						ok = false
					}
					setRole = set.Role
				}
				for _, id := range set.Resources {
					ns, err := c.ref(id)
					if err != nil {
						item("resource_ref "+id, err.why, err.category, err.placement && err.category != CatFencing)
						continue
					}
					targets = append(targets, ns...)
				}
			}
			if !ok || len(targets) == 0 {
				continue
			}
		default:
			item("", "a location constraint without rsc, rsc-pattern or resource set", CatConstraint, false)
			continue
		}
		if strings.Contains(l.RscPattern, "(") && anyRuleUsesSubmatch(l.Rules) {
			item("rsc-pattern submatches in rules", "rules using %N submatches of rsc-pattern are not supported", CatRule, true)
			continue
		}
		role := ""
		rs := pick(l.Role, setRole)
		if rs != "" {
			ro, ok := roleOf(rs)
			if !ok || ro == spec.RoleStopped {
				item("role="+rs, "not a role a location can have", CatConstraint, true)
				continue
			}
			if ro != spec.RoleStarted {
				role = ro
			}
		}
		disc := ""
		if l.ResourceDiscovery != "" {
			d := strings.ToLower(l.ResourceDiscovery)
			switch d {
			case "always", "never", "exclusive":
				if d != "always" {
					disc = d
				}
			default:
				item("resource-discovery="+l.ResourceDiscovery, "not always, never or exclusive; the default (always) applies", CatConstraint, false)
			}
		}
		var locs []spec.Location
		switch {
		case l.Node != "":
			if len(l.Rules) > 0 {
				item("rules", "a location with node ignores its rules (Pacemaker does the same)", CatConstraint, false)
			}
			if l.Score == nil {
				item("node="+l.Node, "a location with node needs a score", CatConstraint, false)
				continue
			}
			sc := spec.Score(*l.Score)
			locs = append(locs, spec.Location{Node: c.nodeName(l.Node), Score: &sc, Role: role})
		case len(l.Rules) > 0:
			byRole := map[string][]spec.Rule{}
			var roles []string
			failed := false
			for _, r := range l.Rules {
				rr, rrole, err := c.rule(r)
				if err != nil {
					item("rule "+r.ID, err.why, err.category, true)
					failed = true
					continue
				}
				if rrole == "" {
					rrole = role
				}
				if _, ok := byRole[rrole]; !ok {
					roles = append(roles, rrole)
				}
				byRole[rrole] = append(byRole[rrole], rr...)
			}
			if failed {
				c.note("rsc_location %s: the rules that could be converted were kept", l.ID)
			}
			for _, ro := range roles {
				locs = append(locs, spec.Location{Role: ro, Rules: byRole[ro]})
			}
		default:
			item("", "a location constraint with neither node nor rules", CatConstraint, false)
			continue
		}
		for _, t := range targets {
			for _, lo := range locs {
				if lo.Role != "" && !c.promotable(t) {
					c.note("rsc_location %s: role %s on %s, which is not promotable, never applies (as in Pacemaker); left out", l.ID, lo.Role, t)
					continue
				}
				lo.Resource = t
				lo.Discovery = disc
				lo.Rules = slices.Clone(lo.Rules)
				cons.Location = append(cons.Location, lo)
				c.locIDs = append(c.locIDs, l.ID)
			}
		}
	}
	c.dropContradictions(cons)
}

func anyRuleUsesSubmatch(rules []*cib.Rule) bool {
	var walk func(r *cib.Rule) bool
	walk = func(r *cib.Rule) bool {
		for _, e := range r.Expressions {
			if strings.Contains(e.Value, "%") {
				return true
			}
		}
		for _, s := range r.Rules {
			if walk(s) {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		if walk(r) {
			return true
		}
	}
	return false
}

// dropContradictions removes +INFINITY node locations that a -INFINITY one
// for the same resource, node and role overrides (Pacemaker: -INFINITY wins,
// so the result is the same).
func (c *converter) dropContradictions(cons *spec.Constraints) {
	type key struct{ res, node, role string }
	neg := map[key]bool{}
	for _, l := range cons.Location {
		if l.Node != "" && l.Score != nil && *l.Score <= -spec.Infinity {
			neg[key{l.Resource, l.Node, l.Role}] = true
		}
	}
	var keep []spec.Location
	var ids []string
	for i, l := range cons.Location {
		if l.Node != "" && l.Score != nil && *l.Score >= spec.Infinity && neg[key{l.Resource, l.Node, l.Role}] {
			c.note("rsc_location %s: +INFINITY for %s on %s is overridden by a -INFINITY location (as in Pacemaker); left out", c.locIDs[i], l.Resource, l.Node)
			continue
		}
		keep = append(keep, l)
		ids = append(ids, c.locIDs[i])
	}
	cons.Location, c.locIDs = keep, ids
}

// rule converts a top-level location rule into one or more spec rules.
func (c *converter) rule(r *cib.Rule) ([]spec.Rule, string, *refError) {
	if r.ScoreAttribute != "" {
		return nil, "", &refError{why: "score-attribute (a score read from a node attribute) is not supported", category: CatRule}
	}
	var score spec.Score
	if r.Score != nil {
		score = spec.Score(*r.Score)
	}
	role := ""
	if r.Role != "" {
		ro, ok := roleOf(r.Role)
		if !ok || ro == spec.RoleStopped {
			return nil, "", &refError{why: "role " + r.Role + " is not a role a location rule can have", category: CatRule}
		}
		if ro != spec.RoleStarted {
			role = ro
		}
	}
	match, exprs, err := c.flatten(r)
	if err == nil {
		if len(exprs) == 0 {
			return nil, "", &refError{why: "a rule without expressions is not supported", category: CatRule}
		}
		return []spec.Rule{{Score: score, Match: matchOf(match), Expressions: exprs}}, role, nil
	}
	// An "or" of conjunctions with an INFINITY score is the same as one
	// rule per conjunction (matches saturate).
	if strings.EqualFold(r.BooleanOp, "or") && (score >= spec.Infinity || score <= -spec.Infinity) {
		var out []spec.Rule
		for _, e := range r.Expressions {
			x, xerr := c.expression(e)
			if xerr != nil {
				return nil, "", xerr
			}
			out = append(out, spec.Rule{Score: score, Expressions: []spec.Expression{x}})
		}
		for _, sub := range r.Rules {
			m, xs, serr := c.flatten(sub)
			if serr != nil {
				return nil, "", serr
			}
			if len(xs) == 0 {
				continue
			}
			out = append(out, spec.Rule{Score: score, Match: matchOf(m), Expressions: xs})
		}
		if len(out) > 0 {
			return out, role, nil
		}
	}
	return nil, "", err
}

func matchOf(op string) string {
	if strings.EqualFold(op, "or") {
		return "any"
	}
	return ""
}

// flatten turns a rule with sub-rules into one list of expressions when
// every sub-rule uses the same boolean-op (or has one expression).
func (c *converter) flatten(r *cib.Rule) (string, []spec.Expression, *refError) {
	op := strings.ToLower(pick(r.BooleanOp, "and"))
	if op != "and" && op != "or" {
		return "", nil, &refError{why: "boolean-op " + r.BooleanOp + " is not and/or", category: CatRule}
	}
	var out []spec.Expression
	for _, e := range r.Expressions {
		x, err := c.expression(e)
		if err != nil {
			return "", nil, err
		}
		out = append(out, x)
	}
	for _, sub := range r.Rules {
		if sub.ScoreAttribute != "" || (sub.Role != "" && !strings.EqualFold(sub.Role, r.Role)) {
			return "", nil, &refError{why: "a nested rule with its own role or score-attribute is not supported", category: CatRule}
		}
		so, xs, err := c.flatten(sub)
		if err != nil {
			return "", nil, err
		}
		if len(xs) > 1 && so != op {
			return "", nil, &refError{why: "nested rules mixing and/or are not supported (paceline rules are one list matched with all or any)", category: CatRule}
		}
		out = append(out, xs...)
	}
	return op, out, nil
}

func (c *converter) expression(e cib.Expression) (spec.Expression, *refError) {
	switch e.Kind {
	case "expression":
	case "date_expression":
		return spec.Expression{}, &refError{why: "date/time rules are not supported", category: CatDateRule}
	default:
		return spec.Expression{}, &refError{why: e.Kind + " is not supported in a location rule", category: CatRule}
	}
	if e.Attribute == "" {
		return spec.Expression{}, &refError{why: "an expression without attribute", category: CatRule}
	}
	if strings.HasPrefix(e.Attribute, "#") && e.Attribute != "#uname" {
		return spec.Expression{}, &refError{why: "built-in attribute " + e.Attribute + " is not supported (only #uname)", category: CatRule}
	}
	if vs := strings.ToLower(e.ValueSource); vs != "" && vs != "literal" {
		return spec.Expression{}, &refError{why: "value-source=" + e.ValueSource + " is not supported", category: CatRule}
	}
	var op string
	switch strings.ToLower(e.Operation) {
	case "lt", "gt", "lte", "gte", "eq", "ne", "defined":
		op = strings.ToLower(e.Operation)
	case "not_defined", "not-defined":
		op = "notDefined"
	default:
		return spec.Expression{}, &refError{why: "operation " + e.Operation + " is not supported", category: CatRule}
	}
	x := spec.Expression{Attribute: e.Attribute, Op: op}
	unary := op == "defined" || op == "notDefined"
	if unary {
		return x, nil
	}
	x.Value = e.Value
	if e.Attribute == "#uname" {
		x.Value = c.nodeName(e.Value)
	}
	switch strings.ToLower(e.Type) {
	case "":
		if op != "eq" && op != "ne" {
			if _, err := strconv.ParseFloat(e.Value, 64); err == nil {
				x.Type = "number" // Pacemaker compares numbers numerically by default
			}
		}
	case "string":
	case "integer", "int":
		x.Type = "integer"
	case "number":
		x.Type = "number"
	case "version":
		x.Type = "version"
	default:
		return spec.Expression{}, &refError{why: "type " + e.Type + " is not supported", category: CatRule}
	}
	if x.Type == "integer" || x.Type == "number" {
		if _, err := strconv.ParseFloat(strings.TrimSpace(e.Value), 64); err != nil {
			// Pacemaker falls back to comparing strings.
			c.note("expression %s: value %q is not a number; compared as a string (as Pacemaker does)", e.ID, e.Value)
			x.Type = ""
		} else {
			x.Value = strings.TrimSpace(e.Value)
		}
	}
	if x.Value == "" && x.Type != "" && x.Type != "string" {
		return spec.Expression{}, &refError{why: "an expression without value", category: CatRule}
	}
	return x, nil
}

// ---- colocation ----

func colocRole(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	ro, ok := roleOf(v)
	if !ok || ro == spec.RoleStopped {
		return "", false
	}
	if ro == spec.RoleStarted {
		return "", true // Pacemaker treats Started as any role
	}
	return ro, true
}

func (c *converter) colocations(cons *spec.Constraints) {
	for _, co := range c.m.Colocations {
		item := func(what, why string, cat string, placement bool) {
			c.add(Item{Category: cat, Element: "rsc_colocation", ID: co.ID, What: what, Why: why, Placement: placement})
		}
		if na := co.NodeAttribute; na != "" && na != "#uname" {
			item("node-attribute="+na, "colocation by a node attribute other than #uname is not supported", CatConstraint, true)
			continue
		}
		if co.Influence != "" && !cib.IsTrue(co.Influence) {
			item("influence="+co.Influence, "influence=false is not supported; the colocation was converted with full influence", CatConstraint, true)
		}
		var score spec.Score
		if co.Score != nil {
			score = spec.Score(*co.Score)
		} else if len(co.Sets) == 0 {
			item("score", "a colocation without score has score 0 and no effect (as in Pacemaker); not converted", CatConstraint, false)
			continue
		}
		if len(co.Sets) == 0 {
			deps, err := c.ref(co.Rsc)
			if err != nil {
				item("rsc="+co.Rsc, err.why, err.category, true)
				continue
			}
			prims, err := c.ref(co.WithRsc)
			if err != nil {
				item("with-rsc="+co.WithRsc, err.why, err.category, true)
				continue
			}
			dr, ok1 := colocRole(co.RscRole)
			pr, ok2 := colocRole(co.WithRscRole)
			if !ok1 || !ok2 {
				item("rsc-role="+co.RscRole+" with-rsc-role="+co.WithRscRole, "not roles a colocation can have", CatConstraint, true)
				continue
			}
			if c.isGroupRef(co.Rsc) || c.isGroupRef(co.WithRsc) {
				// Pacemaker turns a tag or template into a non-sequential
				// set (and the other side into a set of one).
				if overlaps(deps, prims) {
					item("tag or template reference", "a resource would be colocated with itself", CatConstraint, true)
					continue
				}
				if (dr != "" && !allPromotable(c, deps)) || (pr != "" && !allPromotable(c, prims)) {
					item("roles", "a role on resources that are not promotable never matches; not converted", CatConstraint, false)
					continue
				}
				cons.Colocation = append(cons.Colocation, spec.Colocation{Score: score, Sets: []spec.Set{
					{Resources: prims, Sequential: c.tagSequential(co.WithRsc), Role: pr},
					{Resources: deps, Sequential: c.tagSequential(co.Rsc), Role: dr},
				}})
				c.colIDs = append(c.colIDs, co.ID)
				c.note("rsc_colocation %s: tag or template expanded into resource sets (as Pacemaker does)", co.ID)
				continue
			}
			if deps[0] == prims[0] {
				item("", "a resource colocated with itself has no meaning", CatConstraint, false)
				continue
			}
			if (dr != "" && !c.promotable(deps[0])) || (pr != "" && !c.promotable(prims[0])) {
				c.note("rsc_colocation %s: a role on a resource that is not promotable never matches (as in Pacemaker); left out", co.ID)
				continue
			}
			cons.Colocation = append(cons.Colocation, spec.Colocation{Resource: deps[0], With: prims[0], Score: score, Role: dr, WithRole: pr})
			c.colIDs = append(c.colIDs, co.ID)
			continue
		}
		c.colocationSets(cons, co, score, item)
	}
}

func (c *converter) setMembers(set cib.ResourceSet, item func(what, why, cat string, placement bool)) ([]string, bool) {
	var out []string
	for _, id := range set.Resources {
		ns, err := c.ref(id)
		if err != nil {
			item("resource_ref "+id+" in set "+set.ID, err.why, err.category, true)
			return nil, false
		}
		for _, n := range ns {
			if slices.Contains(out, n) {
				item("resource_ref "+id+" in set "+set.ID, "a resource listed twice in a set is not supported", CatConstraint, true)
				return nil, false
			}
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		item("set "+set.ID, "an empty resource set", CatConstraint, false)
		return nil, false
	}
	return out, true
}

func seqOf(v string) *bool {
	if v == "" {
		return nil
	}
	return ptr(cib.IsTrue(v))
}

func (c *converter) colocationSets(cons *spec.Constraints, co cib.Colocation, score spec.Score, item func(what, why, cat string, placement bool)) {
	var sets []spec.Set
	for _, set := range co.Sets {
		if set.Ordering != "" && !strings.EqualFold(set.Ordering, "group") {
			item("ordering="+set.Ordering+" in set "+set.ID, "the deprecated ordering=listed is not supported", CatConstraint, true)
			return
		}
		if set.Score != nil && (co.Score == nil || *set.Score != *co.Score) {
			if co.Score == nil && len(co.Sets) == 1 {
				score = spec.Score(*set.Score)
			} else {
				item("score of set "+set.ID, "a set score different from the constraint score is not supported", CatConstraint, true)
				return
			}
		}
		if set.RequireAll != "" {
			c.note("rsc_colocation %s: require-all of set %s has no meaning for colocations (Pacemaker ignores it too)", co.ID, set.ID)
		}
		members, ok := c.setMembers(set, item)
		if !ok {
			return
		}
		role, ok := colocRole(set.Role)
		if !ok {
			item("role="+set.Role+" in set "+set.ID, "not a role a colocation can have", CatConstraint, true)
			return
		}
		if role != "" {
			for _, m := range members {
				if !c.promotable(m) {
					item("role="+set.Role+" in set "+set.ID, m+" is not promotable, so the role never matches; not converted", CatConstraint, false)
					return
				}
			}
		}
		sets = append(sets, spec.Set{Resources: members, Sequential: seqOf(set.Sequential), Role: role})
	}
	if len(sets) == 0 {
		return
	}
	if score == 0 && co.Score == nil {
		item("score", "a colocation without score has score 0 and no effect (as in Pacemaker); not converted", CatConstraint, false)
		return
	}
	// Negative scores: Pacemaker anti-colocates every member of a
	// sequential set with every earlier one (not only its neighbour).
	if score < 0 {
		for _, s := range sets {
			if (s.Sequential == nil || *s.Sequential) && len(s.Resources) > 2 {
				if len(sets) > 1 {
					item("", "a negative colocation of several sets with more than two resources in one set is not supported", CatConstraint, true)
					return
				}
				for i := 1; i < len(s.Resources); i++ {
					for j := 0; j < i; j++ {
						cons.Colocation = append(cons.Colocation, spec.Colocation{Resource: s.Resources[i], With: s.Resources[j], Score: score, Role: s.Role, WithRole: s.Role})
						c.colIDs = append(c.colIDs, co.ID)
					}
				}
				c.note("rsc_colocation %s: negative set expanded into pairwise colocations (as Pacemaker interprets it)", co.ID)
				return
			}
		}
		if len(sets) == 1 && (sets[0].Sequential != nil && !*sets[0].Sequential) {
			c.note("rsc_colocation %s: a non-sequential set with a negative score relates nothing (as in Pacemaker); left out", co.ID)
			return
		}
	}
	if len(sets) == 1 && len(sets[0].Resources) == 1 {
		c.note("rsc_colocation %s: a single resource relates to nothing; left out", co.ID)
		return
	}
	// Pacemaker places each set with the set after it; paceline places
	// each set with the set before it: reverse the order.
	if len(sets) > 1 {
		slices.Reverse(sets)
		c.note("rsc_colocation %s: resource sets listed in reverse order (paceline colocates each set with the one before it, Pacemaker with the one after it)", co.ID)
	}
	cons.Colocation = append(cons.Colocation, spec.Colocation{Score: score, Sets: sets})
	c.colIDs = append(c.colIDs, co.ID)
}

// ---- order ----

func orderAction(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return "", true
	case "start":
		return "start", true
	case "stop":
		return "stop", true
	case "promote":
		return "promote", true
	case "demote":
		return "demote", true
	}
	return "", false
}

func (c *converter) orders(cons *spec.Constraints) {
	for _, o := range c.m.Orders {
		item := func(what, why string, cat string, placement bool) {
			c.add(Item{Category: cat, Element: "rsc_order", ID: o.ID, What: what, Why: why, Placement: placement})
		}
		kind := ""
		switch strings.ToLower(o.Kind) {
		case "mandatory":
		case "optional":
			kind = spec.OrderOptional
		case "serialize":
			kind = spec.OrderSerialize
		case "":
			if o.Score != nil && *o.Score == 0 {
				kind = spec.OrderOptional
			}
		default:
			item("kind="+o.Kind, "not Mandatory, Optional or Serialize", CatConstraint, true)
			continue
		}
		var sym *bool
		if o.Symmetrical != "" {
			sym = ptr(cib.IsTrue(o.Symmetrical))
		}
		if len(o.Sets) == 0 {
			firsts, err := c.ref(o.First)
			if err != nil {
				item("first="+o.First, err.why, err.category, true)
				continue
			}
			thens, err := c.ref(o.Then)
			if err != nil {
				item("then="+o.Then, err.why, err.category, true)
				continue
			}
			fa, ok1 := orderAction(o.FirstAction)
			ta, ok2 := orderAction(o.ThenAction)
			if !ok1 || !ok2 {
				item("first-action="+o.FirstAction+" then-action="+o.ThenAction, "actions must be start, stop, promote or demote", CatConstraint, true)
				continue
			}
			if c.isGroupRef(o.First) || c.isGroupRef(o.Then) {
				// Pacemaker turns a tag or template into a non-sequential
				// set (and the other side into a set of one).
				if overlaps(firsts, thens) {
					item("tag or template reference", "a resource would be ordered after itself", CatConstraint, true)
					continue
				}
				tact := pick(ta, pick(fa, "start"))
				okAct := true
				for _, n := range firsts {
					okAct = okAct && c.actionOK(n, pick(fa, "start"))
				}
				for _, n := range thens {
					okAct = okAct && c.actionOK(n, tact)
				}
				if !okAct {
					item("actions", "promote/demote of a resource that is not promotable never happens; not converted", CatConstraint, true)
					continue
				}
				cons.Order = append(cons.Order, spec.Order{Kind: kind, Symmetrical: sym, Sets: []spec.Set{
					{Resources: firsts, Sequential: c.tagSequential(o.First), Action: fa},
					{Resources: thens, Sequential: c.tagSequential(o.Then), Action: tact},
				}})
				c.ordIDs = append(c.ordIDs, o.ID)
				c.note("rsc_order %s: tag or template expanded into resource sets (as Pacemaker does)", o.ID)
				continue
			}
			if firsts[0] == thens[0] {
				item("", "a resource ordered after itself has no meaning", CatConstraint, false)
				continue
			}
			if !c.actionOK(firsts[0], pick(fa, "start")) || !c.actionOK(thens[0], pick(ta, pick(fa, "start"))) {
				item("actions", "promote/demote of a resource that is not promotable never happens; not converted", CatConstraint, true)
				continue
			}
			if o.RequireAll != "" && !cib.IsTrue(o.RequireAll) {
				// Then may start once any instance of first runs: the set
				// form says so.
				cons.Order = append(cons.Order, spec.Order{Kind: kind, Symmetrical: sym, Sets: []spec.Set{
					{Resources: firsts[:1], RequireAll: ptr(false), Action: fa},
					{Resources: thens[:1], Action: pick(ta, pick(fa, "start"))},
				}})
				c.ordIDs = append(c.ordIDs, o.ID)
				continue
			}
			cons.Order = append(cons.Order, spec.Order{First: firsts[0], Then: thens[0], FirstAction: fa, ThenAction: ta, Kind: kind, Symmetrical: sym})
			c.ordIDs = append(c.ordIDs, o.ID)
			continue
		}
		var sets []spec.Set
		ok := true
		for _, set := range o.Sets {
			if set.Kind != "" && !strings.EqualFold(set.Kind, pick(o.Kind, "Mandatory")) {
				item("kind="+set.Kind+" in set "+set.ID, "a set kind different from the constraint kind is not supported", CatConstraint, true)
				ok = false
				break
			}
			if set.Role != "" {
				item("role="+set.Role+" in set "+set.ID, "roles in order sets are not converted (use action)", CatConstraint, false)
			}
			members, mok := c.setMembers(set, item)
			if !mok {
				ok = false
				break
			}
			act, aok := orderAction(set.Action)
			if !aok {
				item("action="+set.Action+" in set "+set.ID, "actions must be start, stop, promote or demote", CatConstraint, true)
				ok = false
				break
			}
			for _, m := range members {
				if !c.actionOK(m, pick(act, "start")) {
					item("action="+set.Action+" in set "+set.ID, m+" is not promotable", CatConstraint, true)
					ok = false
				}
			}
			s := spec.Set{Resources: members, Sequential: seqOf(set.Sequential), Action: act}
			if set.RequireAll != "" && !cib.IsTrue(set.RequireAll) {
				s.RequireAll = ptr(false)
			}
			sets = append(sets, s)
		}
		if !ok || len(sets) == 0 {
			continue
		}
		if len(sets) == 1 && len(sets[0].Resources) == 1 {
			c.note("rsc_order %s: a single resource orders nothing; left out", o.ID)
			continue
		}
		cons.Order = append(cons.Order, spec.Order{Kind: kind, Symmetrical: sym, Sets: sets})
		c.ordIDs = append(c.ordIDs, o.ID)
	}
}

func (c *converter) actionOK(name, act string) bool {
	if act == "promote" || act == "demote" {
		return c.promotable(name)
	}
	return true
}

// ---- validation and repair ----

var constraintPathRE = regexp.MustCompile(`^constraints\.(location|colocation|order)\[(\d+)\]`)

// repair validates the spec; constraints that paceline refuses (cycles,
// contradictions) are removed and reported. Anything else that does not
// validate is a converter bug, reported as CatInternal.
func (c *converter) repair() {
	for round := 0; round < 1000; round++ {
		err := c.s.Validate()
		if err == nil {
			return
		}
		verr, ok := err.(*spec.Error)
		if !ok {
			c.add(Item{Category: CatInternal, Element: "spec", Why: "converter bug: " + err.Error(), Placement: true})
			return
		}
		kind, idx, msg := c.firstConstraintError(verr)
		if kind == "" {
			c.add(Item{Category: CatInternal, Element: "spec", Why: "converter bug: the converted spec does not validate: " + err.Error(), Placement: true})
			return
		}
		c.dropConstraint(kind, idx, "paceline refuses it: "+msg)
	}
	c.add(Item{Category: CatInternal, Element: "spec", Why: "converter bug: validation did not converge", Placement: true})
}

// firstConstraintError finds a constraint to drop for the first validation
// error: the one named by its path, or for a cycle reported against a
// group, the last constraint touching the cycle.
func (c *converter) firstConstraintError(verr *spec.Error) (string, int, string) {
	for _, fe := range verr.Errors {
		if m := constraintPathRE.FindStringSubmatch(fe.Path); m != nil {
			i, _ := strconv.Atoi(m[2])
			return m[1], i, fe.Msg
		}
	}
	for _, fe := range verr.Errors {
		if !strings.Contains(fe.Msg, "cycle") {
			continue
		}
		kind := "colocation"
		if strings.Contains(fe.Msg, "order cycle") {
			kind = "order"
		}
		names := cycleNames(fe.Msg)
		if c.s.Constraints == nil {
			continue
		}
		if kind == "order" {
			for i := len(c.s.Constraints.Order) - 1; i >= 0; i-- {
				if touches(c.s.Constraints.Order[i].First, c.s.Constraints.Order[i].Then, c.s.Constraints.Order[i].Sets, names, c.s) {
					return kind, i, fe.Msg
				}
			}
		} else {
			for i := len(c.s.Constraints.Colocation) - 1; i >= 0; i-- {
				co := c.s.Constraints.Colocation[i]
				if co.Score > 0 && touches(co.Resource, co.With, co.Sets, names, c.s) {
					return kind, i, fe.Msg
				}
			}
		}
	}
	return "", 0, ""
}

// cycleNames extracts the resource names of "… cycle a → b → a: …".
func cycleNames(msg string) map[string]bool {
	out := map[string]bool{}
	_, rest, ok := strings.Cut(msg, "cycle ")
	if !ok {
		return out
	}
	rest, _, _ = strings.Cut(rest, ": ")
	for _, p := range strings.Split(rest, " → ") {
		f := strings.Fields(p)
		if len(f) > 0 {
			out[f[0]] = true
		}
	}
	return out
}

func touches(a, b string, sets []spec.Set, names map[string]bool, s *spec.Spec) bool {
	groupOf := s.GroupOf()
	hit := func(n string) bool {
		if names[n] {
			return true
		}
		for _, g := range s.Groups {
			if g.Name == n {
				for _, m := range g.Members {
					if names[m] {
						return true
					}
				}
			}
		}
		if g := groupOf[n]; g != nil {
			for _, m := range g.Members {
				if names[m] {
					return true
				}
			}
		}
		return false
	}
	if hit(a) || hit(b) {
		return true
	}
	for _, st := range sets {
		for _, r := range st.Resources {
			if hit(r) {
				return true
			}
		}
	}
	return false
}

func (c *converter) dropConstraint(kind string, i int, why string) {
	cons := c.s.Constraints
	var id, what string
	switch kind {
	case "location":
		if i >= len(cons.Location) {
			return
		}
		id, what = c.locIDs[i], "location of "+cons.Location[i].Resource
		cons.Location = slices.Delete(cons.Location, i, i+1)
		c.locIDs = slices.Delete(c.locIDs, i, i+1)
	case "colocation":
		if i >= len(cons.Colocation) {
			return
		}
		co := cons.Colocation[i]
		id, what = c.colIDs[i], describeColoc(co)
		cons.Colocation = slices.Delete(cons.Colocation, i, i+1)
		c.colIDs = slices.Delete(c.colIDs, i, i+1)
	case "order":
		if i >= len(cons.Order) {
			return
		}
		o := cons.Order[i]
		id, what = c.ordIDs[i], describeOrder(o)
		cons.Order = slices.Delete(cons.Order, i, i+1)
		c.ordIDs = slices.Delete(c.ordIDs, i, i+1)
	}
	c.add(Item{Category: CatConstraint, Element: "rsc_" + kind, ID: id, What: what, Why: why, Placement: true})
	if len(cons.Location)+len(cons.Colocation)+len(cons.Order) == 0 {
		c.s.Constraints = nil
	}
}

func describeColoc(co spec.Colocation) string {
	if len(co.Sets) == 0 {
		return fmt.Sprintf("%s with %s (%s)", co.Resource, co.With, co.Score)
	}
	return fmt.Sprintf("sets %s (%s)", setsString(co.Sets), co.Score)
}

func describeOrder(o spec.Order) string {
	if len(o.Sets) == 0 {
		return fmt.Sprintf("%s %s then %s %s", pick(o.FirstAction, "start"), o.First, pick(o.ThenAction, pick(o.FirstAction, "start")), o.Then)
	}
	return "sets " + setsString(o.Sets)
}

func setsString(sets []spec.Set) string {
	var parts []string
	for _, s := range sets {
		parts = append(parts, "["+strings.Join(s.Resources, " ")+"]")
	}
	return strings.Join(parts, " ")
}

func sortStrings(s []string) { sort.Strings(s) }

// isGroupRef reports a tag or template id (one that names several resources).
func (c *converter) isGroupRef(id string) bool {
	if _, ok := c.rep.Resources[id]; ok {
		return false
	}
	if _, ok := c.m.Tags[id]; ok {
		return true
	}
	_, ok := c.m.Templates[id]
	return ok
}

// tagSequential is the sequential flag of the set Pacemaker makes of a
// constraint side: false for a tag or template, the default otherwise.
func (c *converter) tagSequential(id string) *bool {
	if c.isGroupRef(id) {
		return ptr(false)
	}
	return nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func allPromotable(c *converter, names []string) bool {
	for _, n := range names {
		if !c.promotable(n) {
			return false
		}
	}
	return true
}
