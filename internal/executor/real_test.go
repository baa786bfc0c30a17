package executor

// The executor with Debian's real agents: ocf:heartbeat:Dummy,
// ocf:pacemaker:Stateful (promotion with the crm_attribute shim, notify,
// reload-agent) and ocf:heartbeat:nginx with the real nginx. Each skips
// with the package to install when its agent is missing.

import (
	"fmt"
	"github.com/paceline/paceline/internal/lab/netnstest"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/procfs"
	"github.com/paceline/paceline/internal/spec"
)

func needAgent(t *testing.T, class, pkg string) {
	t.Helper()
	parts := strings.Split(class, ":")
	p := filepath.Join("/usr/lib/ocf/resource.d", parts[1], parts[2])
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not installed (%v): apt-get install %s", class, err, pkg)
	}
}

func TestRealDummy(t *testing.T) {
	needAgent(t, "ocf:heartbeat:Dummy", "resource-agents")
	r := newRig(t)
	r.grant()
	state := filepath.Join(r.dir, "dummy.state")
	res := spec.Resource{Name: "dummy", Class: "ocf:heartbeat:Dummy", Params: spec.Params{Values: map[string]string{"state": state}},
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(100 * time.Millisecond)}}}
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("dummy", 0, StateRunning))
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(state); err != nil { // it dies
		t.Fatal(err)
	}
	waitUntil(t, "the failure", func() bool { return len(r.Failures()) == 1 })
	if f := r.Failures()[0]; f.Op != "monitor" || !f.Restarted {
		t.Fatalf("failure %+v", f)
	}
	waitUntil(t, "restarted", func() bool { _, err := os.Stat(state); return err == nil && r.state("dummy:0") == StateRunning })
	r.update(2)
	waitUntil(t, "stopped", func() bool { _, err := os.Stat(state); return os.IsNotExist(err) && len(r.e.Active()) == 0 })
}

// Stateful reports its promotion score through the crm_attribute shim
// (5 unpromoted, 10 promoted), is promoted and demoted following the
// assigned role, gets notifications, and is reloaded (not restarted) when
// a reloadable parameter changes.
func TestRealStateful(t *testing.T) {
	needAgent(t, "ocf:pacemaker:Stateful", "pacemaker-resource-agents")
	r := newRig(t)
	state := filepath.Join(r.dir, "stateful.state")
	env1 := filepath.Join(r.dir, "env1")
	res := spec.Resource{Name: "db", Class: "ocf:pacemaker:Stateful", Mode: spec.ModePromotable, Replicas: 2, Notify: true,
		Params: spec.Params{Values: map[string]string{"state": state, "envfile": env1}},
		Operations: []spec.Operation{
			{Name: "monitor", Interval: spec.Duration(100 * time.Millisecond)},
			{Name: "monitor", Interval: spec.Duration(90 * time.Millisecond), Role: spec.RolePromoted},
		}}
	a := item(res, 0, 1)
	a.Role = spec.RolePromoted
	a.Peers = []api.Peer{{Slot: 0, Node: "n1", Role: spec.RolePromoted}, {Slot: 1, Node: "n2"}}
	r.update(1, a)
	score := func(want int) func() bool {
		return func() bool {
			ai, ok := r.active("db", 0)
			return ok && ai.PromotionScore != nil && *ai.PromotionScore == want
		}
	}
	waitUntil(t, "running unpromoted with score 5", func() bool { return r.state("db:0") == StateRunning && score(5)() })
	never(t, "promoted without a lease", func() bool { ai, _ := r.active("db", 0); return ai.Role != "" })
	r.grant()
	waitUntil(t, "promoted with score 10", func() bool { ai, _ := r.active("db", 0); return ai.Role == spec.RolePromoted && score(10)() })
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "Promoted" {
		t.Fatalf("state file %q", b)
	}
	waitUntil(t, "the post-promote notification", func() bool {
		b, _ := os.ReadFile(env1)
		return strings.Contains(string(b), "OCF_RESKEY_CRM_meta_notify_type=post") &&
			strings.Contains(string(b), "OCF_RESKEY_CRM_meta_notify_operation=promote") &&
			strings.Contains(string(b), "OCF_RESKEY_CRM_meta_notify_promote_resource=db:0")
	})
	// Reload: envfile is reloadable.
	env2 := filepath.Join(r.dir, "env2")
	res.Params.Values = map[string]string{"state": state, "envfile": env2}
	b := item(res, 0, 2)
	b.Role, b.Peers = a.Role, a.Peers
	r.update(2, b)
	waitUntil(t, "reload-agent", func() bool {
		x, _ := os.ReadFile(env2)
		return strings.Contains(string(x), "### reload-agent")
	})
	waitUntil(t, "monitors with the new parameters", func() bool { x, _ := os.ReadFile(env2); return strings.Contains(string(x), "### monitor") })
	if x, _ := os.ReadFile(env2); strings.Contains(string(x), "### stop") || strings.Contains(string(x), "### start") {
		t.Fatalf("restarted:\n%s", x)
	}
	// Demote: the role goes away.
	c := item(res, 0, 3)
	c.Peers = []api.Peer{{Slot: 0, Node: "n1"}, {Slot: 1, Node: "n2"}}
	r.update(3, c)
	waitUntil(t, "demoted with score 5", func() bool { ai, _ := r.active("db", 0); return ai.Role == "" && score(5)() })
	// Stop: Stateful deletes its score.
	r.update(4)
	waitUntil(t, "stopped", func() bool { _, err := os.Stat(state); return os.IsNotExist(err) && len(r.e.Active()) == 0 })
	if sc := r.e.dirs.score("db:0"); sc != nil {
		t.Fatalf("score left after stop: %d", *sc)
	}
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("failures %+v", f)
	}
}

func TestRealNginx(t *testing.T) {
	needAgent(t, "ocf:heartbeat:nginx", "resource-agents")
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		t.Skip("nginx not installed: apt-get install nginx")
	}
	r := newRig(t)
	r.grant()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nginx.conf")
	pidFile := filepath.Join(dir, "nginx.pid")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location /nginx_status { stub_status; }
    location / { return 200 "paceline\n"; }
  }
}
`, dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	res := spec.Resource{Name: "web", Class: "ocf:heartbeat:nginx",
		Params: spec.Params{Values: map[string]string{"configfile": conf, "httpd": "/usr/sbin/nginx",
			"status10url": fmt.Sprintf("http://127.0.0.1:%d/nginx_status", port)}},
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(200 * time.Millisecond)}}}
	t.Cleanup(func() {
		if pid := pidIn(t, pidFile); pid > 0 && procfs.Running(pid) {
			t.Errorf("nginx %d still running", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	serves := func() bool {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == "paceline\n"
	}
	r.update(1, item(res, 0, 1))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("failures %+v\nactive %+v\nnginx error.log:\n%s", r.Failures(), r.e.Active(), b)
		}
	})
	waitUntil(t, "nginx serving", func() bool { return r.state("web:0") == StateRunning && serves() })
	pid := pidIn(t, pidFile)
	// nginx crashes (master and workers: its process group): the monitor
	// notices and restarts it.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the failure", func() bool { return len(r.Failures()) >= 1 })
	waitUntil(t, "nginx serving again", func() bool {
		p := pidIn(t, pidFile)
		return p != pid && procfs.Running(p) && r.state("web:0") == StateRunning && serves()
	})
	if f := r.Failures()[0]; f.Op != "monitor" || !f.Restarted {
		t.Fatalf("failure %+v", f)
	}
	r.update(2)
	waitUntil(t, "stopped", func() bool { return len(r.e.Active()) == 0 && !serves() })
}

// TestRealIPaddr2SelfFence runs a virtual IP with ocf:heartbeat:IPaddr2 in
// a network namespace of its own and shows the script-class self-fence:
// when the lease runs out, the address is gone before SelfFence returns.
func TestRealIPaddr2SelfFence(t *testing.T) {
	needAgent(t, "ocf:heartbeat:IPaddr2", "resource-agents")
	ns := netnstest.New(t, "plxe")
	hasAddr := func() bool { return ns.HasAddr("10.252.0.100/24") }

	r := newRig(t, func(c *Config) { c.OCFPrefix = ns.Exec() })
	r.grant()
	res := spec.Resource{Name: "vip", Class: "ocf:heartbeat:IPaddr2",
		Params:     spec.Params{Values: map[string]string{"ip": "10.252.0.100", "cidr_netmask": "24", "nic": ns.A}},
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(200 * time.Millisecond)}}}
	r.update(1, item(res, 0, 1))
	waitUntil(t, "the address up", func() bool { return r.state("vip:0") == StateRunning && hasAddr() })
	if !r.e.HasExclusive() {
		t.Fatal("HasExclusive false")
	}
	r.holder.Revoke()
	if got := r.e.SelfFence(); len(got) != 1 || got[0] != "vip:0" {
		t.Fatalf("SelfFence %v", got)
	}
	if hasAddr() {
		t.Fatal("the address is still up after SelfFence returned")
	}
	never(t, "the address came back without a lease", hasAddr)
	r.grant()
	waitUntil(t, "the address back with the lease", hasAddr)
	r.update(2)
	waitUntil(t, "the address removed when unassigned", func() bool { return !hasAddr() && len(r.e.Active()) == 0 })
}
