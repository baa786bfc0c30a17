package robustness

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
	"github.com/paceline/paceline/internal/witness"
)

// TestBMCFenceLabHost power-cycles the host that runs the exclusive
// process resource through its simulated BMC with Debian's fence_ipmilan,
// run from the client host as a fencing node would: off leaves nothing of
// the host running (agent and resource gone, no witness write after off
// returned) and status says OFF, another node takes the resource over; on
// brings the agent back and it rejoins. A wrong password fails and
// changes nothing.
func TestBMCFenceLabHost(t *testing.T) {
	requireLab(t)
	if err := lab.NeedBMC(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	r := newRig(t, "b")
	st, err := r.status()
	if err != nil {
		t.Fatal(err)
	}
	hs := labcluster.Holders(st, resDB)
	if len(hs) != 1 {
		t.Fatalf("%s runs on %v", resDB, hs)
	}
	victim, err := r.l.Host(hs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := r.l.StartBMC(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	agentPID, err := labcluster.AgentPID(r.l, victim)
	if err != nil || agentPID == 0 {
		t.Fatalf("agent of %s: pid %d, %v", victim.Name, agentPID, err)
	}

	// fence runs fence_ipmilan inside the client host (CLI form).
	fence := func(action, pwFile string, want int, wantOut string) time.Time {
		t.Helper()
		pw, err := readLine(pwFile)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
		defer fcancel()
		out, err := r.l.Exec(fctx, r.client, "fence_ipmilan", "-a", b.Addr.String(), "-u", strconv.Itoa(b.Port),
			"-l", b.User, "-p", pw, "-P", "-C", "3", "--power-wait", "0", "-o", action)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("fence_ipmilan %s: %v\n%s", action, err, out)
		}
		t.Logf("fence_ipmilan -o %s from %s: exit %d after %v: %s", action, r.client.Name, code, time.Since(start).Round(time.Millisecond), resultLine(string(out)))
		if code != want || !strings.Contains(string(out), wantOut) {
			t.Fatalf("fence_ipmilan -o %s: exit %d, want %d with %q:\n%s", action, code, want, wantOut, out)
		}
		return time.Now()
	}

	fence("status", b.WrongPasswordFile, 1, "ERROR")
	fence("off", b.WrongPasswordFile, 1, "ERROR")
	if p, _ := labcluster.AgentPID(r.l, victim); p != agentPID {
		t.Fatalf("a refused off changed the agent of %s: pid %d, was %d", victim.Name, p, agentPID)
	}
	fence("status", b.PasswordFile, 0, "Status: ON")

	offDone := fence("off", b.PasswordFile, 0, "Success: Powered OFF")
	if pids, err := r.l.PIDs(victim); err != nil || len(pids) != 0 {
		t.Fatalf("after off, processes %v (%v) still run in %s", pids, err, victim.Name)
	}
	if p, _ := labcluster.AgentPID(r.l, victim); p != 0 {
		t.Fatalf("after off, the agent of %s still runs (pid %d)", victim.Name, p)
	}
	fence("status", b.PasswordFile, 2, "Status: OFF")
	var next witness.Write
	waitFor(t, 60*time.Second, "another host writing to the witness", func() bool {
		w, ok := witness.FirstWriteAfter(r.w.Writes(), offDone, victim.Name)
		next = w
		return ok
	})
	for _, w := range r.w.Writes() {
		if w.Host == victim.Name && w.At.After(offDone) {
			t.Fatalf("%s wrote to the witness at %s, after fence_ipmilan off returned at %s", victim.Name, w.At.Format("15:04:05.000"), offDone.Format("15:04:05.000"))
		}
	}
	t.Logf("%s took %s over %v after off returned", next.Host, resDB, next.At.Sub(offDone).Round(time.Millisecond))

	fence("on", b.PasswordFile, 0, "Success: Powered ON")
	if p, _ := labcluster.AgentPID(r.l, victim); p == 0 || p == agentPID {
		t.Fatalf("after on, agent of %s: pid %d (before: %d)", victim.Name, p, agentPID)
	}
	fence("status", b.PasswordFile, 0, "Status: ON")
	if err := r.waitWhole(90 * time.Second); err != nil {
		t.Fatalf("after power on: %v", err)
	}
	if rep := witness.Analyze(r.w.Writes(), maxGap); len(rep.Overlaps) > 0 {
		t.Fatalf("overlaps: %v", rep.Overlaps)
	}
}

func readLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func resultLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Success") || strings.HasPrefix(l, "Status") || strings.Contains(l, "ERROR:") {
			return l
		}
	}
	return strings.TrimSpace(out)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
