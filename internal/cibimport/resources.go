package cibimport

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/spec"
)

// plan is what one CIB resource element becomes.
type plan struct {
	r       *cib.Resource
	parents []*cib.Resource // enclosing group and/or clone, innermost first
	kind    string          // "resource", "group", "skip"
}

// resources converts primitives, groups and clones.
func (c *converter) resources() {
	var plans []plan
	seen := map[string]bool{}
	var walk func(r *cib.Resource, parents []*cib.Resource)
	walk = func(r *cib.Resource, parents []*cib.Resource) {
		if r == nil {
			return
		}
		where := string(r.Kind)
		if r.ID == "" {
			c.add(Item{Category: CatResource, Element: where, Why: "a resource without an id is not converted (Pacemaker refuses it too)", Placement: false})
			return
		}
		if seen[r.ID] {
			c.add(Item{Category: CatResource, Element: where, ID: r.ID, Why: "a second resource with the same id is not converted (ids must be unique)", Placement: true})
			return
		}
		seen[r.ID] = true
		switch r.Kind {
		case cib.KindBundle:
			c.gone[r.ID] = goneRef{why: "it is a bundle, which is not supported", category: CatBundle, placement: true}
			for _, ch := range r.Children {
				if ch.ID != "" && !seen[ch.ID] {
					seen[ch.ID] = true
					c.gone[ch.ID] = goneRef{why: "it runs inside bundle " + r.ID + ", which is not supported", category: CatBundle, placement: true}
				}
			}
			return
		case cib.KindGroup:
			if len(parents) > 0 { // a group inside a clone
				c.gone[r.ID] = goneRef{why: "it is a group inside clone " + parents[0].ID + ", which is not converted", category: CatCloneGroup, placement: true}
				for _, ch := range r.Children {
					if ch.ID != "" && !seen[ch.ID] {
						seen[ch.ID] = true
						c.gone[ch.ID] = goneRef{why: "it is a member of group " + r.ID + " inside clone " + parents[0].ID + ", which is not converted", category: CatCloneGroup, placement: true}
					}
				}
				return
			}
			plans = append(plans, plan{r: r, kind: "group"})
			for _, ch := range r.Children {
				walk(ch, append([]*cib.Resource{r}, parents...))
			}
			return
		case cib.KindClone, cib.KindMaster:
			if len(r.Children) == 0 {
				c.gone[r.ID] = goneRef{why: "it is a clone with nothing in it", category: CatResource, placement: false}
				return // the parser listed it
			}
			ch := r.Children[0]
			if ch.Kind == cib.KindGroup {
				if r.Promotable() {
					members := []string{}
					for _, m := range ch.Children {
						members = append(members, m.ID)
					}
					c.add(Item{Category: CatCloneGroup, Element: string(r.Kind), ID: r.ID, What: "promotable clone of group " + ch.ID + " (" + joinIDs(members) + ")",
						Why: "promotable clones of groups are not converted (a cloned group's members are plain clones)", Placement: true})
					c.gone[r.ID] = goneRef{why: "it is a promotable clone of a group, which is not converted", category: CatCloneGroup, placement: true}
					c.gone[ch.ID] = goneRef{why: "it is a group inside promotable clone " + r.ID + ", which is not converted", category: CatCloneGroup, placement: true}
					for _, m := range ch.Children {
						if m.ID != "" && !seen[m.ID] {
							seen[m.ID] = true
							c.gone[m.ID] = goneRef{why: "it is a member of group " + ch.ID + " inside promotable clone " + r.ID + ", which is not converted", category: CatCloneGroup, placement: true}
						}
					}
					return
				}
				// A cloned group: a group whose members are clones with the
				// clone's settings (paceline runs each member instance with
				// the previous member's instance on its node).
				if ch.ID != "" && !seen[ch.ID] {
					seen[ch.ID] = true
				}
				plans = append(plans, plan{r: ch, parents: []*cib.Resource{r}, kind: "group"})
				for _, m := range ch.Children {
					walk(m, []*cib.Resource{ch, r})
				}
				c.note("clone %s of group %s: converted to a group of clones (each member a clone with the clone's settings)", r.ID, ch.ID)
				return
			}
			if ch.ID != "" && !seen[ch.ID] {
				seen[ch.ID] = true
			}
			plans = append(plans, plan{r: ch, parents: []*cib.Resource{r}, kind: "resource"})
			return
		case cib.KindPrimitive:
			plans = append(plans, plan{r: r, parents: parents, kind: "resource"})
			return
		}
		c.add(Item{Category: CatResource, Element: where, ID: r.ID, Why: "not a resource kind paceline converts", Placement: true})
	}
	for _, r := range c.m.Resources {
		walk(r, nil)
	}
	// Decide which primitives are not resources (fencing, remote) before naming.
	for i := range plans {
		p := &plans[i]
		if p.kind != "resource" {
			continue
		}
		if g, ok := c.notAResource(p.r); ok {
			p.kind = "skip"
			id := p.r.ID
			if len(p.parents) > 0 && isClone(p.parents[0]) {
				id = p.parents[0].ID
				c.gone[p.r.ID] = g
			}
			c.gone[id] = g
		}
	}
	// Names: valid ids keep theirs, the rest are sanitized (document order).
	nameID := func(p plan) string {
		if p.kind == "resource" && len(p.parents) > 0 && isClone(p.parents[0]) {
			return p.parents[0].ID
		}
		return p.r.ID
	}
	for _, p := range plans {
		if p.kind != "skip" {
			c.names.reserve(nameID(p))
		}
	}
	for _, p := range plans {
		if p.kind == "skip" {
			continue
		}
		id := nameID(p)
		n := c.names.name(id)
		if n != id {
			kind := p.kind
			c.rep.Renames = append(c.rep.Renames, Rename{Kind: kind, From: id, To: n})
		}
	}
	// Convert.
	for _, set := range c.m.RscDefaults {
		for _, pr := range set.Pairs {
			c.checkMetaKey("rsc_defaults", set.ID, pr, false, false)
		}
	}
	c.opDefaults()
	for _, p := range plans {
		switch p.kind {
		case "group":
			if len(p.parents) > 0 && isClone(p.parents[0]) {
				c.checkOwnMeta(p.parents[0])
			}
			c.checkOwnMeta(p.r)
		case "resource":
			if len(p.parents) > 0 && isClone(p.parents[0]) {
				c.checkOwnMeta(p.parents[0])
			}
			c.checkOwnMeta(p.r)
			c.primitive(p)
		}
	}
	for _, p := range plans {
		if p.kind != "group" {
			continue
		}
		g := spec.Group{Name: c.names.name(p.r.ID)}
		var lost []string
		for _, ch := range p.r.Children {
			if n, ok := c.rep.Resources[ch.ID]; ok {
				if _, isRes := c.index[n]; isRes {
					g.Members = append(g.Members, n)
					continue
				}
			}
			lost = append(lost, ch.ID)
		}
		if len(lost) > 0 && len(g.Members) > 0 {
			c.add(Item{Category: CatResource, Element: "group", ID: p.r.ID, What: "members " + joinIDs(lost),
				Why: "these members were not converted (see their own entries); the group holds the others", Placement: true})
		}
		if len(g.Members) == 0 {
			fencing := true
			for _, ch := range p.r.Children {
				if c.gone[ch.ID].category != CatFencing {
					fencing = false
				}
			}
			if fencing {
				c.add(Item{Category: CatFencing, Element: "group", ID: p.r.ID, Why: "a group of fencing devices, not converted (fencing comes with the fencing issue)", Placement: false})
				c.gone[p.r.ID] = goneRef{why: "it is a group of fencing devices, which is not converted", category: CatFencing, placement: false}
				continue
			}
			c.add(Item{Category: CatResource, Element: "group", ID: p.r.ID, Why: "no member of the group was converted", Placement: true})
			c.gone[p.r.ID] = goneRef{why: "no member of the group was converted", category: CatResource, placement: true}
			continue
		}
		c.s.Groups = append(c.s.Groups, g)
		c.groups[g.Name] = true
		c.rep.Resources[p.r.ID] = g.Name
		if len(p.parents) > 0 && isClone(p.parents[0]) {
			c.rep.Resources[p.parents[0].ID] = g.Name // the clone of the group is the group
		}
	}
}

func isClone(r *cib.Resource) bool { return r.Kind == cib.KindClone || r.Kind == cib.KindMaster }

// notAResource reports primitives that have no spec counterpart by nature.
func (c *converter) notAResource(r *cib.Resource) (goneRef, bool) {
	cls := strings.ToLower(r.Class)
	switch {
	case cls == "stonith":
		c.add(Item{Category: CatFencing, Element: "primitive", ID: r.ID, What: "stonith:" + r.Type,
			Why: "fencing device, not converted (fencing comes with the fencing issue)", Placement: false})
		return goneRef{why: "it is a fencing device, which is not converted", category: CatFencing, placement: false}, true
	case cls == "ocf" && strings.EqualFold(r.Provider, "pacemaker") && r.Type == "remote":
		c.add(Item{Category: CatRemote, Element: "primitive", ID: r.ID, What: "ocf:pacemaker:remote",
			Why: "Pacemaker Remote connections are not supported: run a paceline agent on the remote host instead", Placement: true})
		return goneRef{why: "it is a Pacemaker Remote connection, which is not supported", category: CatRemote, placement: true}, true
	}
	return goneRef{}, false
}

// className converts class/provider/type.
func (c *converter) className(r *cib.Resource) (string, string) {
	typ := r.Type
	if strings.Contains(typ, "/") {
		base := typ[strings.LastIndex(typ, "/")+1:]
		if base != "" {
			c.add(Item{Category: CatResource, Element: "primitive", ID: r.ID, What: "type=" + typ,
				Why: "agents are found by name, not path: converted to " + base + "; install the agent where paceline looks for it (/usr/lib/ocf/resource.d/PROVIDER or /etc/init.d)", Placement: false})
			typ = base
		}
	}
	switch strings.ToLower(r.Class) {
	case "ocf":
		if r.Provider == "" {
			return "", "an ocf resource needs a provider"
		}
		return "ocf:" + r.Provider + ":" + typ, ""
	case "lsb":
		return "lsb:" + typ, ""
	case "systemd":
		return "systemd:" + typ, ""
	case "service":
		c.note("primitive %s: class service:%s converted to systemd:%s (Pacemaker picks lsb or systemd on each host; paceline needs one)", r.ID, typ, typ)
		return "systemd:" + typ, ""
	case "":
		return "", "the primitive has no class"
	}
	return "", fmt.Sprintf("class %s is not supported by paceline (supported: ocf, lsb, systemd, process)", r.Class)
}

// meta looks up a meta attribute along the resource's chain: its own
// attributes, then its group's and clone's, then rsc_defaults.
type metaChain struct {
	c     *converter
	chain []*cib.Resource
}

type metaVal struct {
	value, owner, id string
}

func (mc metaChain) get(key string) (metaVal, bool) {
	for _, r := range mc.chain {
		for _, set := range r.Meta {
			for _, p := range set.Pairs {
				if norm(p.Name) == key {
					return metaVal{p.Value, r.ID, pick(p.ID, set.ID)}, true
				}
			}
		}
	}
	if p, ok := mc.c.rscDefault(key); ok {
		return metaVal{p.Value, "rsc_defaults", p.ID}, true
	}
	return metaVal{}, false
}

// all returns every value of key along the chain (own first) and rsc_defaults.
func (mc metaChain) all(key string) []metaVal {
	var out []metaVal
	for _, r := range mc.chain {
		for _, set := range r.Meta {
			for _, p := range set.Pairs {
				if norm(p.Name) == key {
					out = append(out, metaVal{p.Value, r.ID, pick(p.ID, set.ID)})
					break
				}
			}
		}
	}
	if len(out) == 0 {
		if p, ok := mc.c.rscDefault(key); ok {
			out = append(out, metaVal{p.Value, "rsc_defaults", p.ID})
		}
	}
	return out
}

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *converter) primitive(p plan) {
	r := p.r
	var clone *cib.Resource
	id := r.ID
	switch {
	case len(p.parents) > 0 && isClone(p.parents[0]):
		clone = p.parents[0]
		id = clone.ID
	case len(p.parents) > 1 && isClone(p.parents[1]):
		clone = p.parents[1] // a member of a cloned group keeps its own name
	}
	name := c.names.name(id)
	bad := func(why string) {
		c.add(Item{Category: CatResource, Element: "primitive", ID: r.ID, What: fmt.Sprintf("%s:%s:%s", r.Class, r.Provider, r.Type), Why: why, Placement: true})
		c.gone[r.ID] = goneRef{why: "it was not converted (" + why + ")", category: CatResource, placement: true}
		if clone != nil {
			c.gone[clone.ID] = c.gone[r.ID]
		}
	}
	class, why := c.className(r)
	if why != "" {
		bad(why)
		return
	}
	info, err := spec.ParseClass(class)
	if err != nil {
		bad(err.Error())
		return
	}
	res := spec.Resource{Name: name, Class: class}
	chain := metaChain{c: c, chain: append([]*cib.Resource{r}, p.parents...)}

	// Mode.
	if clone != nil {
		res.Mode = spec.ModeClone
		if clone.Promotable() {
			if info.Kind == spec.KindOCF {
				res.Mode = spec.ModePromotable
			} else {
				c.add(Item{Category: CatResource, Element: string(clone.Kind), ID: clone.ID, What: "promotable",
					Why: "only OCF agents can be promoted; converted as a plain clone", Placement: true})
			}
		}
		c.cloneSettings(&res, clone, info)
	}
	// Params.
	for _, set := range r.Instance {
		for _, pr := range set.Pairs {
			switch {
			case !info.Script():
			case info.Kind != spec.KindOCF:
				c.add(Item{Category: CatParam, Element: "nvpair", ID: pick(pr.ID, set.ID), What: "parameter " + pr.Name + "=" + pr.Value,
					Why: "class " + class + " takes no parameters in paceline (configure the unit or script itself)", Placement: false})
			case !paramNameRE.MatchString(pr.Name):
				c.add(Item{Category: CatParam, Element: "nvpair", ID: pick(pr.ID, set.ID), What: "parameter " + pr.Name,
					Why: "not a valid OCF parameter name (letters, digits and '_')", Placement: false})
			default:
				if res.Params.Values == nil {
					res.Params.Values = map[string]string{}
				}
				if _, dup := res.Params.Values[pr.Name]; !dup {
					res.Params.Values[pr.Name] = pr.Value
				}
			}
		}
	}
	c.metaToResource(&res, r, clone, chain)
	// Utilization.
	for _, set := range r.Utilization {
		for _, pr := range set.Pairs {
			v, err := strconv.Atoi(strings.TrimSpace(pr.Value))
			if err != nil || v < 0 {
				c.add(Item{Category: CatUtilization, Element: "nvpair", ID: pick(pr.ID, set.ID), What: "utilization " + pr.Name + "=" + pr.Value,
					Why: "utilization must be a whole number of 0 or more", Placement: true})
				continue
			}
			if res.Utilization == nil {
				res.Utilization = map[string]int{}
			}
			if _, dup := res.Utilization[pr.Name]; !dup {
				res.Utilization[pr.Name] = v
			}
		}
	}
	c.operations(&res, r)
	c.index[name] = len(c.s.Resources)
	c.s.Resources = append(c.s.Resources, res)
	c.rep.Resources[r.ID] = name
	if clone != nil {
		c.rep.Resources[clone.ID] = name
		if r.ID != clone.ID {
			c.note("primitive %s inside %s %s is the spec resource %s; constraints naming either id refer to it", r.ID, clone.Kind, clone.ID, name)
		}
	}
	if r.Template != "" {
		c.tmplUse[r.Template] = append(c.tmplUse[r.Template], name)
	}
}

func (c *converter) cloneSettings(res *spec.Resource, clone *cib.Resource, info spec.ClassInfo) {
	get := func(keys ...string) (metaVal, bool) {
		for _, k := range keys {
			for _, set := range clone.Meta {
				for _, p := range set.Pairs {
					if norm(p.Name) == k {
						return metaVal{p.Value, clone.ID, pick(p.ID, set.ID)}, true
					}
				}
			}
		}
		return metaVal{}, false
	}
	badv := func(v metaVal, key, why string, placement bool) {
		c.add(Item{Category: CatMeta, Element: "nvpair", ID: v.id, What: key + "=" + v.value + " of " + clone.ID, Why: why, Placement: placement})
	}
	count := func(v metaVal, key string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v.value))
		if err != nil || n < 0 {
			badv(v, key, "not a whole number of 0 or more", true)
			return 0, false
		}
		return n, true
	}
	if v, ok := get("globally-unique"); ok && cib.IsTrue(v.value) {
		c.add(Item{Category: CatMeta, Element: "nvpair", ID: v.id, What: "globally-unique=true of " + clone.ID,
			Why: "paceline clone instances are interchangeable (numbered slots); unique instance identities are not kept", Placement: false})
	}
	if v, ok := get("clone-max"); ok {
		if n, ok := count(v, "clone-max"); ok {
			if n == 0 {
				res.TargetRole = spec.RoleStopped
				c.note("%s: clone-max=0 runs no instance; converted to targetRole: stopped", clone.ID)
			} else {
				res.Replicas = n
			}
		}
	}
	if v, ok := get("clone-node-max"); ok {
		if n, ok := count(v, "clone-node-max"); ok {
			switch {
			case n > 1:
				res.MaxPerNode = n
			case n == 0:
				badv(v, "clone-node-max", "no instance may run on any node; converted as targetRole: stopped", false)
				res.TargetRole = spec.RoleStopped
			}
		}
	}
	if v, ok := get("interleave"); ok {
		res.Interleave = cib.IsTrue(v.value)
	}
	if v, ok := get("notify"); ok && cib.IsTrue(v.value) {
		if info.Kind == spec.KindOCF {
			res.Notify = true
		} else {
			badv(v, "notify", "notifications need an OCF agent", false)
		}
	}
	if res.Mode == spec.ModePromotable {
		if v, ok := get("promoted-max", "master-max"); ok {
			if n, ok := count(v, "promoted-max"); ok {
				if n == 0 {
					res.TargetRole = spec.RoleUnpromoted
					c.note("%s: promoted-max=0 promotes no instance; converted to targetRole: unpromoted", clone.ID)
				} else {
					res.PromotedMax = n
				}
			}
		}
		if v, ok := get("promoted-node-max", "master-node-max"); ok {
			if n, ok := count(v, "promoted-node-max"); ok {
				if n == 0 {
					res.TargetRole = spec.RoleUnpromoted
					c.note("%s: promoted-node-max=0 promotes no instance; converted to targetRole: unpromoted", clone.ID)
				} else {
					res.PromotedMaxPerNode = n
				}
			}
		}
	}
}

// metaToResource applies the resource meta attributes along the chain.
func (c *converter) metaToResource(res *spec.Resource, r, clone *cib.Resource, mc metaChain) {
	badv := func(v metaVal, key, why string, placement bool) {
		c.add(Item{Category: CatMeta, Element: "nvpair", ID: v.id, What: key + "=" + v.value + " (" + v.owner + ")", Why: why, Placement: placement})
	}
	// target-role: the most restrictive along the chain wins.
	rank := map[string]int{"": 0, spec.RoleStarted: 0, spec.RolePromoted: 0, spec.RoleUnpromoted: 1, spec.RoleStopped: 2}
	role := res.TargetRole
	for _, v := range mc.all("target-role") {
		if strings.EqualFold(v.value, "#default") || strings.EqualFold(v.value, "default") {
			continue // unset, as in Pacemaker
		}
		ro, ok := roleOf(v.value)
		if !ok {
			badv(v, "target-role", "not a role (Started, Stopped, Promoted, Unpromoted)", true)
			continue
		}
		if res.Mode != spec.ModePromotable && (ro == spec.RolePromoted || ro == spec.RoleUnpromoted) {
			ro = spec.RoleStarted
		}
		if rank[ro] > rank[role] || (role == "" && ro != spec.RoleStarted) {
			role = ro
		}
	}
	if role == spec.RoleStarted {
		role = ""
	}
	res.TargetRole = role
	if v, ok := mc.get("is-managed"); ok {
		if !cib.IsTrue(v.value) {
			res.Managed = ptr(false)
		}
	} else if v, ok := c.propertyValue("is-managed-default"); ok && !cib.IsTrue(v) {
		res.Managed = ptr(false)
	}
	if v, ok := mc.get("maintenance"); ok && cib.IsTrue(v.value) {
		res.Maintenance = true
	}
	if v, ok := mc.get("resource-stickiness"); ok && !strings.EqualFold(v.value, "default") {
		if v.owner == "rsc_defaults" {
			// cluster.stickiness carries it
		} else if n, err := scoreInt(v.value); err == nil {
			res.Stickiness = ptr(n)
		} else {
			badv(v, "resource-stickiness", err.Error(), true)
		}
	} else if clone != nil {
		if _, set := c.propertyValue("default-resource-stickiness"); !set {
			// Pacemaker makes clones "ever so slightly sticky" by default.
			res.Stickiness = ptr(1)
		}
	}
	thr := int(spec.Infinity) // Pacemaker's default: INFINITY
	if v, ok := mc.get("migration-threshold"); ok && !strings.EqualFold(v.value, "default") {
		if n, err := scoreInt(v.value); err == nil {
			if n < 0 {
				n = 1 // as Pacemaker does
			}
			thr = n
		} else {
			badv(v, "migration-threshold", err.Error(), true)
		}
	} else if v, ok := c.propertyValue("default-migration-threshold"); ok {
		if n, err := scoreInt(v); err == nil && n >= 0 {
			thr = n
		}
	}
	res.MigrationThreshold = ptr(thr)
	ft, ok := mc.get("failure-timeout")
	if !ok {
		if v, ok2 := c.propertyValue("default-failure-timeout"); ok2 {
			ft, ok = metaVal{v, "crm_config", "default-failure-timeout"}, true
		}
	}
	if ok {
		if d, err := parseInterval(ft.value); err == nil {
			res.FailureTimeout = d
		} else {
			badv(ft, "failure-timeout", err.Error(), true)
		}
	}
	if v, ok := mc.get("priority"); ok {
		if n, err := scoreInt(v.value); err == nil {
			res.Priority = n
		} else {
			badv(v, "priority", err.Error(), true)
		}
	}
	if v, ok := mc.get("multiple-active"); ok {
		switch strings.ToLower(strings.TrimSpace(v.value)) {
		case "stop-start", "stop_start":
		case "stop-only", "stop_only":
			res.MultipleActive = spec.MultipleStopOnly
		case "block":
			res.MultipleActive = spec.MultipleBlock
		case "stop-unexpected", "stop_unexpected":
			res.MultipleActive = spec.MultipleStopUnexpected
		default:
			badv(v, "multiple-active", "not a multiple-active value (stop_start, stop_only, block, stop_unexpected)", false)
		}
	}
}

// checkOwnMeta reports the meta attributes of r that have no counterpart.
func (c *converter) checkOwnMeta(r *cib.Resource) {
	for _, set := range r.Meta {
		for _, p := range set.Pairs {
			c.checkMetaKey(string(r.Kind), r.ID, p, isClone(r), r.Kind == cib.KindGroup)
		}
	}
	if r.Description != "" {
		c.note("%s %s: description %q is not kept (the spec has no description field)", r.Kind, r.ID, r.Description)
	}
}

func (c *converter) checkMetaKey(elem, owner string, p cib.NVPair, clone, group bool) {
	k := norm(p.Name)
	item := func(why string, placement bool, cat string) {
		c.add(Item{Category: cat, Element: "nvpair", ID: pick(p.ID, owner), What: "meta " + p.Name + "=" + p.Value + " of " + elem + " " + owner, Why: why, Placement: placement})
	}
	switch k {
	case "target-role", "is-managed", "maintenance", "resource-stickiness", "migration-threshold", "failure-timeout", "priority", "multiple-active":
		return
	case "clone-max", "clone-node-max", "interleave", "notify", "promotable", "promoted-max", "master-max", "promoted-node-max", "master-node-max", "globally-unique":
		if clone {
			return
		}
		if elem == "rsc_defaults" {
			item("clone settings in rsc_defaults are not converted; set them on each clone", true, CatMeta)
			return
		}
		item("a clone setting on a resource that is not a clone has no effect (Pacemaker ignores it too)", false, CatMeta)
	case "allow-migrate":
		item("live migration (migrate_to/migrate_from) is not supported; the resource is stopped and started instead", false, CatMeta)
	case "ordered":
		if cib.IsTrue(p.Value) {
			item("ordered clones (instances started one by one) are not supported", false, CatMeta)
		}
	case "clone-min":
		item("clone-min is not supported (dependents do not wait for a minimum number of instances)", true, CatMeta)
	case "requires":
		item("requires (quorum/fencing/unfencing prerequisites) is not converted", false, CatMeta)
	case "critical":
		item("critical is not supported", true, CatMeta)
	case "restart-type":
		item("restart-type is obsolete and not converted", false, CatMeta)
	case "container", "remote-node", "remote-port", "remote-addr", "remote-connect-timeout", "remote-allow-migrate", "container-attribute-target":
		item("guest and remote nodes are not supported", true, CatRemote)
	case "resource-failure-stickiness", "fail-stickiness":
		item("failure stickiness is obsolete (use migration-threshold)", true, CatMeta)
	case "record-pending", "timeout", "description":
		item("not a resource setting paceline keeps", false, CatMeta)
	default:
		item("unknown meta attribute (Pacemaker ignores it too)", false, CatMeta)
	}
}

// opDefaults reports op_defaults that are not applied.
func (c *converter) opDefaults() {
	for _, set := range c.m.OpDefaults {
		for _, p := range set.Pairs {
			switch norm(p.Name) {
			case "timeout", "on-fail":
			default:
				c.add(Item{Category: CatOperation, Element: "nvpair", ID: pick(p.ID, set.ID), What: "op_defaults " + p.Name + "=" + p.Value,
					Why: "only timeout and on-fail operation defaults are converted", Placement: false})
			}
		}
	}
}

func (c *converter) opDefault(key string) (string, string, bool) {
	for _, set := range c.m.OpDefaults {
		for _, p := range set.Pairs {
			if norm(p.Name) == key {
				return p.Value, pick(p.ID, set.ID), true
			}
		}
	}
	return "", "", false
}

func onFailOf(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "ignore", "nothing":
		return spec.OnFailIgnore, true
	case "block":
		return spec.OnFailBlock, true
	case "stop":
		return spec.OnFailStop, true
	case "restart":
		return spec.OnFailRestart, true
	case "standby":
		return spec.OnFailStandby, true
	case "demote":
		return spec.OnFailDemote, true
	}
	return "", false
}

func (c *converter) operations(res *spec.Resource, r *cib.Resource) {
	type key struct {
		name, role string
		interval   spec.Duration
	}
	seen := map[key]bool{}
	promotable := res.Mode == spec.ModePromotable
	defTimeout, defTimeoutID, hasDefTimeout := c.opDefault("timeout")
	defOnFail, _, hasDefOnFail := c.opDefault("on-fail")
	isProcess := res.Class == spec.ClassProcess
	for _, o := range r.Ops {
		oid := pick(o.ID, r.ID)
		skip := func(why string, placement bool) {
			c.add(Item{Category: CatOperation, Element: "op", ID: oid, What: fmt.Sprintf("%s interval=%s of %s", o.Name, pick(o.Interval, "0"), r.ID), Why: why, Placement: placement})
		}
		metaGet := func(k string) (string, bool) {
			for _, set := range o.Meta {
				for _, p := range set.Pairs {
					if norm(p.Name) == k {
						return p.Value, true
					}
				}
			}
			return "", false
		}
		if v, ok := o.Attrs["enabled"]; ok && !cib.IsTrue(v) {
			skip("a disabled operation is not converted", false)
			continue
		}
		name := strings.ToLower(strings.TrimSpace(o.Name))
		ivs := o.Interval
		if ivs == "" {
			ivs, _ = metaGet("interval")
		}
		var iv spec.Duration
		if ivs != "" {
			d, err := parseInterval(ivs)
			if err != nil {
				skip("interval: "+err.Error(), false)
				continue
			}
			iv = d
		}
		op := spec.Operation{Name: name}
		switch name {
		case "monitor":
			if iv == 0 {
				skip("an interval-0 monitor configures probes; paceline probes with the operation defaults", false)
				continue
			}
			op.Interval = iv
		case "start", "stop":
		case "promote", "demote":
			if !promotable {
				skip(name+" on a resource that is not promotable is never run", false)
				continue
			}
		case "notify":
			if !res.Notify {
				skip("a notify operation on a resource without notify=true is never run", false)
				continue
			}
		case "reload-agent":
		case "migrate_to", "migrate_from":
			skip("live migration is not supported", false)
			continue
		default:
			skip("operation "+o.Name+" is not one paceline runs (start, stop, monitor, promote, demote, notify, reload-agent)", false)
			continue
		}
		if isProcess && name != "start" && name != "stop" {
			skip("class process has only start and stop", false)
			continue
		}
		if iv != 0 && name != "monitor" {
			skip("only monitors have an interval; the interval was dropped", false)
		}
		// Role.
		if o.Role != "" {
			ro, ok := roleOf(o.Role)
			switch {
			case !ok:
				skip("role "+o.Role+" is not a role", false)
				continue
			case ro == spec.RoleStopped:
				skip("monitoring where the resource should be stopped (role=Stopped) is not supported", false)
				continue
			case ro == spec.RoleStarted:
			case name == "monitor" && promotable:
				op.Role = ro
			default:
				skip("role "+o.Role+" is only kept on monitors of promotable resources; dropped", false)
			}
		}
		// Timeout.
		to := o.Timeout
		toID := oid
		if to == "" {
			to, _ = metaGet("timeout")
		}
		if to == "" && hasDefTimeout {
			to, toID = defTimeout, defTimeoutID
		}
		if to != "" {
			d, err := parseInterval(to)
			if err != nil || d == 0 {
				c.add(Item{Category: CatOperation, Element: "op", ID: toID, What: "timeout=" + to + " of " + r.ID + " " + name,
					Why: "not a positive duration; the default (20s) applies", Placement: false})
			} else {
				op.Timeout = d
			}
		}
		// on-fail.
		of := o.OnFail
		if of == "" {
			of, _ = metaGet("on-fail")
		}
		if of == "" && hasDefOnFail {
			of = defOnFail
		}
		if of != "" {
			v, ok := onFailOf(of)
			switch {
			case strings.EqualFold(of, "fence"):
				skip("on-fail=fence is not converted (fencing comes with the fencing issue); the default applies", false)
			case !ok:
				skip("on-fail="+of+" is not supported", false)
			case v == spec.OnFailDemote && (!promotable || (name != "monitor" && name != "promote")):
				skip("on-fail=demote only applies to monitors and promote of promotable resources", false)
			default:
				op.OnFail = v
			}
		}
		// Depth.
		for _, set := range o.Instance {
			for _, p := range set.Pairs {
				if p.Name == "OCF_CHECK_LEVEL" {
					if n, err := strconv.Atoi(p.Value); err == nil && n >= 0 {
						op.Depth = n
					} else {
						skip("OCF_CHECK_LEVEL="+p.Value+" is not a number", false)
					}
				} else {
					skip("operation parameter "+p.Name+" is not converted (only OCF_CHECK_LEVEL)", false)
				}
			}
		}
		for _, set := range o.Meta {
			for _, p := range set.Pairs {
				switch norm(p.Name) {
				case "timeout", "on-fail", "interval":
				default:
					skip("operation meta "+p.Name+"="+p.Value+" is not converted", false)
				}
			}
		}
		for k, v := range sortedAttrs(o.Attrs) {
			switch k {
			case "id", "name", "interval", "timeout", "role", "on-fail", "enabled", "description":
			case "requires":
				skip("requires="+v+" is not converted", false)
			default:
				skip(k+"="+v+" is not converted", false)
			}
		}
		k := key{op.Name, op.Role, op.Interval}
		if seen[k] {
			skip("the same operation is defined twice; the first is kept", false)
			continue
		}
		seen[k] = true
		res.Operations = append(res.Operations, op)
	}
	// op_defaults timeout also applies to the operations not written out.
	if hasDefTimeout {
		d, err := parseInterval(defTimeout)
		if err == nil && d > 0 {
			implicit := []string{"start", "stop"}
			if promotable {
				implicit = append(implicit, "promote", "demote")
			}
			for _, n := range implicit {
				if !seen[key{n, "", 0}] {
					res.Operations = append(res.Operations, spec.Operation{Name: n, Timeout: d})
				}
			}
		}
	}
}

// sortedAttrs iterates a map in key order.
func sortedAttrs(m map[string]string) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sortStrings(keys)
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
