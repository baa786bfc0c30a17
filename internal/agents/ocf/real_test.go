package ocf

// Tests against the real agents of Debian's resource-agents and
// pacemaker-resource-agents packages (and nginx). Each skips with the
// package to install when its agent is missing.

import (
	"fmt"
	"github.com/paceline/paceline/internal/lab/netnstest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

func TestRealDummyCycle(t *testing.T) {
	a := realAgent(t, "ocf:heartbeat:Dummy", "resource-agents", Options{})
	state := filepath.Join(t.TempDir(), "dummy.state")
	inst := agents.Instance{Name: "dummy1", Params: map[string]string{"state": state}}

	m, err := a.Metadata(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Dummy" {
		t.Errorf("meta-data name %q", m.Name)
	}
	if err := m.Validate(inst.Params); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := m.Validate(map[string]string{"stat": "x"}); err == nil || !strings.Contains(err.Error(), "valid: fake, state") {
		t.Errorf("Validate of a typo: %v", err)
	}
	if d, ok := m.Timeout("start", "", 0); !ok || d != 20*time.Second {
		t.Errorf("start timeout %v %v", d, ok)
	}
	if _, err := ListAgents(""); err != nil {
		t.Fatal(err)
	}
	if all, _ := ListAgents(""); !contains(all, "ocf:heartbeat:Dummy") || contains(all, "ocf:heartbeat:.ocf-shellfuncs") {
		t.Errorf("ListAgents: %d agents, Dummy missing or hidden files listed", len(all))
	}

	run(t, a, agents.ValidateAll, inst, agents.OCFSuccess)
	run(t, a, agents.Monitor, inst, agents.OCFNotRunning) // probe
	run(t, a, agents.Start, inst, agents.OCFSuccess)
	run(t, a, agents.Start, inst, agents.OCFSuccess) // idempotent
	if _, err := os.Stat(state); err != nil {
		t.Errorf("state file after start: %v", err)
	}
	inst.Interval = 10 * time.Second
	r := run(t, a, agents.Monitor, inst, agents.OCFSuccess)
	if r.Status != agents.StatusSuccess {
		t.Errorf("monitor status %s", r.Status)
	}
	inst.Interval = 0
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
	r = run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	if r.Status != agents.StatusNotRunning {
		t.Errorf("monitor after stop: %s", r.Status)
	}
	run(t, a, agents.Stop, inst, agents.OCFSuccess) // stop of a stopped resource succeeds

	// Without a state parameter Dummy keeps its state in HA_RSCTMP.
	plain := agents.Instance{Name: "dummy2"}
	run(t, a, agents.Start, plain, agents.OCFSuccess)
	if _, err := os.Stat(filepath.Join(a.opts.RscTmp, "Dummy-dummy2.state")); err != nil {
		t.Errorf("HA_RSCTMP not used: %v", err)
	}
	run(t, a, agents.Stop, plain, agents.OCFSuccess)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// stubSbin writes crm_attribute and crm_master stubs that log their
// arguments, standing in for a running CIB (see ocf-notes).
func stubSbin(t *testing.T) (dir, logFile string) {
	dir = t.TempDir()
	logFile = filepath.Join(dir, "crm_attribute.log")
	for _, name := range []string{"crm_attribute", "crm_master"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >> %q\nexit 0\n", name, logFile)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, logFile
}

func TestRealStatefulCycle(t *testing.T) {
	sbin, logFile := stubSbin(t)
	a := realAgent(t, "ocf:pacemaker:Stateful", "pacemaker-resource-agents", Options{Env: map[string]string{"HA_SBIN_DIR": sbin}})
	inst := agents.Instance{
		Name:   "stateful",
		Params: map[string]string{"state": filepath.Join(t.TempDir(), "stateful.state")},
		Node:   "node1",
		Clone:  &agents.Clone{Number: 0, Max: 2, NodeMax: 1, Promotable: true, PromotedMax: 1, PromotedNodeMax: 1},
	}
	m, err := a.Metadata(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := m.Timeout("monitor", "Promoted", 10*time.Second); !ok || d != 20*time.Second {
		t.Errorf("promoted monitor timeout %v %v", d, ok)
	}

	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Start, inst, agents.OCFSuccess)
	run(t, a, agents.Monitor, inst, agents.OCFSuccess) // started unpromoted
	run(t, a, agents.Promote, inst, agents.OCFSuccess)
	r := run(t, a, agents.Monitor, inst, agents.OCFRunningPromoted)
	if r.Status != agents.StatusRunningPromoted || r.Status.Failed() {
		t.Errorf("promoted monitor: %s", r.Status)
	}
	inst.Notify = &agents.Notification{Type: "post", Operation: "promote", Promote: []agents.Peer{{Resource: "stateful", Node: "node1"}}}
	run(t, a, agents.Notify, inst, agents.OCFSuccess)
	inst.Notify = nil
	run(t, a, agents.Demote, inst, agents.OCFSuccess)
	run(t, a, agents.Monitor, inst, agents.OCFSuccess)
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Stop, inst, agents.OCFSuccess)

	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("crm_attribute stub never called: %v", err)
	}
	if !strings.Contains(string(b), "crm_attribute --promotion") {
		t.Errorf("stub log:\n%s", b)
	}
}

// TestRealIPaddr2InNetns adds and removes an address with IPaddr2 inside a
// network namespace of its own (ip netns exec, as in ocf-notes).
func TestRealIPaddr2InNetns(t *testing.T) {
	ns := netnstest.New(t, "plocf")
	ip := ns.IP
	a := realAgent(t, "ocf:heartbeat:IPaddr2", "resource-agents", Options{Prefix: ns.Exec()})
	inst := agents.Instance{Name: "vip", Params: map[string]string{"ip": "10.251.0.100", "cidr_netmask": "24", "nic": ns.A}}
	hasAddr := func() bool { return ns.HasAddr("10.251.0.100/24") }

	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Start, inst, agents.OCFSuccess)
	if !hasAddr() {
		t.Fatal("address not added")
	}
	run(t, a, agents.Monitor, inst, agents.OCFSuccess)
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
	if hasAddr() {
		t.Fatal("address not removed")
	}
	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
	if strings.Contains(ip("-4", "addr"), "10.251.0.100") {
		t.Fatal("address leaked into the host namespace")
	}

	// A NIC that does not exist is a configuration error, with a reason.
	bad := inst
	bad.Params = map[string]string{"ip": "10.251.0.101", "cidr_netmask": "24", "nic": "plnone"}
	r := a.Run(ctx(t), agents.Start, bad, patience)
	if !r.Status.Failed() || r.Reason == "" {
		t.Errorf("start on a missing NIC: %+v", r)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestRealNginx(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		t.Skip("nginx not installed: apt-get install nginx")
	}
	a := realAgent(t, "ocf:heartbeat:nginx", "resource-agents", Options{})
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	pidFile := filepath.Join(dir, "nginx.pid")
	config := fmt.Sprintf(`worker_processes 1;
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
`, dir, port)
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	inst := agents.Instance{Name: "web", Params: map[string]string{
		"configfile":  conf,
		"httpd":       "/usr/sbin/nginx",
		"status10url": fmt.Sprintf("http://127.0.0.1:%d/nginx_status", port),
	}}
	t.Cleanup(func() {
		// Whatever happened, leave no nginx behind.
		a.Run(ctx(t), agents.Stop, inst, patience)
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) {
				t.Errorf("nginx %d still running after stop", pid)
			}
		}
	})

	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Start, inst, agents.OCFSuccess)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("no pid file after start: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !alive(pid) {
		t.Fatalf("nginx %d not running after start", pid)
	}
	run(t, a, agents.Monitor, inst, agents.OCFSuccess)
	deep := inst
	deep.CheckLevel = 10
	if _, err := exec.LookPath("curl"); err == nil {
		run(t, a, agents.Monitor, deep, agents.OCFSuccess)
	}
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
	waitUntil(t, "nginx to exit", func() bool { return !alive(pid) })
	run(t, a, agents.Monitor, inst, agents.OCFNotRunning)
	run(t, a, agents.Stop, inst, agents.OCFSuccess)
}

// TestRealAllMetadata parses the meta-data of every installed agent.
func TestRealAllMetadata(t *testing.T) {
	all, err := ListAgents("")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Skip("no OCF agents installed: apt-get install resource-agents pacemaker-resource-agents")
	}
	rsctmp := t.TempDir()
	for _, spec := range all {
		a, err := New(spec, Options{RscTmp: rsctmp})
		if err != nil {
			t.Fatal(err)
		}
		m, err := a.Metadata(ctx(t), patience)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		_, typ, _ := ParseSpec(spec)
		if m.Name != typ {
			t.Logf("%s calls itself %q", spec, m.Name)
		}
		if _, ok := m.Timeout("start", "", 0); !ok {
			t.Logf("%s advertises no start timeout", spec)
		}
	}
	t.Logf("parsed the meta-data of %d agents", len(all))
}
