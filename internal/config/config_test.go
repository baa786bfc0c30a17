package config

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func files(t testing.TB, pattern string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(fs) == 0 {
		t.Fatalf("no testdata/%s: %v", pattern, err)
	}
	return fs
}

// loadAndValidate is what the agent does with a config file.
func loadAndValidate(path string) (Config, error) {
	c, err := Load(path)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestGoodFiles(t *testing.T) {
	for _, f := range files(t, "*.good.yaml") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := loadAndValidate(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Each bad file starts with "# want: SUBSTRING"; the error must contain it
// (it names the field, and the line where the decoder knows it).
func TestBadFiles(t *testing.T) {
	fs := files(t, "*.bad.yaml")
	if len(fs) < 20 {
		t.Fatalf("only %d bad configs", len(fs))
	}
	for _, f := range fs {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok || want == "" {
				t.Fatalf("%s lacks a '# want: ' first line", f)
			}
			_, err = loadAndValidate(f)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error does not contain %q:\n%v", want, err)
			}
		})
	}
}

func TestFullFileValues(t *testing.T) {
	c, err := loadAndValidate("testdata/full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{NodeName: "ctl2", ClusterName: "openstack-ctl", Role: "control", BindAddr: "10.0.0.12", AdvertiseAddr: "10.0.0.12",
		Ports: Ports{API: 8480, Raft: 8481, Gossip: 8482, Coarse: 8483}, DataDir: "/srv/paceline",
		Join: []string{"10.0.0.11:7480", "[fd00::13]:7480"}, BootstrapExpect: 5, Labels: map[string]string{"zone": "a", "storage": "ssd"},
		JoinTokenFile: "/etc/paceline/join.token", TLS: TLS{CA: "/etc/paceline/ca.pem", Cert: "/etc/paceline/ctl2.pem", Key: "/etc/paceline/ctl2-key.pem"},
		Lease: Lease{Duration: time.Second, Margin: 100 * time.Millisecond}, LogLevel: "debug",
		Raft:      Raft{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 100 * time.Millisecond},
		Discovery: Discovery{DNS: "127.0.0.1:8600", Domain: "paceline", TTL: 3 * time.Second}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if !c.TLS.Enabled() {
		t.Fatal("TLS not enabled")
	}
}

func TestDefaults(t *testing.T) {
	d := Default()
	want := Config{Role: "control", BindAddr: "0.0.0.0", DataDir: "/var/lib/paceline",
		Ports:     Ports{API: 7480, Raft: 7481, Gossip: 7482, Coarse: 7483},
		Raft:      Raft{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 100 * time.Millisecond},
		LogLevel:  "info",
		Discovery: Discovery{Domain: "paceline", TTL: 2 * time.Second}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Default() = %+v", d)
	}
	// Defaults come from Default() alone, not from flags or globals: two
	// calls are equal and independent.
	d.Ports.API = 1
	d.Labels = map[string]string{"x": "y"}
	if again := Default(); !reflect.DeepEqual(again, want) {
		t.Fatalf("Default() changed after a caller modified its result: %+v", again)
	}
	// The defaults plus the required identity fields are a valid config.
	c := Default()
	c.NodeName, c.ClusterName, c.BootstrapExpect, c.JoinToken = "ctl1", "c", 1, "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults + identity invalid: %v", err)
	}
	if c.TLS.Enabled() {
		t.Fatal("TLS enabled by default")
	}
}

func TestLoadKeepsDefaultsOfUnsetFields(t *testing.T) {
	c, err := Load("testdata/comments-then-fields.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	c.fillLease()
	if c.Lease.Duration != 600*time.Millisecond || c.Lease.Margin != 60*time.Millisecond {
		t.Fatalf("lease %+v: a written duration with no margin must get a tenth of it as margin", c.Lease)
	}
	if c.Ports != d.Ports || c.DataDir != d.DataDir || c.Role != d.Role || c.BindAddr != d.BindAddr || c.LogLevel != d.LogLevel {
		t.Fatalf("defaults lost: %+v", c)
	}
}

func TestDecodeEmptyAndCommentsOnly(t *testing.T) {
	for _, in := range []string{"", "  \n\t\n", "# nothing here yet\n# really\n", "---\n"} {
		c := Default()
		if err := Decode([]byte(in), &c); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Decode(%q) changed the config: %+v", in, c)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Fatalf("err %v", err)
	}
}

func valid() Config {
	c := Default()
	c.NodeName, c.ClusterName, c.BootstrapExpect, c.JoinToken = "ctl1", "c", 3, "x"
	return c
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *Config)
		want string // "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"bootstrap 1", func(c *Config) { c.BootstrapExpect = 1 }, ""},
		{"bootstrap 5", func(c *Config) { c.BootstrapExpect = 5 }, ""},
		{"join only", func(c *Config) { c.BootstrapExpect = 0; c.Join = []string{"10.0.0.1:7480"} }, ""},
		{"ipv6 bind", func(c *Config) { c.BindAddr = "::"; c.AdvertiseAddr = "fd00::1" }, ""},
		{"token file", func(c *Config) { c.JoinToken = ""; c.JoinTokenFile = "/t" }, ""},
		{"node name too long", func(c *Config) { c.NodeName = strings.Repeat("a", 254) }, "nodeName:"},
		{"node name dash end", func(c *Config) { c.NodeName = "ctl-" }, "nodeName:"},
		{"no cluster", func(c *Config) { c.ClusterName = "" }, "clusterName: required"},
		{"empty role", func(c *Config) { c.Role = "" }, "role:"},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "host" }, "advertiseAddr:"},
		{"port 0", func(c *Config) { c.Ports.Raft = 0 }, "ports.raft: 0 is not a port"},
		{"negative port", func(c *Config) { c.Ports.API = -1 }, "ports.api: -1 is not a port"},
		{"raft clashes with api", func(c *Config) { c.Ports.Raft = c.Ports.API }, "ports.raft: port 7480 is already used by ports.api"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "dataDir: required"},
		{"bootstrap negative", func(c *Config) { c.BootstrapExpect = -1 }, "bootstrapExpect: -1"},
		{"bootstrap 8", func(c *Config) { c.BootstrapExpect = 8 }, "bootstrapExpect: 8"},
		{"bad join", func(c *Config) { c.Join = []string{"a:1", "b:2", "10.0.0.3"} }, "join[2]:"},
		{"margin negative", func(c *Config) { c.Lease.Margin = -time.Millisecond }, "lease.margin:"},
		{"lease shorter than a leader change", func(c *Config) { c.Lease.Duration = 200 * time.Millisecond }, "lease.duration:"},
		{"raft lease above heartbeat", func(c *Config) { c.Raft.LeaderLease = time.Second }, "raft.leaderLease:"},
		{"margin half", func(c *Config) { c.Lease.Margin = 200 * time.Millisecond }, "lease.margin:"},
		{"negative lease", func(c *Config) { c.Lease.Duration = -time.Second }, "lease.duration:"},
		{"tls key missing", func(c *Config) { c.TLS = TLS{CA: "a", Cert: "b"} }, "tls:"},
		{"log level", func(c *Config) { c.LogLevel = "" }, "logLevel:"},
		{"discovery dns", func(c *Config) { c.Discovery.DNS = "127.0.0.1:8600" }, ""},
		{"discovery dns ipv6, free port", func(c *Config) { c.Discovery.DNS = "[::1]:0" }, ""},
		{"discovery unset ttl and domain take defaults", func(c *Config) { c.Discovery = Discovery{DNS: "127.0.0.1:8600"} }, ""},
		{"discovery domain", func(c *Config) { c.Discovery.Domain = "ha.example.org." }, ""},
		{"discovery dns no port", func(c *Config) { c.Discovery.DNS = "127.0.0.1" }, "discovery.dns:"},
		{"discovery dns host name", func(c *Config) { c.Discovery.DNS = "localhost:8600" }, "discovery.dns:"},
		{"discovery dns bad port", func(c *Config) { c.Discovery.DNS = "127.0.0.1:99999" }, "discovery.dns:"},
		{"discovery negative ttl", func(c *Config) { c.Discovery.TTL = -time.Second }, "discovery.ttl:"},
		{"discovery ttl below a second", func(c *Config) { c.Discovery.TTL = 500 * time.Millisecond }, "discovery.ttl:"},
		{"discovery ttl above an hour", func(c *Config) { c.Discovery.TTL = 2 * time.Hour }, "discovery.ttl:"},
		{"discovery bad domain", func(c *Config) { c.Discovery.Domain = "a..b" }, "discovery.domain:"},
		{"witness joins", func(c *Config) { c.Role = RoleWitness; c.BootstrapExpect = 0; c.Join = []string{"10.0.0.1:7480"} }, ""},
		{"witness bootstraps", func(c *Config) { c.Role = RoleWitness }, "bootstrapExpect: a witness does not bootstrap"},
		{"witness labels", func(c *Config) {
			c.Role, c.BootstrapExpect, c.Join, c.Labels = RoleWitness, 0, []string{"10.0.0.1:7480"}, map[string]string{"a": "b"}
		}, "labels: a witness runs no resources"},
		{"witness dns", func(c *Config) {
			c.Role, c.BootstrapExpect, c.Join, c.Discovery.DNS = RoleWitness, 0, []string{"10.0.0.1:7480"}, "127.0.0.1:8600"
		}, "discovery.dns: a witness"},
		{"witness waitForAll", func(c *Config) {
			yes := true
			c.Role, c.BootstrapExpect, c.Join, c.Quorum.WaitForAll = RoleWitness, 0, []string{"10.0.0.1:7480"}, &yes
		}, "quorum.waitForAll: set it on the control nodes"},
		{"control waitForAll", func(c *Config) { no := false; c.Quorum.WaitForAll = &no }, ""},
		{"bootstrap 2 names the witness", func(c *Config) { c.BootstrapExpect = 2 }, "two control nodes and a `paceline witness` bootstrap with 3"},
		{"unknown role", func(c *Config) { c.Role = "arbiter" }, "(control | remote | witness)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestDiscoveryYAML(t *testing.T) {
	c := valid()
	if err := Decode([]byte("discovery: {dns: \"127.0.0.1:8600\", domain: ha, ttl: 5s}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Discovery != (Discovery{DNS: "127.0.0.1:8600", Domain: "ha", TTL: 5 * time.Second}) {
		t.Fatalf("discovery %+v", c.Discovery)
	}
	if err := Decode([]byte("discovery: {dnss: x}\n"), &c); err == nil {
		t.Fatal("unknown discovery field accepted")
	}
	if c := valid(); c.Discovery.DNS != "" {
		t.Fatalf("DNS server on by default: %q", c.Discovery.DNS)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	var c Config // nothing set, not even defaults
	err := c.Validate()
	if err == nil {
		t.Fatal("zero config accepted")
	}
	for _, field := range []string{"nodeName:", "clusterName:", "role:", "bindAddr:", "ports.api:", "ports.raft:", "ports.gossip:", "ports.coarse:",
		"dataDir:", "join:", "joinTokenFile:", "raft.heartbeat:", "logLevel:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
}

func TestResolveToken(t *testing.T) {
	c := valid()
	if tok, err := c.ResolveToken(); err != nil || tok != "x" {
		t.Fatalf("inline token: %q %v", tok, err)
	}
	f := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(f, []byte("  abc123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.JoinToken, c.JoinTokenFile = "", f
	if tok, err := c.ResolveToken(); err != nil || tok != "abc123" {
		t.Fatalf("token file: %q %v", tok, err)
	}
	c.JoinTokenFile = f + ".missing"
	if _, err := c.ResolveToken(); err == nil || !strings.Contains(err.Error(), "joinTokenFile") {
		t.Fatalf("missing token file: %v", err)
	}
}

func TestAdvertise(t *testing.T) {
	c := valid()
	c.AdvertiseAddr = "10.1.1.1"
	if got := c.Advertise(); got != "10.1.1.1" {
		t.Fatalf("advertise %q", got)
	}
	c.AdvertiseAddr, c.BindAddr = "", "10.2.2.2"
	if got := c.Advertise(); got != "10.2.2.2" {
		t.Fatalf("advertise from bind %q", got)
	}
	c.BindAddr = "0.0.0.0"
	if ip := net.ParseIP(c.Advertise()); ip == nil || ip.IsUnspecified() {
		t.Fatalf("advertise for 0.0.0.0 is %q, want a usable IP", c.Advertise())
	}
}

func FuzzDecode(f *testing.F) {
	for _, p := range []string{"*.good.yaml", "*.bad.yaml"} {
		for _, fn := range files(f, p) {
			b, err := os.ReadFile(fn)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("ports: {api: [1, {a: b}]}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := Decode(data, &c); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		_ = c.Validate()
		_ = c.TLS.Enabled()
	})
}

func TestDecodeTypeErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"ports:\n  api: x\n":                 "line 2: ports.api: cannot unmarshal",
		"ports: {raft: 1, api: x}\n":         "line 1: ports: cannot unmarshal", // flow style: the field is ambiguous, name the parent
		"join:\n  - a:1\n  - {x: y}\n":       "line 3: join[1]: cannot unmarshal",
		"labels: {zone: [a]}\n":              "line 1: labels.zone: cannot unmarshal",
		"bootstrapExpect: three\n":           "line 1: bootstrapExpect: cannot unmarshal",
		"nodeName: a\nlease: {margin: soon}": "line 2: lease.margin: cannot unmarshal",
	}
	for in, want := range cases {
		c := Default()
		err := Decode([]byte(in), &c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want it to contain %q", in, err, want)
		}
	}
}

func TestQuorumYAML(t *testing.T) {
	c := valid()
	if c.Quorum.WaitForAll != nil {
		t.Fatal("waitForAll set by default; unset means: on for two control nodes")
	}
	if err := Decode([]byte("quorum:\n  waitForAll: false\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Quorum.WaitForAll == nil || *c.Quorum.WaitForAll {
		t.Fatalf("waitForAll = %v, want false", c.Quorum.WaitForAll)
	}
	err := Decode([]byte("quorum:\n  waitForAll: maybe\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "line 2: quorum.waitForAll") {
		t.Fatalf("bad waitForAll: %v", err)
	}
	err = Decode([]byte("quorum:\n  wait_for_all: true\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("unknown quorum field: %v", err)
	}
}
