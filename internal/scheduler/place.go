package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Place computes the desired placement and roles, Pacemaker-style: every
// resource gets a score per node (location constraints and rules,
// stickiness, colocations, fail counts, node state); resources are
// assigned in priority order, each after the resources it is colocated
// with; a resource runs only on a node with a score of 0 or more; clone
// instances spread evenly; promotable instances with the best promotion
// scores are promoted.
func Place(in Input) Output {
	out := Output{Desired: map[string]string{}, Exclusive: map[string]bool{}, Resource: map[string]string{}, Roles: map[string]string{}}
	if in.Spec == nil {
		return out
	}
	p := newPlanner(in, &out)
	p.run()
	p.unrunnable()
	sort.Strings(out.Unplaced)
	return out
}

type slotRef struct {
	res  *spec.Resource
	slot int
	key  string
}

type planner struct {
	in    Input
	out   *Output
	sp    *spec.Spec
	nodes []Node
	node  map[string]*Node
	fails func(string, string) int
	rel   spec.Relations
	locs  []spec.Location

	res     map[string]*spec.Resource
	slots   map[string][]slotRef
	current map[string]string // slot → node, including adopted active instances
	curRole map[string]string

	loadV    []int                     // node index → instances placed
	perNodeV map[string][]int          // resource → node index → instances
	used     map[string]map[string]int // node → utilization used
	state    map[string]int            // resource → 0 todo, 1 in progress, 2 done
	// placedOn lists the nodes where a resource got instances; promotedOn
	// where they are promoted.
	placedOn     map[string][]string
	promotedOn   map[string][]string
	idx          map[string]int // node name → index in nodes
	locsOf       map[string][]spec.Location
	colByDep     map[string][]spec.Coloc
	colByPrimary map[string][]spec.Coloc
	baseW        map[string][]spec.Score
	merging      map[string]bool // resources whose dependents are being merged
}

func newPlanner(in Input, out *Output) *planner {
	p := &planner{in: in, out: out, sp: in.Spec, node: map[string]*Node{}, res: map[string]*spec.Resource{}, slots: map[string][]slotRef{},
		current: map[string]string{}, curRole: map[string]string{}, used: map[string]map[string]int{},
		perNodeV: map[string][]int{}, state: map[string]int{}, placedOn: map[string][]string{}, promotedOn: map[string][]string{},
		idx: map[string]int{}, locsOf: map[string][]spec.Location{}, colByDep: map[string][]spec.Coloc{}, colByPrimary: map[string][]spec.Coloc{}, baseW: map[string][]spec.Score{}, merging: map[string]bool{}}
	p.fails = in.FailCount
	if p.fails == nil {
		p.fails = func(string, string) int { return 0 }
	}
	p.nodes = append([]Node(nil), in.Nodes...)
	sort.Slice(p.nodes, func(i, j int) bool { return p.nodes[i].Name < p.nodes[j].Name })
	for i := range p.nodes {
		p.node[p.nodes[i].Name] = &p.nodes[i]
		p.idx[p.nodes[i].Name] = i
	}
	p.loadV = make([]int, len(p.nodes))
	// Node attributes declared in the spec overlay the agents' labels.
	for _, ns := range p.sp.Nodes {
		n, ok := p.node[ns.Name]
		if !ok {
			continue
		}
		labels := map[string]string{}
		for k, v := range n.Labels {
			labels[k] = v
		}
		for k, v := range ns.Attributes {
			labels[k] = v
		}
		n.Labels = labels
		if n.Capacity == nil && ns.Capacity != nil {
			n.Capacity = ns.Capacity
		}
	}
	p.rel = p.sp.Relations()
	if p.sp.Constraints != nil {
		p.locs = append(p.locs, p.sp.Constraints.Location...)
	}
	p.locs = append(p.locs, in.Extra...)
	members := map[string][]string{}
	for _, g := range p.sp.Groups {
		members[g.Name] = g.Members
	}
	for _, l := range p.locs {
		if m, ok := members[l.Resource]; ok {
			for _, x := range m {
				p.locsOf[x] = append(p.locsOf[x], l)
			}
			continue
		}
		p.locsOf[l.Resource] = append(p.locsOf[l.Resource], l)
	}
	for _, c := range p.rel.Colocations {
		p.colByDep[c.Dep] = append(p.colByDep[c.Dep], c)
		p.colByPrimary[c.Primary] = append(p.colByPrimary[c.Primary], c)
	}
	for k, v := range in.Current {
		p.current[k] = v
	}
	for k, v := range in.Roles {
		p.curRole[k] = v
	}
	for i := range p.sp.Resources {
		r := &p.sp.Resources[i]
		p.res[r.Name] = r
		n := 1
		if r.Clone() {
			n = r.Replicas
			if n == 0 {
				n = len(p.staticNodes(r)) * max(1, r.MaxPerNode)
			}
		}
		for s := 0; s < n; s++ {
			k := SlotKey(r.Name, s)
			out.Exclusive[k] = r.Exclusive()
			out.Resource[k] = r.Name
			p.slots[r.Name] = append(p.slots[r.Name], slotRef{r, s, k})
		}
	}
	p.adoptActive()
	return p
}

// adoptActive treats instances found running (probes, partitions) as
// current when their slot has no current node, so that placement keeps
// them where they run; what is not adopted is stopped by the transition.
func (p *planner) adoptActive() {
	byRes := map[string][]Instance{}
	for _, a := range p.in.Active {
		byRes[a.Resource] = append(byRes[a.Resource], a)
	}
	names := make([]string, 0, len(byRes))
	for n := range byRes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		r := p.res[name]
		if r == nil {
			continue
		}
		list := byRes[name]
		sort.Slice(list, func(i, j int) bool { return list[i].Node < list[j].Node })
		taken := map[string]bool{}
		for _, s := range p.slots[name] {
			if n, ok := p.current[s.key]; ok {
				taken[n] = true
			}
		}
		for _, a := range list {
			if taken[a.Node] {
				continue
			}
			for _, s := range p.slots[name] {
				if _, ok := p.current[s.key]; !ok {
					p.current[s.key] = a.Node
					if a.Role == spec.RolePromoted {
						p.curRole[s.key] = spec.RolePromoted
					}
					taken[a.Node] = true
					break
				}
			}
		}
	}
}

func (p *planner) run() {
	order := make([]*spec.Resource, 0, len(p.sp.Resources))
	for i := range p.sp.Resources {
		order = append(order, &p.sp.Resources[i])
	}
	// Like Pacemaker: higher priority first, then resources that score
	// best where they run now (those staying put claim their nodes before
	// the ones that must move choose), then spec order.
	cur := make(map[string]spec.Score, len(order))
	for _, r := range order {
		cur[r.Name] = p.currentScore(r)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].Priority != order[j].Priority {
			return order[i].Priority > order[j].Priority
		}
		return cur[order[i].Name] > cur[order[j].Name]
	})
	for _, r := range order {
		p.assign(r)
	}
}

// unrunnable stops what cannot run because of something that will not
// run: the "then" of a mandatory order whose "first" will not be started
// (or promoted), and, transitively, whatever must run with a resource
// stopped that way. Resources kept as they are (maintenance, unmanaged,
// frozen) are left alone.
func (p *planner) unrunnable() {
	runs := func(res, action string) bool {
		for _, s := range p.slots[res] {
			if _, ok := p.out.Desired[s.key]; ok && (action != "promote" || p.out.Roles[s.key] == spec.RolePromoted) {
				return true
			}
		}
		return false
	}
	kept := func(r *spec.Resource) bool {
		return p.sp.Cluster.Maintenance || !r.IsManaged() || p.in.Frozen[r.Name]
	}
	stop := func(r *spec.Resource, why string, keepRunning bool) bool {
		changed := false
		for _, s := range p.slots[r.Name] {
			if n, ok := p.out.Desired[s.key]; ok && !(keepRunning && p.current[s.key] == n) {
				delete(p.out.Desired, s.key)
				delete(p.out.Roles, s.key)
				p.out.Unplaced = append(p.out.Unplaced, fmt.Sprintf("%s: cannot run: %s", s.key, why))
				changed = true
			}
		}
		return changed
	}
	for changed := true; changed; {
		changed = false
		for _, o := range p.rel.Orders {
			t, f := p.res[o.Then], p.res[o.First]
			if t == nil || f == nil || o.Kind != spec.OrderMandatory || kept(t) {
				continue
			}
			firstRuns := runs(o.First, o.FirstAction)
			if o.AnyOf != 0 {
				// "Any of": then is unrunnable only when none of them runs.
				for _, x := range p.rel.Orders {
					if x.AnyOf == o.AnyOf && x.Then == o.Then && runs(x.First, x.FirstAction) {
						firstRuns = true
					}
				}
			}
			if (o.ThenAction == "start" || o.ThenAction == "promote") && (o.FirstAction == "start" || o.FirstAction == "promote") && !firstRuns {
				if o.ThenAction == "promote" {
					for _, s := range p.slots[t.Name] {
						if p.out.Roles[s.key] == spec.RolePromoted {
							delete(p.out.Roles, s.key)
							changed = true
						}
					}
					continue
				}
				// Not symmetrical: a running "then" is not stopped, only not started.
				if stop(t, fmt.Sprintf("it must %s after %s %ss (%s), which will not happen", o.ThenAction, o.First, o.FirstAction, o.Source), !o.Symmetrical) {
					changed = true
				}
			}
		}
		for _, c := range p.rel.Colocations {
			d, pr := p.res[c.Dep], p.res[c.Primary]
			if d == nil || pr == nil || c.Score < spec.Infinity || kept(d) || c.DepRole != "" {
				continue
			}
			need := "start"
			if c.PrimaryRole == spec.RolePromoted {
				need = "promote"
			}
			if !runs(c.Primary, need) && runs(c.Dep, "start") {
				if stop(d, fmt.Sprintf("it must run with %s, which will not run (%s)", c.Primary, c.Source), false) {
					changed = true
				}
			}
		}
	}
}

// currentScore is r's base score plus stickiness on the node its first
// placed slot runs on now; notAllowed when it runs nowhere.
func (p *planner) currentScore(r *spec.Resource) spec.Score {
	for _, s := range p.slots[r.Name] {
		n, ok := p.current[s.key]
		if !ok {
			continue
		}
		i, ok := p.idx[n]
		if !ok {
			continue
		}
		v := p.base(r)[i]
		// Mandatory colocations count, both ways: a node where what r
		// must run with cannot run (or where what must run with r cannot)
		// is no place to stay (Pacemaker merges colocated scores here too).
		for _, c := range p.colByDep[r.Name] {
			if pr := p.res[c.Primary]; pr != nil && c.Score >= spec.Infinity && c.PrimaryRole == "" && p.base(pr)[i] <= -spec.Infinity {
				v = -spec.Infinity
			}
		}
		if p.depBanned(r, i, map[string]bool{}) {
			v = -spec.Infinity
		}
		if v <= -spec.Infinity {
			return v
		}
		return v.Add(p.stickiness(r))
	}
	return notAllowed
}

// depBanned reports whether something that must run with r (directly or
// through a chain of INFINITY colocations, like a group's later members)
// cannot run on node i.
func (p *planner) depBanned(r *spec.Resource, i int, seen map[string]bool) bool {
	seen[r.Name] = true
	for _, c := range p.colByPrimary[r.Name] {
		d := p.res[c.Dep]
		if d == nil || seen[d.Name] || c.Score < spec.Infinity || c.DepRole != "" || !d.Exclusive() {
			continue
		}
		if p.base(d)[i] <= -spec.Infinity || p.depBanned(d, i, seen) {
			return true
		}
	}
	return false
}

func (p *planner) stickiness(r *spec.Resource) spec.Score {
	switch {
	case r.Stickiness != nil:
		return spec.Score(*r.Stickiness)
	case p.sp.Cluster.Stickiness != nil:
		return spec.Score(*p.sp.Cluster.Stickiness)
	}
	return spec.Score(spec.DefaultStickiness)
}

// multipleActiveBlocked reports a single resource found active on several
// nodes whose policy is block.
func (p *planner) activeNodes(name string) []string {
	var out []string
	for _, a := range p.in.Active {
		if a.Resource == name && !slices.Contains(out, a.Node) {
			out = append(out, a.Node)
		}
	}
	for _, s := range p.slots[name] {
		if n, ok := p.in.Current[s.key]; ok && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// assign places r after the resources it is colocated with.
func (p *planner) assign(r *spec.Resource) {
	switch p.state[r.Name] {
	case 1, 2:
		return // done, or a (refused) cycle
	}
	p.state[r.Name] = 1
	for _, c := range p.colByDep[r.Name] {
		if c.Score != 0 {
			if pr := p.res[c.Primary]; pr != nil {
				p.assign(pr)
			}
		}
	}
	p.state[r.Name] = 2
	slots := p.slots[r.Name]
	maint := p.sp.Cluster.Maintenance
	// Kept as they are: cluster maintenance, nodes in maintenance,
	// unmanaged resources.
	keepAll := maint || !r.IsManaged() || p.in.Frozen[r.Name]
	if !keepAll && r.Exclusive() && r.MultipleActive == spec.MultipleBlock && len(p.activeNodes(r.Name)) > 1 {
		p.out.Unplaced = append(p.out.Unplaced, fmt.Sprintf("%s: active on %v at once and multipleActive is block: left alone; stop the extra copies and run `paceline resource cleanup %s`", r.Name, p.activeNodes(r.Name), r.Name))
		keepAll = true
	}
	var pending []slotRef
	for _, s := range slots {
		cur, has := p.current[s.key]
		cn, known := p.node[cur]
		if has && (keepAll || (known && cn.Maintenance)) {
			p.place(r, s.key, cur)
			if p.curRole[s.key] == spec.RolePromoted {
				p.out.Roles[s.key] = spec.RolePromoted
				p.promotedOn[r.Name] = append(p.promotedOn[r.Name], cur)
			}
			continue
		}
		if keepAll {
			continue
		}
		if p.in.Blocked[r.Name] || r.TargetRole == spec.RoleStopped {
			continue
		}
		if r.Exclusive() && r.MultipleActive == spec.MultipleStopOnly && len(p.activeNodes(r.Name)) > 1 {
			p.out.Unplaced = append(p.out.Unplaced, fmt.Sprintf("%s: was active on %v at once; multipleActive is stopOnly, so it stays stopped until `paceline resource cleanup %s`", r.Name, p.activeNodes(r.Name), r.Name))
			continue
		}
		pending = append(pending, s)
	}
	if len(pending) == 0 {
		p.promote(r, keepAll)
		return
	}
	w := p.weights(r, true, "")
	if r.Clone() {
		p.assignClone(r, pending, w)
	} else {
		p.assignSingle(r, pending[0], w)
	}
	p.promote(r, keepAll)
}

func (p *planner) place(r *spec.Resource, key, node string) {
	p.out.Desired[key] = node
	if i, ok := p.idx[node]; ok {
		p.loadV[i]++
		if p.perNodeV[r.Name] == nil {
			p.perNodeV[r.Name] = make([]int, len(p.nodes))
		}
		p.perNodeV[r.Name][i]++
	}
	if !slices.Contains(p.placedOn[r.Name], node) {
		p.placedOn[r.Name] = append(p.placedOn[r.Name], node)
	}
	if len(r.Utilization) > 0 {
		if p.used[node] == nil {
			p.used[node] = map[string]int{}
		}
		for k, v := range r.Utilization {
			p.used[node][k] += v
		}
	}
}

// notAllowed marks a node a resource may not use at all (opt-in clusters:
// no location allows it). It sorts below -Infinity.
const notAllowed = -spec.Infinity - 1

// weights scores every node for r, indexed like p.nodes. With withDeps,
// the preferences of resources colocated with r are merged in (so that a
// group goes where all its members can run); skip names a primary whose
// colocation is ignored (it is being placed).
func (p *planner) weights(r *spec.Resource, withDeps bool, skip string) []spec.Score {
	w := slices.Clone(p.base(r))
	// Colocations with resources already placed.
	for _, c := range p.colByDep[r.Name] {
		if c.Score == 0 || c.DepRole == spec.RolePromoted || c.DepRole == spec.RoleUnpromoted || c.Primary == skip || p.res[c.Primary] == nil {
			continue
		}
		on := make([]bool, len(p.nodes))
		for _, n := range p.colocatedNodes(c) {
			if i, ok := p.idx[n]; ok {
				on[i] = true
			}
		}
		for i := range p.nodes {
			there := on[i]
			switch {
			case c.Score >= spec.Infinity && !there, c.Score <= -spec.Infinity && there:
				w[i] = -spec.Infinity
			case c.Score >= spec.Infinity || c.Score <= -spec.Infinity:
				// Mandatory: only restricts (adding INFINITY would erase the
				// resource's own preferences among the allowed nodes).
			case there && w[i] != notAllowed:
				w[i] = w[i].Add(c.Score)
			}
		}
	}
	// Stickiness on the nodes where it runs now.
	if st := p.stickiness(r); st != 0 {
		for _, s := range p.slots[r.Name] {
			if n, ok := p.current[s.key]; ok {
				if i, ok := p.idx[n]; ok && w[i] > -spec.Infinity {
					w[i] = w[i].Add(st)
				}
			}
		}
	}
	if withDeps {
		p.mergeDependents(r, w)
	}
	return w
}

// base returns r's scores from location constraints and node state,
// computed once per placement.
func (p *planner) base(r *spec.Resource) []spec.Score {
	if w, ok := p.baseW[r.Name]; ok {
		return w
	}
	w := make([]spec.Score, len(p.nodes))
	symmetric := p.sp.Cluster.Symmetric == nil || *p.sp.Cluster.Symmetric
	if !symmetric {
		for i := range w {
			w[i] = notAllowed
		}
	}
	add := func(i int, v spec.Score) {
		if w[i] == notAllowed {
			if v < 0 {
				return
			}
			w[i] = 0
		}
		w[i] = w[i].Add(v)
	}
	for _, l := range p.locsOf[r.Name] {
		if l.Role == spec.RolePromoted || l.Role == spec.RoleUnpromoted {
			continue // applies to the role only (promote)
		}
		if l.Node != "" {
			if i, ok := p.idx[l.Node]; ok && l.Score != nil {
				add(i, *l.Score)
			}
			continue
		}
		for i := range p.nodes {
			if v, ok := p.locationScore(l, &p.nodes[i]); ok {
				add(i, v)
			}
		}
	}
	static := len(r.Nodes) > 0 || len(r.NodeLabels) > 0
	th := threshold(r)
	for i := range p.nodes {
		n := &p.nodes[i]
		if !n.Online || n.Standby || n.Maintenance || (static && !p.staticAllowed(r, n)) || (th > 0 && p.fails(r.Name, n.Name) >= th) || p.fails(r.Name, n.Name) >= state.FailInfinity {
			w[i] = -spec.Infinity
		}
	}
	p.baseW[r.Name] = w
	return w
}

// colocatedNodes are the nodes where c's primary runs in c's primary role.
func (p *planner) colocatedNodes(c spec.Coloc) []string {
	switch c.PrimaryRole {
	case spec.RolePromoted:
		return p.promotedOn[c.Primary]
	case spec.RoleUnpromoted:
		var on []string
		for _, n := range p.placedOn[c.Primary] {
			if !slices.Contains(p.promotedOn[c.Primary], n) {
				on = append(on, n)
			}
		}
		return on
	}
	return p.placedOn[c.Primary]
}

// unusable says why node n can never host r now ("" when it can).
func (p *planner) unusable(r *spec.Resource, n *Node) string {
	switch {
	case !p.staticAllowed(r, n):
		return "excluded by nodes/nodeLabels"
	case !n.Online:
		return "offline"
	case n.Standby:
		return "standby"
	case n.Maintenance:
		return "maintenance"
	case p.fails(r.Name, n.Name) >= state.FailInfinity:
		return fmt.Sprintf("a fatal failure here (start failed, or the agent is not installed); run `paceline resource cleanup %s` once fixed", r.Name)
	case threshold(r) > 0 && p.fails(r.Name, n.Name) >= threshold(r):
		return fmt.Sprintf("fail count %d reached migrationThreshold %d; run `paceline resource cleanup %s`", p.fails(r.Name, n.Name), threshold(r), r.Name)
	}
	return ""
}

// mergeDependents adds the node preferences of resources that follow r
// (positive colocations with r as primary), scaled by score/INFINITY, so
// that r goes where its dependents can run too. The merge is dropped when
// it would leave r nowhere to run.
func (p *planner) mergeDependents(r *spec.Resource, w []spec.Score) {
	// One dependent at a time, like Pacemaker: a dependent whose merge
	// would leave r nowhere to run is skipped, the others still count.
	// Negative colocations push r away from where their dependent wants
	// to be.
	for _, c := range p.colByPrimary[r.Name] {
		if c.Score == 0 || c.DepRole == spec.RolePromoted || c.PrimaryRole != "" {
			continue
		}
		dep := p.res[c.Dep]
		// A dependent already placed has had its say; one being merged
		// is a cycle. One waiting for r (it asked for r to be placed
		// first) counts like any other.
		if dep == nil || p.state[dep.Name] == 2 || p.merging[dep.Name] || !dep.Exclusive() || !r.Exclusive() {
			continue
		}
		p.merging[r.Name] = true
		p.merging[dep.Name] = true
		// Mandatory chains (groups) pass on their dependents' preferences;
		// a finite score scales them down to nothing after one step.
		dw := p.weights(dep, c.Score >= spec.Infinity, r.Name)
		delete(p.merging, dep.Name)
		delete(p.merging, r.Name)
		merged := slices.Clone(w)
		for i, d := range dw {
			var add spec.Score
			switch {
			case d <= -spec.Infinity && c.Score >= spec.Infinity:
				add = -spec.Infinity
			case d <= -spec.Infinity && c.Score > 0:
				add = -c.Score
			case d <= -spec.Infinity:
				// A dependent that cannot run there does not mind r there.
			default:
				add = spec.Score(int64(d) * int64(c.Score) / int64(spec.Infinity))
				if c.Score <= -spec.Infinity && add <= -spec.Infinity {
					add = -spec.Infinity + 1 // a strong wish, not a ban
				}
			}
			if add != 0 && merged[i] != notAllowed {
				merged[i] = merged[i].Add(add)
			}
		}
		if slices.ContainsFunc(merged, func(v spec.Score) bool { return v >= 0 }) {
			copy(w, merged)
		}
	}
}

// locationScore returns the score l gives node n (ok false: no opinion).
func (p *planner) locationScore(l spec.Location, n *Node) (spec.Score, bool) {
	if l.Node != "" {
		if l.Node != n.Name || l.Score == nil {
			return 0, false
		}
		return *l.Score, true
	}
	var total spec.Score
	any := false
	for _, ru := range l.Rules {
		if ruleMatches(ru, n) {
			total = total.Add(ru.Score)
			any = true
		}
	}
	return total, any
}

func ruleMatches(ru spec.Rule, n *Node) bool {
	anyOf := ru.Match == "any"
	for _, e := range ru.Expressions {
		m := exprMatches(e, n)
		if anyOf && m {
			return true
		}
		if !anyOf && !m {
			return false
		}
	}
	return !anyOf
}

func exprMatches(e spec.Expression, n *Node) bool {
	v, ok := n.Labels[e.Attribute]
	if e.Attribute == "#uname" {
		v, ok = n.Name, true
	}
	switch e.Op {
	case "defined":
		return ok
	case "notDefined":
		return !ok
	}
	if !ok {
		return e.Op == "ne"
	}
	c := compareValues(v, e.Value, e.Type)
	switch e.Op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "lt":
		return c < 0
	case "gt":
		return c > 0
	case "lte":
		return c <= 0
	case "gte":
		return c >= 0
	}
	return false
}

func compareValues(a, b, typ string) int {
	switch typ {
	case "integer", "number":
		x, err1 := strconv.ParseFloat(a, 64)
		y, err2 := strconv.ParseFloat(b, 64)
		if err1 == nil && err2 == nil {
			return cmp.Compare(x, y)
		}
	case "version":
		return compareVersions(a, b)
	}
	return cmp.Compare(a, b)
}

func compareVersions(a, b string) int {
	split := func(s string) []int {
		var out []int
		cur, has := 0, false
		for _, ch := range s {
			if ch >= '0' && ch <= '9' {
				cur = cur*10 + int(ch-'0')
				has = true
				continue
			}
			if has {
				out = append(out, cur)
			}
			cur, has = 0, false
		}
		if has {
			out = append(out, cur)
		}
		return out
	}
	x, y := split(a), split(b)
	for i := 0; i < max(len(x), len(y)); i++ {
		var u, v int
		if i < len(x) {
			u = x[i]
		}
		if i < len(y) {
			v = y[i]
		}
		if c := cmp.Compare(u, v); c != 0 {
			return c
		}
	}
	return 0
}

func (p *planner) staticNodes(r *spec.Resource) []string {
	var out []string
	for i := range p.nodes {
		if p.staticAllowed(r, &p.nodes[i]) {
			out = append(out, p.nodes[i].Name)
		}
	}
	return out
}

func (p *planner) staticAllowed(r *spec.Resource, n *Node) bool {
	if len(r.Nodes) > 0 && !slices.Contains(r.Nodes, n.Name) {
		return false
	}
	for k, v := range r.NodeLabels {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

// fits reports whether r's utilization fits on node i under the placement strategy.
func (p *planner) fits(r *spec.Resource, i int) bool {
	if p.sp.Cluster.PlacementStrategy == "" || p.sp.Cluster.PlacementStrategy == spec.PlacementDefault {
		return true
	}
	n := p.nodes[i].Name
	capa := p.nodes[i].Capacity
	for k, need := range p.utilization(r) {
		if p.used[n][k]+need > capa[k] {
			return false
		}
	}
	return true
}

// utilization is what r needs on its node, plus what the single resources
// that must run with it and are not placed yet need (a group's members go
// together, so its first member checks room for all of them).
func (p *planner) utilization(r *spec.Resource) map[string]int {
	total := map[string]int{}
	seen := map[string]bool{}
	var add func(x *spec.Resource)
	add = func(x *spec.Resource) {
		if seen[x.Name] {
			return
		}
		seen[x.Name] = true
		for k, v := range x.Utilization {
			total[k] += v
		}
		for _, c := range p.colByPrimary[x.Name] {
			if d := p.res[c.Dep]; d != nil && c.Score >= spec.Infinity && d.Exclusive() && x.Exclusive() && p.state[d.Name] != 2 {
				add(d)
			}
		}
	}
	add(r)
	return total
}

// free is node i's remaining capacity summed over all keys.
func (p *planner) free(i int) int {
	f := 0
	n := p.nodes[i].Name
	for k, c := range p.nodes[i].Capacity {
		f += c - p.used[n][k]
	}
	return f
}

// better orders candidate nodes: higher score, then (balanced) more free
// capacity or (minimal) less, then fewer instances placed, then name
// (nodes are sorted by name, so the lower index).
func (p *planner) better(w []spec.Score, a, b int) bool {
	if w[a] != w[b] {
		return w[a] > w[b]
	}
	switch p.sp.Cluster.PlacementStrategy {
	case spec.PlacementBalanced:
		if fa, fb := p.free(a), p.free(b); fa != fb {
			return fa > fb
		}
	case spec.PlacementMinimal:
		if fa, fb := p.free(a), p.free(b); fa != fb {
			return fa < fb
		}
	}
	if p.loadV[a] != p.loadV[b] {
		return p.loadV[a] < p.loadV[b]
	}
	return a < b
}

func (p *planner) eligible(r *spec.Resource, w []spec.Score, i int) bool {
	return w[i] >= 0 && p.count(r.Name, i) < max(1, r.MaxPerNode) && p.fits(r, i)
}

// counts returns r's per-node instance counts, creating them.
func (p *planner) counts(r *spec.Resource) []int {
	c := p.perNodeV[r.Name]
	if c == nil {
		c = make([]int, len(p.nodes))
		p.perNodeV[r.Name] = c
	}
	return c
}

func (p *planner) count(res string, i int) int {
	if c := p.perNodeV[res]; c != nil {
		return c[i]
	}
	return 0
}

func (p *planner) assignSingle(r *spec.Resource, s slotRef, w []spec.Score) {
	best := -1
	cur, hasCur := p.idx[p.current[s.key]]
	cnt, limit, util := p.counts(r), max(1, r.MaxPerNode), p.sp.Cluster.PlacementStrategy != "" && p.sp.Cluster.PlacementStrategy != spec.PlacementDefault
	for i := range p.nodes {
		if w[i] < 0 || cnt[i] >= limit || (util && !p.fits(r, i)) {
			continue
		}
		switch {
		case best < 0:
			best = i
		case w[i] == w[best] && hasCur && i == cur:
			best = i // ties keep it where it is
		case w[i] == w[best] && hasCur && best == cur:
		case p.better(w, i, best):
			best = i
		}
	}
	if best < 0 {
		p.out.Unplaced = append(p.out.Unplaced, fmt.Sprintf("%s: no eligible node (%s)", s.key, p.whyNot(r, w)))
		return
	}
	p.place(r, s.key, p.nodes[best].Name)
}

func (p *planner) assignClone(r *spec.Resource, pending []slotRef, w []spec.Score) {
	// Instances stay where they run when that node is still eligible.
	var rest []slotRef
	for _, s := range pending {
		if cur, ok := p.idx[p.current[s.key]]; ok && p.eligible(r, w, cur) {
			p.place(r, s.key, p.nodes[cur].Name)
			continue
		}
		rest = append(rest, s)
	}
	cnt, limit, util := p.counts(r), max(1, r.MaxPerNode), p.sp.Cluster.PlacementStrategy != "" && p.sp.Cluster.PlacementStrategy != spec.PlacementDefault
	for _, s := range rest {
		best := -1
		for i := range p.nodes {
			if w[i] < 0 || cnt[i] >= limit || (util && !p.fits(r, i)) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			if ca, cb := cnt[i], cnt[best]; ca != cb {
				if ca < cb {
					best = i
				}
				continue
			}
			if p.better(w, i, best) {
				best = i
			}
		}
		if best < 0 {
			p.out.Unplaced = append(p.out.Unplaced, fmt.Sprintf("%s: no eligible node (%s)", s.key, p.whyNot(r, w)))
			continue
		}
		p.place(r, s.key, p.nodes[best].Name)
	}
}

// promote chooses the promoted instances of a promotable resource.
func (p *planner) promote(r *spec.Resource, keep bool) {
	if r.Mode != spec.ModePromotable || keep || r.TargetRole == spec.RoleUnpromoted {
		return
	}
	type cand struct {
		key, node string
		score     spec.Score
		current   bool
	}
	var cands []cand
	for _, s := range p.slots[r.Name] {
		n, ok := p.out.Desired[s.key]
		if !ok {
			continue
		}
		var sc spec.Score
		has := false
		if p.in.PromotionScore != nil {
			if v, ok := p.in.PromotionScore(r.Name, n); ok {
				sc, has = spec.Score(v), true
			}
		}
		nd := p.node[n]
		for _, l := range p.locsOf[r.Name] {
			if l.Role != spec.RolePromoted || nd == nil {
				continue
			}
			if v, ok := p.locationScore(l, nd); ok {
				sc = sc.Add(v)
				has = has || v > 0
			}
		}
		for _, c := range p.colByDep[r.Name] {
			if c.DepRole != spec.RolePromoted {
				continue
			}
			on := p.placedOn[c.Primary]
			if c.PrimaryRole == spec.RolePromoted {
				on = p.promotedOn[c.Primary]
			}
			there := slices.Contains(on, n)
			switch {
			case c.Score >= spec.Infinity && !there, c.Score <= -spec.Infinity && there:
				sc = -spec.Infinity
			case there:
				sc = sc.Add(c.Score)
			}
		}
		// Resources that must run with the promoted instance pull the
		// role to where they can run (Pacemaker merges them here too).
		if i, ok := p.idx[n]; ok {
			for _, c := range p.colByPrimary[r.Name] {
				if c.PrimaryRole != spec.RolePromoted || c.Score <= 0 {
					continue
				}
				d := p.res[c.Dep]
				if d == nil {
					continue
				}
				dv := p.base(d)[i]
				switch {
				case dv <= -spec.Infinity && c.Score >= spec.Infinity:
					sc = -spec.Infinity
				case dv > -spec.Infinity:
					sc = sc.Add(spec.Score(int64(dv) * int64(c.Score) / int64(spec.Infinity)))
				}
			}
		}
		if !has || sc < 0 {
			continue
		}
		cands = append(cands, cand{s.key, n, sc, p.curRole[s.key] == spec.RolePromoted && p.current[s.key] == n})
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.score != b.score {
			return a.score > b.score
		}
		if a.current != b.current {
			return a.current
		}
		return a.node < b.node
	})
	perNode := map[string]int{}
	count := 0
	for _, c := range cands {
		if count >= max(1, r.PromotedMax) {
			break
		}
		if perNode[c.node] >= max(1, r.PromotedMaxPerNode) {
			continue
		}
		perNode[c.node]++
		count++
		p.out.Roles[c.key] = spec.RolePromoted
		p.promotedOn[r.Name] = append(p.promotedOn[r.Name], c.node)
	}
}

func threshold(r *spec.Resource) int {
	if r.OnFail == spec.OnFailMigrate {
		return 1
	}
	if r.MigrationThreshold == nil {
		return spec.DefaultMigrationThreshold
	}
	return *r.MigrationThreshold
}

func (p *planner) whyNot(r *spec.Resource, w []spec.Score) string {
	if len(p.nodes) == 0 {
		return "no nodes"
	}
	var reasons []string
	for i := range p.nodes {
		n := &p.nodes[i]
		why := p.unusable(r, n)
		if why == "" {
			why = p.constraintReason(r, n)
		}
		switch {
		case why != "":
		case w[i] == notAllowed:
			why = "not allowed (symmetric: false and no location allows it)"
		case w[i] < 0:
			why = fmt.Sprintf("score %s (constraints)", w[i])
		case !p.fits(r, i):
			why = "not enough capacity left for its utilization"
		default:
			why = "already holds its share of instances"
		}
		reasons = append(reasons, n.Name+": "+why)
	}
	return joinSemi(reasons)
}

// constraintReason names a mandatory constraint that keeps r off n.
func (p *planner) constraintReason(r *spec.Resource, n *Node) string {
	for _, l := range p.locsOf[r.Name] {
		if l.Role == spec.RolePromoted || l.Role == spec.RoleUnpromoted {
			continue
		}
		if v, ok := p.locationScore(l, n); ok && v <= -spec.Infinity {
			return "banned by a location constraint"
		}
	}
	for _, c := range p.colByDep[r.Name] {
		if c.DepRole == spec.RolePromoted || c.DepRole == spec.RoleUnpromoted || p.res[c.Primary] == nil {
			continue
		}
		there := slices.Contains(p.colocatedNodes(c), n.Name)
		switch {
		case c.Score >= spec.Infinity && !there:
			return fmt.Sprintf("must run with %s, which is not on this node (%s)", c.Primary, c.Source)
		case c.Score <= -spec.Infinity && there:
			return fmt.Sprintf("must not run with %s (%s)", c.Primary, c.Source)
		}
	}
	return ""
}
