package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// String formats d as a Go duration, without trailing zero units ("10m", not "10m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalJSON writes d as a duration string such as "2s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a duration string such as "2s" or "500ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration string (e.g. \"2s\", \"500ms\"), got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration (write e.g. 2s, 500ms)", quote(s))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string such as "2s".
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// ParseJSON decodes a spec from its JSON form (unknown fields refused) and
// validates it. Errors carry field paths but no lines.
func ParseJSON(data []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	s := &Spec{}
	if err := dec.Decode(s); err != nil {
		fe := FieldError{Msg: err.Error()}
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			fe = FieldError{Path: te.Field, Msg: fmt.Sprintf("expected %s, got a JSON %s", te.Type, te.Value)}
		}
		return nil, newError([]FieldError{fe})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, newError([]FieldError{{Msg: "unexpected data after the spec object; send exactly one JSON object"}})
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// JSON is the canonical, deterministic JSON encoding stored in the replicated state.
func (s *Spec) JSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic("spec: JSON encoding cannot fail: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// YAML is the canonical YAML encoding: fields in declaration order, unset
// fields left out. Parse(s.YAML()) yields a spec equal to s.
func (s *Spec) YAML() []byte {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		panic("spec: YAML encoding cannot fail: " + err.Error())
	}
	if err := enc.Close(); err != nil {
		panic("spec: YAML encoding cannot fail: " + err.Error())
	}
	return buf.Bytes()
}

// The yaml* types mirror the spec types with omitempty (and flow lists) so
// that YAML output shows only what is set. They convert to and from the spec
// types because their fields are identical apart from tags.
type (
	yamlSpec struct {
		APIVersion string     `yaml:"apiVersion"`
		Cluster    Cluster    `yaml:"cluster"`
		Resources  []Resource `yaml:"resources,omitempty"`
	}
	yamlCluster struct {
		Name           string `yaml:"name"`
		NoQuorumPolicy string `yaml:"noQuorumPolicy,omitempty"`
		Maintenance    bool   `yaml:"maintenance,omitempty"`
	}
	yamlResource struct {
		Name               string            `yaml:"name"`
		Class              string            `yaml:"class"`
		Params             Params            `yaml:"params"`
		Mode               string            `yaml:"mode,omitempty"`
		Replicas           int               `yaml:"replicas,omitempty"`
		MaxPerNode         int               `yaml:"maxPerNode,omitempty"`
		Health             *Health           `yaml:"health,omitempty"`
		OnFail             string            `yaml:"onFail,omitempty"`
		MigrationThreshold *int              `yaml:"migrationThreshold,omitempty"`
		FailureTimeout     Duration          `yaml:"failureTimeout,omitempty"`
		Stickiness         *int              `yaml:"stickiness,omitempty"`
		Nodes              []string          `yaml:"nodes,flow,omitempty"`
		NodeLabels         map[string]string `yaml:"nodeLabels,omitempty"`
		TargetRole         string            `yaml:"targetRole,omitempty"`
	}
	yamlParams struct {
		Command      []string          `yaml:"command,flow,omitempty"`
		Env          map[string]string `yaml:"env,omitempty"`
		Dir          string            `yaml:"dir,omitempty"`
		StopTimeout  Duration          `yaml:"stopTimeout,omitempty"`
		StartTimeout Duration          `yaml:"startTimeout,omitempty"`
	}
	yamlHealth struct {
		HTTP     string   `yaml:"http,omitempty"`
		TCP      string   `yaml:"tcp,omitempty"`
		Exec     []string `yaml:"exec,flow,omitempty"`
		Interval Duration `yaml:"interval,omitempty"`
		Timeout  Duration `yaml:"timeout,omitempty"`
		Fall     int      `yaml:"fall,omitempty"`
	}
)

// MarshalYAML leaves out unset fields.
func (s Spec) MarshalYAML() (any, error) { return yamlSpec(s), nil }

// MarshalYAML leaves out unset fields.
func (c Cluster) MarshalYAML() (any, error) { return yamlCluster(c), nil }

// MarshalYAML leaves out unset fields.
func (r Resource) MarshalYAML() (any, error) { return yamlResource(r), nil }

// MarshalYAML leaves out unset fields.
func (p Params) MarshalYAML() (any, error) { return yamlParams(p), nil }

// MarshalYAML leaves out unset fields.
func (h Health) MarshalYAML() (any, error) { return yamlHealth(h), nil }

// Clone returns a deep copy of s.
func (s *Spec) Clone() *Spec {
	if s == nil {
		return nil
	}
	c := *s
	if s.Resources != nil {
		c.Resources = make([]Resource, len(s.Resources))
		for i := range s.Resources {
			c.Resources[i] = s.Resources[i].clone()
		}
	}
	return &c
}

func (r *Resource) clone() Resource {
	c := *r
	c.Params.Command = slices.Clone(r.Params.Command)
	c.Params.Env = maps.Clone(r.Params.Env)
	if r.Health != nil {
		h := *r.Health
		h.Exec = slices.Clone(r.Health.Exec)
		c.Health = &h
	}
	c.MigrationThreshold = clonePtr(r.MigrationThreshold)
	c.Stickiness = clonePtr(r.Stickiness)
	c.Nodes = slices.Clone(r.Nodes)
	c.NodeLabels = maps.Clone(r.NodeLabels)
	return c
}

func clonePtr(p *int) *int {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Exclusive reports whether the resource may run on at most one node at a
// time (mode single, the default), which is what the hold lease guards.
func (r *Resource) Exclusive() bool {
	return r.Mode == "" || r.Mode == ModeSingle
}
