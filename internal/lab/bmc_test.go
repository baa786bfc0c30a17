package lab

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBMCPowerCycle drives a lab host's BMC (ipmi_sim) with Debian's real
// fence_ipmilan: off kills every process of the host and cuts its link,
// status then says OFF (also for a Kill that did not come through the
// BMC); on brings the link back and restarts the recorded process; a wrong
// password fails; the hanging fence agent does not return.
func TestBMCPowerCycle(t *testing.T) {
	t.Parallel()
	needRoot(t)
	if err := NeedBMC(); err != nil {
		t.Skip(err)
	}
	l := newLab(t, 2, "")
	hs := hosts(t, l, "h1", "h2")
	h1, h2 := hs[0], hs[1]
	pid1 := startEcho(t, l, h1)
	startEcho(t, l, h2)
	reachable(t, l, h2, h1)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := l.StartBMC(ctx, h1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	if again, err := l.StartBMC(ctx, h1); err != nil || again != b || l.BMC(h1) != b {
		t.Fatalf("second StartBMC: %v, %p want %p", err, again, b)
	}
	fence := func(action, pw string, wantCode int, wantOut string) {
		t.Helper()
		start := time.Now()
		out, code, err := b.FenceIPMI(ctx, action, pw, map[string]string{"power_wait": "0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("fence_ipmilan %s: exit %d after %v: %s", action, code, time.Since(start).Round(time.Millisecond), firstLine(out))
		if code != wantCode || !strings.Contains(out, wantOut) {
			t.Fatalf("fence_ipmilan %s: exit %d, want %d with %q; output:\n%s", action, code, wantCode, wantOut, out)
		}
	}
	fence("status", b.PasswordFile, 0, "Status: ON")
	fence("status", b.WrongPasswordFile, 1, "ERROR")

	fence("off", b.PasswordFile, 0, "Success: Powered OFF")
	if pids, err := l.PIDs(h1); err != nil || len(pids) != 0 {
		t.Fatalf("after off: processes %v (%v) still in %s", pids, err, h1.Name)
	}
	if procAlive(pid1) {
		t.Fatalf("after off: echo pid %d alive", pid1)
	}
	unreachable(t, l, h2, h1)
	fence("status", b.PasswordFile, 2, "Status: OFF")

	fence("on", b.PasswordFile, 0, "Success: Powered ON")
	reachable(t, l, h2, h1)
	fence("status", b.PasswordFile, 0, "Status: ON")

	// A power loss not made through the BMC: it reports it too.
	if err := l.Kill(h1); err != nil {
		t.Fatal(err)
	}
	fence("status", b.PasswordFile, 2, "Status: OFF")
	fence("reboot", b.PasswordFile, 0, "Success: Rebooted")
	reachable(t, l, h2, h1)

	// The hanging agent answers metadata and hangs on anything else.
	hang, err := l.HangingFenceAgent()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runStdin(ctx, hang, "action=metadata\n"); err != nil || !strings.Contains(out, `<action name="off"/>`) {
		t.Fatalf("hanging agent metadata: %v\n%s", err, out)
	}
	hctx, hcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer hcancel()
	if out, err := runStdin(hctx, hang, "action=off\nport=h1\n"); hctx.Err() == nil {
		t.Fatalf("hanging agent returned before the deadline: %v\n%s", err, out)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Success") || strings.HasPrefix(l, "Status") || strings.Contains(l, "ERROR:") {
			return l
		}
	}
	return s
}

func runStdin(ctx context.Context, path, in string) (string, error) {
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdin = strings.NewReader(in)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}
