package spec

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	placementStrategies = enum{"placementStrategy", []string{PlacementDefault, PlacementUtilization, PlacementBalanced, PlacementMinimal}, nil}
	multipleActives     = enum{"multipleActive", []string{MultipleStopStart, MultipleStopOnly, MultipleBlock, MultipleStopUnexpected}, nil}
	opNames             = enum{"operation", []string{"monitor", "start", "stop", "promote", "demote", "notify", "reload-agent"}, []string{"migrate_to", "migrate_from"}}
	constraintRoles     = enum{"role", []string{RoleStarted, RolePromoted, RoleUnpromoted}, nil}
	opRoles             = enum{"role", []string{RolePromoted, RoleUnpromoted}, nil}
	discoveries         = enum{"discovery", []string{"always", "never", "exclusive"}, nil}
	matches             = enum{"match", []string{"all", "any"}, nil}
	exprOps             = enum{"op", []string{"eq", "ne", "lt", "gt", "lte", "gte", "defined", "notDefined"}, nil}
	exprTypes           = enum{"type", []string{"string", "integer", "number", "version"}, nil}
	orderKinds          = enum{"kind", []string{OrderMandatory, OrderOptional, OrderSerialize}, nil}
	actions             = enum{"action", []string{"start", "stop", "promote", "demote"}, nil}
)

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validatePolicy checks what the resource manager adds: classes beyond
// process, operations, promotable settings, nodes, groups and constraints.
func (v *validator) validatePolicy(s *Spec) {
	c := &s.Cluster
	if is := placementStrategies.check(c.PlacementStrategy); is != nil {
		v.add("cluster.placementStrategy", "%s", is.msg)
	}
	if c.BatchLimit < 0 {
		v.add("cluster.batchLimit", "must be 0 or more (0: no limit)")
	}
	if st := c.Stickiness; st != nil && (*st < -maxStickiness || *st > maxStickiness) {
		v.add("cluster.stickiness", "%d is out of range (write a number from %d to %d)", *st, -maxStickiness, maxStickiness)
	}
	nodeSeen := map[string]int{}
	for i, n := range s.Nodes {
		p := fmt.Sprintf("nodes[%d]", i)
		if is := checkNodeName(n.Name); is != nil {
			v.add(p+".name", "%s", is.msg)
		} else if j, dup := nodeSeen[n.Name]; dup {
			v.add(p+".name", "node %s is listed twice (also nodes[%d])", quote(n.Name), j)
		} else {
			nodeSeen[n.Name] = i
		}
		for _, k := range sortedKeys(n.Attributes) {
			if k == "" || strings.HasPrefix(k, "#") {
				v.add(p+".attributes."+k, "%s is not a valid attribute name (not empty, not starting with '#': those are built in, like #uname)", quote(k))
			}
		}
		for k, val := range n.Capacity {
			if val < 0 {
				v.add(p+".capacity."+k, "must be 0 or more")
			}
		}
	}
	resources := map[string]*Resource{}
	for i := range s.Resources {
		r := &s.Resources[i]
		resources[r.Name] = r
		v.resourcePolicy(fmt.Sprintf("resources[%d]", i), r)
	}
	// Groups.
	names := map[string]string{} // resource or group name → what it is
	for _, r := range s.Resources {
		names[r.Name] = "resource"
	}
	inGroup := map[string]string{}
	for i, g := range s.Groups {
		p := fmt.Sprintf("groups[%d]", i)
		if g.Name == "" {
			v.add(p+".name", "name is required (e.g. name: db-stack)")
		} else if is := checkName(g.Name, "group name"); is != nil {
			v.add(p+".name", "%s", is.msg)
		} else if what, dup := names[g.Name]; dup {
			v.add(p+".name", "%s is already the name of a %s; resource and group names must be unique together", quote(g.Name), what)
		} else {
			names[g.Name] = "group"
		}
		if len(g.Members) == 0 {
			v.add(p+".members", "a group needs at least one member (a list of resource names, started in that order)")
		}
		for j, m := range g.Members {
			mp := fmt.Sprintf("%s.members[%d]", p, j)
			r, ok := resources[m]
			first := resources[g.Members[0]]
			switch {
			case !ok:
				v.add(mp, "no resource is named %s%s", quote(m), suggestName(m, resources))
			case r.Mode == ModePromotable:
				v.add(mp, "%s is promotable; group members must be single, or all clones (a cloned group), not promotable", quote(m))
			case j > 0 && first != nil && first.Clone() != r.Clone():
				v.add(mp, "%s is a %s resource but %s is %s: a group's members are all single, or all clones (a cloned group)", quote(m), cmp.Or(r.Mode, ModeSingle), quote(first.Name), cmp.Or(first.Mode, ModeSingle))
			case j > 0 && first != nil && r.Clone() && (first.Replicas != r.Replicas || first.MaxPerNode != r.MaxPerNode):
				v.add(mp, "%s has replicas %d and maxPerNode %d but %s has %d and %d: the members of a cloned group run together, so they need the same counts", quote(m), r.Replicas, r.MaxPerNode, quote(first.Name), first.Replicas, first.MaxPerNode)
			case inGroup[m] != "" && inGroup[m] != g.Name:
				v.add(mp, "%s is already a member of group %s; a resource belongs to at most one group", quote(m), quote(inGroup[m]))
			case slices.Index(g.Members, m) < j:
				v.add(mp, "%s is listed twice", quote(m))
			default:
				inGroup[m] = g.Name
			}
		}
	}
	if s.Constraints != nil {
		v.constraints(s, names, resources)
	}
}

func suggestName(n string, resources map[string]*Resource) string {
	keys := make([]string, 0, len(resources))
	for k := range resources {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if s := suggest(n, keys); s != "" {
		return " (did you mean " + s + "?)"
	}
	return ""
}

func (v *validator) resourcePolicy(p string, r *Resource) {
	info, cerr := ParseClass(r.Class)
	if r.Class != "" && cerr != nil {
		v.add(p+".class", "%s", cerr.Error())
	}
	if info.Script() {
		for _, k := range sortedKeys(r.Params.Values) {
			if info.Kind == KindOCF && !paramNameRE.MatchString(k) {
				v.add(p+".params."+k, "%s is not a valid OCF parameter name (letters, digits and '_'; it becomes OCF_RESKEY_%s)", quote(k), k)
			}
		}
		if info.Kind != KindOCF && info.Kind != KindVIP && len(r.Params.Values) > 0 {
			v.add(p+".params", "class %s takes no params (%s scripts and units have no parameters; configure them in their own files)", r.Class, info.Kind)
		}
		if r.Health != nil {
			v.add(p+".health", "health is for class process; class %s is checked by its monitor operation (operations: [{name: monitor, interval: 10s}])", r.Class)
		}
	}
	v.vipPolicy(p, r, info)
	if r.Mode == ModePromotable && info.Kind != "" && info.Kind != KindOCF {
		v.add(p+".mode", "mode promotable needs an OCF agent that implements promote and demote (class ocf:PROVIDER:TYPE); class %s cannot be promoted", r.Class)
	}
	if r.Mode != ModePromotable {
		for _, f := range []struct {
			name string
			val  int
		}{{"promotedMax", r.PromotedMax}, {"promotedMaxPerNode", r.PromotedMaxPerNode}} {
			if f.val != 0 {
				v.add(p+"."+f.name, "%s needs mode: promotable", f.name)
			}
		}
		if r.TargetRole == RolePromoted || r.TargetRole == RoleUnpromoted {
			v.add(p+".targetRole", "targetRole %s needs mode: promotable (use started or stopped)", r.TargetRole)
		}
	}
	if r.PromotedMax < 0 || r.PromotedMaxPerNode < 0 {
		v.add(p+".promotedMax", "must be 0 or more")
	}
	if !r.Clone() {
		if r.Interleave {
			v.add(p+".interleave", "interleave needs mode: clone or promotable")
		}
		if r.Notify {
			v.add(p+".notify", "notify needs mode: clone or promotable")
		}
	}
	if r.Notify && info.Kind != "" && info.Kind != KindOCF {
		v.add(p+".notify", "notify needs an OCF agent (class ocf:PROVIDER:TYPE); class %s has no notify action", r.Class)
	}
	if is := multipleActives.check(r.MultipleActive); is != nil {
		v.add(p+".multipleActive", "%s", is.msg)
	}
	for k, val := range r.Utilization {
		if val < 0 {
			v.add(p+".utilization."+k, "must be 0 or more")
		}
	}
	if r.OnFail == OnFailDemote && r.Mode != ModePromotable {
		v.add(p+".onFail", "onFail demote needs mode: promotable")
	}
	type opKey struct {
		name, role string
		interval   Duration
	}
	seen := map[opKey]int{}
	for i, o := range r.Operations {
		op := fmt.Sprintf("%s.operations[%d]", p, i)
		if o.Name == "" {
			v.add(op+".name", "name is required (one of %s)", strings.Join(opNames.valid, ", "))
			continue
		}
		if is := opNames.check(o.Name); is != nil {
			v.add(op+".name", "%s", is.msg)
			continue
		}
		if info.Kind == ClassProcess && o.Name != "start" && o.Name != "stop" {
			v.add(op+".name", "class process has only start and stop operations (its monitor is health:)")
		}
		if (o.Name == "promote" || o.Name == "demote") && r.Mode != ModePromotable {
			v.add(op+".name", "%s needs mode: promotable", o.Name)
		}
		if o.Name == "notify" && !r.Notify {
			v.add(op+".name", "a notify operation needs notify: true")
		}
		switch {
		case o.Name == "monitor" && o.Interval <= 0:
			v.add(op+".interval", "a monitor needs an interval above 0 (e.g. interval: 10s); probes run by themselves")
		case o.Name != "monitor" && o.Interval != 0:
			v.add(op+".interval", "only monitor operations have an interval")
		}
		if is := notNegative(o.Timeout); is != nil {
			v.add(op+".timeout", "%s", is.msg)
		}
		if o.OnFail != "" {
			if is := onFails.check(o.OnFail); is != nil {
				v.add(op+".onFail", "%s", is.msg)
			} else if o.OnFail == OnFailDemote && (r.Mode != ModePromotable || (o.Name != "monitor" && o.Name != "promote")) {
				v.add(op+".onFail", "onFail demote is for the monitor or promote operation of a promotable resource")
			}
		}
		if o.Role != "" {
			if is := opRoles.check(o.Role); is != nil {
				v.add(op+".role", "%s", is.msg)
			} else if o.Name != "monitor" || r.Mode != ModePromotable {
				v.add(op+".role", "role is for monitors of a promotable resource (a different interval per role)")
			}
		}
		if o.Depth < 0 {
			v.add(op+".depth", "must be 0 or more")
		}
		k := opKey{o.Name, o.Role, o.Interval}
		if j, dup := seen[k]; dup {
			v.add(op, "operation %s with interval %s is defined twice (also operations[%d]); give each monitor its own interval", o.Name, o.Interval, j)
		} else {
			seen[k] = i
		}
	}
}

func (v *validator) constraints(s *Spec, names map[string]string, resources map[string]*Resource) {
	ref := func(p, n string) bool {
		if n == "" {
			v.add(p, "a resource or group name is required")
			return false
		}
		if _, ok := names[n]; !ok {
			v.add(p, "no resource or group is named %s%s", quote(n), suggestName(n, resources))
			return false
		}
		return true
	}
	promotable := func(n string) bool { r := resources[n]; return r != nil && r.Mode == ModePromotable }
	role := func(p, n, r string) {
		if r == "" {
			return
		}
		if is := constraintRoles.check(r); is != nil {
			v.add(p, "%s", is.msg)
		} else if r != RoleStarted && names[n] != "" && !promotable(n) {
			v.add(p, "role %s needs %s to be promotable", r, quote(n))
		}
	}
	c := s.Constraints
	type locKey struct{ res, node, role string }
	fixed := map[locKey]Score{}
	for i, l := range c.Location {
		p := fmt.Sprintf("constraints.location[%d]", i)
		ref(p+".resource", l.Resource)
		role(p+".role", l.Resource, l.Role)
		switch {
		case l.Node != "" && len(l.Rules) > 0:
			v.add(p, "has both node and rules; write one location per node, or one with rules")
		case l.Node == "" && len(l.Rules) == 0:
			v.add(p, "needs node (with score) or rules (e.g. {resource: db, node: ctl1, score: 100})")
		case l.Node != "":
			if is := checkNodeName(l.Node); is != nil {
				v.add(p+".node", "%s", is.msg)
			}
			if l.Score == nil {
				v.add(p+".score", "score is required with node (a number, INFINITY or -INFINITY)")
			} else if *l.Score == Infinity || *l.Score == -Infinity {
				k := locKey{l.Resource, l.Node, l.Role}
				if prev, ok := fixed[k]; ok && prev != *l.Score {
					v.add(p+".score", "contradicts another location: %s is both required (INFINITY) and forbidden (-INFINITY) on %s; remove one", quote(l.Resource), l.Node)
				}
				fixed[k] = *l.Score
			}
		default:
			if l.Score != nil {
				v.add(p+".score", "with rules each rule has its own score; remove this one")
			}
		}
		if is := discoveries.check(l.Discovery); is != nil {
			v.add(p+".discovery", "%s", is.msg)
		}
		for j, ru := range l.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", p, j)
			if is := matches.check(ru.Match); is != nil {
				v.add(rp+".match", "%s", is.msg)
			}
			if len(ru.Expressions) == 0 {
				v.add(rp+".expressions", "a rule needs at least one expression (e.g. {attribute: rack, op: eq, value: a})")
			}
			for k, e := range ru.Expressions {
				ep := fmt.Sprintf("%s.expressions[%d]", rp, k)
				if e.Attribute == "" {
					v.add(ep+".attribute", "attribute is required (a node attribute or label, or #uname for the node name)")
				}
				if e.Op == "" {
					v.add(ep+".op", "op is required (one of %s)", strings.Join(exprOps.valid, ", "))
				} else if is := exprOps.check(e.Op); is != nil {
					v.add(ep+".op", "%s", is.msg)
				}
				if is := exprTypes.check(e.Type); is != nil {
					v.add(ep+".type", "%s", is.msg)
				}
				unary := e.Op == "defined" || e.Op == "notDefined"
				if unary && e.Value != "" {
					v.add(ep+".value", "op %s takes no value", e.Op)
				}
				if !unary && e.Op != "" && e.Value == "" && e.Type != "" && e.Type != "string" {
					v.add(ep+".value", "a value is required for op %s", e.Op)
				}
				if e.Value != "" && (e.Type == "integer" || e.Type == "number") {
					if _, err := strconv.ParseFloat(e.Value, 64); err != nil {
						v.add(ep+".value", "%s is not a number (type %s)", quote(e.Value), e.Type)
					}
				}
			}
		}
	}
	for i, co := range c.Colocation {
		p := fmt.Sprintf("constraints.colocation[%d]", i)
		if len(co.Sets) > 0 {
			if co.Resource != "" || co.With != "" {
				v.add(p, "has both sets and resource/with; use one form")
			}
			v.sets(p, co.Sets, ref, role, false)
			continue
		}
		okA := ref(p+".resource", co.Resource)
		okB := ref(p+".with", co.With)
		if okA && okB && co.Resource == co.With {
			v.add(p+".with", "a resource cannot be colocated with itself")
		}
		role(p+".role", co.Resource, co.Role)
		role(p+".withRole", co.With, co.WithRole)
	}
	for i, o := range c.Order {
		p := fmt.Sprintf("constraints.order[%d]", i)
		if is := orderKinds.check(o.Kind); is != nil {
			v.add(p+".kind", "%s", is.msg)
		}
		if len(o.Sets) > 0 {
			if o.First != "" || o.Then != "" {
				v.add(p, "has both sets and first/then; use one form")
			}
			v.sets(p, o.Sets, ref, func(string, string, string) {}, true)
			continue
		}
		okA := ref(p+".first", o.First)
		okB := ref(p+".then", o.Then)
		if okA && okB && o.First == o.Then {
			v.add(p+".then", "a resource cannot be ordered after itself")
		}
		for _, a := range []struct{ f, val, res string }{{"firstAction", o.FirstAction, o.First}, {"thenAction", o.ThenAction, o.Then}} {
			if is := actions.check(a.val); is != nil {
				v.add(p+"."+a.f, "%s", is.msg)
			} else if (a.val == "promote" || a.val == "demote") && names[a.res] != "" && !promotable(a.res) {
				v.add(p+"."+a.f, "action %s needs %s to be promotable", a.val, quote(a.res))
			}
		}
	}
	if len(v.errs) > 0 {
		return // cycles among broken references would only confuse
	}
	v.relationChecks(s.Relations())
}

func (v *validator) sets(p string, sets []Set, ref func(string, string) bool, role func(string, string, string), order bool) {
	for j, set := range sets {
		sp := fmt.Sprintf("%s.sets[%d]", p, j)
		if len(set.Resources) == 0 {
			v.add(sp+".resources", "a set needs at least one resource")
		}
		for k, n := range set.Resources {
			if ref(fmt.Sprintf("%s.resources[%d]", sp, k), n) {
				role(sp+".role", n, set.Role)
			}
		}
		if !order && set.Action != "" {
			v.add(sp+".action", "action is for order sets")
		}
		if !order && set.RequireAll != nil {
			v.add(sp+".requireAll", "requireAll is for order sets")
		}
		if is := actions.check(set.Action); is != nil {
			v.add(sp+".action", "%s", is.msg)
		}
	}
}

// relationChecks refuses constraints no placement can satisfy: mandatory
// order cycles, colocation cycles and a pair both required and forbidden
// to share a node.
func (v *validator) relationChecks(rel Relations) {
	type pair struct{ a, b string }
	mand := map[pair]string{}
	for _, c := range rel.Colocations {
		if c.Score != Infinity && c.Score != -Infinity {
			continue
		}
		// Roles matter: "with the promoted B" and "never with an
		// unpromoted B" do not contradict each other.
		a, b := c.Dep+"/"+c.DepRole, c.Primary+"/"+c.PrimaryRole
		k := pair{a, b}
		if a > b {
			k = pair{b, a}
		}
		sign := "+"
		if c.Score < 0 {
			sign = "-"
		}
		if prev, ok := mand[k]; ok && prev[:1] != sign {
			v.add(c.Source, "%s and %s must both share a node (INFINITY, %s) and never share one (-INFINITY, %s); remove one", quote(c.Dep), quote(c.Primary), pick(sign == "+", c.Source, prev[1:]), pick(sign == "+", prev[1:], c.Source))
			return
		}
		mand[k] = sign + c.Source
	}
	// Colocation graph: dep → primary for positive scores.
	cg := map[string][]string{}
	csrc := map[pair]string{}
	for _, c := range rel.Colocations {
		if c.Score > 0 {
			cg[c.Dep] = append(cg[c.Dep], c.Primary)
			csrc[pair{c.Dep, c.Primary}] = c.Source
		}
	}
	if cyc := findCycle(cg); cyc != nil {
		v.add(csrc[pair{cyc[0], cyc[1]}], "colocation cycle %s: each resource follows the next, so none can be placed first; remove one of these colocations", strings.Join(cyc, " → "))
	}
	// Order graph over (resource, action) for mandatory orders.
	og := map[string][]string{}
	osrc := map[pair]string{}
	for _, o := range rel.Orders {
		if o.Kind != OrderMandatory {
			continue
		}
		a, b := o.First+" "+o.FirstAction, o.Then+" "+o.ThenAction
		og[a] = append(og[a], b)
		osrc[pair{a, b}] = o.Source
		if o.Symmetrical {
			if ia, ib := inverse(o.ThenAction), inverse(o.FirstAction); ia != "" && ib != "" {
				x, y := o.Then+" "+ia, o.First+" "+ib
				og[x] = append(og[x], y)
				osrc[pair{x, y}] = o.Source
			}
		}
	}
	// An instance starts before it is promoted and is demoted before it stops.
	for n := range og {
		res := n[:strings.IndexByte(n, ' ')]
		og[res+" start"] = append(og[res+" start"], res+" promote")
		og[res+" demote"] = append(og[res+" demote"], res+" stop")
	}
	if cyc := findCycle(og); cyc != nil {
		src := osrc[pair{cyc[0], cyc[1]}]
		if src == "" {
			src = osrc[pair{cyc[len(cyc)-2], cyc[len(cyc)-1]}]
		}
		if src == "" {
			src = "constraints.order"
		}
		v.add(src, "order cycle %s: every action waits for another; remove one of these orders or make it kind: optional", strings.Join(cyc, " → "))
	}
}

func pick(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func inverse(a string) string {
	switch a {
	case "start":
		return "stop"
	case "stop":
		return "start"
	case "promote":
		return "demote"
	case "demote":
		return "promote"
	}
	return ""
}

// findCycle returns a cycle of g as a path whose last element repeats the
// first, or nil. Deterministic: nodes are visited in sorted order.
func findCycle(g map[string][]string) []string {
	nodes := make([]string, 0, len(g))
	for n := range g {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		next := slices.Clone(g[n])
		slices.Sort(next)
		for _, m := range next {
			switch color[m] {
			case grey:
				i := slices.Index(stack, m)
				found = append(slices.Clone(stack[i:]), m)
				return true
			case white:
				if visit(m) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, n := range nodes {
		if color[n] == white && visit(n) {
			return found
		}
	}
	return nil
}
