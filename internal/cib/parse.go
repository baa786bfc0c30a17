package cib

import (
	"fmt"
	"io"
	"maps"
)

// Parse reads a CIB document. Malformed XML, a document element other than
// <cib>, or an invalid score yields an error (with the line when known);
// constructs the parser does not interpret are listed in Model.Unsupported.
func Parse(r io.Reader) (*Model, error) {
	root, err := readTree(r)
	if err != nil {
		return nil, err
	}
	if root.name != "cib" {
		return nil, fmt.Errorf("cib: line %d: document element is <%s>, want <cib>", root.line, root.name)
	}
	p := &parser{m: &Model{CIB: root.attrs, Templates: map[string]*Resource{}, Tags: map[string][]string{}}, ids: map[string]*elem{}}
	p.index(root)
	for _, c := range root.children {
		switch c.name {
		case "configuration":
			if err := p.configuration(c); err != nil {
				return nil, err
			}
		case "status":
			if err := p.status(c); err != nil {
				return nil, err
			}
		default:
			p.unsupported(c, "unknown element")
		}
	}
	return p.m, nil
}

type parser struct {
	m   *Model
	ids map[string]*elem
	// inRule holds the rules being read, to refuse an id-ref cycle.
	inRule map[*elem]bool
}

func (p *parser) index(e *elem) {
	if id := e.attrs["id"]; id != "" {
		if _, dup := p.ids[id]; !dup {
			p.ids[id] = e
		}
	}
	for _, c := range e.children {
		p.index(c)
	}
}

func (p *parser) unsupported(e *elem, why string) {
	p.m.Unsupported = append(p.m.Unsupported, e.where()+": "+why)
}

func (p *parser) note(e *elem, format string, args ...any) {
	p.m.Notes = append(p.m.Notes, e.where()+": "+fmt.Sprintf(format, args...))
}

func (p *parser) errorf(e *elem, format string, args ...any) error {
	return fmt.Errorf("cib: line %d: %s: %s", e.line, e.where(), fmt.Sprintf(format, args...))
}

// deref replaces an element that carries id-ref by the element it names.
// ok is false (and the element is listed as unsupported) when the reference
// dangles or names an element of another kind.
func (p *parser) deref(e *elem) (*elem, bool) {
	ref, has := e.attrs["id-ref"]
	if !has {
		return e, true
	}
	t := p.ids[ref]
	if t == nil {
		p.unsupported(e, "dangling id-ref "+ref)
		return nil, false
	}
	if t.name != e.name {
		p.unsupported(e, fmt.Sprintf("id-ref %s names a <%s>", ref, t.name))
		return nil, false
	}
	if _, again := t.attrs["id-ref"]; again {
		p.unsupported(e, "id-ref "+ref+" names another reference")
		return nil, false
	}
	return t, true
}

func (p *parser) score(e *elem, attr string) (*Score, error) {
	v, ok := e.attrs[attr]
	if !ok {
		return nil, nil
	}
	s, err := ParseScore(v)
	if err != nil {
		return nil, p.errorf(e, "%s: %v", attr, err)
	}
	return &s, nil
}

func (p *parser) configuration(e *elem) error {
	for _, c := range e.children {
		var err error
		switch c.name {
		case "crm_config":
			p.m.Properties, err = p.nvsetsOf(c, "cluster_property_set")
		case "rsc_defaults":
			p.m.RscDefaults, err = p.nvsetsOf(c, "meta_attributes")
		case "op_defaults":
			p.m.OpDefaults, err = p.nvsetsOf(c, "meta_attributes")
		case "nodes":
			err = p.nodes(c)
		case "resources":
			for _, r := range c.children {
				res, rerr := p.resource(r, "")
				if rerr != nil {
					return rerr
				}
				if res != nil {
					p.m.Resources = append(p.m.Resources, res)
				}
			}
		case "constraints":
			err = p.constraints(c)
		case "tags":
			for _, t := range c.children {
				if t.name != "tag" {
					p.unsupported(t, "unknown element")
					continue
				}
				var refs []string
				for _, o := range t.children {
					if o.name != "obj_ref" {
						p.unsupported(o, "unknown element")
						continue
					}
					refs = append(refs, o.attr("id"))
				}
				p.m.Tags[t.attr("id")] = refs
			}
		case "fencing-topology":
			p.unsupported(c, "fencing topology not supported")
		case "acls":
			p.unsupported(c, "ACLs not supported")
		case "alerts":
			p.unsupported(c, "alerts not supported")
		default:
			p.unsupported(c, "unknown element")
		}
		if err != nil {
			return err
		}
	}
	// Templates may be declared after the primitives using them.
	var resolve func([]*Resource)
	resolve = func(rs []*Resource) {
		for _, r := range rs {
			if r.Kind == KindPrimitive && r.Template != "" {
				p.applyTemplate(r)
			}
			resolve(r.Children)
		}
	}
	resolve(p.m.Resources)
	return nil
}

// nvsetsOf reads the children of e named kind as attribute sets.
func (p *parser) nvsetsOf(e *elem, kind string) (NVSets, error) {
	var sets NVSets
	for _, c := range e.children {
		if c.name != kind {
			p.unsupported(c, "unknown element")
			continue
		}
		s, ok, err := p.nvset(c)
		if err != nil {
			return nil, err
		}
		if ok {
			sets = append(sets, s)
		}
	}
	return sets, nil
}

func (p *parser) nvset(e0 *elem) (NVSet, bool, error) {
	e, ok := p.deref(e0)
	if !ok {
		return NVSet{}, false, nil
	}
	if e != e0 {
		p.note(e0, "id-ref resolved to %s", e.path)
	}
	s := NVSet{ID: e.attr("id")}
	var err error
	if s.Score, err = p.score(e, "score"); err != nil {
		return s, false, err
	}
	for _, c := range e.children {
		switch c.name {
		case "nvpair":
			s.Pairs = append(s.Pairs, NVPair{ID: c.attr("id"), Name: c.attr("name"), Value: c.attr("value")})
		case "rule":
			if s.Rule != nil {
				p.unsupported(c, "second rule in an attribute set")
				continue
			}
			if s.Rule, err = p.rule(c); err != nil {
				return s, false, err
			}
			p.note(e, "attribute set has a rule; its pairs are kept unconditionally")
		default:
			p.unsupported(c, "unknown element")
		}
	}
	return s, true, nil
}

func (p *parser) rule(e0 *elem) (*Rule, error) {
	e, ok := p.deref(e0)
	if !ok {
		return nil, nil
	}
	if p.inRule[e] {
		p.unsupported(e0, "rule id-ref cycle")
		return nil, nil
	}
	if p.inRule == nil {
		p.inRule = map[*elem]bool{}
	}
	p.inRule[e] = true
	defer delete(p.inRule, e)
	r := &Rule{ID: e.attr("id"), ScoreAttribute: e.attr("score-attribute"), BooleanOp: e.attr("boolean-op"), Role: e.attr("role")}
	if r.BooleanOp == "" {
		r.BooleanOp = "and"
	}
	var err error
	if r.Score, err = p.score(e, "score"); err != nil {
		return nil, err
	}
	for _, c0 := range e.children {
		switch c0.name {
		case "rule":
			sub, err := p.rule(c0)
			if err != nil {
				return nil, err
			}
			if sub != nil {
				r.Rules = append(r.Rules, sub)
			}
		case "expression", "date_expression", "rsc_expression", "op_expression":
			c, ok := p.deref(c0)
			if !ok {
				continue
			}
			x := Expression{Kind: c.name, ID: c.attr("id"), Attribute: c.attr("attribute"), Operation: c.attr("operation"),
				Value: c.attr("value"), Type: c.attr("type"), ValueSource: c.attr("value-source"), Attrs: maps.Clone(c.attrs)}
			for _, d := range c.children {
				switch {
				case c.name == "date_expression" && d.name == "date_spec" && x.DateSpec == nil:
					x.DateSpec = maps.Clone(d.attrs)
				case c.name == "date_expression" && d.name == "duration" && x.Duration == nil:
					x.Duration = maps.Clone(d.attrs)
				default:
					p.unsupported(d, "unknown element")
				}
			}
			r.Expressions = append(r.Expressions, x)
		default:
			p.unsupported(c0, "unknown element")
		}
	}
	return r, nil
}

func (p *parser) nodes(e *elem) error {
	for _, c := range e.children {
		if c.name != "node" {
			p.unsupported(c, "unknown element")
			continue
		}
		n := Node{ID: c.attr("id"), Uname: c.attr("uname"), Type: c.attr("type")}
		for _, d := range c.children {
			switch d.name {
			case "instance_attributes", "utilization":
				s, ok, err := p.nvset(d)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if d.name == "utilization" {
					n.Utilization = append(n.Utilization, s)
				} else {
					n.Instance = append(n.Instance, s)
				}
			default:
				p.unsupported(d, "unknown element")
			}
		}
		p.m.Nodes = append(p.m.Nodes, n)
	}
	return nil
}

// resource reads a resource element; parent is the kind of the enclosing
// resource ("" at top level). It returns nil for an element that is not a
// resource (listed as unsupported).
func (p *parser) resource(e *elem, parent ResourceKind) (*Resource, error) {
	r := &Resource{ID: e.attr("id"), Description: e.attr("description")}
	switch e.name {
	case "primitive":
		r.Kind = KindPrimitive
	case "template":
		if parent != "" {
			p.unsupported(e, "template inside a "+string(parent))
			return nil, nil
		}
		r.Kind = KindTemplate
	case "group":
		r.Kind = KindGroup
	case "clone":
		r.Kind = KindClone
	case "master":
		r.Kind = KindMaster
	case "bundle":
		r.Kind = KindBundle
		r.Unsupported = true
		p.unsupported(e, "bundle (container) resources not supported")
	default:
		p.unsupported(e, "unknown element")
		return nil, nil
	}
	if r.Kind == KindPrimitive || r.Kind == KindTemplate {
		r.Class, r.Provider, r.Type, r.Template = e.attr("class"), e.attr("provider"), e.attr("type"), e.attr("template")
	}
	for _, c := range e.children {
		switch c.name {
		case "instance_attributes", "meta_attributes", "utilization":
			s, ok, err := p.nvset(c)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			switch c.name {
			case "instance_attributes":
				r.Instance = append(r.Instance, s)
			case "meta_attributes":
				r.Meta = append(r.Meta, s)
			default:
				r.Utilization = append(r.Utilization, s)
			}
		case "operations":
			if r.Kind != KindPrimitive && r.Kind != KindTemplate {
				p.unsupported(c, "operations outside a primitive")
				continue
			}
			if err := p.operations(c, r); err != nil {
				return nil, err
			}
		case "primitive", "group":
			ok := r.Kind == KindGroup && c.name == "primitive" ||
				(r.Kind == KindClone || r.Kind == KindMaster) && len(r.Children) == 0 ||
				r.Kind == KindBundle && c.name == "primitive" && len(r.Children) == 0
			if !ok {
				p.unsupported(c, "unexpected child of a "+string(r.Kind))
				continue
			}
			child, err := p.resource(c, r.Kind)
			if err != nil {
				return nil, err
			}
			if child != nil {
				r.Children = append(r.Children, child)
			}
		default:
			if r.Kind == KindBundle {
				continue // docker, podman, network, storage: covered by the bundle entry
			}
			p.unsupported(c, "unknown element")
		}
	}
	if (r.Kind == KindClone || r.Kind == KindMaster) && len(r.Children) == 0 {
		p.unsupported(e, string(r.Kind)+" without a primitive or group")
	}
	if r.Kind == KindTemplate {
		p.m.Templates[r.ID] = r
		return nil, nil
	}
	return r, nil
}

func (p *parser) operations(e0 *elem, r *Resource) error {
	e, ok := p.deref(e0)
	if !ok {
		return nil
	}
	for _, c0 := range e.children {
		if c0.name != "op" {
			p.unsupported(c0, "unknown element")
			continue
		}
		c, ok := p.deref(c0)
		if !ok {
			continue
		}
		op := Op{ID: c.attr("id"), Name: c.attr("name"), Interval: c.attr("interval"), Timeout: c.attr("timeout"),
			Role: c.attr("role"), OnFail: c.attr("on-fail"), Attrs: maps.Clone(c.attrs)}
		for _, d := range c.children {
			switch d.name {
			case "meta_attributes", "instance_attributes":
				s, ok, err := p.nvset(d)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if d.name == "meta_attributes" {
					op.Meta = append(op.Meta, s)
				} else {
					op.Instance = append(op.Instance, s)
				}
			default:
				p.unsupported(d, "unknown element")
			}
		}
		r.Ops = append(r.Ops, op)
	}
	return nil
}

// applyTemplate gives r the template's agent; the template's attribute sets
// come after r's own (so r's values win in NVSets.Get), and its operations
// are added unless r defines one with the same name, interval and role.
func (p *parser) applyTemplate(r *Resource) {
	t := p.m.Templates[r.Template]
	if t == nil {
		p.m.Unsupported = append(p.m.Unsupported, fmt.Sprintf("primitive[@id=%s]: unknown template %s", r.ID, r.Template))
		return
	}
	if r.Class == "" {
		r.Class, r.Provider, r.Type = t.Class, t.Provider, t.Type
	}
	r.Instance = append(r.Instance, t.Instance...)
	r.Meta = append(r.Meta, t.Meta...)
	r.Utilization = append(r.Utilization, t.Utilization...)
	for _, op := range t.Ops {
		dup := false
		for _, o := range r.Ops {
			if o.Name == op.Name && o.Interval == op.Interval && o.Role == op.Role {
				dup = true
			}
		}
		if !dup {
			r.Ops = append(r.Ops, op)
		}
	}
}

func (p *parser) resourceSets(e *elem) ([]ResourceSet, error) {
	var sets []ResourceSet
	for _, c0 := range e.children {
		if c0.name != "resource_set" {
			continue // rules etc. are handled by the caller
		}
		c, ok := p.deref(c0)
		if !ok {
			continue
		}
		s := ResourceSet{ID: c.attr("id"), Sequential: c.attr("sequential"), RequireAll: c.attr("require-all"),
			Ordering: c.attr("ordering"), Action: c.attr("action"), Role: c.attr("role"), Kind: c.attr("kind")}
		var err error
		if s.Score, err = p.score(c, "score"); err != nil {
			return nil, err
		}
		for _, d := range c.children {
			if d.name != "resource_ref" {
				p.unsupported(d, "unknown element")
				continue
			}
			s.Resources = append(s.Resources, d.attr("id"))
		}
		sets = append(sets, s)
	}
	return sets, nil
}

func (p *parser) constraints(e *elem) error {
	for _, c := range e.children {
		sets, err := p.resourceSets(c)
		if err != nil {
			return err
		}
		for _, d := range c.children {
			if d.name != "resource_set" && !(c.name == "rsc_location" && d.name == "rule") {
				p.unsupported(d, "unknown element")
			}
		}
		switch c.name {
		case "rsc_location":
			l := Location{ID: c.attr("id"), Rsc: c.attr("rsc"), RscPattern: c.attr("rsc-pattern"), Node: c.attr("node"),
				Role: c.attr("role"), ResourceDiscovery: c.attr("resource-discovery"), Sets: sets}
			if l.Score, err = p.score(c, "score"); err != nil {
				return err
			}
			for _, d := range c.children {
				if d.name == "rule" {
					r, err := p.rule(d)
					if err != nil {
						return err
					}
					if r != nil {
						l.Rules = append(l.Rules, r)
					}
				}
			}
			p.m.Locations = append(p.m.Locations, l)
		case "rsc_colocation":
			l := Colocation{ID: c.attr("id"), Rsc: c.attr("rsc"), WithRsc: c.attr("with-rsc"), RscRole: c.attr("rsc-role"),
				WithRscRole: c.attr("with-rsc-role"), NodeAttribute: c.attr("node-attribute"), Influence: c.attr("influence"), Sets: sets}
			if l.Score, err = p.score(c, "score"); err != nil {
				return err
			}
			p.m.Colocations = append(p.m.Colocations, l)
		case "rsc_order":
			o := Order{ID: c.attr("id"), First: c.attr("first"), Then: c.attr("then"), FirstAction: c.attr("first-action"),
				ThenAction: c.attr("then-action"), Kind: c.attr("kind"), Symmetrical: c.attr("symmetrical"), RequireAll: c.attr("require-all"), Sets: sets}
			if o.Score, err = p.score(c, "score"); err != nil {
				return err
			}
			p.m.Orders = append(p.m.Orders, o)
		case "rsc_ticket":
			p.m.Tickets = append(p.m.Tickets, Ticket{ID: c.attr("id"), Ticket: c.attr("ticket"), Rsc: c.attr("rsc"),
				RscRole: c.attr("rsc-role"), LossPolicy: c.attr("loss-policy"), Sets: sets})
			p.unsupported(c, "tickets not supported")
		default:
			p.unsupported(c, "unknown element")
		}
	}
	return nil
}

func (p *parser) status(e *elem) error {
	for _, c := range e.children {
		if c.name != "node_state" {
			if c.name == "tickets" {
				p.unsupported(c, "ticket state not supported")
			} else {
				p.unsupported(c, "unknown element")
			}
			continue
		}
		n := NodeState{ID: c.attr("id"), Uname: c.attr("uname"), InCCM: c.attr("in_ccm"), Crmd: c.attr("crmd"),
			Join: c.attr("join"), Expected: c.attr("expected"), Attrs: c.attrs}
		for _, d := range c.children {
			switch d.name {
			case "transient_attributes":
				for _, s0 := range d.children {
					if s0.name != "instance_attributes" {
						p.unsupported(s0, "unknown element")
						continue
					}
					s, ok, err := p.nvset(s0)
					if err != nil {
						return err
					}
					if ok {
						n.Transient = append(n.Transient, s)
					}
				}
			case "lrm":
				for _, rs := range d.children {
					if rs.name != "lrm_resources" {
						p.unsupported(rs, "unknown element")
						continue
					}
					for _, lr := range rs.children {
						if lr.name != "lrm_resource" {
							p.unsupported(lr, "unknown element")
							continue
						}
						res := LRMResource{ID: lr.attr("id"), Class: lr.attr("class"), Provider: lr.attr("provider"), Type: lr.attr("type")}
						for _, o := range lr.children {
							if o.name != "lrm_rsc_op" {
								p.unsupported(o, "unknown element")
								continue
							}
							res.Ops = append(res.Ops, LRMOp{ID: o.attr("id"), Operation: o.attr("operation"), CallID: o.attr("call-id"),
								RCCode: o.attr("rc-code"), OpStatus: o.attr("op-status"), Interval: o.attr("interval"), Attrs: o.attrs})
						}
						n.LRM = append(n.LRM, res)
					}
				}
			default:
				p.unsupported(d, "unknown element")
			}
		}
		p.m.NodeStates = append(p.m.NodeStates, n)
	}
	return nil
}
