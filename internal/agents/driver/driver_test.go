package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/guard"
	"github.com/paceline/paceline/internal/procfs"
	"github.com/paceline/paceline/internal/spec"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop")); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const patience = 30 * time.Second

func withDefaults(r spec.Resource) spec.Resource {
	return (&spec.Spec{Resources: []spec.Resource{r}}).WithDefaults().Resources[0]
}

func TestResolve(t *testing.T) {
	md := &ocf.Metadata{Name: "x", Actions: []ocf.ActionSpec{
		{Name: "start", Timeout: 40 * time.Second},
		{Name: "monitor", Timeout: 25 * time.Second, Interval: 11 * time.Second, Role: "Unpromoted"},
		{Name: "monitor", Timeout: 26 * time.Second, Interval: 10 * time.Second, Role: "Promoted"},
	}}
	r := withDefaults(spec.Resource{Name: "db", Class: "ocf:pacemaker:Stateful", Mode: spec.ModePromotable, OnFail: spec.OnFailMigrate,
		Operations: []spec.Operation{
			{Name: "monitor", Interval: spec.Duration(5 * time.Second), Role: spec.RolePromoted, Timeout: spec.Duration(7 * time.Second), OnFail: spec.OnFailDemote},
			{Name: "stop", Timeout: spec.Duration(90 * time.Second)},
		}})
	cases := []struct {
		name     string
		got      Op
		timeout  time.Duration
		onFail   string
		interval time.Duration
	}{
		{"start: meta-data timeout, resource onFail", Resolve(&r, agents.Start, "", 0, md), 40 * time.Second, spec.OnFailMigrate, 0},
		{"stop: spec timeout, block", Resolve(&r, agents.Stop, "", 0, md), 90 * time.Second, spec.OnFailBlock, 0},
		{"promote: default timeout", Resolve(&r, agents.Promote, "", 0, md), spec.DefaultOpTimeout.D(), spec.OnFailMigrate, 0},
		{"probe of a promoted instance: its monitor", Resolve(&r, agents.Monitor, spec.RolePromoted, 0, md), 7 * time.Second, spec.OnFailDemote, 0},
		{"no meta-data: 20s", Resolve(&r, agents.Start, "", 0, nil), 20 * time.Second, spec.OnFailMigrate, 0},
	}
	for _, c := range cases {
		if c.got.Timeout != c.timeout || c.got.OnFail != c.onFail || c.got.Interval != c.interval {
			t.Errorf("%s: %+v", c.name, c.got)
		}
	}
	pm, ok := Monitor(&r, spec.RolePromoted, md)
	if !ok || pm.Interval != 5*time.Second || pm.Timeout != 7*time.Second || pm.OnFail != spec.OnFailDemote || pm.Role != spec.RolePromoted {
		t.Errorf("promoted monitor %+v", pm)
	}
	um, ok := Monitor(&r, "", md)
	if !ok || um.Interval != 11*time.Second || um.Timeout != 25*time.Second || um.OnFail != spec.OnFailMigrate || um.Role != spec.RoleUnpromoted {
		t.Errorf("unpromoted monitor (from meta-data) %+v", um)
	}
	plain := withDefaults(spec.Resource{Name: "d", Class: "lsb:x"})
	if m, ok := Monitor(&plain, "", nil); !ok || m.Interval != DefaultMonitorInterval || m.OnFail != spec.OnFailRestart {
		t.Errorf("default monitor %+v", m)
	}
	proc := withDefaults(spec.Resource{Name: "p", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"x"}, StopTimeout: spec.Duration(3 * time.Second)}})
	if _, ok := Monitor(&proc, "", nil); ok {
		t.Error("the process class got a recurring monitor")
	}
	if s := Resolve(&proc, agents.Stop, "", 0, nil); s.Timeout != 3*time.Second+processStopSlack || s.OnFail != spec.OnFailBlock {
		t.Errorf("process stop %+v", s)
	}
	if s := Resolve(&proc, agents.Start, "", 0, nil); s.Timeout != spec.DefaultStartTimeout.D() {
		t.Errorf("process start %+v", s)
	}
}

func TestInstanceName(t *testing.T) {
	c := Target{Res: spec.Resource{Name: "web", Mode: spec.ModeClone}, Slot: 2}
	s := Target{Res: spec.Resource{Name: "vip", Mode: spec.ModeSingle}}
	if c.InstanceName() != "web:2" || s.InstanceName() != "vip" {
		t.Fatalf("%q %q", c.InstanceName(), s.InstanceName())
	}
}

// The process driver reports an exit the moment it happens, Kill returns
// once the process is gone, and validate-all explains a missing command.
func TestProcessDriver(t *testing.T) {
	f := NewFactory(Options{Node: "n1", LogDir: t.TempDir()})
	flag := filepath.Join(t.TempDir(), "go")
	res := withDefaults(spec.Resource{Name: "app", Mode: spec.ModeClone, Class: spec.ClassProcess,
		Params: spec.Params{Command: []string{"/bin/sh", "-c", `while [ ! -e "$FLAG" ]; do sleep 0.02; done; echo "$PACELINE_EPOCH $PACELINE_SLOT"; exit 42`},
			Env: map[string]string{"FLAG": flag}}})
	d, err := f.New(Target{Res: res, Slot: 3, Epoch: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if r := d.Run(ctx, Op{Action: agents.ValidateAll}); r.Status != agents.StatusSuccess {
		t.Fatalf("validate %+v", r)
	}
	if d.Failed() != nil {
		t.Fatal("Failed before start")
	}
	if r := d.Run(ctx, Op{Action: agents.Start, Timeout: patience}); r.Status != agents.StatusSuccess {
		t.Fatalf("start %+v", r)
	}
	failed := d.Failed()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-failed:
		if !strings.Contains(reason, "exit status 42") {
			t.Fatalf("reason %q", reason)
		}
	case <-time.After(patience):
		t.Fatal("exit not reported")
	}
	if r := d.Run(ctx, Op{Action: agents.Monitor}); r.Status != agents.StatusNotRunning {
		t.Fatalf("monitor after exit %+v", r)
	}
	if r := d.Run(ctx, Op{Action: agents.Stop, Timeout: patience}); r.Status != agents.StatusSuccess {
		t.Fatalf("stop %+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(f.opts.LogDir, "app-3.log"))
	if strings.TrimSpace(string(b)) != "9 3" {
		t.Fatalf("instance log %q", b)
	}
	if r := d.Run(ctx, Op{Action: agents.Promote}); r.Status != agents.StatusHardError || r.Code != agents.OCFErrUnimplemented {
		t.Fatalf("promote %+v", r)
	}

	// Kill: the self-fencing path.
	_ = os.Remove(flag)
	if r := d.Run(ctx, Op{Action: agents.Start, Timeout: patience}); r.Status != agents.StatusSuccess {
		t.Fatalf("start %+v", r)
	}
	if !d.Kill() {
		t.Fatal("Kill false")
	}
	if r := d.Run(ctx, Op{Action: agents.Monitor}); r.Status != agents.StatusNotRunning {
		t.Fatalf("monitor after Kill %+v", r)
	}

	missing := withDefaults(spec.Resource{Name: "m", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"pl-no-such-command"}}})
	dm, _ := f.New(Target{Res: missing})
	r := dm.Run(ctx, Op{Action: agents.ValidateAll})
	if r.Code != agents.OCFErrInstalled || !strings.Contains(r.Reason, "pl-no-such-command") {
		t.Fatalf("validate of a missing command %+v", r)
	}
	if r := dm.Run(ctx, Op{Action: agents.Start, Timeout: patience}); r.Code != agents.OCFErrInstalled {
		t.Fatalf("start of a missing command %+v", r)
	}
}

func TestUnavailableClasses(t *testing.T) {
	f := NewFactory(Options{})
	if _, err := f.New(Target{Res: spec.Resource{Name: "u", Class: "systemd:nginx"}}); err == nil || !strings.Contains(err.Error(), "systemd") {
		t.Fatalf("systemd without an Invoker: %v", err)
	}
	if _, err := f.New(Target{Res: spec.Resource{Name: "u", Class: "bogus"}}); err == nil {
		t.Fatal("bogus class accepted")
	}
}

// Script drivers pass the instance's parameters, clone meta attributes and
// epoch to the agent; a stop that says "not running" succeeded.
func TestScriptEnvironment(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "pltest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "env")
	script := "#!/bin/sh\nenv | grep -E '^OCF_' | sort > \"$OUT\"\n[ \"$1\" = stop ] && exit 7\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "Env"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := NewFactory(Options{Node: "n1", Cluster: "c1", OCF: ocf.Options{Root: root, RscTmp: t.TempDir(), Env: map[string]string{"OUT": out}}})
	res := withDefaults(spec.Resource{Name: "db", Class: "ocf:pltest:Env", Mode: spec.ModePromotable, Notify: true,
		Params: spec.Params{Values: map[string]string{"state": "/x"}}})
	d, err := f.New(Target{Res: res, Slot: 1, Epoch: 12, CloneMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := d.Run(context.Background(), Op{Action: agents.Monitor, Interval: 10 * time.Second, Timeout: patience, Role: spec.RolePromoted, Depth: 10})
	if r.Status != agents.StatusSuccess {
		t.Fatalf("monitor %+v", r)
	}
	b, _ := os.ReadFile(out)
	env := string(b)
	for _, want := range []string{"OCF_RESOURCE_INSTANCE=db:1", "OCF_RESKEY_state=/x", "OCF_RESKEY_CRM_meta_clone=1",
		"OCF_RESKEY_CRM_meta_clone_max=3", "OCF_RESKEY_CRM_meta_promoted_max=1", "OCF_RESKEY_CRM_meta_notify=true",
		"OCF_RESKEY_CRM_meta_interval=10000", "OCF_RESKEY_CRM_meta_role=Promoted", "OCF_CHECK_LEVEL=10",
		"OCF_RESKEY_CRM_meta_paceline_epoch=12", "OCF_RESKEY_CRM_meta_on_node=n1"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("%s missing from\n%s", want, env)
		}
	}
	if r := d.Run(context.Background(), Op{Action: agents.Stop, Timeout: patience}); r.Status != agents.StatusSuccess {
		t.Fatalf("stop answering 7: %+v", r)
	}
}

func TestFenceWait(t *testing.T) {
	proc := withDefaults(spec.Resource{Name: "p", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"x"}}})
	if d := FenceWait(&proc); d != 0 {
		t.Errorf("process: %v", d)
	}
	vip := withDefaults(spec.Resource{Name: "v", Class: "ocf:heartbeat:IPaddr2",
		Operations: []spec.Operation{{Name: "stop", Timeout: spec.Duration(7 * time.Second)}}})
	if d := FenceWait(&vip); d != 7*time.Second {
		t.Errorf("single: %v", d)
	}
	db := withDefaults(spec.Resource{Name: "db", Class: "ocf:pacemaker:Stateful", Mode: spec.ModePromotable})
	if d := FenceWait(&db); d != 2*spec.DefaultOpTimeout.D() {
		t.Errorf("promotable: %v", d)
	}
}

// The process class's monitor is "alive and its health check not failing".
func TestProcessMonitorIncludesHealth(t *testing.T) {
	f := NewFactory(Options{Node: "n1"})
	ok := filepath.Join(t.TempDir(), "ok")
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := withDefaults(spec.Resource{Name: "app", Mode: spec.ModeClone, Class: spec.ClassProcess,
		Params: spec.Params{Command: []string{"sleep", "1000"}},
		Health: &spec.Health{Exec: []string{"test", "-e", ok}, Interval: spec.Duration(20 * time.Millisecond)}})
	d, err := f.New(Target{Res: res})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if r := d.Run(ctx, Op{Action: agents.Start, Timeout: patience}); r.Status != agents.StatusSuccess {
		t.Fatalf("start %+v", r)
	}
	defer d.Run(ctx, Op{Action: agents.Stop, Timeout: patience})
	if r := d.Run(ctx, Op{Action: agents.Monitor}); r.Status != agents.StatusSuccess {
		t.Fatalf("monitor %+v", r)
	}
	failed := d.Failed()
	_ = os.Remove(ok)
	select {
	case reason := <-failed:
		if !strings.Contains(reason, "health check failed") {
			t.Fatalf("reason %q", reason)
		}
	case <-time.After(patience):
		t.Fatal("health failure not reported")
	}
	if r := d.Run(ctx, Op{Action: agents.Monitor}); r.Status != agents.StatusSoftError || !strings.Contains(r.Reason, "health check failed") {
		t.Fatalf("monitor of an unhealthy process %+v", r)
	}
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for d.Run(ctx, Op{Action: agents.Monitor}).Status != agents.StatusSuccess {
		if time.Now().After(deadline) {
			t.Fatal("never healthy again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An exclusive process instance has a lease guard: when the deadline fed
// to it passes without a renewal, its group is SIGKILLed even though
// nothing in this process fences it. A clone has none.
func TestProcessLeaseGuard(t *testing.T) {
	var mu sync.Mutex
	deadline := time.Now().Add(time.Hour)
	get := func() time.Time { mu.Lock(); defer mu.Unlock(); return deadline }
	feed := guard.NewFeed(guard.FeedOptions{Deadline: get})
	f := NewFactory(Options{Node: "n1", Cluster: "c1", Guards: feed})
	defer f.Close()
	start := func(res spec.Resource) Driver {
		t.Helper()
		d, err := f.New(Target{Res: res})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		if r := d.Run(context.Background(), Resolve(&res, agents.Start, "", 0, nil)); r.Status != agents.StatusSuccess {
			t.Fatalf("start %s: %+v", res.Name, r)
		}
		t.Cleanup(func() { d.Run(context.Background(), Resolve(&res, agents.Stop, "", 0, nil)) })
		return d
	}
	single := start(withDefaults(spec.Resource{Name: "one", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"sleep", "1000"}}}))
	clone := start(withDefaults(spec.Resource{Name: "many", Mode: spec.ModeClone, Class: spec.ClassProcess, Params: spec.Params{Command: []string{"sleep", "1000"}}}))
	// The lease ends in 200 ms and is not renewed.
	mu.Lock()
	deadline = time.Now().Add(200 * time.Millisecond)
	mu.Unlock()
	feed.Renewed(get())
	select {
	case why := <-single.Failed():
		// A self-fence, which the executor must not count as a failure.
		if why != agents.ReasonLeaseGuard {
			t.Errorf("the exclusive instance ended with %q, want %q", why, agents.ReasonLeaseGuard)
		}
	case <-time.After(patience):
		t.Fatal("the guard did not kill the exclusive instance after its lease ran out")
	}
	if r := clone.Run(context.Background(), Resolve(&clone.(*procDriver).t.Res, agents.Monitor, "", 0, nil)); r.Status != agents.StatusSuccess {
		t.Errorf("the clone instance was fenced too: %+v", r)
	}
}

// TestProcessKilledUnderLeaseIsAFailure: a SIGKILL while the lease is
// valid (someone else killed it, the OOM killer) is a failure, not a
// self-fence.
func TestProcessKilledUnderLeaseIsAFailure(t *testing.T) {
	feed := guard.NewFeed(guard.FeedOptions{Deadline: func() time.Time { return time.Now().Add(time.Hour) }})
	f := NewFactory(Options{Node: "n1", Cluster: "c1", Guards: feed})
	defer f.Close()
	res := withDefaults(spec.Resource{Name: "one", Class: spec.ClassProcess, Params: spec.Params{Command: []string{"sleep", "1000"}}})
	d, err := f.New(Target{Res: res})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if r := d.Run(context.Background(), Resolve(&res, agents.Start, "", 0, nil)); r.Status != agents.StatusSuccess {
		t.Fatalf("start: %+v", r)
	}
	defer d.Run(context.Background(), Resolve(&res, agents.Stop, "", 0, nil))
	pd := d.(*procDriver)
	pd.mu.Lock()
	pid := pd.p.PID()
	pd.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-d.Failed():
		if why != "process exited: killed by signal 9" {
			t.Errorf("killed under a valid lease: reported %q, want a process exit", why)
		}
	case <-time.After(patience):
		t.Fatal("the kill was not reported")
	}
}
