package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Class kinds.
const (
	// ClassProcess is a supervised process (the only class without a prefix).
	ClassProcess = "process"
	KindOCF      = "ocf"     // ocf:PROVIDER:TYPE, an OCF resource agent
	KindLSB      = "lsb"     // lsb:NAME, an init script in /etc/init.d
	KindSystemd  = "systemd" // systemd:UNIT, a unit driven over D-Bus
	// KindVIP is a virtual IP address held by the agent itself
	// (internal/agents/vip); like process, it has no prefix.
	KindVIP = "vip"
)

// ClassInfo is a parsed class string.
type ClassInfo struct {
	Kind     string // process, vip, ocf, lsb or systemd
	Provider string // ocf only, e.g. heartbeat
	Type     string // agent (ocf), script (lsb) or unit (systemd) name
}

// String renders the class as written in a spec.
func (c ClassInfo) String() string {
	switch c.Kind {
	case ClassProcess, KindVIP:
		return c.Kind
	case KindOCF:
		return "ocf:" + c.Provider + ":" + c.Type
	}
	return c.Kind + ":" + c.Type
}

// Script reports whether the class is driven through an agents.Invoker
// (ocf, lsb, systemd, and the built-in vip class) rather than supervised
// directly: its params are a flat mapping of strings, it is probed and
// checked by a monitor operation.
func (c ClassInfo) Script() bool {
	return c.Kind == KindOCF || c.Kind == KindLSB || c.Kind == KindSystemd || c.Kind == KindVIP
}

// ParseClass parses "process", "vip", "ocf:PROVIDER:TYPE", "lsb:NAME" or
// "systemd:UNIT". The error says what to write instead.
func ParseClass(s string) (ClassInfo, error) {
	if s == ClassProcess || s == KindVIP {
		return ClassInfo{Kind: s}, nil
	}
	parts := strings.Split(s, ":")
	okName := func(x string) bool {
		return x != "" && !strings.ContainsAny(x, "/ \t\n\x00") && x != "." && x != ".."
	}
	switch parts[0] {
	case KindOCF:
		if len(parts) != 3 || !okName(parts[1]) || !okName(parts[2]) {
			return ClassInfo{}, fmt.Errorf("%s is not an OCF class: write ocf:PROVIDER:TYPE (e.g. ocf:heartbeat:IPaddr2)", quote(s))
		}
		return ClassInfo{Kind: KindOCF, Provider: parts[1], Type: parts[2]}, nil
	case KindLSB, KindSystemd:
		if len(parts) != 2 || !okName(parts[1]) {
			return ClassInfo{}, fmt.Errorf("%s is not a %s class: write %s:NAME (e.g. %s:nginx)", quote(s), parts[0], parts[0], parts[0])
		}
		return ClassInfo{Kind: parts[0], Type: parts[1]}, nil
	}
	return ClassInfo{}, fmt.Errorf("class %s is not supported (supported: process, vip, ocf:PROVIDER:TYPE, lsb:NAME, systemd:UNIT)", quote(s))
}

// Info returns the parsed class; an invalid class yields Kind "".
func (r *Resource) Info() ClassInfo {
	c, _ := ParseClass(r.Class)
	return c
}

// scriptParams reports whether params are a flat string mapping (Values).
func (r *Resource) scriptParams() bool { return r.Info().Script() }

type resourceAlias Resource

// MarshalJSON writes params as the typed process parameters or, for script
// classes, as the flat mapping of values.
func (r Resource) MarshalJSON() ([]byte, error) {
	w := struct {
		resourceAlias
		Params any `json:"params"`
	}{resourceAlias: resourceAlias(r)}
	if r.scriptParams() {
		v := r.Params.Values
		if v == nil {
			v = map[string]string{}
		}
		w.Params = v
	} else {
		w.Params = r.Params
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads params according to the class and refuses unknown fields.
func (r *Resource) UnmarshalJSON(b []byte) error {
	var a resourceAlias
	w := struct {
		*resourceAlias
		Params json.RawMessage `json:"params"`
	}{resourceAlias: &a}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	*r = Resource(a)
	r.Params = Params{}
	if len(w.Params) == 0 || string(w.Params) == "null" {
		return nil
	}
	if r.scriptParams() {
		var m map[string]string
		if err := json.Unmarshal(w.Params, &m); err != nil {
			return fmt.Errorf("params of class %s must be a mapping of strings: %w", r.Class, err)
		}
		if len(m) > 0 {
			r.Params.Values = m
		}
		return nil
	}
	pd := json.NewDecoder(bytes.NewReader(w.Params))
	pd.DisallowUnknownFields()
	return pd.Decode(&r.Params)
}
