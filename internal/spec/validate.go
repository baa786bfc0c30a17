package spec

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks a spec (for example one decoded from JSON) against the
// rules of this release. It returns nil or an *Error listing every problem;
// lines are unknown here, so the entries carry only field paths. Parse calls
// it with line information.
func (s *Spec) Validate() error {
	return newError(validate(s, nil))
}

// validate returns the problems in s; lines (field path → line) may be nil.
func validate(s *Spec, lines map[string]int) []FieldError {
	v := &validator{lines: lines}
	switch {
	case s.APIVersion == "":
		v.add("apiVersion", "apiVersion is required (write apiVersion: %s)", APIVersion)
	case s.APIVersion != APIVersion:
		v.add("apiVersion", "apiVersion %s is not supported by this release (write apiVersion: %s)", quote(s.APIVersion), APIVersion)
	}
	checkAll(v, "cluster", &s.Cluster, clusterRules)
	firstByName := map[string]int{}
	for i := range s.Resources {
		r := &s.Resources[i]
		p := fmt.Sprintf("resources[%d]", i)
		checkAll(v, p, r, resourceRules)
		if r.Health != nil {
			checkAll(v, p+".health", r.Health, healthRules)
		}
		for _, w := range writtenPositive {
			if fp := p + "." + w.field; w.get(r) == 0 && v.written(fp) {
				v.add(fp, "must be greater than 0 (leave it out for the default %s)", w.def)
			}
		}
		if r.Name == "" {
			continue
		}
		if j, dup := firstByName[r.Name]; dup {
			first := fmt.Sprintf("resources[%d]", j)
			if l := v.line(first + ".name"); l > 0 {
				first += fmt.Sprintf(" (line %d)", l)
			}
			v.add(p+".name", "duplicate resource name %s, also used by %s; resource names must be unique", quote(r.Name), first)
			continue
		}
		firstByName[r.Name] = i
	}
	v.validatePolicy(s)
	v.validateFencing(s)
	v.validateBootstrap(s)
	v.validateLoadBalancers(s)
	return v.errs
}

type validator struct {
	lines map[string]int
	errs  []FieldError
}

// line returns the line of path or, failing that, of its nearest ancestor that has one.
func (v *validator) line(p string) int {
	for p != "" {
		if l, ok := v.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// written reports whether the operator wrote the field (known only after Parse).
func (v *validator) written(p string) bool {
	_, ok := v.lines[p]
	return ok
}

func (v *validator) add(p, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Line: v.line(p), Path: p, Msg: fmt.Sprintf(format, args...)})
}

// issue is what a rule found wrong; at extends the rule's field path (e.g. "[2]").
type issue struct {
	at  string
	msg string
}

func bad(format string, args ...any) *issue {
	return &issue{msg: fmt.Sprintf(format, args...)}
}

// rule checks one field of a T; check returns nil when the field is fine.
type rule[T any] struct {
	field string
	check func(x *T) *issue
}

func checkAll[T any](v *validator, prefix string, x *T, rules []rule[T]) {
	for _, r := range rules {
		if is := r.check(x); is != nil {
			p := prefix
			if r.field != "" {
				p += "." + r.field
			}
			v.add(p+is.at, "%s", is.msg)
		}
	}
}

var clusterRules = []rule[Cluster]{
	{"name", func(c *Cluster) *issue {
		if c.Name == "" {
			return bad("cluster.name is required; it must equal the clusterName the agents were started with")
		}
		return checkName(c.Name, "cluster name")
	}},
	{"noQuorumPolicy", func(c *Cluster) *issue { return noQuorumPolicies.check(c.NoQuorumPolicy) }},
}

var resourceRules = []rule[Resource]{
	{"name", func(r *Resource) *issue {
		if r.Name == "" {
			return bad(`name is required (e.g. name: keystone)`)
		}
		return checkName(r.Name, "resource name")
	}},
	{"class", func(r *Resource) *issue {
		if r.Class == "" {
			return bad("class is required (supported: process, vip, ocf:PROVIDER:TYPE, lsb:NAME, systemd:UNIT)")
		}
		return nil // checked in resourcePolicy
	}},
	{"params.command", func(r *Resource) *issue {
		switch {
		case r.Class != ClassProcess:
			return nil
		case len(r.Params.Command) == 0:
			return bad(`is required for class process: the program and its arguments (e.g. command: [keystone-wsgi-public, --port, "5000"])`)
		case r.Params.Command[0] == "":
			return &issue{at: "[0]", msg: "must not be empty: it is the program to run"}
		}
		return nil
	}},
	{"params.env", func(r *Resource) *issue {
		for _, k := range sortedKeys(r.Params.Env) {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return bad("%s is not a valid environment variable name (no '=', not empty)", quote(k))
			}
		}
		return nil
	}},
	{"params.dir", func(r *Resource) *issue {
		if r.Params.Dir != "" && !path.IsAbs(r.Params.Dir) {
			return bad("%s is not an absolute path (write e.g. /var/lib/keystone)", quote(r.Params.Dir))
		}
		return nil
	}},
	{"params.stopTimeout", func(r *Resource) *issue { return notNegative(r.Params.StopTimeout) }},
	{"params.startTimeout", func(r *Resource) *issue { return notNegative(r.Params.StartTimeout) }},
	{"mode", func(r *Resource) *issue { return modes.check(r.Mode) }},
	{"replicas", func(r *Resource) *issue {
		switch {
		case r.Replicas < 0:
			return bad("must be 0 or more (leave it out for one instance per eligible node)")
		case r.Replicas > 0 && !r.Clone():
			return bad("replicas needs mode: clone or promotable (a %s resource runs exactly once)", cmp.Or(r.Mode, ModeSingle))
		}
		return nil
	}},
	{"maxPerNode", func(r *Resource) *issue {
		switch {
		case r.MaxPerNode < 0:
			return bad("must be 0 or more (leave it out for the default 1)")
		case r.MaxPerNode > 1 && !r.Clone():
			return bad("maxPerNode above 1 needs mode: clone or promotable (a %s resource runs exactly once)", cmp.Or(r.Mode, ModeSingle))
		}
		return nil
	}},
	{"onFail", func(r *Resource) *issue { return onFails.check(r.OnFail) }},
	{"migrationThreshold", func(r *Resource) *issue {
		if r.MigrationThreshold != nil && *r.MigrationThreshold < 0 {
			return bad("must be 0 or more (0 means never move away after failures)")
		}
		return nil
	}},
	{"failureTimeout", func(r *Resource) *issue { return notNegative(r.FailureTimeout) }},
	{"stickiness", func(r *Resource) *issue {
		if s := r.Stickiness; s != nil && (*s < -maxStickiness || *s > maxStickiness) {
			return bad("%d is out of range (write a number from %d to %d)", *s, -maxStickiness, maxStickiness)
		}
		return nil
	}},
	{"nodes", func(r *Resource) *issue {
		for i, n := range r.Nodes {
			if is := checkNodeName(n); is != nil {
				is.at = fmt.Sprintf("[%d]", i)
				return is
			}
			if j := slices.Index(r.Nodes, n); j < i {
				return &issue{at: fmt.Sprintf("[%d]", i), msg: fmt.Sprintf("node %s is listed twice (also nodes[%d])", quote(n), j)}
			}
		}
		return nil
	}},
	{"nodeLabels", func(r *Resource) *issue {
		if _, ok := r.NodeLabels[""]; ok {
			return bad("a label name must not be empty")
		}
		return nil
	}},
	{"targetRole", func(r *Resource) *issue { return targetRoles.check(r.TargetRole) }},
}

// writtenPositive are durations that may be left out (for the default) but,
// when written, must be above zero.
var writtenPositive = []struct {
	field string
	def   string
	get   func(r *Resource) Duration
}{
	{"params.stopTimeout", "10s", func(r *Resource) Duration { return r.Params.StopTimeout }},
	{"params.startTimeout", "20s", func(r *Resource) Duration { return r.Params.StartTimeout }},
	{"health.interval", "2s", func(r *Resource) Duration { return healthOr(r).Interval }},
	{"health.timeout", "1s", func(r *Resource) Duration { return healthOr(r).Timeout }},
}

func healthOr(r *Resource) *Health {
	if r.Health == nil {
		return &Health{}
	}
	return r.Health
}

var healthRules = []rule[Health]{
	{"", func(h *Health) *issue {
		var set []string
		if h.HTTP != "" {
			set = append(set, "http")
		}
		if h.TCP != "" {
			set = append(set, "tcp")
		}
		if len(h.Exec) > 0 {
			set = append(set, "exec")
		}
		switch len(set) {
		case 0:
			return bad("needs exactly one check: http, tcp or exec (e.g. health: {tcp: 127.0.0.1:5000})")
		case 1:
			return nil
		}
		return bad("has %s; keep exactly one of http, tcp, exec", strings.Join(set, " and "))
	}},
	{"http", func(h *Health) *issue {
		if h.HTTP == "" {
			return nil
		}
		u, err := url.Parse(h.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
			return bad("%s is not an http(s) URL (write e.g. http://127.0.0.1:5000/healthcheck)", quote(h.HTTP))
		}
		return nil
	}},
	{"tcp", func(h *Health) *issue {
		if h.TCP == "" {
			return nil
		}
		host, port, err := net.SplitHostPort(h.TCP)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return bad("%s is not host:port (write e.g. 127.0.0.1:5000 or [::1]:5000)", quote(h.TCP))
		}
		return nil
	}},
	{"exec", func(h *Health) *issue {
		if len(h.Exec) > 0 && h.Exec[0] == "" {
			return &issue{at: "[0]", msg: "must not be empty: it is the program to run"}
		}
		return nil
	}},
	{"interval", func(h *Health) *issue { return notNegative(h.Interval) }},
	{"timeout", func(h *Health) *issue { return notNegative(h.Timeout) }},
	{"fall", func(h *Health) *issue {
		if h.Fall < 0 {
			return bad("must be 0 or more (leave it out for the default 1)")
		}
		return nil
	}},
}

// maxStickiness bounds stickiness in both directions.
const maxStickiness = 1000000

// enum is a field with a fixed set of values; future values are recognised
// but not supported by this release. The empty value means the default.
type enum struct {
	name   string
	valid  []string
	future []string
}

var (
	modes            = enum{"mode", []string{ModeSingle, ModeClone, ModePromotable}, []string{"bundle"}}
	onFails          = enum{"onFail", []string{OnFailRestart, OnFailMigrate, OnFailStop, OnFailBlock, OnFailIgnore, OnFailStandby, OnFailDemote, OnFailFence}, nil}
	targetRoles      = enum{"targetRole", []string{RoleStarted, RoleStopped, RolePromoted, RoleUnpromoted}, nil}
	noQuorumPolicies = enum{"noQuorumPolicy", []string{NoQuorumStop, NoQuorumDemote, NoQuorumFreeze, NoQuorumIgnore}, []string{"suicide"}}
)

func (e enum) check(v string) *issue {
	if v == "" || slices.Contains(e.valid, v) {
		return nil
	}
	valid := strings.Join(e.valid, ", ")
	if slices.Contains(e.future, v) {
		return bad("%s %s is not supported by this release (supported: %s)", e.name, quote(v), valid)
	}
	hint := ""
	if s := suggest(v, e.valid); s != "" {
		hint = fmt.Sprintf("did you mean %s? ", s)
	}
	return bad("%s is not a valid %s (%svalid: %s; default %s)", quote(v), e.name, hint, valid, e.valid[0])
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// checkName checks a DNS-label-like name.
func checkName(name, what string) *issue {
	if labelRE.MatchString(name) {
		return nil
	}
	return bad("%s is not a valid %s: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", quote(name), what)
}

// checkNodeName checks a node name: DNS labels, optionally dotted (a host name).
func checkNodeName(name string) *issue {
	ok := name != "" && len(name) <= 253
	for l := range strings.SplitSeq(name, ".") {
		ok = ok && labelRE.MatchString(l)
	}
	if ok {
		return nil
	}
	return bad("%s is not a valid node name: use lowercase letters, digits, '-' and '.' (a host name, e.g. ctl1)", quote(name))
}

func notNegative(d Duration) *issue {
	if d < 0 {
		return bad("%s is negative (write e.g. 2s, 500ms)", d)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
