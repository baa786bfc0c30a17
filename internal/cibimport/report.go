package cibimport

import (
	"fmt"
	"sort"
	"strings"
)

// Categories of report items. A category says what kind of Pacemaker
// feature was left out; Placement on the item says whether leaving it out
// can change where resources run.
const (
	CatFencing     = "fencing"        // stonith devices, fencing topology, on-fail=fence
	CatBundle      = "bundle"         // bundle (container) resources
	CatTicket      = "ticket"         // rsc_ticket and ticket state
	CatRemote      = "remote-node"    // Pacemaker Remote and guest nodes
	CatCloneGroup  = "clone-of-group" // a clone or promotable clone of a group
	CatDateRule    = "date-rule"      // time-based rules
	CatRule        = "rule"           // other rule constructs paceline cannot express
	CatConstraint  = "constraint"     // constraints (or parts of them) not converted
	CatResource    = "resource"       // resources not converted (class, id)
	CatMeta        = "meta"           // resource meta attributes
	CatOperation   = "operation"      // operation settings
	CatParam       = "param"          // instance attributes (agent parameters)
	CatUtilization = "utilization"    // utilization values
	CatNode        = "node"           // node attributes and node settings
	CatProperty    = "property"       // cluster properties and defaults
	CatCIB         = "cib"            // what the CIB parser itself did not interpret
	CatInternal    = "internal"       // the converted spec did not validate: a converter bug
)

// Item is one thing that was not converted (or not exactly).
type Item struct {
	Category string
	// Element is the CIB element kind (primitive, rsc_location, op, nvpair, ...).
	Element string
	// ID is the CIB id of the element (or of its owner when it has none).
	ID string
	// What names the setting, e.g. "meta allow-migrate=true".
	What string
	// Why says why it was left out and what to do instead.
	Why string
	// Placement is true when leaving it out can change where resources
	// run or whether they run (as opposed to timeouts, parameters,
	// transition details or operator conveniences).
	Placement bool
}

func (it Item) String() string {
	s := it.Element
	if it.ID != "" {
		s += " " + it.ID
	}
	if it.What != "" {
		s += ": " + it.What
	}
	return s + ": " + it.Why
}

// Rename records a Pacemaker id that is not a valid paceline name.
type Rename struct {
	Kind     string // resource, group, node
	From, To string
}

// Report says what Convert did not convert, what it approximated, and
// which names it changed.
type Report struct {
	// Items are the things not converted, each with its CIB element and id.
	Items []Item
	// Notes are conversions that changed the form but not the meaning
	// (an id renamed, a pattern expanded, a set reordered).
	Notes []string
	// Renames lists ids that were mapped to other names.
	Renames []Rename
	// Resources maps every CIB resource id that has a spec counterpart
	// (primitives, groups, clones, and the primitive inside a clone,
	// which maps to the clone) to its spec name.
	Resources map[string]string
	// Nodes maps CIB node names (uname) to spec node names.
	Nodes map[string]string
}

// Complete reports whether everything was converted.
func (r *Report) Complete() bool { return len(r.Items) == 0 }

// PlacementItems returns the items whose absence can change placement.
func (r *Report) PlacementItems() []Item {
	var out []Item
	for _, it := range r.Items {
		if it.Placement {
			out = append(out, it)
		}
	}
	return out
}

// Categories counts the items per category.
func (r *Report) Categories() map[string]int {
	m := map[string]int{}
	for _, it := range r.Items {
		m[it.Category]++
	}
	return m
}

// String renders the report for an operator.
func (r *Report) String() string {
	var b strings.Builder
	if len(r.Renames) > 0 {
		fmt.Fprintf(&b, "Renamed (paceline names are lowercase DNS labels):\n")
		for _, rn := range r.Renames {
			fmt.Fprintf(&b, "  %s %s -> %s\n", rn.Kind, rn.From, rn.To)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(&b, "Notes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if len(r.Items) == 0 {
		fmt.Fprintf(&b, "Everything was converted.\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Not converted (%d):\n", len(r.Items))
	cats := map[string][]Item{}
	var names []string
	for _, it := range r.Items {
		if _, ok := cats[it.Category]; !ok {
			names = append(names, it.Category)
		}
		cats[it.Category] = append(cats[it.Category], it)
	}
	sort.Strings(names)
	for _, c := range names {
		fmt.Fprintf(&b, "  [%s]\n", c)
		for _, it := range cats[c] {
			mark := ""
			if it.Placement {
				mark = " (affects placement)"
			}
			fmt.Fprintf(&b, "    %s%s\n", it, mark)
		}
	}
	return b.String()
}
