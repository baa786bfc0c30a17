package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func goodFiles(t testing.TB) []string {
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good specs in testdata: %v", err)
	}
	return files
}

func TestParseGood(t *testing.T) {
	for _, f := range goodFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
			d := s.WithDefaults()
			if err := d.Validate(); err != nil {
				t.Errorf("Validate after defaults: %v", err)
			}
			assertRoundTrips(t, s)
			assertRoundTrips(t, d)
		})
	}
}

// assertRoundTrips checks Parse(YAML()) and ParseJSON(JSON()) give s back.
func assertRoundTrips(t *testing.T, s *Spec) {
	t.Helper()
	y, err := Parse(s.YAML())
	if err != nil {
		t.Fatalf("re-parse of YAML():\n%s\nerror: %v", s.YAML(), err)
	}
	if !reflect.DeepEqual(s, y) {
		t.Errorf("YAML round trip differs:\nYAML:\n%s\nwant %#v\n got %#v", s.YAML(), s, y)
	}
	j, err := ParseJSON(s.JSON())
	if err != nil {
		t.Fatalf("ParseJSON(JSON()): %v\n%s", err, s.JSON())
	}
	if !reflect.DeepEqual(s, j) {
		t.Errorf("JSON round trip differs:\nJSON: %s\nwant %#v\n got %#v", s.JSON(), s, j)
	}
	if !bytes.Equal(s.JSON(), j.JSON()) {
		t.Errorf("JSON not canonical:\n%s\n%s", s.JSON(), j.JSON())
	}
}

// TestParseBad reads the expected error substrings from the leading
// "# want: ..." lines of each testdata/*.bad.yaml.
func TestParseBad(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) < 15 {
		t.Fatalf("want at least 15 bad specs in testdata, got %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for line := range strings.Lines(string(data)) {
				w, ok := strings.CutPrefix(line, "# want: ")
				if !ok {
					break
				}
				wants = append(wants, strings.TrimSpace(w))
			}
			if len(wants) == 0 {
				t.Fatal("no '# want: ' line at the top")
			}
			s, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse accepted it: %s", s.JSON())
			}
			if s != nil {
				t.Errorf("Parse returned a spec with an error")
			}
			var perr *Error
			if !errors.As(err, &perr) || len(perr.Errors) == 0 {
				t.Fatalf("error %T is not a non-empty *Error: %v", err, err)
			}
			var fe FieldError
			if !errors.As(err, &fe) {
				t.Errorf("errors.As(FieldError) failed")
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q; got:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateWithoutLines(t *testing.T) {
	s := &Spec{
		APIVersion: APIVersion,
		Cluster:    Cluster{Name: "c1"},
		Resources: []Resource{
			{Name: "a", Class: "process", Params: Params{Command: []string{"a"}}},
			{Name: "a", Class: "process", Params: Params{Command: []string{"b"}}, Mode: "clone", Health: &Health{Interval: -1}},
		},
	}
	err := s.Validate()
	want := `resources[1].health: needs exactly one check: http, tcp or exec (e.g. health: {tcp: 127.0.0.1:5000})
resources[1].health.interval: -1ns is negative (write e.g. 2s, 500ms)
resources[1].name: duplicate resource name "a", also used by resources[0]; resource names must be unique`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestErrorCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: paceline/v1\ncluster: {name: c1}\nresources:\n")
	for range 30 {
		b.WriteString("  - {name: BAD, class: process, params: {command: [x]}}\n")
	}
	_, err := Parse([]byte(b.String()))
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("got %v", err)
	}
	if len(perr.Errors) != MaxErrors || perr.More != 30+29-MaxErrors {
		t.Errorf("got %d errors and %d more", len(perr.Errors), perr.More)
	}
	if !strings.HasSuffix(err.Error(), "(and 39 more errors)") {
		t.Errorf("missing the count of left-out errors:\n%v", err)
	}
	for i, fe := range perr.Errors {
		if fe.Line != 4+(i+1)/2 {
			t.Errorf("errors not in line order: %+v", perr.Errors)
			break
		}
	}
}

func TestParseKeepsWhatWasWritten(t *testing.T) {
	s, err := Parse([]byte("apiVersion: paceline/v1\ncluster: {name: c1}\nresources:\n  - {name: a, class: process, params: {command: [a]}, health: {tcp: '127.0.0.1:1'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Resources[0]
	if r.Mode != "" || r.OnFail != "" || r.MigrationThreshold != nil || r.Health.Interval != 0 || s.Cluster.NoQuorumPolicy != "" {
		t.Errorf("Parse applied defaults: %s", s.JSON())
	}
	d := s.WithDefaults()
	dr := d.Resources[0]
	want := Resource{
		Name: "a", Class: "process",
		Params:             Params{Command: []string{"a"}, StopTimeout: DefaultStopTimeout, StartTimeout: DefaultStartTimeout},
		Mode:               ModeSingle,
		MaxPerNode:         1,
		Health:             &Health{TCP: "127.0.0.1:1", Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Fall: 1},
		OnFail:             OnFailRestart,
		MigrationThreshold: ptr(3),
		Stickiness:         ptr(100),
		TargetRole:         "started",
		MultipleActive:     MultipleStopStart,
	}
	if !reflect.DeepEqual(dr, want) || d.Cluster.NoQuorumPolicy != "stop" {
		t.Errorf("defaults:\n got %s\nwant %s", d.JSON(), (&Spec{APIVersion: APIVersion, Cluster: Cluster{Name: "c1", NoQuorumPolicy: "stop"}, Resources: []Resource{want}}).JSON())
	}
	if s.Resources[0].Mode != "" || s.Resources[0].Health.Interval != 0 {
		t.Errorf("WithDefaults changed the original")
	}
	if !dr.Exclusive() || (&Resource{Mode: ModeClone}).Exclusive() || !(&Resource{}).Exclusive() {
		t.Errorf("Exclusive wrong")
	}
}

func TestClone(t *testing.T) {
	s := mustParse(t, "testdata/clone.good.yaml")
	c := s.Clone()
	if !reflect.DeepEqual(s, c) {
		t.Fatal("clone differs")
	}
	c.Resources[0].Params.Command[0] = "changed"
	c.Resources[0].Params.Env["LANG"] = "changed"
	*c.Resources[0].MigrationThreshold = 42
	c.Resources[0].Nodes[0] = "changed"
	c.Resources[0].NodeLabels["zone"] = "changed"
	if !reflect.DeepEqual(s, mustParse(t, "testdata/clone.good.yaml")) {
		t.Error("changing the clone changed the original")
	}
	h := mustParse(t, "testdata/health-exec.good.yaml")
	hc := h.Clone()
	hc.Resources[0].Health.Exec[0] = "changed"
	hc.Resources[0].Health.Fall = 9
	if h.Resources[0].Health.Exec[0] == "changed" || h.Resources[0].Health.Fall == 9 {
		t.Error("health shared between clone and original")
	}
	if (*Spec)(nil).Clone() != nil {
		t.Error("nil clone")
	}
}

func mustParse(t *testing.T, file string) *Spec {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{{`"2s"`, `"2s"`}, {`"100ms"`, `"100ms"`}, {`"10m"`, `"10m"`}, {`"600s"`, `"10m"`}, {`"1h0m"`, `"1h"`}, {`"90m"`, `"1h30m"`}, {`"1m0.5s"`, `"1m0.5s"`}, {`"0s"`, `"0s"`}} {
		var d Duration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		got, _ := json.Marshal(d)
		if string(got) != tc.want {
			t.Errorf("%s: marshalled as %s, want %s", tc.in, got, tc.want)
		}
		var back Duration
		if err := json.Unmarshal(got, &back); err != nil || back != d {
			t.Errorf("%s: round trip gave %v, %v", tc.in, back, err)
		}
	}
	for _, in := range []string{`2`, `"2x"`, `true`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted as %v", in, d)
		}
	}
}

func TestParseJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"apiVersion":"paceline/v1","cluster":{"name":"c1"},"extra":1}`, `unknown field "extra"`},
		{`{"apiVersion":"paceline/v1","cluster":{"name":"c1"},"resources":[{"name":"a","class":"process","params":{"command":["a"]},"replicas":"x"}]}`, `resources.replicas: expected int`},
		{`{"apiVersion":"paceline/v1","cluster":{"name":"c1"},"resources":[{"name":"a","class":"process","params":{"command":["a"]},"failureTimeout":"2x"}]}`, `"2x" is not a duration`},
		{`{"apiVersion":"paceline/v1","cluster":{"name":"c1"}} {}`, `exactly one JSON object`},
		{`{"apiVersion":"paceline/v1","cluster":{"name":"c1"},"resources":[{"name":"a","class":"vrrp"}]}`, `resources[0].class: class "vrrp" is not supported (supported: process, vip, ocf:PROVIDER:TYPE, lsb:NAME, systemd:UNIT)`},
	} {
		_, err := ParseJSON([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseJSON(%s) = %v, want %q", tc.in, err, tc.want)
		}
		var perr *Error
		if !errors.As(err, &perr) {
			t.Errorf("not an *Error: %T", err)
		}
	}
}

func TestYAMLIsCanonical(t *testing.T) {
	s := mustParse(t, "testdata/design.good.yaml")
	want := `apiVersion: paceline/v1
cluster:
  name: openstack-ctl
  noQuorumPolicy: stop
resources:
  - name: keystone
    class: process
    params:
      command: [keystone-wsgi-public, --port, "5000"]
    mode: clone
    replicas: 3
    health:
      http: http://127.0.0.1:5000/healthcheck
      interval: 2s
      timeout: 1s
    onFail: restart
    migrationThreshold: 3
    failureTimeout: 10m
    stickiness: 100
`
	if got := string(s.YAML()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestYAMLRoundTripTrickyStrings(t *testing.T) {
	tricky := []string{"a, b", "[x", "x]", "{y}", "# not a comment", "k: v", "- item", "", " lead", "trail ", "\ttab",
		"two\nlines", "two\nlines\n", "~", "null", "Null", "true", "yes", "no", "on", "0x10", "0o17", "1e3", ".inf", "-.5",
		"1_000", "*star", "&amp", "!bang", "%pct", "@at", "`tick", "'single'", `"double"`, "ünïcödé", "\x01ctl", "\u2028sep",
		"---", "...", "? q", "<<", "=", "5000", "007", "2s", "2024-01-01", "2001-12-14t21:59:43.10-05:00", "0.", "+1", "0b101"}
	s := &Spec{
		APIVersion: APIVersion,
		Cluster:    Cluster{Name: "c1"},
		Resources: []Resource{{
			Name:   "a",
			Class:  ClassProcess,
			Params: Params{Command: append([]string{"/bin/x"}, tricky...), Env: map[string]string{}, Dir: "/x y/#z"},
			Health: &Health{Exec: append([]string{"/bin/check"}, tricky...)},
		}},
	}
	for i, v := range tricky {
		if v != "" && v != "=" && v != "<<" {
			s.Resources[0].Params.Env["K"+strconv.Itoa(i)] = v
			s.Resources[0].Params.Env[v+"_"] = v
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	assertRoundTrips(t, s)
}
