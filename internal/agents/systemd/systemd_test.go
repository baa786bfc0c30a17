package systemd

// What these tests prove, and what they do not.
//
// systemd cannot run on the machines the tests run on (it is not PID 1),
// so the tests start a private, real dbus-daemon configured as a system
// bus (unix socket in a temporary directory, EXTERNAL authentication) and
// put a stand-in for systemd on it (fake_test.go): it owns the name
// org.freedesktop.systemd1 and implements exactly the subset of the
// manager package systemd calls — LoadUnit, GetUnit, StartUnit, StopUnit,
// ResetFailedUnit, Reload, Subscribe, the JobRemoved signal and the unit
// properties LoadState/ActiveState/SubState/Description/Job/LoadError
// through org.freedesktop.DBus.Properties — with the same object paths,
// signatures and error names as systemd, and runs a real process
// ("sleep") for a started unit.
//
// Tested for real, against the real dbus-daemon: the D-Bus protocol
// (authentication, Hello, match rules, method calls and their error
// replies, signals), the job handshake (subscribe before the call, a
// JobRemoved signal that overtakes the method reply, a signal that never
// comes), the state mapping of every action, timeouts of hung jobs and
// cancellation, the reasons given when there is no bus or no systemd on
// it, the bus dying mid-action and the reconnection after it, the drop-in
// file and the reload it triggers, concurrent use under -race.
//
// Not tested here, because only a real systemd shows it: that systemd's
// job results and state transitions for real unit types (Type=simple vs
// forking vs notify vs oneshot) are what the stand-in imitates; that the
// drop-in's Restart=no really stops systemd from restarting a crashed
// service; polkit and the real system bus policy; systemd's behaviour on
// daemon-reload/daemon-reexec during a job. TestLive checks those on a
// host with systemd: as root,
//
//	go test ./internal/agents/systemd -run TestLive -v -systemd-live
//
// (see docs/systemd.md). Without -systemd-live it is skipped.

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/procfs"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 4*patience)
	t.Cleanup(cancel)
	return c
}

// env is a bus with the stand-in on it.
type env struct {
	t      *testing.T
	bus    *testBus
	fake   *fakeSystemd
	dropIn string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	b := startBus(t)
	return &env{t: t, bus: b, fake: newFakeSystemd(t, b.Addr()), dropIn: t.TempDir()}
}

func (e *env) opts() Options {
	return Options{Address: e.bus.Addr(), DropInDir: e.dropIn, PollInterval: 10 * time.Millisecond}
}

func (e *env) unit(name string) *Unit {
	e.t.Helper()
	u, err := New(name, e.opts())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = u.Close() })
	return u
}

var inst = agents.Instance{Name: "res"}

func run(t *testing.T, u *Unit, a agents.Action) agents.Result {
	t.Helper()
	return u.Run(ctx(t), a, inst, patience)
}

func want(t *testing.T, what string, r agents.Result, code int, status agents.ResultStatus) {
	t.Helper()
	if r.Code != code || r.Status != status {
		t.Fatalf("%s: got code %d %s (%q), want %d %s", what, r.Code, r.Status, r.Reason, code, status)
	}
}

func wantReason(t *testing.T, what string, r agents.Result, parts ...string) {
	t.Helper()
	t.Logf("%s: %s", what, r.Reason)
	for _, p := range parts {
		if !strings.Contains(r.Reason, p) {
			t.Fatalf("%s: reason %q lacks %q", what, r.Reason, p)
		}
	}
}

func TestUnitName(t *testing.T) {
	for in, out := range map[string]string{
		"nginx":                   "nginx.service",
		"systemd:nginx":           "nginx.service",
		"nginx.service":           "nginx.service",
		"systemd:getty@tty1":      "getty@tty1.service",
		"foo.socket":              "foo.socket",
		"data.mount":              "data.mount",
		"my.app":                  "my.app.service",
		"backup.timer":            "backup.timer",
		"dev-disk-by\\x2did.swap": "dev-disk-by\\x2did.swap",
	} {
		got, err := UnitName(in)
		if err != nil || got != out {
			t.Errorf("UnitName(%q) = %q, %v; want %q", in, got, err, out)
		}
	}
	for _, bad := range []string{"", "systemd:", "../etc/passwd", "a/b", "a b", ".service", "x\x00y", "@.service", strings.Repeat("a", 300)} {
		if got, err := UnitName(bad); err == nil {
			t.Errorf("UnitName(%q) = %q, want an error", bad, got)
		}
	}
}

// A unit is started, monitored and stopped; its process is real.
func TestStartMonitorStop(t *testing.T) {
	e := newEnv(t)
	e.fake.add("sleeper.service", runs)
	u := e.unit("systemd:sleeper")

	want(t, "probe", run(t, u, agents.Monitor), agents.OCFNotRunning, agents.StatusNotRunning)
	want(t, "start", run(t, u, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	_, pid, _ := e.fake.state("sleeper.service")
	if !procfs.Running(pid) {
		t.Fatalf("the unit's process %d does not run", pid)
	}
	want(t, "monitor", run(t, u, agents.Monitor), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "status", run(t, u, agents.Status), agents.OCFSuccess, agents.StatusSuccess)

	// The drop-in is there, and systemd was reloaded for it.
	b, err := os.ReadFile(u.DropInPath())
	if err != nil || !strings.Contains(string(b), "Restart=no") || !strings.Contains(string(b), "Before=paceline.service") {
		t.Fatalf("drop-in %s: %q, %v", u.DropInPath(), b, err)
	}
	if !strings.HasSuffix(u.DropInPath(), "/sleeper.service.d/50-paceline.conf") {
		t.Fatalf("drop-in path %s", u.DropInPath())
	}
	reloads, subscribes, _ := e.fake.counters()
	if reloads != 1 || subscribes != 1 {
		t.Fatalf("reloads %d, subscribes %d; want 1, 1", reloads, subscribes)
	}

	// Starting an active unit succeeds; its job's JobRemoved signal goes
	// out before the StartUnit reply. The unchanged drop-in is not
	// rewritten, so systemd is not reloaded again.
	want(t, "second start", run(t, u, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	if reloads, _, _ := e.fake.counters(); reloads != 1 {
		t.Fatalf("reloads %d after the second start, want 1", reloads)
	}

	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	if procfs.Running(pid) {
		t.Fatalf("the unit's process %d still runs after stop", pid)
	}
	want(t, "monitor after stop", run(t, u, agents.Monitor), agents.OCFNotRunning, agents.StatusNotRunning)
	if _, err := os.Stat(u.DropInPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("drop-in left after stop: %v", err)
	}
	if reloads, _, _ := e.fake.counters(); reloads != 2 {
		t.Fatalf("reloads %d after stop, want 2", reloads)
	}
	want(t, "second stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "validate-all", run(t, u, agents.ValidateAll), agents.OCFSuccess, agents.StatusSuccess)
}

// A start whose job fails is a soft error; the failed unit is not running
// and stopping it resets the failure.
func TestFailedStart(t *testing.T) {
	e := newEnv(t)
	e.fake.add("broken.service", fails)
	u := e.unit("broken.service")

	r := run(t, u, agents.Start)
	want(t, "start", r, agents.OCFErrGeneric, agents.StatusSoftError)
	wantReason(t, "start", r, `"failed"`, "broken.service", "journalctl -u broken.service")
	r = run(t, u, agents.Monitor)
	want(t, "monitor", r, agents.OCFNotRunning, agents.StatusNotRunning)
	wantReason(t, "monitor", r, "failed")
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	if a, _, _ := e.fake.state("broken.service"); a != StateInactive {
		t.Fatalf("after stop the unit is %s, want inactive (reset-failed)", a)
	}
	if _, _, resets := e.fake.counters(); resets != 1 {
		t.Fatalf("ResetFailedUnit called %d times, want 1", resets)
	}
}

// A unit whose process dies is seen as not running by the next monitor.
func TestCrashIsNotRunning(t *testing.T) {
	e := newEnv(t)
	e.fake.add("sleeper.service", runs)
	u := e.unit("sleeper")
	want(t, "start", run(t, u, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	_, pid, _ := e.fake.state("sleeper.service")
	if err := killPID(pid); err != nil {
		t.Fatal(err)
	}
	e.fake.waitState("sleeper.service", StateFailed)
	r := run(t, u, agents.Monitor)
	want(t, "monitor", r, agents.OCFNotRunning, agents.StatusNotRunning)
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
}

// Units that do not exist or are masked are not installed (hard errors);
// stopping a unit that does not exist succeeds.
func TestNotInstalled(t *testing.T) {
	e := newEnv(t)
	ghost := e.unit("ghost")
	for _, a := range []agents.Action{agents.Monitor, agents.Start, agents.ValidateAll} {
		r := run(t, ghost, a)
		want(t, string(a), r, agents.OCFErrInstalled, agents.StatusHardError)
		wantReason(t, string(a), r, "ghost.service", "not installed")
	}
	want(t, "stop", run(t, ghost, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)

	e.fake.add("hidden.service", runs)
	e.fake.mask("hidden.service")
	hidden := e.unit("hidden")
	for _, a := range []agents.Action{agents.Monitor, agents.Start, agents.ValidateAll} {
		r := run(t, hidden, a)
		want(t, string(a), r, agents.OCFErrInstalled, agents.StatusHardError)
		wantReason(t, string(a), r, "masked", "systemctl unmask hidden.service")
	}
	want(t, "stop masked", run(t, hidden, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
}

// A unit masked, or whose file was deleted, while it runs: monitor
// reports it running and stop really stops it; then it is not installed.
func TestGoneWhileRunning(t *testing.T) {
	e := newEnv(t)
	for _, load := range []string{LoadMasked, LoadNotFound} {
		name := "vanishing-" + load + ".service"
		e.fake.add(name, runs)
		u := e.unit(name)
		want(t, "start", run(t, u, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
		_, pid, _ := e.fake.state(name)
		e.fake.setLoad(name, load)
		want(t, load+" monitor", run(t, u, agents.Monitor), agents.OCFSuccess, agents.StatusSuccess)
		want(t, load+" stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
		if procfs.Running(pid) {
			t.Fatalf("%s: process %d survived stop", load, pid)
		}
		want(t, load+" monitor after stop", run(t, u, agents.Monitor), agents.OCFErrInstalled, agents.StatusHardError)
	}
}

// While a unit is activating, start and monitor wait for it (Pacemaker's
// "pending"), and both succeed once it is active.
func TestPendingActivation(t *testing.T) {
	e := newEnv(t)
	e.fake.add("slow.service", gated)
	u := e.unit("slow")

	results := make(chan agents.Result, 2)
	go func() { results <- run(t, u, agents.Start) }()
	e.fake.waitState("slow.service", StateActivating)
	_, _, before := e.fake.state("slow.service")
	go func() { results <- run(t, u, agents.Monitor) }()
	// The monitor polls the activating unit rather than answering.
	deadline := time.Now().Add(patience)
	for _, _, n := e.fake.state("slow.service"); n < before+3; _, _, n = e.fake.state("slow.service") {
		if time.Now().After(deadline) {
			t.Fatal("monitor did not poll the activating unit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-results:
		t.Fatalf("an action finished while the unit was activating: %+v", r)
	default:
	}
	e.fake.release("slow.service")
	for range 2 {
		want(t, "start/monitor", <-results, agents.OCFSuccess, agents.StatusSuccess)
	}
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
}

// A start job that never finishes is abandoned at the timeout, with a
// reason; a later stop replaces the job and stops the unit.
func TestHungStartTimesOut(t *testing.T) {
	e := newEnv(t)
	e.fake.add("hung.service", gated)
	u := e.unit("hung")

	r := u.Run(ctx(t), agents.Start, inst, 300*time.Millisecond)
	want(t, "start", r, -1, agents.StatusSoftError)
	if !r.TimedOut {
		t.Fatalf("start: TimedOut not set: %+v", r)
	}
	wantReason(t, "start", r, "timed out after 300ms", "job", "activating", "left to systemd")

	r = u.Run(ctx(t), agents.Monitor, inst, 200*time.Millisecond)
	want(t, "monitor", r, -1, agents.StatusSoftError)
	if !r.TimedOut {
		t.Fatalf("monitor: TimedOut not set: %+v", r)
	}
	wantReason(t, "monitor", r, "timed out", "activating")

	_, pid, _ := e.fake.state("hung.service")
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	if procfs.Running(pid) {
		t.Fatalf("process %d of the hung unit survived stop", pid)
	}
}

// Cancelling the caller's context ends the action at once, and says so.
func TestCanceled(t *testing.T) {
	e := newEnv(t)
	e.fake.add("hung.service", gated)
	u := e.unit("hung")
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan agents.Result, 1)
	go func() { done <- u.Run(c, agents.Start, inst, patience) }()
	e.fake.waitState("hung.service", StateActivating)
	cancel()
	r := <-done
	want(t, "start", r, -1, agents.StatusSoftError)
	if r.TimedOut {
		t.Fatal("a canceled action is not a timeout")
	}
	wantReason(t, "start", r, "canceled")
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
}

// When the JobRemoved signal never comes, the job is found gone through
// the unit's Job property.
func TestLostSignal(t *testing.T) {
	e := newEnv(t)
	e.fake.add("quiet.service", silent)
	u := e.unit("quiet")
	want(t, "start", run(t, u, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "stop", run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
}

// The bus goes away: between actions, and in the middle of one. Actions
// fail with a reason, never hang or panic, and the first action after the
// bus is back reconnects and sees the unit as systemd kept it. An action
// during which the bus comes back reconnects and succeeds.
func TestBusLostAndReconnect(t *testing.T) {
	e := newEnv(t)
	e.fake.add("sleeper.service", runs)
	e.fake.add("slow.service", gated)
	e.fake.add("slower.service", gated)
	bus := NewBus(e.bus.Addr(), nil)
	t.Cleanup(func() { _ = bus.Close() })
	quick := e.opts() // gives up reconnecting at once
	quick.Bus, quick.ReconnectWindow = bus, 50*time.Millisecond
	patient := e.opts() // waits for the bus to come back
	patient.Bus, patient.ReconnectWindow = bus, patience
	sleeper, _ := New("sleeper", quick)
	slow, _ := New("slow", quick)
	slower, _ := New("slower", patient)

	want(t, "start", run(t, sleeper, agents.Start), agents.OCFSuccess, agents.StatusSuccess)

	// Between actions.
	e.bus.kill()
	r := run(t, sleeper, agents.Monitor)
	want(t, "monitor without a bus", r, -1, agents.StatusSoftError)
	if r.TimedOut {
		t.Fatalf("monitor without a bus timed out: %+v", r)
	}
	wantReason(t, "monitor without a bus", r, "cannot reach systemd", e.bus.Addr())
	e.bus.start()
	e.fake.attach(e.bus.Addr())
	want(t, "monitor after reconnect", run(t, sleeper, agents.Monitor), agents.OCFSuccess, agents.StatusSuccess)

	// In the middle of a start job; the bus stays away.
	done := make(chan agents.Result, 1)
	go func() { done <- run(t, slow, agents.Start) }()
	e.fake.waitState("slow.service", StateActivating)
	e.bus.kill()
	r = <-done
	want(t, "start while the bus dies", r, -1, agents.StatusSoftError)
	if r.TimedOut {
		t.Fatalf("start timed out instead of noticing the lost bus: %+v", r)
	}
	wantReason(t, "start while the bus dies", r, "lost the connection", "reconnecting failed", "cannot reach systemd")

	e.bus.start()
	e.fake.attach(e.bus.Addr())
	e.fake.release("slow.service")
	e.fake.waitState("slow.service", StateActive)
	want(t, "monitor after the second reconnect", run(t, slow, agents.Monitor), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "start after reconnect", run(t, slow, agents.Start), agents.OCFSuccess, agents.StatusSuccess)

	// In the middle of a start job; the bus restarts (and systemd comes
	// back on it) while the action runs: it reconnects and succeeds.
	go func() { done <- run(t, slower, agents.Start) }()
	e.fake.waitState("slower.service", StateActivating)
	e.bus.kill()
	e.bus.start()
	e.fake.attach(e.bus.Addr())
	e.fake.release("slower.service")
	want(t, "start across a bus restart", <-done, agents.OCFSuccess, agents.StatusSuccess)

	for _, u := range []*Unit{sleeper, slow, slower} {
		want(t, "stop "+u.Name(), run(t, u, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	}
}

// No bus at all: every action that needs systemd fails softly, saying
// what to check; meta-data and unimplemented actions still answer.
func TestNoBus(t *testing.T) {
	u, err := New("nginx", Options{Address: "unix:path=" + t.TempDir() + "/nobus", DropInDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, a := range []agents.Action{agents.Start, agents.Stop, agents.Monitor, agents.ValidateAll} {
		r := run(t, u, a)
		want(t, string(a), r, -1, agents.StatusSoftError)
		wantReason(t, string(a), r, "cannot reach systemd", "/nobus", "dbus.service")
	}
	r := run(t, u, agents.MetaData)
	want(t, "meta-data", r, agents.OCFSuccess, agents.StatusSuccess)
	if !strings.Contains(r.Stdout, `<resource-agent name="nginx.service"`) {
		t.Fatalf("meta-data: %s", r.Stdout)
	}
}

// Without an explicit address, DBUS_SYSTEM_BUS_ADDRESS names the bus.
func TestAddressFromEnvironment(t *testing.T) {
	e := newEnv(t)
	e.fake.add("env.service", runs)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", e.bus.Addr())
	o := e.opts()
	o.Address = ""
	u, _ := New("env", o)
	defer u.Close()
	if u.Bus().Address() != e.bus.Addr() {
		t.Fatalf("address %q, want %q", u.Bus().Address(), e.bus.Addr())
	}
	want(t, "monitor", run(t, u, agents.Monitor), agents.OCFNotRunning, agents.StatusNotRunning)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "")
	if a := SystemBusAddress(); a != DefaultSystemBusAddress {
		t.Fatalf("SystemBusAddress() = %q without the variable", a)
	}
}

// A bus without systemd on it (not PID 1): the reason says so.
func TestNoSystemd(t *testing.T) {
	b := startBus(t)
	u, _ := New("nginx", Options{Address: b.Addr(), DropInDir: t.TempDir()})
	defer u.Close()
	r := run(t, u, agents.Monitor)
	want(t, "monitor", r, -1, agents.StatusSoftError)
	wantReason(t, "monitor", r, "nothing owns org.freedesktop.systemd1", "init system")
}

func TestUnimplemented(t *testing.T) {
	u, _ := New("nginx", Options{Address: "unix:path=/nonexistent"})
	defer u.Close()
	for _, a := range []agents.Action{agents.Promote, agents.Demote, agents.Notify, agents.MigrateTo, agents.MigrateFrom, agents.ReloadAgent} {
		r := run(t, u, a)
		want(t, string(a), r, agents.OCFErrUnimplemented, agents.StatusHardError)
	}
}

func TestMetaData(t *testing.T) {
	e := newEnv(t)
	e.fake.add("web.service", runs)
	r := run(t, e.unit("web"), agents.MetaData)
	want(t, "meta-data", r, agents.OCFSuccess, agents.StatusSuccess)
	md, err := ocf.ParseMetadata([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("meta-data does not parse: %v\n%s", err, r.Stdout)
	}
	if md.Name != "web.service" || md.LongDesc != "Test unit web.service" || len(md.Parameters) != 0 {
		t.Fatalf("meta-data: %+v", md)
	}
	acts := map[string]ocf.ActionSpec{}
	for _, a := range md.Actions {
		acts[a.Name] = a
	}
	if acts["start"].Timeout != 100*time.Second || acts["monitor"].Interval != 60*time.Second {
		t.Fatalf("meta-data actions: %+v", md.Actions)
	}
	if !strings.Contains(r.Stdout, `<special tag="systemd"></special>`) {
		t.Fatalf("meta-data lacks the systemd special tag:\n%s", r.Stdout)
	}
}

// NoDropIn writes nothing and never reloads systemd; units other than
// services get no drop-in either.
func TestNoDropIn(t *testing.T) {
	e := newEnv(t)
	e.fake.add("plain.service", runs)
	e.fake.add("listen.socket", runs)
	o := e.opts()
	o.NoDropIn = true
	plain, _ := New("plain", o)
	defer plain.Close()
	sock := e.unit("listen.socket")
	want(t, "start", run(t, plain, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "start socket", run(t, sock, agents.Start), agents.OCFSuccess, agents.StatusSuccess)
	for _, p := range []string{plain.DropInPath(), sock.DropInPath()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: %v, want no drop-in", p, err)
		}
	}
	want(t, "stop", run(t, plain, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "stop socket", run(t, sock, agents.Stop), agents.OCFSuccess, agents.StatusSuccess)
	if reloads, _, _ := e.fake.counters(); reloads != 0 {
		t.Fatalf("reloads %d, want 0", reloads)
	}
}

// Many units share one Bus and run actions concurrently (run with -race).
func TestConcurrentSharedBus(t *testing.T) {
	e := newEnv(t)
	bus := NewBus(e.bus.Addr(), nil)
	t.Cleanup(func() { _ = bus.Close() })
	names := []string{"a", "b", "c", "d"}
	units := make([]*Unit, len(names))
	for i, n := range names {
		e.fake.add(n+".service", runs)
		o := e.opts()
		o.Bus = bus
		units[i], _ = New(n, o)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for _, u := range units {
		wg.Go(func() {
			for _, step := range []struct {
				a    agents.Action
				code int
			}{{agents.Start, 0}, {agents.Monitor, 0}, {agents.Monitor, 0}, {agents.Stop, 0}, {agents.Monitor, 7}} {
				if r := u.Run(ctx(t), step.a, inst, patience); r.Code != step.code {
					errs <- u.Name() + " " + string(step.a) + ": " + r.Reason
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if _, subscribes, _ := e.fake.counters(); subscribes != 1 {
		t.Fatalf("a shared Bus subscribed %d times, want 1", subscribes)
	}
}

func TestClosedBus(t *testing.T) {
	e := newEnv(t)
	e.fake.add("x.service", runs)
	u := e.unit("x")
	want(t, "monitor", run(t, u, agents.Monitor), agents.OCFNotRunning, agents.StatusNotRunning)
	_ = u.Close()
	r := run(t, u, agents.Monitor)
	want(t, "monitor after Close", r, -1, agents.StatusSoftError)
	wantReason(t, "monitor after Close", r, "closed")
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
