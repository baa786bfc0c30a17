// Package conformance is the test suite every resource class passes, run
// through the class's driver (internal/agents/driver) against real
// components: a real command for the process class, Debian's
// ocf:heartbeat:Dummy and misbehaving OCF agents in testdata, a small LSB
// init script in testdata and Debian's nginx init script, and systemd
// units when the systemd class and a bus are available.
//
// What every class must do:
//   - a probe (monitor, interval 0) of a stopped instance says not running;
//   - start → monitor running; stop → monitor not running;
//   - start of a started instance and stop of a stopped one succeed;
//   - a hanging action is killed at its timeout, with what it forked in
//     its process group, and the result says it timed out;
//   - an exit code outside the OCF space is a generic (soft) error;
//   - broken meta-data is an error that explains what is wrong.
//
// A class for which a check makes no sense (the process class has no
// meta-data and no exit-code protocol) says why in Fixture.Skip.
package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
)

// Patience bounds every wait; no check asserts a duration.
const Patience = 60 * time.Second

// HangTimeout is the timeout given to the action that hangs.
const HangTimeout = 500 * time.Millisecond

// Fixture describes one class to the suite.
type Fixture struct {
	// New returns a driver for a fresh, stopped instance with its own
	// state. The fixture cleans up (stops) what the test leaves running.
	New func(t *testing.T) driver.Driver
	// Hang returns a driver whose start never finishes by itself, and a
	// function that reports whether anything the hanging start ran is
	// still alive afterwards.
	Hang func(t *testing.T) (d driver.Driver, leftover func() bool)
	// UnknownCode returns a driver and an operation that exits with a
	// code OCF does not define.
	UnknownCode func(t *testing.T) (driver.Driver, driver.Op)
	// BrokenMetadata returns a driver whose meta-data is broken.
	BrokenMetadata func(t *testing.T) driver.Driver
	// Skip says why a hook is nil, by check name: "hang", "unknown-code",
	// "broken-metadata".
	Skip map[string]string
}

func op(a agents.Action) driver.Op {
	return driver.Op{Action: a, Timeout: Patience}
}

// Probe is the monitor with interval 0.
func Probe() driver.Op { return op(agents.Monitor) }

// Run runs the suite for one class.
func Run(t *testing.T, f Fixture) {
	t.Run("lifecycle", func(t *testing.T) {
		d := f.New(t)
		ctx := context.Background()
		expect := func(what string, o driver.Op, want agents.ResultStatus) {
			t.Helper()
			r := d.Run(ctx, o)
			if r.Status != want {
				t.Fatalf("%s: %s (code %d, reason %q), want %s\nstdout: %s\nstderr: %s", what, r.Status, r.Code, r.Reason, want, r.Stdout, r.Stderr)
			}
		}
		monitor := op(agents.Monitor)
		monitor.Interval = 10 * time.Second
		expect("probe of a stopped instance", Probe(), agents.StatusNotRunning)
		expect("stop of a stopped instance", op(agents.Stop), agents.StatusSuccess)
		expect("start", op(agents.Start), agents.StatusSuccess)
		expect("monitor after start", monitor, agents.StatusSuccess)
		expect("probe after start", Probe(), agents.StatusSuccess)
		expect("start of a started instance", op(agents.Start), agents.StatusSuccess)
		expect("monitor after the second start", monitor, agents.StatusSuccess)
		expect("stop", op(agents.Stop), agents.StatusSuccess)
		expect("monitor after stop", monitor, agents.StatusNotRunning)
		expect("stop of a stopped instance", op(agents.Stop), agents.StatusSuccess)
		expect("probe after stop", Probe(), agents.StatusNotRunning)
		// And it can be started again.
		expect("start after stop", op(agents.Start), agents.StatusSuccess)
		expect("monitor after restart", monitor, agents.StatusSuccess)
		expect("final stop", op(agents.Stop), agents.StatusSuccess)
	})
	t.Run("hang", func(t *testing.T) {
		if f.Hang == nil {
			t.Skip(f.Skip["hang"])
		}
		d, leftover := f.Hang(t)
		r := d.Run(context.Background(), driver.Op{Action: agents.Start, Timeout: HangTimeout})
		if !r.TimedOut || r.Status != agents.StatusSoftError {
			t.Fatalf("hanging start: %+v, want a timed-out soft error", r)
		}
		if r.Reason == "" {
			t.Error("a timeout without a reason")
		}
		deadline := time.Now().Add(Patience)
		for leftover() {
			if time.Now().After(deadline) {
				t.Fatal("what the hanging start ran is still alive")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The instance is not running, and stop cleans up whatever is left.
		if r := d.Run(context.Background(), op(agents.Stop)); r.Status != agents.StatusSuccess {
			t.Fatalf("stop after a timed-out start: %+v", r)
		}
	})
	t.Run("unknown-code", func(t *testing.T) {
		if f.UnknownCode == nil {
			t.Skip(f.Skip["unknown-code"])
		}
		d, o := f.UnknownCode(t)
		r := d.Run(context.Background(), o)
		if r.Status != agents.StatusSoftError || r.Status.Severity() != agents.SeveritySoft {
			t.Fatalf("%s with an unknown exit code: %+v, want a generic (soft) error", o.Action, r)
		}
	})
	t.Run("broken-metadata", func(t *testing.T) {
		if f.BrokenMetadata == nil {
			t.Skip(f.Skip["broken-metadata"])
		}
		d := f.BrokenMetadata(t)
		m, err := d.Metadata(context.Background())
		if err == nil {
			t.Fatalf("broken meta-data parsed: %+v", m)
		}
		if !strings.Contains(err.Error(), "meta-data") {
			t.Fatalf("the error does not say what is wrong: %v", err)
		}
		t.Logf("explained as: %v", err)
	})
}
