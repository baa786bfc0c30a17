package ocf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Metadata is an agent's self-description (the meta-data action).
type Metadata struct {
	Name       string // <resource-agent name>
	Version    string // <resource-agent version>: the agent's own version
	OCFVersion string // <version>: the OCF API version it implements
	ShortDesc  string
	LongDesc   string
	Parameters []Parameter
	Actions    []ActionSpec
}

// Parameter describes one resource parameter. OCF agents apply their
// own defaults; Default is informational only.
type Parameter struct {
	Name        string
	Unique      bool   // unique="1": no two resources of this type may share the value
	UniqueGroup string // unique-group (OCF 1.1)
	Required    bool
	Reloadable  bool // changing it needs reload-agent, not a restart
	Private     bool // a secret: never show or log its value
	Deprecated  bool
	ShortDesc   string
	LongDesc    string
	Type        string // content type: string, integer, boolean, select, ...
	Default     string
	HasDefault  bool
	Options     []string // values of a select
}

// ActionSpec is an action the agent advertises, with its advised timeout.
type ActionSpec struct {
	Name     string
	Timeout  time.Duration // 0 if not given
	Interval time.Duration // for monitor
	Depth    int           // OCF_CHECK_LEVEL
	Role     string        // "Promoted" or "Unpromoted" (legacy names are normalised)
}

// MaxMetadataSize bounds the meta-data ParseMetadata accepts.
const MaxMetadataSize = 4 << 20

// xml mirrors of the format.
type xmlAgent struct {
	XMLName    xml.Name    `xml:"resource-agent"`
	Name       string      `xml:"name,attr"`
	Version    string      `xml:"version,attr"`
	OCFVersion string      `xml:"version"`
	ShortDesc  []xmlDesc   `xml:"shortdesc"`
	LongDesc   []xmlDesc   `xml:"longdesc"`
	Parameters []xmlParam  `xml:"parameters>parameter"`
	Actions    []xmlAction `xml:"actions>action"`
}

type xmlDesc struct {
	Lang string `xml:"lang,attr"`
	Text string `xml:",chardata"`
}

type xmlParam struct {
	Name        string     `xml:"name,attr"`
	Unique      string     `xml:"unique,attr"`
	UniqueGroup string     `xml:"unique-group,attr"`
	Required    string     `xml:"required,attr"`
	Reloadable  string     `xml:"reloadable,attr"`
	Private     string     `xml:"private,attr"`
	ShortDesc   []xmlDesc  `xml:"shortdesc"`
	LongDesc    []xmlDesc  `xml:"longdesc"`
	Content     *xmlContnt `xml:"content"`
	Deprecated  *struct{}  `xml:"deprecated"`
}

type xmlContnt struct {
	Type    string  `xml:"type,attr"`
	Default *string `xml:"default,attr"`
	Options []struct {
		Value string `xml:"value,attr"`
	} `xml:"option"`
}

type xmlAction struct {
	Name     string `xml:"name,attr"`
	Timeout  string `xml:"timeout,attr"`
	Interval string `xml:"interval,attr"`
	Depth    string `xml:"depth,attr"`
	Role     string `xml:"role,attr"`
}

// ParseMetadata parses meta-data XML. Errors say what is wrong and where;
// it never panics, whatever the input.
func ParseMetadata(data []byte) (*Metadata, error) {
	if len(data) > MaxMetadataSize {
		return nil, fmt.Errorf("meta-data: %d bytes, more than the %d allowed", len(data), MaxMetadataSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("meta-data: empty")
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	var x xmlAgent
	if err := dec.Decode(&x); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("meta-data: no <resource-agent> element")
		}
		return nil, fmt.Errorf("meta-data: invalid XML: %w", err)
	}
	m := &Metadata{
		Name:       strings.TrimSpace(x.Name),
		Version:    strings.TrimSpace(x.Version),
		OCFVersion: strings.TrimSpace(x.OCFVersion),
		ShortDesc:  pickDesc(x.ShortDesc),
		LongDesc:   pickDesc(x.LongDesc),
	}
	if m.Name == "" {
		return nil, errors.New("meta-data: <resource-agent> has no name")
	}
	seen := make(map[string]bool)
	for i, xp := range x.Parameters {
		p, err := convParam(xp)
		if err != nil {
			return nil, fmt.Errorf("meta-data: parameter %d: %w", i+1, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("meta-data: parameter %q defined twice", p.Name)
		}
		seen[p.Name] = true
		m.Parameters = append(m.Parameters, p)
	}
	for i, xa := range x.Actions {
		a, err := convAction(xa)
		if err != nil {
			return nil, fmt.Errorf("meta-data: action %d (%q): %w", i+1, xa.Name, err)
		}
		m.Actions = append(m.Actions, a)
	}
	return m, nil
}

func convParam(xp xmlParam) (Parameter, error) {
	p := Parameter{
		Name:        strings.TrimSpace(xp.Name),
		UniqueGroup: xp.UniqueGroup,
		ShortDesc:   pickDesc(xp.ShortDesc),
		LongDesc:    pickDesc(xp.LongDesc),
		Deprecated:  xp.Deprecated != nil,
	}
	if p.Name == "" {
		return p, errors.New("no name")
	}
	for _, b := range []struct {
		attr, val string
		dst       *bool
	}{
		{"unique", xp.Unique, &p.Unique},
		{"required", xp.Required, &p.Required},
		{"reloadable", xp.Reloadable, &p.Reloadable},
		{"private", xp.Private, &p.Private},
	} {
		v, err := parseBool(b.val)
		if err != nil {
			return p, fmt.Errorf("%q: %s: %w", p.Name, b.attr, err)
		}
		*b.dst = v
	}
	if c := xp.Content; c != nil {
		p.Type = strings.TrimSpace(c.Type)
		if c.Default != nil {
			p.Default, p.HasDefault = *c.Default, true
		}
		for _, o := range c.Options {
			p.Options = append(p.Options, o.Value)
		}
	}
	return p, nil
}

func convAction(xa xmlAction) (ActionSpec, error) {
	a := ActionSpec{Name: strings.TrimSpace(xa.Name), Role: normalizeRole(xa.Role)}
	if a.Name == "" {
		return a, errors.New("no name")
	}
	var err error
	if a.Timeout, err = ParseDuration(xa.Timeout); err != nil {
		return a, fmt.Errorf("timeout: %w", err)
	}
	if a.Interval, err = ParseDuration(xa.Interval); err != nil {
		return a, fmt.Errorf("interval: %w", err)
	}
	if d := strings.TrimSpace(xa.Depth); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return a, fmt.Errorf("depth %q is not a non-negative integer", xa.Depth)
		}
		a.Depth = n
	}
	return a, nil
}

// pickDesc returns the English (or unlabelled, or else the first)
// description, trimmed.
func pickDesc(ds []xmlDesc) string {
	if len(ds) == 0 {
		return ""
	}
	best := ds[0]
	for _, d := range ds {
		if d.Lang == "en" || d.Lang == "" {
			best = d
			break
		}
	}
	return strings.TrimSpace(best.Text)
}

// parseBool accepts what Pacemaker's crm_is_true does, and "" as false.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "0", "false", "no", "n", "off":
		return false, nil
	case "1", "true", "yes", "y", "on":
		return true, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

// normalizeRole maps the legacy role names to the current ones.
func normalizeRole(r string) string {
	switch strings.TrimSpace(r) {
	case "Master", "Promoted":
		return "Promoted"
	case "Slave", "Unpromoted":
		return "Unpromoted"
	}
	return strings.TrimSpace(r)
}

// ParseDuration parses a Pacemaker time value: a non-negative number with
// an optional unit (ms, msec, us, usec, s, sec, m, min, h, hr); a bare
// number is seconds; "" is 0.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a time value", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	var unit time.Duration
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "s", "sec":
		unit = time.Second
	case "ms", "msec":
		unit = time.Millisecond
	case "us", "usec":
		unit = time.Microsecond
	case "m", "min":
		unit = time.Minute
	case "h", "hr":
		unit = time.Hour
	default:
		return 0, fmt.Errorf("%q has an unknown unit", s)
	}
	if n > int64((1<<63-1)/unit) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return time.Duration(n) * unit, nil
}

// charsetReader accepts the encodings meta-data is found in.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "latin1", "latin-1":
		b, err := io.ReadAll(io.LimitReader(input, MaxMetadataSize))
		if err != nil {
			return nil, err
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return strings.NewReader(string(r)), nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", charset)
}

// Parameter returns the parameter called name.
func (m *Metadata) Parameter(name string) (Parameter, bool) {
	for _, p := range m.Parameters {
		if p.Name == name {
			return p, true
		}
	}
	return Parameter{}, false
}

// Defaults returns the advertised default of every parameter that has one.
// It is informational: agents apply their defaults themselves.
func (m *Metadata) Defaults() map[string]string {
	d := make(map[string]string)
	for _, p := range m.Parameters {
		if p.HasDefault {
			d[p.Name] = p.Default
		}
	}
	return d
}

// Validate checks params against the meta-data: every name must be a
// known parameter and every required parameter must be set (non-empty).
// The error names each offending parameter and, for unknown ones, the
// valid names.
func (m *Metadata) Validate(params map[string]string) error {
	var errs []error
	var unknown []string
	for name := range params {
		if _, ok := m.Parameter(name); !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		valid := make([]string, 0, len(m.Parameters))
		for _, p := range m.Parameters {
			valid = append(valid, p.Name)
		}
		sort.Strings(valid)
		list := "none"
		if len(valid) > 0 {
			list = strings.Join(valid, ", ")
		}
		for _, name := range unknown {
			errs = append(errs, fmt.Errorf("%s: unknown parameter %q (valid: %s)", m.Name, name, list))
		}
	}
	for _, p := range m.Parameters {
		if p.Required && params[p.Name] == "" {
			errs = append(errs, fmt.Errorf("%s: required parameter %q is not set", m.Name, p.Name))
		}
	}
	return errors.Join(errs...)
}

// Timeout returns the advised timeout of action: for monitor the entry
// with the given role and interval if there is one, else one with the
// role, else any; role "" matches entries without a role first.
func (m *Metadata) Timeout(action, role string, interval time.Duration) (time.Duration, bool) {
	role = normalizeRole(role)
	best, score := time.Duration(0), -1
	for _, a := range m.Actions {
		if a.Name != action || a.Timeout <= 0 {
			continue
		}
		s := 0
		if a.Role == role {
			s += 2
		}
		if a.Interval == interval {
			s++
		}
		if s > score {
			best, score = a.Timeout, s
		}
	}
	return best, score >= 0
}

// Supports reports whether the agent advertises action.
func (m *Metadata) Supports(action string) bool {
	for _, a := range m.Actions {
		if a.Name == action {
			return true
		}
	}
	return false
}
