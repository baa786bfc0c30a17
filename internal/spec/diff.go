package spec

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// Change kinds.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
	ChangeChanged = "changed"
)

// Change is one difference between two spec versions. Resource is empty for
// a change to the cluster section or apiVersion; Fields lists the dotted
// paths that differ (for Kind changed), e.g. "params.command", "replicas",
// or "cluster.noQuorumPolicy" for the cluster section.
type Change struct {
	Kind     string `json:"kind"`
	Resource string `json:"resource,omitempty"`
	// Section is nodes, groups or constraints for a change there (Fields
	// then name the entries, e.g. "order[1]", "db-stack").
	Section string   `json:"section,omitempty"`
	Fields  []string `json:"fields,omitempty"`
}

// String renders the change for a CLI: "~ resource keystone: params.command,
// replicas", "+ resource web", "- resource old", "~ cluster: noQuorumPolicy".
func (c Change) String() string {
	sign := map[string]string{ChangeAdded: "+", ChangeRemoved: "-", ChangeChanged: "~"}[c.Kind]
	if sign == "" {
		sign = "?"
	}
	if c.Section != "" {
		return sign + " " + c.Section + ": " + strings.Join(c.Fields, ", ")
	}
	if c.Resource == "" {
		fields := make([]string, len(c.Fields))
		for i, f := range c.Fields {
			fields[i] = strings.TrimPrefix(f, "cluster.")
		}
		return sign + " cluster: " + strings.Join(fields, ", ")
	}
	s := sign + " resource " + c.Resource
	if len(c.Fields) > 0 {
		s += ": " + strings.Join(c.Fields, ", ")
	}
	return s
}

// Diff lists what changed from old to new (either may be nil, meaning an
// empty spec): first the cluster section, then resources by name. Specs are
// compared as written; compare WithDefaults() copies to ignore a default
// being spelled out. The order of resources in the list is not a change.
func Diff(old, new *Spec) []Change {
	if old == nil {
		old = &Spec{}
	}
	if new == nil {
		new = &Spec{}
	}
	var changes []Change
	top := func(s *Spec) map[string]string {
		return flatten(struct {
			APIVersion string  `json:"apiVersion"`
			Cluster    Cluster `json:"cluster"`
		}{s.APIVersion, s.Cluster})
	}
	if fields := diffFields(top(old), top(new)); len(fields) > 0 {
		changes = append(changes, Change{Kind: ChangeChanged, Fields: fields})
	}
	changes = append(changes, sectionChanges(old, new)...)
	changes = append(changes, lbChanges(old, new)...)
	oldByName, newByName := byName(old), byName(new)
	var names []string
	for n := range oldByName {
		names = append(names, n)
	}
	for n := range newByName {
		if _, ok := oldByName[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		o, inOld := oldByName[n]
		nw, inNew := newByName[n]
		switch {
		case !inOld:
			changes = append(changes, Change{Kind: ChangeAdded, Resource: n})
		case !inNew:
			changes = append(changes, Change{Kind: ChangeRemoved, Resource: n})
		default:
			if fields := diffFields(flatten(o), flatten(nw)); len(fields) > 0 {
				changes = append(changes, Change{Kind: ChangeChanged, Resource: n, Fields: fields})
			}
		}
	}
	return changes
}

// byName indexes resources by name; with duplicate names (an invalid spec) the first wins.
func byName(s *Spec) map[string]*Resource {
	m := map[string]*Resource{}
	for i := range s.Resources {
		if _, ok := m[s.Resources[i].Name]; !ok {
			m[s.Resources[i].Name] = &s.Resources[i]
		}
	}
	return m
}

// flatten maps the dotted path of every leaf of v's JSON form to its JSON
// value. Lists are leaves (a changed command is one change); mappings such
// as env are descended into ("params.env.LANG"); empty mappings have no leaves.
func flatten(v any) map[string]string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("spec: JSON encoding cannot fail: " + err.Error())
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		panic("spec: JSON decoding cannot fail: " + err.Error())
	}
	out := map[string]string{}
	var walk func(prefix string, x any)
	walk = func(prefix string, x any) {
		if m, ok := x.(map[string]any); ok {
			for k, c := range m {
				walk(join(prefix, k), c)
			}
			return
		}
		leaf, _ := json.Marshal(x)
		out[prefix] = string(leaf)
	}
	walk("", tree)
	return out
}

// diffFields returns the sorted paths whose values differ between a and b.
func diffFields(a, b map[string]string) []string {
	var fields []string
	add := func(p string) {
		p = collapse(p, a, b)
		if !slices.Contains(fields, p) {
			fields = append(fields, p)
		}
	}
	for k, av := range a {
		if bv, ok := b[k]; !ok || av != bv {
			add(k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			add(k)
		}
	}
	slices.Sort(fields)
	return fields
}

// optionalSections are reported by their own path when present on one side only.
var optionalSections = []string{"health"}

// collapse shortens p to its optional section when that section is missing from a or b.
func collapse(p string, a, b map[string]string) string {
	for _, q := range optionalSections {
		if strings.HasPrefix(p, q+".") && (!hasSection(a, q) || !hasSection(b, q)) {
			return q
		}
	}
	return p
}

func hasSection(m map[string]string, q string) bool {
	for k := range m {
		if strings.HasPrefix(k, q+".") {
			return true
		}
	}
	return false
}

// sectionChanges reports changes to nodes, groups and constraints: named
// entries (nodes, groups) by name, constraint lists by kind and position.
func sectionChanges(old, new *Spec) []Change {
	var out []Change
	named := func(section string, a, b map[string]any) {
		var fields []string
		for k, av := range a {
			if bv, ok := b[k]; !ok || !sameJSON(av, bv) {
				fields = append(fields, k)
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				fields = append(fields, k)
			}
		}
		if len(fields) > 0 {
			slices.Sort(fields)
			out = append(out, Change{Kind: ChangeChanged, Section: section, Fields: fields})
		}
	}
	nodes := func(s *Spec) map[string]any {
		m := map[string]any{}
		for _, n := range s.Nodes {
			m[n.Name] = n
		}
		return m
	}
	groups := func(s *Spec) map[string]any {
		m := map[string]any{}
		for _, g := range s.Groups {
			m[g.Name] = g
		}
		return m
	}
	cons := func(s *Spec) map[string]any {
		m := map[string]any{}
		if s.Constraints == nil {
			return m
		}
		for i, x := range s.Constraints.Location {
			m["location["+strconv.Itoa(i)+"]"] = x
		}
		for i, x := range s.Constraints.Colocation {
			m["colocation["+strconv.Itoa(i)+"]"] = x
		}
		for i, x := range s.Constraints.Order {
			m["order["+strconv.Itoa(i)+"]"] = x
		}
		return m
	}
	named("nodes", nodes(old), nodes(new))
	named("groups", groups(old), groups(new))
	named("constraints", cons(old), cons(new))
	fence := func(s *Spec) map[string]any {
		m := map[string]any{}
		if s.Fencing == nil {
			return m
		}
		f := *s.Fencing
		for _, d := range f.Devices {
			m["device "+d.Name] = d
		}
		for _, l := range f.Levels {
			m["level "+l.Node+"/"+strconv.Itoa(l.Level)] = l
		}
		f.Devices, f.Levels = nil, nil
		if !sameJSON(f, Fencing{}) {
			m["settings"] = f
		}
		return m
	}
	named("fencing", fence(old), fence(new))
	return out
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
