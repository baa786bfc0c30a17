package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse decodes one YAML spec strictly and validates it. It refuses unknown
// fields, wrong types, duplicate keys, aliases, several documents and
// sections this release does not support. The result has no defaults
// applied (see WithDefaults), so it shows what the operator wrote.
//
// Every problem found is reported; the error is an *Error whose entries name
// the line and the field path.
func Parse(data []byte) (*Spec, error) {
	root, ferr := parseDocument(data)
	if ferr != nil {
		return nil, newError([]FieldError{*ferr})
	}
	d := &decoder{lines: map[string]int{}}
	if !d.checkNoAliases(root) {
		return nil, newError(d.errs)
	}
	s := &Spec{}
	d.spec(root, s)
	errs := d.errs
	for _, fe := range validate(s, d.lines) {
		if !d.failedAt(fe.Path) {
			errs = append(errs, fe)
		}
	}
	if err := newError(errs); err != nil {
		return nil, err
	}
	return s, nil
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument reads exactly one non-empty YAML document and returns its root node.
func parseDocument(data []byte) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, emptyDocument()
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &FieldError{Line: extra.Line, Msg: "a second YAML document starts here; the spec must be one document (remove the '---' separator and merge or delete the rest)"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, emptyDocument()
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, emptyDocument()
	}
	return root, nil
}

func emptyDocument() *FieldError {
	return &FieldError{Msg: "the spec is empty; start it with apiVersion: " + APIVersion + ", cluster: and resources:"}
}

func syntaxError(err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{Line: line, Msg: "YAML syntax error: " + m[2]}
	}
	return &FieldError{Msg: "YAML syntax error: " + msg}
}

// decoder walks the node tree, filling the spec and collecting errors.
type decoder struct {
	errs   []FieldError
	lines  map[string]int // field path → line of its key or list item
	failed []string       // paths that could not be decoded
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
	d.failed = append(d.failed, path)
}

// failedAt reports whether path is, lies below or lies above a path that
// failed to decode; validation errors there would only repeat the decoding
// error or complain about the value that could not be read.
func (d *decoder) failedAt(path string) bool {
	for _, f := range d.failed {
		if within(path, f) || within(f, path) {
			return true
		}
	}
	return false
}

// within reports whether path is p or a field or element below it.
func within(path, p string) bool {
	return p == "" || path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")
}

// checkNoAliases refuses anchors' aliases anywhere in the document: they make
// a spec hard to read and can expand exponentially.
func (d *decoder) checkNoAliases(n *yaml.Node) bool {
	ok := true
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode {
			d.errs = append(d.errs, FieldError{Line: n.Line, Msg: fmt.Sprintf("alias *%s: aliases are not supported in a spec; write the value out", n.Value)})
			ok = false
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return ok
}

// field is one known key of a mapping and what to do with its value.
type field struct {
	key string
	set func(v *yaml.Node, path string)
}

// object decodes a mapping whose keys must be among fields. Keys in future
// name sections later releases will support. A null value leaves the field
// unset, as if the key were absent.
func (d *decoder) object(n *yaml.Node, path, example string, fields []field, future []string) {
	if n.Kind != yaml.MappingNode || n.ShortTag() != "!!map" {
		d.fail(n, path, "expected a mapping (e.g. %s), got %s", example, describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		child := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, child, "duplicate key %q (first at line %d); keep only one", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		idx := slices.IndexFunc(fields, func(f field) bool { return f.key == k.Value })
		if idx < 0 {
			d.unknown(k, path, child, fields, future)
			continue
		}
		d.lines[child] = k.Line
		if isNull(v) {
			continue
		}
		fields[idx].set(v, child)
	}
}

func (d *decoder) unknown(k *yaml.Node, path, child string, fields []field, future []string) {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	where := "here"
	if path != "" {
		where = "in " + path
	}
	if slices.Contains(future, k.Value) {
		d.fail(k, child, "%s is not supported by this release (supported %s: %s)", k.Value, where, strings.Join(keys, ", "))
		return
	}
	hint := ""
	if s := suggest(k.Value, keys); s != "" {
		hint = fmt.Sprintf("did you mean %s? ", s)
	} else if sec, ok := belongsUnder[k.Value]; ok && isResourcePath(path) {
		hint = fmt.Sprintf("it belongs under %s; ", sec)
	} else if path == "cluster" && k.Value == "fencing" {
		hint = "fencing is a top-level section: write fencing: {mode: required, devices: [...]} at the top level; "
	}
	d.fail(k, child, "unknown field %s (%sallowed %s: %s)", quote(k.Value), hint, where, strings.Join(keys, ", "))
}

// belongsUnder names the resource section of fields often written one level too high.
var belongsUnder = map[string]string{
	"command": "params", "env": "params", "dir": "params", "stopTimeout": "params", "startTimeout": "params",
	"http": "health", "tcp": "health", "exec": "health", "interval": "health", "timeout": "health", "fall": "health",
}

func isResourcePath(path string) bool {
	return strings.HasPrefix(path, "resources[") && !strings.Contains(path, ".")
}

// list decodes a sequence, calling item for each element with its path.
func (d *decoder) list(n *yaml.Node, path, example string, item func(v *yaml.Node, path string)) bool {
	if n.Kind != yaml.SequenceNode || n.ShortTag() != "!!seq" {
		d.fail(n, path, "expected a list (e.g. %s), got %s", example, describe(n))
		return false
	}
	for i, v := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = v.Line
		item(v, p)
	}
	return true
}

// str decodes a string. Numbers are taken as written ("5000"); booleans and
// null are refused so that `yes`/`true` never silently become text.
func (d *decoder) str(n *yaml.Node, path string) string {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!timestamp", "!!merge": // as written; "<<" resolves to !!merge
			return n.Value
		case "!!bool":
			d.fail(n, path, "expected a string, got the boolean %s (write \"%s\" in quotes if you mean the text)", n.Value, n.Value)
			return ""
		}
	}
	d.fail(n, path, "expected a string, got %s", describe(n))
	return ""
}

func (d *decoder) integer(n *yaml.Node, path string) int {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.fail(n, path, "expected a whole number (e.g. 3), got %s", describe(n))
		return 0
	}
	var i int
	if err := n.Decode(&i); err != nil {
		d.fail(n, path, "%s is out of range", quote(n.Value))
		return 0
	}
	return i
}

func (d *decoder) intPtr(n *yaml.Node, path string) *int {
	i := d.integer(n, path)
	return &i
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.fail(n, path, "expected true or false, got %s", describe(n))
		return false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.fail(n, path, "expected true or false, got %s", describe(n))
	}
	return b
}

func (d *decoder) duration(n *yaml.Node, path string) Duration {
	var v Duration
	if err := v.UnmarshalYAML(n); err != nil {
		d.fail(n, path, "%s", err.Error())
	}
	return v
}

// strings decodes a list of strings; an empty list is the same as none.
func (d *decoder) strings(n *yaml.Node, path, example string) []string {
	var out []string
	d.list(n, path, example, func(v *yaml.Node, p string) {
		if isNull(v) {
			d.fail(v, p, "expected a string, got null (write \"\" for an empty string)")
			return
		}
		out = append(out, d.str(v, p))
	})
	return out
}

// stringMap decodes a mapping of strings to strings; an empty mapping is the same as none.
func (d *decoder) stringMap(n *yaml.Node, path, example string) map[string]string {
	return mapOf(d, n, path, example, func(v *yaml.Node, p string) (string, bool) {
		if isNull(v) {
			d.fail(v, p, "expected a string, got null (write \"\" for an empty value)")
			return "", false
		}
		return d.str(v, p), true
	})
}

// mapOf decodes a mapping with plain-name keys whose values val decodes
// (ok false: leave the key out); an empty mapping is the same as none.
func mapOf[T any](d *decoder, n *yaml.Node, path, example string, val func(v *yaml.Node, p string) (T, bool)) map[string]T {
	if n.Kind != yaml.MappingNode || n.ShortTag() != "!!map" {
		d.fail(n, path, "expected a mapping (e.g. %s), got %s", example, describe(n))
		return nil
	}
	var out map[string]T
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			d.fail(k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		key := d.str(k, path)
		child := join(path, key)
		if first, dup := seen[key]; dup {
			d.fail(k, child, "duplicate key %s (first at line %d); keep only one", quote(key), first)
			continue
		}
		seen[key] = k.Line
		d.lines[child] = k.Line
		x, ok := val(v, child)
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]T{}
		}
		out[key] = x
	}
	return out
}

// futureSections are top-level sections of the design that later releases implement.
var futureSections = []string{"computeHA"}

func (d *decoder) spec(n *yaml.Node, s *Spec) {
	d.object(n, "", "apiVersion: "+APIVersion, []field{
		{"apiVersion", func(v *yaml.Node, p string) { s.APIVersion = d.str(v, p) }},
		{"cluster", func(v *yaml.Node, p string) { d.cluster(v, p, &s.Cluster) }},
		{"nodes", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: ctl1, attributes: {rack: a}, capacity: {cpu: 8}}]", func(v *yaml.Node, p string) {
				s.Nodes = append(s.Nodes, NodeSpec{})
				d.nodeSpec(v, p, &s.Nodes[len(s.Nodes)-1])
			})
		}},
		{"resources", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: web, class: process, params: {command: [httpd]}}]", func(v *yaml.Node, p string) {
				s.Resources = append(s.Resources, Resource{})
				d.resource(v, p, &s.Resources[len(s.Resources)-1])
			})
		}},
		{"groups", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: db-stack, members: [db-ip, db]}]", func(v *yaml.Node, p string) {
				s.Groups = append(s.Groups, Group{})
				d.group(v, p, &s.Groups[len(s.Groups)-1])
			})
		}},
		{"constraints", func(v *yaml.Node, p string) {
			s.Constraints = &Constraints{}
			d.constraints(v, p, s.Constraints)
		}},
		{"fencing", func(v *yaml.Node, p string) {
			s.Fencing = &Fencing{}
			d.fencing(v, p, s.Fencing)
		}},
		{"loadBalancers", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: api, vip: api-vip, frontends: [...], backends: [...]}]", func(v *yaml.Node, p string) {
				s.LoadBalancers = append(s.LoadBalancers, LoadBalancer{})
				d.loadBalancer(v, p, &s.LoadBalancers[len(s.LoadBalancers)-1])
			})
		}},
	}, futureSections)
}

func (d *decoder) cluster(n *yaml.Node, path string, c *Cluster) {
	d.object(n, path, "{name: prod}", []field{
		{"name", func(v *yaml.Node, p string) { c.Name = d.str(v, p) }},
		{"noQuorumPolicy", func(v *yaml.Node, p string) { c.NoQuorumPolicy = d.str(v, p) }},
		{"maintenance", func(v *yaml.Node, p string) { c.Maintenance = d.boolean(v, p) }},
		{"stickiness", func(v *yaml.Node, p string) { c.Stickiness = d.intPtr(v, p) }},
		{"symmetric", func(v *yaml.Node, p string) { c.Symmetric = d.boolPtr(v, p) }},
		{"placementStrategy", func(v *yaml.Node, p string) { c.PlacementStrategy = d.str(v, p) }},
		{"startFailureIsFatal", func(v *yaml.Node, p string) { c.StartFailureIsFatal = d.boolPtr(v, p) }},
		{"batchLimit", func(v *yaml.Node, p string) { c.BatchLimit = d.integer(v, p) }},
	}, nil)
}

func (d *decoder) resource(n *yaml.Node, path string, r *Resource) {
	// params are read once the class is known (it may come after them).
	var params *yaml.Node
	var paramsPath string
	defer func() {
		if params == nil {
			return
		}
		if r.scriptParams() {
			r.Params.Values = d.stringMap(params, paramsPath, "{ip: 192.0.2.10, cidr_netmask: \"24\"}")
			return
		}
		d.params(params, paramsPath, &r.Params)
	}()
	d.object(n, path, "{name: web, class: process, params: {command: [httpd]}}", []field{
		{"name", func(v *yaml.Node, p string) { r.Name = d.str(v, p) }},
		{"class", func(v *yaml.Node, p string) { r.Class = d.str(v, p) }},
		{"params", func(v *yaml.Node, p string) { params, paramsPath = v, p }},
		{"mode", func(v *yaml.Node, p string) { r.Mode = d.str(v, p) }},
		{"replicas", func(v *yaml.Node, p string) { r.Replicas = d.integer(v, p) }},
		{"maxPerNode", func(v *yaml.Node, p string) { r.MaxPerNode = d.integer(v, p) }},
		{"health", func(v *yaml.Node, p string) {
			r.Health = &Health{}
			d.health(v, p, r.Health)
		}},
		{"onFail", func(v *yaml.Node, p string) { r.OnFail = d.str(v, p) }},
		{"migrationThreshold", func(v *yaml.Node, p string) { r.MigrationThreshold = d.intPtr(v, p) }},
		{"failureTimeout", func(v *yaml.Node, p string) { r.FailureTimeout = d.duration(v, p) }},
		{"stickiness", func(v *yaml.Node, p string) { r.Stickiness = d.intPtr(v, p) }},
		{"nodes", func(v *yaml.Node, p string) { r.Nodes = d.strings(v, p, "[ctl1, ctl2]") }},
		{"nodeLabels", func(v *yaml.Node, p string) { r.NodeLabels = d.stringMap(v, p, "{storage: ssd}") }},
		{"targetRole", func(v *yaml.Node, p string) { r.TargetRole = d.str(v, p) }},
		{"promotedMax", func(v *yaml.Node, p string) { r.PromotedMax = d.integer(v, p) }},
		{"promotedMaxPerNode", func(v *yaml.Node, p string) { r.PromotedMaxPerNode = d.integer(v, p) }},
		{"interleave", func(v *yaml.Node, p string) { r.Interleave = d.boolean(v, p) }},
		{"notify", func(v *yaml.Node, p string) { r.Notify = d.boolean(v, p) }},
		{"operations", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: monitor, interval: 10s, timeout: 20s}]", func(v *yaml.Node, p string) {
				r.Operations = append(r.Operations, Operation{})
				d.operation(v, p, &r.Operations[len(r.Operations)-1])
			})
		}},
		{"priority", func(v *yaml.Node, p string) { r.Priority = d.integer(v, p) }},
		{"utilization", func(v *yaml.Node, p string) { r.Utilization = d.intMap(v, p, "{cpu: 2, memory: 2048}") }},
		{"managed", func(v *yaml.Node, p string) { r.Managed = d.boolPtr(v, p) }},
		{"maintenance", func(v *yaml.Node, p string) { r.Maintenance = d.boolean(v, p) }},
		{"multipleActive", func(v *yaml.Node, p string) { r.MultipleActive = d.str(v, p) }},
		{"bootstrap", func(v *yaml.Node, p string) {
			b := &Bootstrap{}
			r.Bootstrap = b
			d.object(v, p, "{rank: [/usr/local/bin/galera-seqno], timeout: 30s, wait: 10m}", []field{
				{"rank", func(v *yaml.Node, p string) { b.Rank = d.strings(v, p, "[/usr/local/bin/galera-seqno]") }},
				{"timeout", func(v *yaml.Node, p string) { b.Timeout = d.duration(v, p) }},
				{"wait", func(v *yaml.Node, p string) { b.Wait = d.duration(v, p) }},
			}, nil)
		}},
	}, nil)
}

func (d *decoder) params(n *yaml.Node, path string, ps *Params) {
	d.object(n, path, "{command: [httpd, -DFOREGROUND]}", []field{
		{"command", func(v *yaml.Node, p string) { ps.Command = d.strings(v, p, `[keystone-wsgi-public, --port, "5000"]`) }},
		{"env", func(v *yaml.Node, p string) { ps.Env = d.stringMap(v, p, "{LANG: C.UTF-8}") }},
		{"dir", func(v *yaml.Node, p string) { ps.Dir = d.str(v, p) }},
		{"stopTimeout", func(v *yaml.Node, p string) { ps.StopTimeout = d.duration(v, p) }},
		{"startTimeout", func(v *yaml.Node, p string) { ps.StartTimeout = d.duration(v, p) }},
	}, nil)
}

func (d *decoder) health(n *yaml.Node, path string, h *Health) {
	d.object(n, path, `{http: "http://127.0.0.1:5000/healthcheck", interval: 2s}`, []field{
		{"http", func(v *yaml.Node, p string) { h.HTTP = d.str(v, p) }},
		{"tcp", func(v *yaml.Node, p string) { h.TCP = d.str(v, p) }},
		{"exec", func(v *yaml.Node, p string) { h.Exec = d.strings(v, p, "[/usr/local/bin/check]") }},
		{"interval", func(v *yaml.Node, p string) { h.Interval = d.duration(v, p) }},
		{"timeout", func(v *yaml.Node, p string) { h.Timeout = d.duration(v, p) }},
		{"fall", func(v *yaml.Node, p string) { h.Fall = d.integer(v, p) }},
	}, nil)
}

// UnmarshalYAML accepts a Go duration string such as "2s", "500ms" or "10m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || !slices.Contains([]string{"!!str", "!!int", "!!float"}, n.ShortTag()) {
		return fmt.Errorf("expected a duration (e.g. 2s, 500ms), got %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%s is not a duration (write e.g. 2s, 500ms)", quote(n.Value))
	}
	*d = Duration(v)
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode && n.ShortTag() != "!!map",
		n.Kind == yaml.SequenceNode && n.ShortTag() != "!!seq":
		return fmt.Sprintf("a value tagged %s (remove the tag)", quote(n.Tag))
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "the string " + quote(n.Value)
		case "!!int", "!!float":
			return "the number " + quote(n.Value)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("a value tagged %s (remove the tag)", quote(n.Tag))
		}
	}
	return "an unexpected YAML node"
}

// quote quotes s for a message, shortening long values.
func quote(s string) string {
	const max = 64
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

// Suggest returns the candidate closest to s when it is close enough to be
// a likely typo ("" otherwise): a case-insensitive match, or one at most two
// edits away (insertions, deletions, substitutions, swapped neighbours).
// Every "did you mean" of paceline uses it.
func Suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func suggest(s string, candidates []string) string { return Suggest(s, candidates) }

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours (the typo
// "wbe" is one step from "web").
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
