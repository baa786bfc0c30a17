package executor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/spec"
)

// Tests of the script classes through the executor, with the controllable
// agent testdata/ocf/resource.d/pltest/Ctl (every action it runs is logged).

func ctlRig(t *testing.T, configure ...func(*Config)) *rig {
	root, err := filepath.Abs("testdata/ocf")
	if err != nil {
		t.Fatal(err)
	}
	return newRig(t, append([]func(*Config){func(c *Config) { c.OCFRoot = root }}, configure...)...)
}

// ctl is a Ctl resource monitored every 50ms.
func (r *rig) ctl(name, mode string) spec.Resource {
	res := spec.Resource{Name: name, Class: "ocf:pltest:Ctl", Mode: mode,
		Params:     spec.Params{Values: map[string]string{"state": r.statePath(name)}},
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(50 * time.Millisecond)}}}
	if mode == spec.ModeClone || mode == spec.ModePromotable {
		res.Replicas = 1
	}
	return res
}

func (r *rig) statePath(name string) string { return filepath.Join(r.dir, name+".state") }

// ctlLog returns the actions Ctl logged for name.
func (r *rig) ctlLog(name string) []string {
	b, _ := os.ReadFile(r.statePath(name) + ".log")
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// count counts logged lines starting with action and containing all of with.
func (r *rig) count(name, action string, with ...string) int {
	n := 0
	for _, l := range r.ctlLog(name) {
		if strings.Fields(l)[0] != action {
			continue
		}
		ok := true
		for _, w := range with {
			if !strings.Contains(l, w) {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

func (r *rig) active(resource string, slot int) (api.ActiveInstance, bool) {
	for _, a := range r.e.Active() {
		if a.Resource == resource && a.Slot == slot {
			return a, true
		}
	}
	return api.ActiveInstance{}, false
}

func (r *rig) stateIs(resource string, slot int, state string) func() bool {
	return func() bool { a, ok := r.active(resource, slot); return ok && a.State == state }
}

func (r *rig) ctlFail(name, action, code string) {
	if err := os.WriteFile(r.statePath(name)+".fail-"+action, []byte(code), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) failuresWith(pred func(api.Failure) bool) []api.Failure {
	var out []api.Failure
	for _, f := range r.Failures() {
		if pred(f) {
			out = append(out, f)
		}
	}
	return out
}

func TestScriptLifecycle(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(4, item(res, 0, 4))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	waitUntil(t, "recurring monitors", func() bool { return r.count("app", "monitor", "interval=50") >= 3 })
	log := r.ctlLog("app")
	// validate-all, then the start, for instance app:0 with the epoch.
	if !strings.HasPrefix(log[0], "validate-all ") || !strings.HasPrefix(log[1], "start instance=app:0 epoch=4 ") {
		t.Fatalf("log %q", log)
	}
	if r.count("app", "monitor", "interval=0") != 0 {
		t.Fatal("a probe ran although none was asked for")
	}
	r.update(5)
	waitUntil(t, "stopped and gone", func() bool { _, ok := r.active("app", 0); return !ok && r.count("app", "stop") == 1 })
	if _, err := os.Stat(r.statePath("app")); !os.IsNotExist(err) {
		t.Fatalf("state file after stop: %v", err)
	}
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("failures %+v", f)
	}
}

// A monitor that finds the resource gone is a failure; onFail restart
// restarts it in place and says so.
func TestScriptMonitorFailureRestartsInPlace(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	if err := os.Remove(r.statePath("app")); err != nil { // the resource dies
		t.Fatal(err)
	}
	waitUntil(t, "a restart", func() bool { return r.count("app", "start") == 2 && r.count("app", "stop") == 1 })
	waitUntil(t, "running again", r.stateIs("app", 0, StateRunning))
	f := r.Failures()
	if len(f) != 1 || f[0].Op != "monitor" || f[0].OnFail != spec.OnFailRestart || !f[0].Restarted || f[0].Hard != "" || !strings.Contains(f[0].Reason, "not running") {
		t.Fatalf("failures %+v", f)
	}
}

// OCF exit codes decide the failure's scope; the exit reason is reported;
// a hard failure is never retried here.
func TestOCFExitCodesToFailures(t *testing.T) {
	for _, c := range []struct {
		code, hard string
	}{{"6", "cluster"}, {"5", "node"}, {"4", "node"}, {"2", "node"}} {
		t.Run("code"+c.code, func(t *testing.T) {
			r := ctlRig(t)
			res := r.ctl("app", spec.ModeClone)
			r.ctlFail("app", "start", c.code)
			r.update(1, item(res, 0, 1))
			waitUntil(t, "a failure", func() bool { return len(r.Failures()) == 1 })
			f := r.Failures()[0]
			if f.Op != "start" || f.Hard != c.hard || f.Restarted || !strings.Contains(f.Reason, "start told to fail") {
				t.Fatalf("failure %+v", f)
			}
			waitUntil(t, "state failed", r.stateIs("app", 0, StateFailed))
			never(t, "retried", func() bool { return r.count("app", "start") > 1 })
			// The leader moves it away: it is stopped.
			r.update(2)
			waitUntil(t, "stopped", func() bool { return r.count("app", "stop") == 1 })
			waitUntil(t, "gone", func() bool { _, ok := r.active("app", 0); return !ok })
		})
	}
}

// An unknown exit code is a soft error: restarted in place (with backoff).
func TestUnknownCodeIsSoft(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	r.ctlFail("app", "monitor", "42")
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) >= 1 })
	f := r.Failures()[0]
	if f.Op != "monitor" || f.Hard != "" || !f.Restarted || !strings.Contains(f.Reason, "exit code 42") {
		t.Fatalf("failure %+v", f)
	}
	waitUntil(t, "restarted", func() bool { return r.count("app", "start") >= 2 })
}

// A monitor that hangs is killed at its timeout and counts as a failure.
func TestHangingMonitorTimesOut(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	res.Operations[0].Timeout = spec.Duration(200 * time.Millisecond)
	res.Operations[0].OnFail = spec.OnFailStop
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	if err := os.WriteFile(r.statePath("app")+".hang-monitor", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) == 1 })
	f := r.Failures()[0]
	if f.Op != "monitor" || f.OnFail != spec.OnFailStop || f.Restarted || !strings.Contains(f.Reason, "timed out") {
		t.Fatalf("failure %+v", f)
	}
	waitUntil(t, "held failed for the leader", r.stateIs("app", 0, StateFailed))
}

func TestOnFailBlockLeavesItAlone(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	res.Operations[0].OnFail = spec.OnFailBlock
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	r.ctlFail("app", "monitor", "1")
	waitUntil(t, "blocked", r.stateIs("app", 0, StateFailed))
	monitors := r.count("app", "monitor")
	if f := r.Failures(); len(f) != 1 || f[0].OnFail != spec.OnFailBlock || f[0].Restarted {
		t.Fatalf("failures %+v", f)
	}
	never(t, "acted on a blocked instance", func() bool { return r.count("app", "monitor") > monitors || r.count("app", "stop") > 0 })
	// A restart request (new generation) clears the block.
	if err := os.Remove(r.statePath("app") + ".fail-monitor"); err != nil {
		t.Fatal(err)
	}
	a := item(res, 0, 1)
	a.Generation = 1
	r.update(2, a)
	waitUntil(t, "restarted", func() bool { return r.count("app", "stop") == 1 && r.count("app", "start") == 2 })
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	// Unassigning a blocked instance does not stop it.
	r.ctlFail("app", "monitor", "1")
	waitUntil(t, "blocked again", r.stateIs("app", 0, StateFailed))
	r.update(3)
	never(t, "stopped a blocked instance", func() bool { return r.count("app", "stop") > 1 })
	if a, ok := r.active("app", 0); !ok || a.State != StateFailed {
		t.Fatalf("a blocked instance is no longer reported: %+v %v", a, ok)
	}
	// A lost lease still stops it (safety first), if exclusive; this one
	// is a clone: agent shutdown stops it.
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	r.e.StopAll(ctx)
	if r.count("app", "stop") != 2 {
		t.Fatalf("shutdown did not stop the blocked instance: %q", r.ctlLog("app"))
	}
}

func TestGenerationRestartsOnce(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	a := item(res, 0, 1)
	a.Generation = 7
	r.update(2, a)
	waitUntil(t, "restarted", func() bool { return r.count("app", "start") == 2 && r.count("app", "stop") == 1 })
	r.update(3, a)
	never(t, "restarted twice", func() bool { return r.count("app", "start") > 2 })
}

func TestUnmanagedOnlyWatches(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeSingle)
	res.Managed = new(bool)
	// Already running when it becomes known.
	if err := os.WriteFile(r.statePath("app"), []byte("started\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.update(1, item(res, 0, 1)) // no lease: an unmanaged resource is not started anyway
	waitUntil(t, "reported running", r.stateIs("app", 0, StateRunning))
	waitUntil(t, "monitored", func() bool { return r.count("app", "monitor") >= 3 })
	if err := os.Remove(r.statePath("app")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "no longer reported", func() bool { _, ok := r.active("app", 0); return !ok })
	r.update(2)
	never(t, "started, stopped or validated an unmanaged resource", func() bool {
		return r.count("app", "start")+r.count("app", "stop")+r.count("app", "validate-all") > 0
	})
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("failures %+v", f)
	}
}

func TestResourceMaintenanceDoesNothing(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	res.Maintenance = true
	r.update(2, item(res, 0, 2))
	time.Sleep(100 * time.Millisecond) // a monitor under way may finish
	n := len(r.ctlLog("app"))
	if err := os.Remove(r.statePath("app")); err != nil { // it fails: nobody looks
		t.Fatal(err)
	}
	never(t, "acted during maintenance", func() bool { return len(r.ctlLog("app")) > n })
	r.update(3)
	never(t, "stopped during maintenance", func() bool { return r.count("app", "stop") > 0 })
}

// Promotion follows the assigned role, only with a valid lease; the
// agent's promotion score is reported; losing the lease demotes at once.
func TestPromoteDemoteUnderLease(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("db", spec.ModePromotable)
	res.Operations = append(res.Operations, spec.Operation{Name: "monitor", Role: spec.RolePromoted, Interval: spec.Duration(40 * time.Millisecond)})
	a := item(res, 0, 1)
	a.Role = spec.RolePromoted
	r.update(1, a)
	waitUntil(t, "running", r.stateIs("db", 0, StateRunning))
	never(t, "promoted without a lease", func() bool { return r.count("db", "promote") > 0 })
	n := r.count("db", "monitor", "role=Unpromoted")
	waitUntil(t, "monitored while waiting for the lease", func() bool { return r.count("db", "monitor", "role=Unpromoted") > n+1 })
	if ai, _ := r.active("db", 0); ai.Role != "" || ai.PromotionScore == nil || *ai.PromotionScore != 5 {
		t.Fatalf("unpromoted instance %+v", ai)
	}
	r.grant()
	waitUntil(t, "promoted", func() bool { ai, _ := r.active("db", 0); return ai.Role == spec.RolePromoted })
	if ai, _ := r.active("db", 0); ai.PromotionScore == nil || *ai.PromotionScore != 10 {
		t.Fatalf("promoted instance %+v", ai)
	}
	waitUntil(t, "the promoted monitor", func() bool { return r.count("db", "monitor", "interval=40", "role=Promoted") >= 2 })
	if !r.e.HasExclusive() {
		t.Fatal("a promoted instance is not fenceable")
	}
	r.holder.Revoke()
	done := r.e.SelfFence()
	if len(done) != 1 || done[0] != "db:0" {
		t.Fatalf("SelfFence %v", done)
	}
	if ai, _ := r.active("db", 0); ai.Role != "" || ai.State != StateRunning {
		t.Fatalf("after SelfFence %+v", ai)
	}
	if r.count("db", "demote") != 1 {
		t.Fatalf("log %q", r.ctlLog("db"))
	}
	if r.e.HasExclusive() {
		t.Fatal("still fenceable after the demotion")
	}
	never(t, "promoted again without a lease", func() bool { return r.count("db", "promote") > 1 })
	r.grant()
	waitUntil(t, "promoted again", func() bool { return r.count("db", "promote") == 2 })
	// The leader takes the role away: demoted, not stopped.
	r.update(2, item(res, 0, 1))
	waitUntil(t, "demoted", func() bool { ai, _ := r.active("db", 0); return ai.Role == "" && r.count("db", "demote") == 2 })
	if r.count("db", "stop") != 0 {
		t.Fatal("stopped instead of demoted")
	}
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("failures %+v", f)
	}
}

// onFail demote on the promoted monitor demotes locally and does not
// promote again until the assignment changes.
func TestOnFailDemote(t *testing.T) {
	r := ctlRig(t)
	r.grant()
	res := r.ctl("db", spec.ModePromotable)
	res.Operations = append(res.Operations, spec.Operation{Name: "monitor", Role: spec.RolePromoted, Interval: spec.Duration(40 * time.Millisecond), OnFail: spec.OnFailDemote})
	a := item(res, 0, 1)
	a.Role = spec.RolePromoted
	r.update(1, a)
	waitUntil(t, "promoted", func() bool { ai, _ := r.active("db", 0); return ai.Role == spec.RolePromoted })
	// The promoted instance fails (reports 9: failed promoted).
	r.ctlFail("db", "monitor", "9")
	waitUntil(t, "demoted", func() bool { return r.count("db", "demote") == 1 })
	if err := os.Remove(r.statePath("db") + ".fail-monitor"); err != nil {
		t.Fatal(err)
	}
	f := r.Failures()
	if len(f) != 1 || f[0].OnFail != spec.OnFailDemote || f[0].Op != "monitor" {
		t.Fatalf("failures %+v", f)
	}
	never(t, "promoted again by the same assignment", func() bool { return r.count("db", "promote") > 1 })
	if r.count("db", "stop") != 0 {
		t.Fatal("stopped")
	}
	b := a
	b.Epoch = 2
	r.update(2, b)
	waitUntil(t, "promoted by a new assignment", func() bool { return r.count("db", "promote") == 2 })
}

// An exclusive script-class instance is stopped by its stop action when
// the lease runs out, before SelfFence returns.
func TestSelfFenceStopsScriptExclusive(t *testing.T) {
	r := ctlRig(t)
	r.grant()
	res := r.ctl("vip", spec.ModeSingle)
	res.Operations[0].Timeout = spec.Duration(time.Hour)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("vip", 0, StateRunning))
	// A monitor that hangs must not delay the fence.
	if err := os.WriteFile(r.statePath("vip")+".hang-monitor", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a monitor hanging", func() bool { _, err := os.Stat(r.statePath("vip") + ".hanging-monitor"); return err == nil })
	r.holder.Revoke()
	if got := r.e.SelfFence(); len(got) != 1 || got[0] != "vip:0" {
		t.Fatalf("SelfFence %v", got)
	}
	if _, err := os.Stat(r.statePath("vip")); !os.IsNotExist(err) {
		t.Fatalf("still running after SelfFence: %v", err)
	}
	_ = os.Remove(r.statePath("vip") + ".hang-monitor")
	never(t, "started without a lease", func() bool { return r.count("vip", "start") > 1 })
	r.grant()
	waitUntil(t, "started again", func() bool { return r.count("vip", "start") == 2 })
}

func TestProbes(t *testing.T) {
	r := ctlRig(t)
	running := r.ctl("found", spec.ModeSingle)
	absent := r.ctl("absent", spec.ModeSingle)
	if err := os.WriteFile(r.statePath("found"), []byte("started\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := func(res spec.Resource) api.ProbeItem {
		it := item(res, 0, 0)
		return api.ProbeItem{Resource: res.Name, Def: it.Def, Key: res.Name + "-k1"}
	}
	if d := r.e.ProbesDone(); d == nil || len(d) != 0 {
		t.Fatalf("ProbesDone before any probe: %#v", d)
	}
	r.e.Update(api.Assignments{Index: 1, Probes: []api.ProbeItem{probe(running), probe(absent)}})
	waitUntil(t, "both probed", func() bool { return len(r.e.ProbesComplete()) == 2 })
	if d := r.e.ProbesDone(); len(d) != 2 || d[0] != "absent-k1" || d[1] != "found-k1" {
		t.Fatalf("ProbesDone %v", d)
	}
	a, ok := r.active("found", -1)
	if !ok || !a.Probed || a.State != StateRunning {
		t.Fatalf("found instance %+v %v (active %+v)", a, ok, r.e.Active())
	}
	if _, ok := r.active("absent", -1); ok {
		t.Fatal("a stopped resource reported")
	}
	if r.count("found", "monitor", "interval=0") != 1 || r.count("absent", "monitor", "interval=0") != 1 {
		t.Fatal("not probed exactly once")
	}
	// Listed again with the same definition: not probed again, left alone.
	r.e.Update(api.Assignments{Index: 2, Probes: []api.ProbeItem{probe(running), probe(absent)}})
	never(t, "probed twice", func() bool { return r.count("found", "monitor") > 1 })
	// A lost lease stops a found-running exclusive resource.
	if !r.e.HasExclusive() {
		t.Fatal("a found-running exclusive resource is not fenceable")
	}
	// Dropped from the probes and not assigned here: stopped.
	r.e.Update(api.Assignments{Index: 3})
	waitUntil(t, "the orphan stopped", func() bool { _, ok := r.active("found", -1); return !ok && r.count("found", "stop") == 1 })

	// Adoption: found running, then assigned here.
	if err := os.WriteFile(r.statePath("found"), []byte("started\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.e.Update(api.Assignments{Index: 4, Probes: []api.ProbeItem{probe(running)}})
	waitUntil(t, "found again", func() bool { _, ok := r.active("found", -1); return ok })
	r.grant()
	r.update(5, item(running, 0, 5))
	waitUntil(t, "adopted", r.stateIs("found", 0, StateRunning))
	if _, ok := r.active("found", -1); ok {
		t.Fatal("still reported as found by the probe")
	}
	if r.count("found", "stop") != 1 {
		t.Fatal("the adopted instance was stopped")
	}
}

func TestProbeFindsPromotedAndStopsItOnLeaseLoss(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("db", spec.ModePromotable)
	if err := os.WriteFile(r.statePath("db"), []byte("promoted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	it := item(res, 0, 0)
	r.e.Update(api.Assignments{Index: 1, Probes: []api.ProbeItem{{Resource: "db", Def: it.Def}}})
	waitUntil(t, "found", func() bool { a, ok := r.active("db", -1); return ok && a.Role == spec.RolePromoted })
	if got := r.e.SelfFence(); len(got) != 1 {
		t.Fatalf("SelfFence %v", got)
	}
	if r.count("db", "demote") != 1 || r.count("db", "stop") != 1 {
		t.Fatalf("log %q", r.ctlLog("db"))
	}
}

func TestNotifications(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("web", spec.ModeClone)
	res.Replicas = 3
	res.Notify = true
	a := item(res, 0, 1)
	a.Peers = []api.Peer{{Slot: 0, Node: "n1"}, {Slot: 1, Node: "n2"}}
	r.update(1, a)
	waitUntil(t, "post-start of itself", func() bool { return r.count("web", "notify", "notify=post-start", "start=web:0 ") == 1 })
	if line := r.ctlLog("web")[2]; !strings.Contains(line, "active=web:0 web:1 ") {
		t.Fatalf("notification %q", line)
	}
	b := a
	b.Peers = []api.Peer{{Slot: 0, Node: "n1"}, {Slot: 2, Node: "n3"}}
	r.update(2, b)
	waitUntil(t, "post-stop of web:1", func() bool { return r.count("web", "notify", "notify=post-stop", "stop=web:1 ") == 1 })
	waitUntil(t, "post-start of web:2", func() bool { return r.count("web", "notify", "notify=post-start", "start=web:2 ") == 1 })
	r.update(3)
	waitUntil(t, "stopped", func() bool { return r.count("web", "stop") == 1 })
	if r.count("web", "notify", "notify=pre-stop", "stop=web:0 ") != 1 {
		t.Fatalf("no pre-stop: %q", r.ctlLog("web"))
	}
}

// Changing only reloadable parameters reloads the agent; any other
// parameter restarts it.
func TestReloadAgent(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("app", 0, StateRunning))
	res.Params.Values["level"] = "3"
	r.update(2, item(res, 0, 2))
	waitUntil(t, "reloaded", func() bool { return r.count("app", "reload-agent", "level=3") == 1 })
	waitUntil(t, "monitored with the new parameters", func() bool { return r.count("app", "monitor", "level=3") >= 1 })
	if r.count("app", "stop") != 0 {
		t.Fatal("restarted for a reloadable parameter")
	}
	// Monitor settings change in place.
	res.Operations[0].Interval = spec.Duration(30 * time.Millisecond)
	r.update(3, item(res, 0, 3))
	waitUntil(t, "the new interval", func() bool { return r.count("app", "monitor", "interval=30") >= 1 })
	if r.count("app", "stop") != 0 {
		t.Fatal("restarted for an operation change")
	}
	res.Params.Values["color"] = "red"
	r.update(4, item(res, 0, 4))
	waitUntil(t, "restarted", func() bool { return r.count("app", "stop") == 1 && r.count("app", "start", "color=red") == 1 })
}

func TestUnknownParameterIsExplained(t *testing.T) {
	r := ctlRig(t)
	res := r.ctl("app", spec.ModeClone)
	res.Params.Values["colour"] = "red"
	r.update(1, item(res, 0, 1))
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) == 1 })
	f := r.Failures()[0]
	if f.Hard != "cluster" || !strings.Contains(f.Reason, `unknown parameter "colour"`) || !strings.Contains(f.Reason, "color") {
		t.Fatalf("failure %+v", f)
	}
	if r.count("app", "start") != 0 {
		t.Fatal("started with an unknown parameter")
	}
	// The operator fixes the spec: the same slot starts with the new definition.
	delete(res.Params.Values, "colour")
	r.update(2, item(res, 0, 2))
	waitUntil(t, "started after the fix", func() bool { return r.count("app", "start") == 1 && r.state("app:0") == StateRunning })
}

func TestBrokenMetadataIsExplained(t *testing.T) {
	root, _ := filepath.Abs("../agents/conformance/testdata/ocf")
	r := newRig(t, func(c *Config) { c.OCFRoot = root })
	res := spec.Resource{Name: "bad", Class: "ocf:pltest:BrokenMeta", Mode: spec.ModeClone, Replicas: 1}
	r.update(1, item(res, 0, 1))
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) == 1 })
	if f := r.Failures()[0]; f.Hard != "node" || !strings.Contains(f.Reason, "meta-data") {
		t.Fatalf("failure %+v", f)
	}
	never(t, "reported again", func() bool { return len(r.Failures()) > 1 })
}

// LSB scripts run through the same executor.
func TestLSBThroughExecutor(t *testing.T) {
	dir, _ := filepath.Abs("../agents/conformance/testdata/init.d")
	work := t.TempDir()
	r := newRig(t, func(c *Config) { c.LSBDir = dir; c.ScriptEnv = map[string]string{"PLSLEEPER_DIR": work} })
	res := spec.Resource{Name: "sleeper", Class: "lsb:plsleeper", Mode: spec.ModeClone, Replicas: 1,
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(50 * time.Millisecond)}}}
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("sleeper", 0, StateRunning))
	pid := pidIn(t, filepath.Join(work, "plsleeper.pid"))
	// The daemon dies: the monitor notices, it is restarted.
	_ = killPid(pid)
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) >= 1 })
	waitUntil(t, "a new daemon", func() bool {
		p := pidIn(t, filepath.Join(work, "plsleeper.pid"))
		return p != 0 && p != pid && r.state("sleeper:0") == StateRunning
	})
	r.update(2)
	waitUntil(t, "stopped", func() bool { _, err := os.Stat(filepath.Join(work, "plsleeper.pid")); return os.IsNotExist(err) })
}

func pidIn(t *testing.T, file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func killPid(pid int) error {
	if pid <= 0 {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// fakeUnit is an agents.Invoker standing in for a systemd unit.
type fakeUnit struct {
	mu      sync.Mutex
	running bool
	calls   []string
}

func (u *fakeUnit) Run(_ context.Context, a agents.Action, _ agents.Instance, _ time.Duration) agents.Result {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = append(u.calls, string(a))
	ok := agents.Result{Code: 0, Status: agents.StatusSuccess}
	switch a {
	case agents.Start:
		u.running = true
	case agents.Stop:
		u.running = false
	case agents.Monitor:
		if !u.running {
			return agents.Result{Code: 7, Status: agents.StatusNotRunning}
		}
	case agents.MetaData:
		ok.Stdout = `<resource-agent name="u"><version>1.0</version><actions><action name="monitor" interval="60s" timeout="100s"/></actions></resource-agent>`
	}
	return ok
}

func (u *fakeUnit) count(a string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.calls {
		if c == a {
			n++
		}
	}
	return n
}

// The systemd class runs through the Invoker the agent configures.
func TestSystemdClassThroughInvoker(t *testing.T) {
	u := &fakeUnit{}
	var asked string
	r := newRig(t, func(c *Config) {
		c.Systemd = func(class string) (agents.Invoker, error) { asked = class; return u, nil }
	})
	res := spec.Resource{Name: "svc", Class: "systemd:plsvc", Mode: spec.ModeClone, Replicas: 1,
		Operations: []spec.Operation{{Name: "monitor", Interval: spec.Duration(30 * time.Millisecond)}}}
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("svc", 0, StateRunning))
	waitUntil(t, "monitored", func() bool { return u.count("monitor") >= 2 })
	if asked != "systemd:plsvc" || u.count("validate-all") != 1 || u.count("start") != 1 {
		t.Fatalf("class %q calls %v", asked, u.calls)
	}
	r.update(2)
	waitUntil(t, "stopped", func() bool { return u.count("stop") == 1 && len(r.e.Active()) == 0 })
}

// A monitor reporting "failed promoted" (9) is recovered by demote, stop,
// start.
func TestFailedPromotedRecovery(t *testing.T) {
	r := ctlRig(t)
	r.grant()
	res := r.ctl("db", spec.ModePromotable)
	res.Operations = append(res.Operations, spec.Operation{Name: "monitor", Role: spec.RolePromoted, Interval: spec.Duration(40 * time.Millisecond)})
	a := item(res, 0, 1)
	a.Role = spec.RolePromoted
	r.update(1, a)
	waitUntil(t, "promoted", func() bool { ai, _ := r.active("db", 0); return ai.Role == spec.RolePromoted })
	r.ctlFail("db", "monitor", "9")
	waitUntil(t, "a failure", func() bool { return len(r.Failures()) >= 1 })
	_ = os.Remove(r.statePath("db") + ".fail-monitor")
	waitUntil(t, "demote, stop, start, promote", func() bool {
		return r.count("db", "demote") >= 1 && r.count("db", "stop") >= 1 && r.count("db", "start") >= 2 && r.count("db", "promote") >= 2
	})
	var order []string
	for _, l := range r.ctlLog("db") {
		if a := strings.Fields(l)[0]; a != "monitor" && a != "notify" {
			order = append(order, a)
		}
	}
	if got := strings.Join(order, " "); !strings.HasPrefix(got, "validate-all start promote demote stop start promote") {
		t.Fatalf("actions %q", got)
	}
	if f := r.Failures()[0]; f.Op != "monitor" || !f.Restarted {
		t.Fatalf("failure %+v", f)
	}
}

// A blocked exclusive instance is still stopped when the lease runs out.
func TestSelfFenceStopsBlockedExclusive(t *testing.T) {
	r := ctlRig(t)
	r.grant()
	res := r.ctl("vip", spec.ModeSingle)
	res.Operations[0].OnFail = spec.OnFailBlock
	r.update(1, item(res, 0, 1))
	waitUntil(t, "running", r.stateIs("vip", 0, StateRunning))
	r.ctlFail("vip", "monitor", "1")
	waitUntil(t, "blocked", r.stateIs("vip", 0, StateFailed))
	r.holder.Revoke()
	if got := r.e.SelfFence(); len(got) != 1 || got[0] != "vip:0" {
		t.Fatalf("SelfFence %v", got)
	}
	if r.count("vip", "stop") != 1 {
		t.Fatalf("log %q", r.ctlLog("vip"))
	}
}
