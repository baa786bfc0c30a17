// Package cibimport converts a parsed Pacemaker CIB (package cib) into a
// paceline spec, and reports exactly what it could not convert.
//
// The conversion keeps Pacemaker's meaning where paceline has the same
// concept, including Pacemaker's defaults where paceline's differ: the
// default stickiness is 0 (1 for clones), the default migration threshold is
// INFINITY, anonymous clones run at most one instance per node. Every
// setting, element or attribute that has no paceline counterpart becomes an
// Item of the Report, with the CIB element and id and the reason; nothing is
// dropped silently. Ids that are not valid paceline names (lowercase DNS
// labels) are renamed deterministically and the renames are reported.
//
// The returned spec always passes spec.Validate: constraints that paceline
// refuses (cycles, contradictions, references to what was not converted) are
// left out and reported.
package cibimport

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/spec"
)

// DefaultClusterName is the cluster name used when the CIB has no
// cluster-name property.
const DefaultClusterName = "imported"

// Options tune a conversion.
type Options struct {
	// ClusterName overrides the cluster name (default: the CIB's
	// cluster-name property, sanitized, or DefaultClusterName).
	ClusterName string
}

// Convert converts a parsed CIB with default options.
func Convert(m *cib.Model) (*spec.Spec, Report) {
	return ConvertWith(m, Options{})
}

// ConvertWith converts a parsed CIB.
func ConvertWith(m *cib.Model, opt Options) (*spec.Spec, Report) {
	c := &converter{
		m:       m,
		s:       &spec.Spec{APIVersion: spec.APIVersion},
		rep:     Report{Resources: map[string]string{}, Nodes: map[string]string{}},
		names:   newNamer(validName, sanitize),
		nodes:   newNamer(validNode, sanitizeNode),
		gone:    map[string]goneRef{},
		index:   map[string]int{},
		groups:  map[string]bool{},
		tmplUse: map[string][]string{},
	}
	if m == nil {
		c.s.Cluster.Name = pick(opt.ClusterName, DefaultClusterName)
		return c.s, c.rep
	}
	c.parserFindings()
	c.cluster(opt)
	c.nodeNames()
	c.resources()
	c.constraints()
	c.repair()
	sort.SliceStable(c.rep.Renames, func(i, j int) bool {
		if c.rep.Renames[i].Kind != c.rep.Renames[j].Kind {
			return c.rep.Renames[i].Kind < c.rep.Renames[j].Kind
		}
		return c.rep.Renames[i].From < c.rep.Renames[j].From
	})
	return c.s, c.rep
}

// goneRef says why a CIB resource id has no spec counterpart.
type goneRef struct {
	why       string
	category  string
	placement bool
}

type converter struct {
	m     *cib.Model
	s     *spec.Spec
	rep   Report
	names *namer // resources and groups
	nodes *namer
	// gone: CIB resource ids without a spec counterpart, and why.
	gone map[string]goneRef
	// index: spec resource name -> index in s.Resources.
	index map[string]int
	// groups: spec group names.
	groups map[string]bool
	// tmplUse: template id -> spec names of the primitives built from it.
	tmplUse map[string][]string
	// CIB ids of the converted constraints, parallel to the spec lists.
	locIDs, colIDs, ordIDs []string
	// seenItems dedupes items (group meta is applied to every member).
	seenItems map[string]bool
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (c *converter) add(it Item) {
	k := it.Category + "\x00" + it.Element + "\x00" + it.ID + "\x00" + it.What + "\x00" + it.Why
	if c.seenItems[k] {
		return
	}
	if c.seenItems == nil {
		c.seenItems = map[string]bool{}
	}
	c.seenItems[k] = true
	c.rep.Items = append(c.rep.Items, it)
}

func (c *converter) note(format string, args ...any) {
	c.rep.Notes = append(c.rep.Notes, fmt.Sprintf(format, args...))
}

// norm normalises a Pacemaker option name: old CIBs write underscores.
func norm(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
}

// parserFindings carries what the CIB parser did not interpret into the report.
func (c *converter) parserFindings() {
	for _, u := range c.m.Unsupported {
		path, why, _ := strings.Cut(u, ": ")
		elem, id := splitWhere(path)
		it := Item{Category: CatCIB, Element: elem, ID: id, What: path, Why: "not interpreted by the CIB parser: " + why, Placement: true}
		switch elem {
		case "bundle":
			it.Category, it.Why = CatBundle, "bundle (container) resources are not supported by paceline; run the container as a resource of class systemd or process"
		case "rsc_ticket", "tickets":
			it.Category, it.Why = CatTicket, "tickets (multi-site, booth) are not supported by paceline"
		case "fencing-topology":
			it.Category, it.Why, it.Placement = CatFencing, "fencing topology is not converted (fencing comes with the fencing issue)", false
		case "acls":
			it.Category, it.Why, it.Placement = CatProperty, "ACLs are not converted: paceline authorises API clients with tokens", false
		case "alerts":
			it.Category, it.Why, it.Placement = CatProperty, "alerts are not converted: follow `paceline events --follow` instead", false
		}
		c.add(it)
	}
	for _, n := range c.m.Notes {
		path, why, _ := strings.Cut(n, ": ")
		elem, id := splitWhere(path)
		if strings.HasPrefix(why, "id-ref resolved") {
			c.note("%s: %s", path, why)
			continue
		}
		if strings.Contains(why, "has a rule") {
			pl := elem != "instance_attributes"
			c.add(Item{Category: CatRule, Element: elem, ID: id, What: "attribute set rule",
				Why: "attribute sets that apply only when a rule holds are not supported; the values were applied unconditionally", Placement: pl})
			continue
		}
		c.add(Item{Category: CatCIB, Element: elem, ID: id, What: path, Why: why, Placement: true})
	}
}

// splitWhere reads "a/b/elem[@id=X]" into ("elem", "X").
func splitWhere(path string) (elem, id string) {
	last := path[strings.LastIndex(path, "/")+1:]
	elem, rest, ok := strings.Cut(last, "[@id=")
	if ok {
		id = strings.TrimSuffix(rest, "]")
	}
	return elem, id
}

// ---- cluster ----

func (c *converter) cluster(opt Options) {
	cl := &c.s.Cluster
	props := c.m.Properties
	name := opt.ClusterName
	if name == "" {
		if v, ok := props.Get("cluster-name"); ok && strings.TrimSpace(v) != "" {
			name = sanitize(v)
			if name != v {
				c.rep.Renames = append(c.rep.Renames, Rename{Kind: "cluster", From: v, To: name})
			}
		} else {
			name = DefaultClusterName
			c.note("the CIB has no cluster-name property; the cluster is named %q (pass --cluster-name to choose; it must equal the agents' clusterName)", name)
		}
	} else if !validName(name) {
		n := sanitize(name)
		c.rep.Renames = append(c.rep.Renames, Rename{Kind: "cluster", From: name, To: n})
		name = n
	}
	cl.Name = name
	// Pacemaker's default stickiness is 0; paceline's is 100, so it is
	// always written out.
	stick := 0
	seen := map[string]bool{}
	for _, set := range props {
		for _, p := range set.Pairs {
			k := norm(p.Name)
			if seen[k] {
				c.add(Item{Category: CatProperty, Element: "nvpair", ID: pick(p.ID, set.ID), What: p.Name + "=" + p.Value,
					Why: "a later value of a cluster property that is already set; Pacemaker uses the first", Placement: false})
				continue
			}
			seen[k] = true
			c.property(set.ID, p, k, &stick)
		}
	}
	if v, ok := c.rscDefault("resource-stickiness"); ok && !strings.EqualFold(v.Value, "default") {
		if n, err := scoreInt(v.Value); err == nil {
			stick = n
		} else {
			c.add(Item{Category: CatProperty, Element: "nvpair", ID: v.ID, What: "rsc_defaults resource-stickiness=" + v.Value, Why: err.Error(), Placement: true})
		}
	}
	cl.Stickiness = ptr(stick)
}

func (c *converter) property(setID string, p cib.NVPair, k string, stick *int) {
	cl := &c.s.Cluster
	id := pick(p.ID, setID)
	bad := func(why string, placement bool) {
		c.add(Item{Category: CatProperty, Element: "nvpair", ID: id, What: "cluster property " + p.Name + "=" + p.Value, Why: why, Placement: placement})
	}
	v := strings.TrimSpace(p.Value)
	switch k {
	case "cluster-name":
	case "symmetric-cluster":
		cl.Symmetric = ptr(cib.IsTrue(v))
	case "maintenance-mode":
		cl.Maintenance = cib.IsTrue(v)
	case "placement-strategy":
		switch strings.ToLower(v) {
		case "default", "utilization", "balanced", "minimal":
			cl.PlacementStrategy = strings.ToLower(v)
		default:
			bad("not a placement strategy (default, utilization, balanced, minimal)", true)
		}
	case "start-failure-is-fatal":
		cl.StartFailureIsFatal = ptr(cib.IsTrue(v))
	case "default-resource-stickiness":
		if n, err := scoreInt(v); err == nil {
			*stick = n
		} else {
			bad(err.Error(), true)
		}
	case "batch-limit":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("not a non-negative number", false)
		} else {
			cl.BatchLimit = n
		}
	case "no-quorum-policy":
		switch strings.ToLower(v) {
		case "stop", "":
			cl.NoQuorumPolicy = "stop"
		default:
			bad("paceline implements no-quorum-policy stop only (a node without quorum stops its exclusive resources); freeze, ignore, demote and fence come with fencing", false)
		}
	case "stonith-enabled":
		if cib.IsTrue(v) {
			bad("fencing is not converted (fencing comes with the fencing issue); paceline's hold lease keeps an exclusive resource on one node meanwhile", false)
		} else {
			c.note("stonith-enabled=false: nothing to convert (paceline does not fence yet)")
		}
	case "dc-version", "cluster-infrastructure", "have-watchdog", "last-lrm-refresh", "dc-deadtime", "cluster-recheck-interval",
		"election-timeout", "shutdown-escalation", "join-integration-timeout", "join-finalization-timeout", "transition-delay",
		"pe-error-series-max", "pe-warn-series-max", "pe-input-series-max", "cluster-delay", "load-threshold", "node-action-limit",
		"migration-limit", "enable-acl", "enable-startup-probes", "stop-orphan-resources", "stop-orphan-actions", "remove-after-stop",
		"cluster-ipc-limit", "default-action-timeout", "expected-quorum-votes", "crmd-integration-timeout", "crmd-finalization-timeout",
		"crmd-transition-delay", "startup-fencing", "short-resource-names", "record-pending":
		bad("a Pacemaker daemon or transition setting with no paceline counterpart", false)
	case "stonith-action", "stonith-timeout", "stonith-max-attempts", "stonith-watchdog-timeout", "concurrent-fencing",
		"fence-reaction", "priority-fencing-delay", "fencing-enabled":
		bad("fencing is not converted (fencing comes with the fencing issue)", false)
	case "stop-all-resources":
		if cib.IsTrue(v) {
			bad("stop-all-resources is not supported; set targetRole: stopped on each resource", true)
		}
	case "is-managed-default":
		if !cib.IsTrue(v) {
			bad("is-managed-default=false is not converted as a default; it was applied to each resource as managed: false", false)
		}
	case "default-migration-threshold", "default-failure-timeout":
		// applied per resource (see meta)
	case "node-health-strategy", "node-health-green", "node-health-yellow", "node-health-red", "node-health-base":
		if k == "node-health-strategy" && strings.ToLower(v) == "none" {
			return
		}
		bad("node health is not supported", k == "node-health-strategy")
	case "shutdown-lock", "shutdown-lock-limit":
		bad("shutdown locks are not supported", cib.IsTrue(v))
	case "symmetric-cluster-default":
		bad("unknown cluster property", false)
	default:
		bad("unknown cluster property (not converted)", false)
	}
}

// rscDefault returns the first rsc_defaults pair named name (normalised).
func (c *converter) rscDefault(name string) (cib.NVPair, bool) {
	for _, set := range c.m.RscDefaults {
		for _, p := range set.Pairs {
			if norm(p.Name) == name {
				return p, true
			}
		}
	}
	return cib.NVPair{}, false
}

func (c *converter) propertyValue(name string) (string, bool) {
	for _, set := range c.m.Properties {
		for _, p := range set.Pairs {
			if norm(p.Name) == name {
				return p.Value, true
			}
		}
	}
	return "", false
}

// ---- nodes ----

func (c *converter) nodeNames() {
	var all []string
	seen := map[string]bool{}
	addName := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			all = append(all, n)
		}
	}
	for _, n := range c.m.Nodes {
		addName(nodeUname(n))
	}
	for _, s := range c.m.NodeStates {
		addName(s.Uname)
	}
	for _, n := range all {
		c.nodes.reserve(n)
	}
	for _, n := range all {
		to := c.nodes.name(n)
		c.rep.Nodes[n] = to
		if to != n {
			c.rep.Renames = append(c.rep.Renames, Rename{Kind: "node", From: n, To: to})
		}
	}
	done := map[string]bool{}
	for _, n := range c.m.Nodes {
		un := nodeUname(n)
		if un == "" {
			c.add(Item{Category: CatNode, Element: "node", ID: n.ID, Why: "a node without uname or id is not converted", Placement: false})
			continue
		}
		if t := strings.ToLower(n.Type); t == "remote" || t == "ping" {
			c.add(Item{Category: CatRemote, Element: "node", ID: n.ID, What: "type=" + n.Type,
				Why: "Pacemaker Remote and ping nodes are not supported: run a paceline agent on the host instead", Placement: t == "remote"})
			continue
		}
		name := c.rep.Nodes[un]
		if done[name] {
			c.add(Item{Category: CatNode, Element: "node", ID: n.ID, What: "uname=" + un, Why: "the node is declared twice; the first declaration was converted", Placement: false})
			continue
		}
		done[name] = true
		ns := spec.NodeSpec{Name: name}
		for _, set := range n.Instance {
			for _, p := range set.Pairs {
				k := p.Name
				switch {
				case (norm(k) == "standby" || norm(k) == "maintenance") && !cib.IsTrue(p.Value):
					// off is the default: nothing to carry over
				case norm(k) == "standby" || norm(k) == "maintenance":
					c.add(Item{Category: CatNodeState, Element: "nvpair", ID: pick(p.ID, set.ID), What: "node " + un + " " + k + "=" + p.Value,
						Why: "node standby and maintenance are node state, not spec: run `paceline node standby|maintenance " + name + "` after the import", Placement: cib.IsTrue(p.Value)})
				case k == "" || strings.HasPrefix(k, "#"):
					c.add(Item{Category: CatNode, Element: "nvpair", ID: pick(p.ID, set.ID), What: "node attribute " + k,
						Why: "not a valid attribute name (empty or starting with '#', which is reserved for built-in attributes)", Placement: true})
				default:
					if ns.Attributes == nil {
						ns.Attributes = map[string]string{}
					}
					if _, dup := ns.Attributes[k]; dup {
						continue // first value wins, as in Pacemaker
					}
					ns.Attributes[k] = p.Value
				}
			}
		}
		for _, set := range n.Utilization {
			for _, p := range set.Pairs {
				v, err := strconv.Atoi(strings.TrimSpace(p.Value))
				if err != nil || v < 0 {
					c.add(Item{Category: CatUtilization, Element: "nvpair", ID: pick(p.ID, set.ID), What: "node " + un + " capacity " + p.Name + "=" + p.Value,
						Why: "capacity must be a whole number of 0 or more", Placement: true})
					continue
				}
				if ns.Capacity == nil {
					ns.Capacity = map[string]int{}
				}
				if _, dup := ns.Capacity[p.Name]; !dup {
					ns.Capacity[p.Name] = v
				}
			}
		}
		c.s.Nodes = append(c.s.Nodes, ns)
	}
}

// CatNodeState is node standby/maintenance written in the configuration:
// node state in paceline, set with `paceline node`, not part of the spec.
const CatNodeState = "node-state"

func nodeUname(n cib.Node) string {
	if n.Uname != "" {
		return n.Uname
	}
	return n.ID
}

// nodeName maps a node name as written in a constraint or rule.
func (c *converter) nodeName(n string) string {
	if to, ok := c.rep.Nodes[n]; ok {
		return to
	}
	if validNode(n) {
		return n
	}
	return sanitizeNode(n)
}

// ---- helpers for meta ----

func roleOf(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "started":
		return spec.RoleStarted, true
	case "stopped":
		return spec.RoleStopped, true
	case "master", "promoted":
		return spec.RolePromoted, true
	case "slave", "unpromoted":
		return spec.RoleUnpromoted, true
	}
	return "", false
}

func joinIDs(ids []string) string { return strings.Join(slices.Compact(ids), ", ") }
