package cibimport

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Placement roles compared by the CTS test.
const (
	roleStarted    = "started"
	rolePromoted   = "promoted"
	roleUnpromoted = "unpromoted"
)

// summary is what the CTS test reads from a NAME.summary file.
type summary struct {
	// revised maps a CIB resource id (a primitive, a group member, or a
	// clone / promotable clone id for its instances) to node → role →
	// number of instances, from "Revised Cluster Status".
	revised map[string]map[string]map[string]int
	// fencing: the transition fences a node, or a node is UNCLEAN.
	fencing bool
	// remote: the node list shows Pacemaker Remote or guest nodes.
	remote bool
	// unparsed lists resource lines that could not be read.
	unparsed []string
	// actions counts the lines of the Transition Summary (Start, Stop,
	// Move, Promote, ...): 0 when Pacemaker changes nothing.
	actions int
}

var (
	// "* rsc\t(ocf:heartbeat:IPaddr):\t Started node1 (flags)"
	primLineRE = regexp.MustCompile(`^(?:\*\s+)?(\S+)(?:\s+\([^)]*\))?\s+\(([^)]*)\):\s+(.*)$`)
	// "* Started: [ n1 n2 ]", "* Stopped (disabled): [ n1 ]", "* Masters: [ n1 ]"
	listLineRE = regexp.MustCompile(`^(?:\*\s+)?([A-Za-z]+)(?:\s+\([^)]*\))?:\s+\[(.*)\]\s*$`)
	cloneRE    = regexp.MustCompile(`^(?:\*\s+)?(?:Clone Set|Master/Slave Set):\s+(\S+)\s+\[([^\]]*)\]`)
	groupRE    = regexp.MustCompile(`^(?:\*\s+)?Resource Group:\s+([^\s:]+(?::\d+)?)`)
	bundleRE   = regexp.MustCompile(`^(?:\*\s+)?Container bundle(?: set)?:\s+(\S+)`)
	// Node lines of the old format, which has no "Node List" heading.
	nodeLineRE = regexp.MustCompile(`^(?:\*\s+)?(?:(?:Online|OFFLINE|RemoteOnline|RemoteOFFLINE|GuestOnline|GuestOFFLINE):|Node \S+:)`)
	flagsRE    = regexp.MustCompile(`\([^)]*\)`)
)

func parseSummary(text string) summary {
	s := summary{revised: map[string]map[string]map[string]int{}}
	lines := strings.Split(text, "\n")
	section := ""
	heading := func(l, h string) bool { return strings.HasPrefix(strings.ToLower(l), strings.ToLower(h)) }
	oldFormat := true
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "* Full List of Resources") {
			oldFormat = false
		}
		switch {
		case heading(l, "Current cluster status"):
			section = "current"
			continue
		case heading(l, "Transition Summary"):
			section = "transition"
			continue
		case heading(l, "Executing Cluster Transition"):
			section = "exec"
			continue
		case heading(l, "Revised Cluster Status"):
			section = "revised"
			continue
		}
		if section == "transition" && strings.HasPrefix(t, "* ") {
			s.actions++
		}
		if section == "transition" && strings.HasPrefix(t, "* Fence") {
			s.fencing = true
		}
		if section == "exec" && strings.HasPrefix(t, "* Fencing ") {
			s.fencing = true
		}
		if (section == "current" || section == "revised") && strings.Contains(t, "UNCLEAN") {
			s.fencing = true
		}
		if tt := strings.TrimPrefix(t, "* "); (section == "current" || section == "revised") && (strings.HasPrefix(tt, "RemoteOnline") ||
			strings.HasPrefix(tt, "GuestOnline") || strings.HasPrefix(tt, "RemoteOFFLINE") || strings.HasPrefix(tt, "GuestOFFLINE")) {
			s.remote = true
		}
	}
	// The resources of "Revised Cluster Status". The old format has no
	// "Full List of Resources" heading: resources follow the node lines.
	in := false
	inRes := oldFormat
	type ctx struct {
		indent int
		kind   string // clone, group, bundle
		id     string
	}
	var stack []ctx
	for _, l := range lines {
		if heading(l, "Revised Cluster Status") {
			in = true
			continue
		}
		if !in {
			continue
		}
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		if oldFormat && nodeLineRE.MatchString(t) {
			continue // node lines, at the top of the old format
		}
		if !strings.HasPrefix(l, " ") {
			break // a trailer line after the status
		}
		indent := len(l) - len(strings.TrimLeft(l, " \t"))
		if strings.HasPrefix(t, "* Full List of Resources") {
			inRes = true
			stack = nil
			continue
		}
		if strings.HasPrefix(t, "* Node List") || strings.HasPrefix(t, "* Node Attributes") || strings.HasPrefix(t, "* Operations") {
			inRes = false
			continue
		}
		if !inRes {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		top := func(kind string) string {
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i].kind == kind {
					return stack[i].id
				}
			}
			return ""
		}
		if m := cloneRE.FindStringSubmatch(t); m != nil {
			stack = append(stack, ctx{indent, "clone", m[1]})
			continue
		}
		if m := groupRE.FindStringSubmatch(t); m != nil {
			stack = append(stack, ctx{indent, "group", m[1]})
			continue
		}
		if m := bundleRE.FindStringSubmatch(t); m != nil {
			stack = append(stack, ctx{indent, "bundle", m[1]})
			continue
		}
		if top("bundle") != "" {
			continue
		}
		if m := listLineRE.FindStringSubmatch(t); m != nil && !strings.Contains(t, "\t") {
			owner := top("clone")
			if owner == "" {
				s.unparsed = append(s.unparsed, t)
				continue
			}
			role := ""
			switch m[1] {
			case "Started":
				role = roleStarted
			case "Promoted", "Masters", "Master":
				role = rolePromoted
			case "Unpromoted", "Slaves", "Slave":
				role = roleUnpromoted
			case "Stopped":
				continue
			default:
				s.unparsed = append(s.unparsed, t)
				continue
			}
			for _, n := range strings.Fields(m[2]) {
				s.add(owner, n, role)
			}
			continue
		}
		m := primLineRE.FindStringSubmatch(t)
		if m == nil {
			s.unparsed = append(s.unparsed, t)
			continue
		}
		id := m[1]
		owner := top("clone")
		if owner == "" {
			owner = id
		}
		rest := flagsRE.ReplaceAllString(m[3], " ")
		var nodes []string
		if i := strings.Index(rest, "["); i >= 0 {
			j := strings.Index(rest, "]")
			if j < i {
				s.unparsed = append(s.unparsed, t)
				continue
			}
			nodes = strings.Fields(rest[i+1 : j])
			rest = rest[:i]
		}
		words := strings.Fields(rest)
		role := ""
		stopped := false
		for len(words) > 0 {
			w := words[0]
			switch w {
			case "ORPHANED":
				words = words[1:]
				continue
			case "FAILED", "Started":
				if role == "" {
					role = roleStarted
				}
				words = words[1:]
				continue
			case "Promoted", "Master":
				role = rolePromoted
				words = words[1:]
				continue
			case "Unpromoted", "Slave":
				role = roleUnpromoted
				words = words[1:]
				continue
			case "Stopped":
				stopped = true
				words = words[1:]
				continue
			}
			break
		}
		if stopped {
			continue
		}
		if role == "" {
			s.unparsed = append(s.unparsed, t)
			continue
		}
		if len(words) > 0 {
			nodes = append(nodes, words[0])
		}
		if len(nodes) == 0 {
			s.unparsed = append(s.unparsed, t)
			continue
		}
		for _, n := range nodes {
			s.add(owner, n, role)
		}
	}
	return s
}

func (s *summary) add(id, node, role string) {
	if s.revised[id] == nil {
		s.revised[id] = map[string]map[string]int{}
	}
	if s.revised[id][node] == nil {
		s.revised[id][node] = map[string]int{}
	}
	s.revised[id][node][role]++
}

// placementString renders node → role → count canonically, e.g.
// "n1:promoted n2:started*2"; "stopped" when empty.
func placementString(p map[string]map[string]int) string {
	var parts []string
	for n, roles := range p {
		for r, k := range roles {
			if k <= 0 {
				continue
			}
			s := n + ":" + r
			if k > 1 {
				s += fmt.Sprintf("*%d", k)
			}
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "stopped"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
