package spec

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func (d *decoder) boolPtr(n *yaml.Node, path string) *bool {
	b := d.boolean(n, path)
	return &b
}

// intMap decodes a mapping of names to whole numbers; an empty mapping is the same as none.
func (d *decoder) intMap(n *yaml.Node, path, example string) map[string]int {
	return mapOf(d, n, path, example, func(v *yaml.Node, p string) (int, bool) { return d.integer(v, p), true })
}

// ParseScore reads a score as written: a whole number, INFINITY,
// +INFINITY or -INFINITY (any case).
func ParseScore(s string) (Score, bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "INFINITY", "+INFINITY", "INF", "+INF":
		return Infinity, true
	case "-INFINITY", "-INF":
		return -Infinity, true
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return Score(0).Add(Score(v)), true
}

func (d *decoder) score(n *yaml.Node, path string) Score {
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!str") {
		if v, ok := ParseScore(n.Value); ok {
			return v
		}
	}
	d.fail(n, path, "expected a score: a whole number, INFINITY or -INFINITY, got %s", describe(n))
	return 0
}

func (d *decoder) scorePtr(n *yaml.Node, path string) *Score {
	s := d.score(n, path)
	return &s
}

func (d *decoder) nodeSpec(n *yaml.Node, path string, ns *NodeSpec) {
	d.object(n, path, "{name: ctl1, attributes: {rack: a}}", []field{
		{"name", func(v *yaml.Node, p string) { ns.Name = d.str(v, p) }},
		{"attributes", func(v *yaml.Node, p string) { ns.Attributes = d.stringMap(v, p, "{rack: a}") }},
		{"capacity", func(v *yaml.Node, p string) { ns.Capacity = d.intMap(v, p, "{cpu: 8, memory: 16384}") }},
	}, nil)
}

func (d *decoder) operation(n *yaml.Node, path string, o *Operation) {
	d.object(n, path, "{name: monitor, interval: 10s, timeout: 20s}", []field{
		{"name", func(v *yaml.Node, p string) { o.Name = d.str(v, p) }},
		{"interval", func(v *yaml.Node, p string) { o.Interval = d.duration(v, p) }},
		{"timeout", func(v *yaml.Node, p string) { o.Timeout = d.duration(v, p) }},
		{"onFail", func(v *yaml.Node, p string) { o.OnFail = d.str(v, p) }},
		{"role", func(v *yaml.Node, p string) { o.Role = d.str(v, p) }},
		{"depth", func(v *yaml.Node, p string) { o.Depth = d.integer(v, p) }},
	}, nil)
}

func (d *decoder) group(n *yaml.Node, path string, g *Group) {
	d.object(n, path, "{name: db-stack, members: [db-ip, db]}", []field{
		{"name", func(v *yaml.Node, p string) { g.Name = d.str(v, p) }},
		{"members", func(v *yaml.Node, p string) { g.Members = d.strings(v, p, "[db-ip, db]") }},
	}, nil)
}

func (d *decoder) constraints(n *yaml.Node, path string, c *Constraints) {
	d.object(n, path, "{order: [{first: db, then: web}]}", []field{
		{"location", func(v *yaml.Node, p string) {
			d.list(v, p, "[{resource: db, node: ctl1, score: 100}]", func(v *yaml.Node, p string) {
				c.Location = append(c.Location, Location{})
				d.location(v, p, &c.Location[len(c.Location)-1])
			})
		}},
		{"colocation", func(v *yaml.Node, p string) {
			d.list(v, p, "[{resource: web, with: vip, score: INFINITY}]", func(v *yaml.Node, p string) {
				c.Colocation = append(c.Colocation, Colocation{})
				d.colocation(v, p, &c.Colocation[len(c.Colocation)-1])
			})
		}},
		{"order", func(v *yaml.Node, p string) {
			d.list(v, p, "[{first: db, then: web}]", func(v *yaml.Node, p string) {
				c.Order = append(c.Order, Order{})
				d.order(v, p, &c.Order[len(c.Order)-1])
			})
		}},
	}, []string{"ticket"})
}

func (d *decoder) location(n *yaml.Node, path string, l *Location) {
	d.object(n, path, "{resource: db, node: ctl1, score: 100}", []field{
		{"resource", func(v *yaml.Node, p string) { l.Resource = d.str(v, p) }},
		{"role", func(v *yaml.Node, p string) { l.Role = d.str(v, p) }},
		{"node", func(v *yaml.Node, p string) { l.Node = d.str(v, p) }},
		{"score", func(v *yaml.Node, p string) { l.Score = d.scorePtr(v, p) }},
		{"rules", func(v *yaml.Node, p string) {
			d.list(v, p, "[{score: -INFINITY, expressions: [{attribute: rack, op: eq, value: b}]}]", func(v *yaml.Node, p string) {
				l.Rules = append(l.Rules, Rule{})
				d.rule(v, p, &l.Rules[len(l.Rules)-1])
			})
		}},
		{"discovery", func(v *yaml.Node, p string) { l.Discovery = d.str(v, p) }},
	}, nil)
}

func (d *decoder) rule(n *yaml.Node, path string, r *Rule) {
	d.object(n, path, "{score: -INFINITY, expressions: [{attribute: rack, op: eq, value: b}]}", []field{
		{"score", func(v *yaml.Node, p string) { r.Score = d.score(v, p) }},
		{"match", func(v *yaml.Node, p string) { r.Match = d.str(v, p) }},
		{"expressions", func(v *yaml.Node, p string) {
			d.list(v, p, "[{attribute: rack, op: eq, value: b}]", func(v *yaml.Node, p string) {
				r.Expressions = append(r.Expressions, Expression{})
				e := &r.Expressions[len(r.Expressions)-1]
				d.object(v, p, "{attribute: rack, op: eq, value: b}", []field{
					{"attribute", func(v *yaml.Node, p string) { e.Attribute = d.str(v, p) }},
					{"op", func(v *yaml.Node, p string) { e.Op = d.str(v, p) }},
					{"value", func(v *yaml.Node, p string) { e.Value = d.str(v, p) }},
					{"type", func(v *yaml.Node, p string) { e.Type = d.str(v, p) }},
				}, nil)
			})
		}},
	}, []string{"date"})
}

func (d *decoder) colocation(n *yaml.Node, path string, c *Colocation) {
	d.object(n, path, "{resource: web, with: vip, score: INFINITY}", []field{
		{"resource", func(v *yaml.Node, p string) { c.Resource = d.str(v, p) }},
		{"with", func(v *yaml.Node, p string) { c.With = d.str(v, p) }},
		{"score", func(v *yaml.Node, p string) { c.Score = d.score(v, p) }},
		{"role", func(v *yaml.Node, p string) { c.Role = d.str(v, p) }},
		{"withRole", func(v *yaml.Node, p string) { c.WithRole = d.str(v, p) }},
		{"sets", func(v *yaml.Node, p string) { c.Sets = d.sets(v, p) }},
	}, nil)
}

func (d *decoder) order(n *yaml.Node, path string, o *Order) {
	d.object(n, path, "{first: db, then: web}", []field{
		{"first", func(v *yaml.Node, p string) { o.First = d.str(v, p) }},
		{"then", func(v *yaml.Node, p string) { o.Then = d.str(v, p) }},
		{"firstAction", func(v *yaml.Node, p string) { o.FirstAction = d.str(v, p) }},
		{"thenAction", func(v *yaml.Node, p string) { o.ThenAction = d.str(v, p) }},
		{"kind", func(v *yaml.Node, p string) { o.Kind = d.str(v, p) }},
		{"symmetrical", func(v *yaml.Node, p string) { o.Symmetrical = d.boolPtr(v, p) }},
		{"sets", func(v *yaml.Node, p string) { o.Sets = d.sets(v, p) }},
	}, nil)
}

func (d *decoder) sets(n *yaml.Node, path string) []Set {
	var out []Set
	d.list(n, path, "[{resources: [a, b]}, {resources: [c]}]", func(v *yaml.Node, p string) {
		out = append(out, Set{})
		s := &out[len(out)-1]
		d.object(v, p, "{resources: [a, b]}", []field{
			{"resources", func(v *yaml.Node, p string) { s.Resources = d.strings(v, p, "[a, b]") }},
			{"sequential", func(v *yaml.Node, p string) { s.Sequential = d.boolPtr(v, p) }},
			{"requireAll", func(v *yaml.Node, p string) { s.RequireAll = d.boolPtr(v, p) }},
			{"role", func(v *yaml.Node, p string) { s.Role = d.str(v, p) }},
			{"action", func(v *yaml.Node, p string) { s.Action = d.str(v, p) }},
		}, nil)
	})
	return out
}
