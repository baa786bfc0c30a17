package lab

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	t.Parallel()
	needRoot(t)
	name := uniqueName(t)
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() {
		if err := Destroy(name, dir); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		assertGone(t, name, dir)
	})
	exe := self(t)
	// Every command runs in a process of its own, as `paceline lab` does;
	// the agents started by up must outlive it.
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--name", name, "--state-dir", dir)
		cmd := exec.Command(exe, append([]string{"pl-helper", "cli"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		got := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			got = ee.ExitCode()
		}
		if got != want {
			t.Fatalf("lab %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	contains := func(out string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
	}

	contains(cli(ExitOK, "up", "--hosts", "2"), "h1", "h2", "running", "partitions: none")
	contains(cli(ExitFailed, "up", "--hosts", "2"), "down")
	l, err := Open(name, dir)
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := hosts(t, l, "h1")[0], hosts(t, l, "h2")[0]
	reachable(t, l, h1, h2)

	contains(cli(ExitOK, "partition", "h1", "h2"), "partition: h1 | h2")
	unreachable(t, l, h1, h2)
	contains(cli(ExitOK, "heal"), "partitions: none")
	reachable(t, l, h1, h2)
	contains(cli(ExitOK, "partition", "--one-way", "h1", "h2"), "one-way cut: h1 -/-> h2")
	contains(cli(ExitOK, "heal"), "partitions: none")

	contains(cli(ExitUsage, "kill", "h9"), "hosts: h1, h2")
	contains(cli(ExitUsage, "frobnicate"), "unknown command")
	contains(cli(ExitUsage, "kill"), "want 1 argument")

	contains(cli(ExitOK, "kill", "h1"), "powered-off", "dead")
	unreachable(t, l, h2, h1)
	contains(cli(ExitOK, "poweron", "h1"), "running")
	reachable(t, l, h2, h1)
	contains(cli(ExitOK, "pause", "h2"), "paused")
	contains(cli(ExitOK, "resume", "h2"), "running")
	contains(cli(ExitOK, "isolate", "h2"), "isolated", "link down")
	contains(cli(ExitOK, "heal"), "partitions: none")
	contains(cli(ExitOK, "status"), "h1", "h2")

	contains(cli(ExitOK, "down"), "removed")
	assertGone(t, name, dir)
	contains(cli(ExitOK, "down"), "removed")
	contains(cli(ExitFailed, "status"), "up --name")

	// In-process: usage without arguments.
	var out, errb bytes.Buffer
	if got := CLI(context.Background(), nil, &out, &errb, nil); got != ExitUsage || !strings.Contains(errb.String(), "usage:") {
		t.Errorf("CLI() = %d, stderr %q", got, errb.String())
	}
}
