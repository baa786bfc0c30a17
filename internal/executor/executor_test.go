package executor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents/process"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/spec"
)

// The process package's spawner goroutine lives as long as the program.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop"))
}

const patience = 15 * time.Second

// lp is long enough that a lease acknowledged during a test stays valid.
var lp = lease.Params{L: time.Hour, Margin: time.Minute, LeaderLeaseTimeout: time.Second}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// never checks that cond stays false for a while (used only to show that
// something does not happen; it never asserts a duration).
func never(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 30; i++ {
		if cond() {
			t.Fatalf("%s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type rig struct {
	t      *testing.T
	e      *Executor
	holder *lease.Holder
	dir    string

	mu       sync.Mutex
	failures []api.Failure
}

func newRig(t *testing.T, configure ...func(*Config)) *rig {
	r := &rig{t: t, holder: lease.NewHolder(lp), dir: t.TempDir()}
	cfg := Config{Node: "n1", Cluster: "c1", Holder: r.holder, LogDir: filepath.Join(r.dir, "logs"), RscTmp: filepath.Join(r.dir, "rsctmp"),
		Report: func(f api.Failure) {
			r.mu.Lock()
			r.failures = append(r.failures, f)
			r.mu.Unlock()
		}}
	for _, c := range configure {
		c(&cfg)
	}
	r.e = New(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		r.e.StopAll(ctx)
	})
	return r
}

func (r *rig) Failures() []api.Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Failure(nil), r.failures...)
}

// grant gives the node a valid lease with no gap to catch up on.
func (r *rig) grant() {
	r.holder.Acked(time.Now())
	r.e.LeaseRegained(1)
}

// resource runs script under /bin/sh; each start appends "PID EPOCH V" to
// the file named after the resource.
func (r *rig) resource(name, mode, script string) spec.Resource {
	res := spec.Resource{Name: name, Class: spec.ClassProcess, Mode: mode,
		Params: spec.Params{Command: []string{"/bin/sh", "-c", `echo "$$ $PACELINE_EPOCH $V" >> "$OUT"; ` + script},
			Env: map[string]string{"OUT": filepath.Join(r.dir, name+".starts")}, StopTimeout: spec.Duration(5 * time.Second)}}
	if mode == spec.ModeClone {
		res.Replicas = 1
	}
	return res
}

func item(res spec.Resource, slot int, epoch uint64) api.NodeAssignment {
	d := (&spec.Spec{Resources: []spec.Resource{res}}).WithDefaults().Resources[0]
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return api.NodeAssignment{Resource: res.Name, Slot: slot, Epoch: epoch, Def: b}
}

func (r *rig) update(index uint64, items ...api.NodeAssignment) {
	r.e.Update(api.Assignments{Index: index, Items: items})
}

type start struct {
	pid   int
	epoch string
	v     string
}

func (r *rig) starts(name string) []start {
	b, _ := os.ReadFile(filepath.Join(r.dir, name+".starts"))
	var out []start
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		s := start{pid: pid}
		if len(f) > 1 {
			s.epoch = f[1]
		}
		if len(f) > 2 {
			s.v = f[2]
		}
		out = append(out, s)
	}
	return out
}

func (r *rig) state(key string) string {
	for _, a := range r.e.Active() {
		if strconv.Itoa(a.Slot) == key[strings.LastIndex(key, ":")+1:] && a.Resource == key[:strings.LastIndex(key, ":")] {
			return a.State
		}
	}
	return ""
}

// waitRunning waits until slot key runs its n-th start and returns that start.
func (r *rig) waitRunning(name, key string, n int) start {
	r.t.Helper()
	waitUntil(r.t, key+" running (start "+strconv.Itoa(n)+")", func() bool {
		return len(r.starts(name)) >= n && r.state(key) == StateRunning
	})
	s := r.starts(name)[n-1]
	waitUntil(r.t, "pid "+strconv.Itoa(s.pid)+" alive", func() bool { return process.ProbeRunning(s.pid) })
	return s
}

func dead(pid int) func() bool { return func() bool { return !process.ProbeRunning(pid) } }

func TestStartsAssignedStopsUnassigned(t *testing.T) {
	r := newRig(t)
	web := r.resource("web", spec.ModeClone, "exec sleep 1000")
	r.update(3, item(web, 0, 3))
	s := r.waitRunning("web", "web:0", 1)
	if s.epoch != "3" {
		t.Fatalf("PACELINE_EPOCH=%q, want 3", s.epoch)
	}
	if r.e.Applied() != 3 {
		t.Fatalf("applied %d", r.e.Applied())
	}
	select {
	case <-r.e.Changed():
	default:
		t.Fatal("no change signal")
	}
	r.update(4)
	waitUntil(t, "the unassigned instance to stop", dead(s.pid))
	waitUntil(t, "the instance to leave Active", func() bool { return len(r.e.Active()) == 0 })
	// An older assignment set (a stale read) is ignored entirely.
	r.update(2, item(web, 0, 2))
	if len(r.e.Active()) != 0 || r.e.Applied() != 4 {
		t.Fatalf("older assignment set acted on: %+v applied %d", r.e.Active(), r.e.Applied())
	}
	if _, err := os.Stat(filepath.Join(r.dir, "logs", "web-0.log")); err != nil {
		t.Fatalf("no instance log: %v", err)
	}
}

// I4: an assignment with an older epoch than one already seen for its slot
// is never acted on, even inside a newer assignment set.
func TestIgnoresOlderEpoch(t *testing.T) {
	r := newRig(t)
	web := r.resource("web", spec.ModeClone, "exec sleep 1000")
	r.update(10, item(web, 0, 10))
	s := r.waitRunning("web", "web:0", 1)
	r.update(11)
	waitUntil(t, "stop", dead(s.pid))
	waitUntil(t, "the instance to leave Active", func() bool { return len(r.e.Active()) == 0 })
	other := r.resource("other", spec.ModeClone, "exec sleep 1000")
	r.update(12, item(web, 0, 5), item(other, 0, 12))
	for _, a := range r.e.Active() {
		if a.Resource == "web" {
			t.Fatalf("resurrected an old assignment: %+v", a)
		}
	}
	r.waitRunning("other", "other:0", 1)
	if n := len(r.starts("web")); n != 1 {
		t.Fatalf("web started %d times", n)
	}
	// The same epoch again (a re-read) is fine.
	r.update(13, item(web, 0, 10))
	r.waitRunning("web", "web:0", 2)
}

func TestExclusiveWaitsForLeaseAndFreshAssignments(t *testing.T) {
	r := newRig(t)
	vip := r.resource("vip", spec.ModeSingle, "exec sleep 1000")
	r.update(5, item(vip, 0, 5))
	if got := r.state("vip:0"); got != StateStarting {
		t.Fatalf("state %q", got)
	}
	never(t, "an exclusive instance started without a lease", func() bool { return len(r.starts("vip")) > 0 })

	// A valid lease, but no lease gap was closed yet (no LeaseRegained).
	r.holder.Acked(time.Now())
	r.e.Reconcile()
	never(t, "started before the first LeaseRegained", func() bool { return len(r.starts("vip")) > 0 })

	// The lease came back at index 9: assignments up to 9 must be seen first.
	r.e.LeaseRegained(9)
	if !r.e.Behind() {
		t.Fatal("not behind")
	}
	select {
	case <-r.e.NeedFresh():
	default:
		t.Fatal("NeedFresh not signalled")
	}
	never(t, "started with assignments older than the lease gap", func() bool { return len(r.starts("vip")) > 0 })
	r.update(9, item(vip, 0, 5))
	if r.e.Behind() {
		t.Fatal("still behind")
	}
	s := r.waitRunning("vip", "vip:0", 1)
	if !r.e.HasExclusive() {
		t.Fatal("HasExclusive false")
	}
	// A clone needs no lease.
	r2 := newRig(t)
	web := r2.resource("web", spec.ModeClone, "exec sleep 1000")
	r2.update(1, item(web, 0, 1))
	r2.waitRunning("web", "web:0", 1)
	if r2.e.HasExclusive() {
		t.Fatal("HasExclusive true for a clone")
	}
	_ = s
}

func TestExpiredLeaseBlocksStart(t *testing.T) {
	r := newRig(t)
	r.holder.Acked(time.Now().Add(-lp.L)) // acknowledged long ago: expired
	r.e.LeaseRegained(1)
	vip := r.resource("vip", spec.ModeSingle, "exec sleep 1000")
	r.update(1, item(vip, 0, 1))
	never(t, "started with an expired lease", func() bool { return len(r.starts("vip")) > 0 })
	r.holder.Acked(time.Now())
	r.e.Reconcile()
	r.waitRunning("vip", "vip:0", 1)
}

func TestSelfFenceKillsExclusiveOnly(t *testing.T) {
	r := newRig(t)
	r.grant()
	vip := r.resource("vip", spec.ModeSingle, "trap '' TERM; exec sleep 1000")
	web := r.resource("web", spec.ModeClone, "exec sleep 1000")
	r.update(2, item(vip, 0, 2), item(web, 0, 2))
	v := r.waitRunning("vip", "vip:0", 1)
	w := r.waitRunning("web", "web:0", 1)
	r.holder.Revoke() // the lease ran out
	killed := r.e.SelfFence()
	if len(killed) != 1 || killed[0] != "vip:0" {
		t.Fatalf("killed %v", killed)
	}
	// SelfFence returns once the exclusive process is gone.
	if process.ProbeRunning(v.pid) {
		t.Fatalf("vip pid %d still running after SelfFence returned", v.pid)
	}
	if !process.ProbeRunning(w.pid) {
		t.Fatal("the clone was killed too")
	}
	// Still assigned, but without a lease it does not come back.
	never(t, "restarted without a lease after self-fencing", func() bool { return len(r.starts("vip")) > 1 })
	r.holder.Acked(time.Now())
	r.e.LeaseRegained(2)
	r.waitRunning("vip", "vip:0", 2)
}

// TestLeaseGuardKillIsNotAFailure: when the hold lease runs out while
// nothing renews it (the agent paused), the instance's lease guard kills
// the process. That is a self-fence, not a failure of the resource: no
// failure is reported (no fail count, so repeated pauses cannot ban a
// resource from every node), and the instance starts again once the
// lease is back.
func TestLeaseGuardKillIsNotAFailure(t *testing.T) {
	short := lease.Params{L: 800 * time.Millisecond, Margin: 200 * time.Millisecond, LeaderLeaseTimeout: time.Second}
	r := newRig(t, func(c *Config) { c.Holder = lease.NewHolder(short) })
	r.holder = r.e.cfg.Holder
	r.grant()
	db := r.resource("db", spec.ModeSingle, "exec sleep 1000")
	r.update(2, item(db, 0, 2))
	first := r.waitRunning("db", "db:0", 1)
	// Nothing renews: the guard fires at the deadline minus its lead.
	waitUntil(t, "the guard to kill pid "+strconv.Itoa(first.pid), dead(first.pid))
	waitUntil(t, "the instance to notice", func() bool { return r.state("db:0") == StateStarting })
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("a lease guard's kill was reported as a failure: %+v", f)
	}
	never(t, "restarted without a lease", func() bool { return len(r.starts("db")) > 1 })
	// The lease comes back (the agent resumed): keep it renewed.
	ctx, cancel := context.WithCancel(context.Background())
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for ctx.Err() == nil {
			r.e.LeaseRenewed(r.holder.Acked(time.Now()))
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-renewed })
	r.e.LeaseRegained(3)
	r.update(3, item(db, 0, 2))
	r.waitRunning("db", "db:0", 2)
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("failures after the restart: %+v", f)
	}
}

func TestOnFailRestartRestartsInPlace(t *testing.T) {
	r := newRig(t)
	// The first start exits 3, the next ones stay up.
	app := r.resource("app", spec.ModeClone, `[ "$(wc -l < "$OUT")" -ge 2 ] || exit 3; exec sleep 1000`)
	r.update(7, item(app, 0, 7))
	r.waitRunning("app", "app:0", 2)
	f := r.Failures()
	if len(f) != 1 {
		t.Fatalf("failures %+v", f)
	}
	if f[0].Node != "n1" || f[0].Resource != "app" || f[0].Slot != 0 || f[0].Epoch != 7 || !f[0].Restarted || !strings.Contains(f[0].Reason, "exit") {
		t.Fatalf("failure report %+v", f[0])
	}
}

func TestOnFailIgnoreRestartsToo(t *testing.T) {
	r := newRig(t)
	app := r.resource("app", spec.ModeClone, `[ "$(wc -l < "$OUT")" -ge 2 ] || exit 3; exec sleep 1000`)
	app.OnFail = spec.OnFailIgnore
	r.update(1, item(app, 0, 1))
	r.waitRunning("app", "app:0", 2)
	if f := r.Failures(); len(f) != 1 || !f[0].Restarted {
		t.Fatalf("failures %+v", f)
	}
}

func TestOnFailStopDoesNotRestart(t *testing.T) {
	for _, of := range []string{spec.OnFailStop, spec.OnFailMigrate} {
		t.Run(of, func(t *testing.T) {
			r := newRig(t)
			app := r.resource("app", spec.ModeClone, "exit 3")
			app.OnFail = of
			r.update(1, item(app, 0, 1))
			waitUntil(t, "state failed", func() bool { return r.state("app:0") == StateFailed })
			f := r.Failures()
			if len(f) != 1 || f[0].Restarted {
				t.Fatalf("failures %+v", f)
			}
			never(t, "restarted", func() bool { return len(r.starts("app")) > 1 })
			// Unassigning a failed instance clears it.
			r.update(2)
			waitUntil(t, "the failed instance to go", func() bool { return len(r.e.Active()) == 0 })
		})
	}
}

func TestDefinitionChangeRestarts(t *testing.T) {
	r := newRig(t)
	app := r.resource("app", spec.ModeClone, "exec sleep 1000")
	app.Params.Env["V"] = "one"
	r.update(1, item(app, 0, 1))
	s1 := r.waitRunning("app", "app:0", 1)
	if s1.v != "one" {
		t.Fatalf("V=%q", s1.v)
	}
	// Same definition, newer epoch: no restart.
	r.update(2, item(app, 0, 2))
	never(t, "restarted without a definition change", func() bool { return len(r.starts("app")) > 1 })
	app2 := app
	app2.Params.Env = map[string]string{"OUT": app.Params.Env["OUT"], "V": "two"}
	r.update(3, item(app2, 0, 3))
	waitUntil(t, "the old process to stop", dead(s1.pid))
	s2 := r.waitRunning("app", "app:0", 2)
	if s2.v != "two" || s2.epoch != "3" {
		t.Fatalf("restarted with %+v", s2)
	}
}

func TestClusterMaintenanceLeavesEverything(t *testing.T) {
	r := newRig(t)
	app := r.resource("app", spec.ModeClone, "exec sleep 1000")
	r.update(1, item(app, 0, 1))
	s := r.waitRunning("app", "app:0", 1)
	r.e.Update(api.Assignments{Index: 2, Maintenance: true})
	never(t, "stopped during cluster maintenance", func() bool { return !process.ProbeRunning(s.pid) })
	r.update(3)
	waitUntil(t, "stop after maintenance", dead(s.pid))
}

func TestUnsupportedClassReportsFailure(t *testing.T) {
	r := newRig(t)
	// No systemd Invoker is configured: the class cannot be driven here.
	bad := spec.Resource{Name: "odd", Class: "systemd:pl-nothing", Mode: spec.ModeClone, Replicas: 1, OnFail: spec.OnFailStop}
	r.update(1, item(bad, 0, 1))
	waitUntil(t, "a failure report", func() bool { return len(r.Failures()) == 1 })
	if f := r.Failures()[0]; !strings.Contains(f.Reason, "not supported") || f.Hard != "node" || f.Op != "start" {
		t.Fatalf("failure %+v", f)
	}
	never(t, "reported again", func() bool { return len(r.Failures()) > 1 })
}

func TestStopAll(t *testing.T) {
	r := newRig(t)
	r.grant()
	vip := r.resource("vip", spec.ModeSingle, "exec sleep 1000")
	web := r.resource("web", spec.ModeClone, "exec sleep 1000")
	r.update(1, item(vip, 0, 1), item(web, 0, 1))
	v := r.waitRunning("vip", "vip:0", 1)
	w := r.waitRunning("web", "web:0", 1)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	r.e.StopAll(ctx)
	if process.ProbeRunning(v.pid) || process.ProbeRunning(w.pid) {
		t.Fatal("StopAll returned with processes running")
	}
	if a := r.e.Active(); len(a) != 0 {
		t.Fatalf("active after StopAll: %+v", a)
	}
	// A stopped executor starts nothing anymore.
	r.update(2, item(web, 0, 2))
	if a := r.e.Active(); len(a) != 0 {
		t.Fatalf("started after StopAll: %+v", a)
	}
}

func TestStopAllKillsOnDeadline(t *testing.T) {
	r := newRig(t)
	stubborn := r.resource("stubborn", spec.ModeClone, "trap '' TERM; while :; do sleep 0.05; done")
	stubborn.Params.StopTimeout = spec.Duration(time.Hour)
	r.update(1, item(stubborn, 0, 1))
	s := r.waitRunning("stubborn", "stubborn:0", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no patience at all: kill
	r.e.StopAll(ctx)
	if process.ProbeRunning(s.pid) {
		t.Fatal("StopAll with an expired context left the process running")
	}
}
