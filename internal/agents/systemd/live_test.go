package systemd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/paceline/paceline/internal/agents"
)

var live = flag.Bool("systemd-live", false,
	"run TestLive against the real systemd on the system bus (as root, on a host booted with systemd); it creates and removes runtime units paceline-livetest-*.service")

// TestLive checks on a real systemd what the stand-in cannot show: real
// job results and state transitions, that the drop-in's Restart=no keeps
// systemd from restarting a crashed service, a start that hangs in
// ExecStartPre, a oneshot that fails, a unit that does not exist. It
// creates its units under /run/systemd/system and removes them again.
//
//	go test ./internal/agents/systemd -run TestLive -v -systemd-live
func TestLive(t *testing.T) {
	if !*live {
		t.Skip("needs a real systemd: run as root with -systemd-live on a host booted with systemd (docs/systemd.md)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("-systemd-live needs root")
	}
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("-systemd-live: PID 1 is %q, not systemd", strings.TrimSpace(string(comm)))
	}
	raw, err := dbus.Connect(SystemBusAddress())
	if err != nil {
		t.Fatalf("system bus: %v", err)
	}
	defer raw.Close()
	mgr := raw.Object(busName, managerPath)
	daemonReload := func() {
		t.Helper()
		if err := mgr.Call(managerIface+".Reload", 0).Err; err != nil {
			t.Fatalf("daemon-reload: %v", err)
		}
	}
	prefix := fmt.Sprintf("paceline-livetest-%d", os.Getpid())
	unitFile := func(name, body string) string {
		t.Helper()
		path := filepath.Join(DefaultDropInDir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = mgr.Call(managerIface+".StopUnit", 0, name, "replace").Err
			_ = mgr.Call(managerIface+".ResetFailedUnit", 0, name).Err
			_ = os.Remove(path)
			_ = os.RemoveAll(filepath.Join(DefaultDropInDir, name+".d"))
			_ = mgr.Call(managerIface+".Reload", 0).Err
		})
		return name
	}
	sleeper := unitFile(prefix+".service", `[Unit]
Description=paceline systemd class live test
[Service]
ExecStart=/bin/sleep infinity
Restart=always
RestartSec=200ms
`)
	hung := unitFile(prefix+"-hung.service", `[Unit]
Description=paceline live test: start hangs
[Service]
ExecStartPre=/bin/sleep 600
ExecStart=/bin/sleep infinity
`)
	failing := unitFile(prefix+"-fail.service", `[Unit]
Description=paceline live test: start fails
[Service]
Type=oneshot
ExecStart=/bin/false
`)
	daemonReload()

	bus := NewBus("", nil)
	defer bus.Close()
	mk := func(name string) *Unit {
		u, err := New(name, Options{Bus: bus})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	do := func(u *Unit, a agents.Action, timeout time.Duration) agents.Result {
		r := u.Run(c, a, inst, timeout)
		t.Logf("%s %s: code %d %s %q (%s)", u, a, r.Code, r.Status, r.Reason, r.Duration)
		return r
	}
	u := mk(sleeper)

	r := do(u, agents.MetaData, 0)
	want(t, "meta-data", r, agents.OCFSuccess, agents.StatusSuccess)
	if !strings.Contains(r.Stdout, "paceline systemd class live test") {
		t.Fatalf("meta-data lacks the unit's Description:\n%s", r.Stdout)
	}
	want(t, "validate-all", do(u, agents.ValidateAll, 0), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "probe", do(u, agents.Monitor, 0), agents.OCFNotRunning, agents.StatusNotRunning)
	want(t, "start", do(u, agents.Start, 0), agents.OCFSuccess, agents.StatusSuccess)
	if _, err := os.Stat(u.DropInPath()); err != nil {
		t.Fatalf("drop-in: %v", err)
	}
	want(t, "monitor", do(u, agents.Monitor, 0), agents.OCFSuccess, agents.StatusSuccess)

	// Crash the service. Its unit says Restart=always; the drop-in must
	// keep systemd from restarting it, so the crash is seen by monitor.
	var unitPath dbus.ObjectPath
	if err := mgr.Call(managerIface+".GetUnit", 0, sleeper).Store(&unitPath); err != nil {
		t.Fatal(err)
	}
	svc := raw.Object(busName, unitPath)
	v, err := svc.GetProperty("org.freedesktop.systemd1.Service.MainPID")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := v.Value().(uint32)
	if pid == 0 {
		t.Fatal("no MainPID")
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for {
		r = do(u, agents.Monitor, 0)
		if r.Code == agents.OCFNotRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its process was killed the unit still runs: systemd restarted it despite the drop-in (Restart=no)")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v, err := svc.GetProperty("org.freedesktop.systemd1.Service.NRestarts"); err == nil {
		if n, _ := v.Value().(uint32); n != 0 {
			t.Fatalf("systemd restarted the unit %d times despite the drop-in", n)
		}
	}
	want(t, "stop after crash", do(u, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)
	if _, err := os.Stat(u.DropInPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("drop-in left after stop: %v", err)
	}
	want(t, "start again", do(u, agents.Start, 0), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "stop", do(u, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "stop stopped", do(u, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)
	want(t, "monitor stopped", do(u, agents.Monitor, 0), agents.OCFNotRunning, agents.StatusNotRunning)

	// A start that hangs in ExecStartPre times out; stop replaces the job.
	h := mk(hung)
	r = do(h, agents.Start, 2*time.Second)
	if !r.TimedOut || !strings.Contains(r.Reason, "activating") {
		t.Fatalf("hung start: %+v", r)
	}
	r = do(h, agents.Monitor, time.Second)
	if !r.TimedOut {
		t.Fatalf("monitor of an activating unit: %+v", r)
	}
	want(t, "stop hung", do(h, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)

	// A oneshot that fails.
	f := mk(failing)
	r = do(f, agents.Start, 0)
	want(t, "failing start", r, agents.OCFErrGeneric, agents.StatusSoftError)
	want(t, "monitor failed", do(f, agents.Monitor, 0), agents.OCFNotRunning, agents.StatusNotRunning)
	want(t, "stop failed", do(f, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)

	// A unit that does not exist.
	g := mk(prefix + "-ghost.service")
	want(t, "monitor ghost", do(g, agents.Monitor, 0), agents.OCFErrInstalled, agents.StatusHardError)
	want(t, "stop ghost", do(g, agents.Stop, 0), agents.OCFSuccess, agents.StatusSuccess)
}
