package spec

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// LBConfig turns the spec's load balancer into internal/lb's config:
// port → VIP:port, resource servers → one per healthy node, password
// read from its file.
func TestLBConfig(t *testing.T) {
	s := mustParse(t, "testdata/lb.good.yaml")
	l := &s.LoadBalancers[0]
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Backends[1].Check.PasswordFile = pw
	in := LBInputs{
		VIP: netip.MustParseAddr("192.0.2.10"),
		Instances: func(r string) []LBInstance {
			if r != "keystone" {
				t.Errorf("asked for %q", r)
			}
			return []LBInstance{
				{Node: "ctl1", Addr: netip.MustParseAddr("192.0.2.11")},
				{Node: "ctl1", Addr: netip.MustParseAddr("192.0.2.11")}, // a second slot on the same node
				{Node: "ctl3", Addr: netip.MustParseAddr("2001:db8::13")},
				{Node: "ctl4"}, // address unknown: left out
			}
		},
	}
	cfg, warns := l.LBConfig(in)
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("built config invalid: %v", err)
	}
	if got := cfg.Frontends[0].Bind; got != "192.0.2.10:5000" {
		t.Errorf("bind %q", got)
	}
	var got []string
	for _, sv := range cfg.Backends[0].Servers {
		got = append(got, sv.Name+"="+sv.Address)
	}
	want := []string{"ctl1=192.0.2.11:5000", "ctl3=[2001:db8::13]:5000", "spare=192.0.2.50:5000"}
	if !slices.Equal(got, want) {
		t.Errorf("servers %v, want %v", got, want)
	}
	if w := cfg.Backends[0].Servers[0].Weight; w == nil || *w != 10 || cfg.Backends[0].Servers[0].MaxConn != 100 {
		t.Errorf("weight/maxconn not copied: %+v", cfg.Backends[0].Servers[0])
	}
	if p := cfg.Backends[1].Check.Password; p != "s3cret" {
		t.Errorf("password %q", p)
	}
	// Without a VIP a port binds every address; a missing password file is a warning.
	l.VIP = ""
	l.Backends[1].Check.PasswordFile = filepath.Join(dir, "missing")
	cfg, warns = l.LBConfig(LBInputs{})
	if cfg.Frontends[0].Bind != ":5000" {
		t.Errorf("bind without VIP %q", cfg.Frontends[0].Bind)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "backends[1](galera).check.passwordFile") {
		t.Errorf("warnings %v", warns)
	}
	if n := len(cfg.Backends[0].Servers); n != 1 {
		t.Errorf("no instances: want only the static server, got %d", n)
	}
}

func TestLBDiff(t *testing.T) {
	a := mustParse(t, "testdata/lb.good.yaml")
	b := a.Clone()
	b.LoadBalancers[0].Backends[0].Servers[0].Weight = ptr(3)
	b.LoadBalancers[0].VIP = ""
	b.LoadBalancers = b.LoadBalancers[:1]
	b.LoadBalancers = append(b.LoadBalancers, LoadBalancer{Name: "new"})
	var got []string
	for _, c := range Diff(a, b) {
		got = append(got, c.String())
	}
	want := []string{"- loadBalancers: metrics", "+ loadBalancers: new", "~ loadBalancers: openstack-api.vip, openstack-api.backends.keystone"}
	if !slices.Equal(got, want) {
		t.Errorf("diff\n%q\nwant\n%q", got, want)
	}
	if d := Diff(a, a.Clone()); len(d) != 0 {
		t.Errorf("diff of a clone: %v", d)
	}
}
