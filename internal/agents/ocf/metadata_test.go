package ocf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMetadataDummy(t *testing.T) {
	m, err := ParseMetadata(readTestdata(t, "heartbeat-Dummy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Dummy" || m.Version != "1.0" || m.OCFVersion != "1.0" {
		t.Errorf("name/version = %q %q %q", m.Name, m.Version, m.OCFVersion)
	}
	if m.ShortDesc != "Example stateless resource agent" {
		t.Errorf("shortdesc = %q", m.ShortDesc)
	}
	state, ok := m.Parameter("state")
	if !ok || !state.Unique || state.Required || state.Type != "string" || !state.HasDefault ||
		state.Default != "/run/resource-agents/Dummy-RESOURCE_ID.state" || state.ShortDesc != "State file" {
		t.Errorf("state = %+v", state)
	}
	if d := m.Defaults(); d["fake"] != "dummy" || len(d) != 2 {
		t.Errorf("defaults = %v", d)
	}
	if got, ok := m.Timeout("start", "", 0); !ok || got != 20*time.Second {
		t.Errorf("start timeout = %v %v", got, ok)
	}
	if got, ok := m.Timeout("meta-data", "", 0); !ok || got != 5*time.Second {
		t.Errorf("meta-data timeout = %v %v", got, ok)
	}
	if _, ok := m.Timeout("promote", "", 0); ok {
		t.Error("Dummy advertises no promote")
	}
	if !m.Supports("migrate_to") || m.Supports("promote") {
		t.Error("Supports is wrong")
	}
}

func TestParseMetadataStateful(t *testing.T) {
	m, err := ParseMetadata(readTestdata(t, "pacemaker-Stateful.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Parameter("state"); p.UniqueGroup != "state" {
		t.Errorf("state unique-group = %q", p.UniqueGroup)
	}
	if p, _ := m.Parameter("envfile"); !p.Reloadable || !p.HasDefault || p.Default != "" {
		t.Errorf("envfile = %+v", p)
	}
	var monitors []ActionSpec
	for _, a := range m.Actions {
		if a.Name == "monitor" {
			monitors = append(monitors, a)
		}
	}
	want := []ActionSpec{
		{Name: "monitor", Timeout: 20 * time.Second, Interval: 10 * time.Second, Role: "Promoted"},
		{Name: "monitor", Timeout: 20 * time.Second, Interval: 11 * time.Second, Role: "Unpromoted"},
	}
	if len(monitors) != 2 || monitors[0] != want[0] || monitors[1] != want[1] {
		t.Errorf("monitors = %+v", monitors)
	}
}

func TestParseMetadataOCF11Features(t *testing.T) {
	m, err := ParseMetadata(readTestdata(t, "ocf11-features.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.LongDesc != "Exercises the OCF 1.1 meta-data features." {
		t.Errorf("longdesc (English wanted) = %q", m.LongDesc)
	}
	pw, _ := m.Parameter("password")
	if !pw.Required || !pw.Private || pw.HasDefault {
		t.Errorf("password = %+v", pw)
	}
	unit, _ := m.Parameter("unit")
	if !unit.Reloadable || unit.Type != "select" || strings.Join(unit.Options, ",") != "K,M,G" || unit.UniqueGroup != "u" {
		t.Errorf("unit = %+v", unit)
	}
	old, _ := m.Parameter("old")
	if !old.Deprecated || !old.Unique || old.Type != "integer" {
		t.Errorf("old = %+v", old)
	}
	for _, tc := range []struct {
		action, role string
		interval     time.Duration
		want         time.Duration
	}{
		{"start", "", 0, time.Minute},
		{"stop", "", 0, 90 * time.Second},
		{"promote", "", 0, 1500 * time.Millisecond},
		{"monitor", "Promoted", 10 * time.Second, 15 * time.Second},
		{"monitor", "Master", 0, 15 * time.Second},
		{"monitor", "Unpromoted", 11 * time.Second, 25 * time.Second},
		{"monitor", "", 60 * time.Second, 40 * time.Second},
		{"monitor", "", 0, 40 * time.Second},
	} {
		got, ok := m.Timeout(tc.action, tc.role, tc.interval)
		if !ok || got != tc.want {
			t.Errorf("Timeout(%q, %q, %v) = %v, %v; want %v", tc.action, tc.role, tc.interval, got, ok, tc.want)
		}
	}
	if m.Actions[2].Role != "Promoted" || m.Actions[3].Role != "Unpromoted" || m.Actions[4].Depth != 10 {
		t.Errorf("legacy roles or depth not parsed: %+v", m.Actions)
	}
}

func TestParseMetadataErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"empty":          {"  \n", "empty"},
		"not xml":        {"crm_attribute: Could not connect", "no <resource-agent>"},
		"truncated":      {`<resource-agent name="x"><parameters><parameter name="a">`, "invalid XML"},
		"wrong root":     {`<agent name="x"/>`, "invalid XML"},
		"no name":        {`<resource-agent version="1"/>`, "has no name"},
		"param no name":  {`<resource-agent name="x"><parameters><parameter unique="1"/></parameters></resource-agent>`, "parameter 1: no name"},
		"bad bool":       {`<resource-agent name="x"><parameters><parameter name="p" required="maybe"/></parameters></resource-agent>`, `"p": required: "maybe" is not a boolean`},
		"duplicate":      {`<resource-agent name="x"><parameters><parameter name="p"/><parameter name="p"/></parameters></resource-agent>`, `"p" defined twice`},
		"bad timeout":    {`<resource-agent name="x"><actions><action name="start" timeout="soon"/></actions></resource-agent>`, `action 1 ("start"): timeout: "soon" is not a time value`},
		"bad unit":       {`<resource-agent name="x"><actions><action name="start" timeout="3 fortnights"/></actions></resource-agent>`, "unknown unit"},
		"huge timeout":   {`<resource-agent name="x"><actions><action name="start" timeout="99999999999999h"/></actions></resource-agent>`, "too large"},
		"bad depth":      {`<resource-agent name="x"><actions><action name="monitor" depth="-1"/></actions></resource-agent>`, "depth"},
		"action no name": {`<resource-agent name="x"><actions><action timeout="1s"/></actions></resource-agent>`, "no name"},
		"entity":         {`<!DOCTYPE resource-agent [<!ENTITY x "boom">]><resource-agent name="a"><shortdesc>&x;</shortdesc></resource-agent>`, "invalid XML"},
		"bad encoding":   {`<?xml version="1.0" encoding="EBCDIC"?><resource-agent name="x"/>`, "EBCDIC"},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := ParseMetadata([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; got %+v", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseMetadataLatin1(t *testing.T) {
	m, err := ParseMetadata([]byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><resource-agent name=\"caf\xe9\"/>"))
	if err != nil || m.Name != "café" {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestValidate(t *testing.T) {
	m, err := ParseMetadata(readTestdata(t, "ocf11-features.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(map[string]string{"password": "x", "unit": "M"}); err != nil {
		t.Errorf("valid params: %v", err)
	}
	err = m.Validate(map[string]string{"pasword": "x"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`unknown parameter "pasword" (valid: old, password, unit)`, `required parameter "password" is not set`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := m.Validate(map[string]string{"password": ""}); err == nil || !strings.Contains(err.Error(), `"password"`) {
		t.Errorf("empty required value: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "20": 20 * time.Second, "20s": 20 * time.Second, "20sec": 20 * time.Second,
		"1500ms": 1500 * time.Millisecond, "2msec": 2 * time.Millisecond, "7us": 7 * time.Microsecond,
		"2m": 2 * time.Minute, "2min": 2 * time.Minute, "1h": time.Hour, "3hr": 3 * time.Hour, " 5 s ": 5 * time.Second,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"s", "-1s", "1.5s", "1d", "10 apples"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
}

// FuzzParseMetadata checks that no input makes ParseMetadata panic and
// that what it accepts is well formed.
func FuzzParseMetadata(f *testing.F) {
	for _, name := range []string{"heartbeat-Dummy.xml", "pacemaker-Stateful.xml", "heartbeat-IPaddr2.xml", "ocf11-features.xml"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`<resource-agent name="x"><actions><action name="a" timeout="9223372036854775807ms"/></actions></resource-agent>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetadata(data)
		if err != nil {
			if m != nil {
				t.Fatal("metadata returned with an error")
			}
			return
		}
		if m.Name == "" {
			t.Fatal("accepted meta-data without a name")
		}
		seen := map[string]bool{}
		for _, p := range m.Parameters {
			if p.Name == "" || seen[p.Name] {
				t.Fatalf("bad parameter name %q", p.Name)
			}
			seen[p.Name] = true
		}
		for _, a := range m.Actions {
			if a.Name == "" || a.Timeout < 0 || a.Interval < 0 || a.Depth < 0 {
				t.Fatalf("bad action %+v", a)
			}
		}
		_ = m.Validate(map[string]string{"x": "y"})
		_, _ = m.Timeout("monitor", "Promoted", 0)
	})
}
