package process

import (
	"context"
	"errors"
	"github.com/paceline/paceline/internal/procfs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestExitDetection(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		script, want string
	}{
		{"exit 0", "exit status 0"},
		{"exit 3", "exit status 3"},
		{"kill -9 $$", "killed by signal 9"},
		{"kill -TERM $$", "killed by signal 15"},
	} {
		p := start(t, Config{Command: []string{"/bin/sh", "-c", tc.script}})
		if p.PID() <= 0 {
			t.Fatalf("PID = %d", p.PID())
		}
		waitDone(t, p)
		if got := p.ExitStatus(); got != tc.want {
			t.Errorf("%q: ExitStatus = %q, want %q", tc.script, got, tc.want)
		}
	}
}

func TestRunningStatusAndStop(t *testing.T) {
	checkLeaks(t)
	p := start(t, Config{Command: []string{"sleep", "1000"}})
	if got := p.ExitStatus(); got != "running" {
		t.Errorf("ExitStatus before exit = %q", got)
	}
	if !ProbeRunning(p.PID()) {
		t.Errorf("ProbeRunning(%d) = false for a running child", p.PID())
	}
	select {
	case <-p.Done():
		t.Fatal("Done closed while running")
	default:
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if got := p.ExitStatus(); got != "killed by signal 15" {
		t.Errorf("ExitStatus = %q, want killed by signal 15", got)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	// exec keeps the ignored SIGTERM disposition, so sleep ignores it too.
	p := start(t, Config{
		Command:     []string{"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"},
		StopTimeout: 100 * time.Millisecond,
		Stdout:      &out,
	})
	if line := out.waitLine(t); line != "ready" {
		t.Fatalf("output %q", line)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := p.ExitStatus(); got != "killed by signal 9" {
		t.Errorf("ExitStatus = %q, want killed by signal 9", got)
	}
}

func TestStopKillsGrandchildren(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", "sleep 1000 & echo $!; wait"},
		Stdout:  &out,
	})
	grandchild := atoi(t, out.waitLine(t))
	if !ProbeRunning(grandchild) {
		t.Fatalf("grandchild %d not running", grandchild)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitUntil(t, "the grandchild to die", func() bool { return !ProbeRunning(grandchild) })
}

// The main child exits on SIGTERM but a grandchild ignores it: Stop must
// wait for the whole group and SIGKILL the survivor after StopTimeout.
func TestStopKillsGrandchildIgnoringTERM(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	p := start(t, Config{
		Command:     []string{"/bin/sh", "-c", "trap '' TERM; sleep 1000 & trap - TERM; echo $!; wait"},
		StopTimeout: 100 * time.Millisecond,
		Stdout:      &out,
	})
	grandchild := atoi(t, out.waitLine(t))
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := p.ExitStatus(); got != "killed by signal 15" {
		t.Errorf("main child ExitStatus = %q, want killed by signal 15", got)
	}
	waitUntil(t, "the TERM-ignoring grandchild to die", func() bool { return !ProbeRunning(grandchild) })
}

func TestKillIsImmediate(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	p := start(t, Config{
		Command:     []string{"/bin/sh", "-c", "trap '' TERM; sleep 1000 & echo $!; wait"},
		StopTimeout: time.Hour, // Kill must not wait for this
		Stdout:      &out,
	})
	grandchild := atoi(t, out.waitLine(t))

	// A graceful Stop is in progress and would wait an hour; Kill cuts it short.
	stopErr := make(chan error, 1)
	go func() { stopErr <- p.Stop(context.Background()) }()
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Kill returned")
	}
	if got := p.ExitStatus(); got != "killed by signal 9" {
		t.Errorf("ExitStatus = %q, want killed by signal 9", got)
	}
	select {
	case err := <-stopErr:
		if err != nil {
			t.Errorf("concurrent Stop: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("concurrent Stop did not return after Kill")
	}
	waitUntil(t, "the grandchild to die", func() bool { return !ProbeRunning(grandchild) })
	p.Kill() // idempotent
}

func TestStopIdempotent(t *testing.T) {
	checkLeaks(t)
	p := start(t, Config{Command: []string{"sleep", "1000"}})
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() { errs <- p.Stop(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	p.Kill()
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}
}

func TestStopAfterExit(t *testing.T) {
	checkLeaks(t)
	p := start(t, Config{Command: []string{"/bin/sh", "-c", "exit 4"}})
	waitDone(t, p)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop after exit: %v", err)
	}
	if got := p.ExitStatus(); got != "exit status 4" {
		t.Errorf("ExitStatus = %q", got)
	}
}

// Leftovers of an exited main child are stopped by Stop.
func TestStopAfterExitKillsLeftovers(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", "sleep 1000 & echo $!"},
		Stdout:  &out,
	})
	grandchild := atoi(t, out.waitLine(t))
	// The grandchild holds stdout open; Done must not wait for it.
	waitDone(t, p)
	if !ProbeRunning(grandchild) {
		t.Fatalf("grandchild %d died with its parent", grandchild)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitUntil(t, "the leftover grandchild to die", func() bool { return !ProbeRunning(grandchild) })
}

func TestStopContextEndsFallsBackToKill(t *testing.T) {
	checkLeaks(t)
	var out syncBuffer
	p := start(t, Config{
		Command:     []string{"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"},
		StopTimeout: time.Hour,
		Stdout:      &out,
	})
	out.waitLine(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Stop(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop with ended ctx = %v, want context.Canceled", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("process not reaped after Stop fell back to Kill")
	}
	if got := p.ExitStatus(); got != "killed by signal 9" {
		t.Errorf("ExitStatus = %q", got)
	}
}

func TestOutputAndEnvironment(t *testing.T) {
	checkLeaks(t)
	t.Setenv("PACELINE_PROCESS_SECRET", "leaked")
	dir := t.TempDir()
	var stdout, stderr syncBuffer
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", `echo "$FOO|$(pwd)|${PACELINE_PROCESS_SECRET:-unset}"; echo oops >&2`},
		Env:     map[string]string{"FOO": "bar baz"},
		Dir:     dir,
		Stdout:  &stdout,
		Stderr:  &stderr,
	})
	waitDone(t, p)
	want := "bar baz|" + dir + "|unset\n"
	waitUntil(t, "stdout", func() bool { return stdout.String() == want })
	waitUntil(t, "stderr", func() bool { return stderr.String() == "oops\n" })
}

// blockingWriter blocks every Write until released.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

func TestStuckWriterDoesNotBlockChild(t *testing.T) {
	checkLeaks(t)
	w := blockingWriter{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(w.release) }) }
	t.Cleanup(release)
	// 8 MiB is far more than the pipe and the internal queue hold.
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", "head -c 8388608 /dev/zero; exit 5"},
		Stdout:  w,
	})
	waitDone(t, p)
	if got := p.ExitStatus(); got != "exit status 5" {
		t.Errorf("ExitStatus = %q", got)
	}
	release()
}

func TestCommandNotFound(t *testing.T) {
	checkLeaks(t)
	_, err := Start(Config{Name: "web", Command: []string{"paceline-no-such-command", "x"}})
	if err == nil {
		t.Fatal("Start succeeded")
	}
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("error %v does not wrap exec.ErrNotFound", err)
	}
	for _, want := range []string{"web", "paceline-no-such-command", "PATH", "installed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	_, err = Start(Config{Command: []string{"/nonexistent/bin/thing"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/bin/thing") {
		t.Errorf("absolute missing command: %v", err)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "noexec.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(Config{Command: []string{script}})
	if err == nil || !strings.Contains(err.Error(), "permission") {
		t.Errorf("non-executable command: %v", err)
	}

	_, err = Start(Config{Command: []string{"true"}, Dir: filepath.Join(dir, "missing")})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing Dir: %v", err)
	}

	if _, err := Start(Config{}); err == nil {
		t.Error("empty command accepted")
	}
	_, err = Start(Config{Command: []string{"true"}, Health: &Health{Exec: []string{"paceline-no-such-check"}}})
	if err == nil || !strings.Contains(err.Error(), "paceline-no-such-check") {
		t.Errorf("missing health command: %v", err)
	}
	if _, err := Start(Config{Command: []string{"true"}, Health: &Health{}}); err == nil {
		t.Error("empty health check accepted")
	}
}

func TestCommandFromEnvPATH(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "paceline-test-tool")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 6\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, Config{
		Command: []string{"paceline-test-tool"},
		Env:     map[string]string{"PATH": dir + ":/usr/bin:/bin"},
	})
	waitDone(t, p)
	if got := p.ExitStatus(); got != "exit status 6" {
		t.Errorf("ExitStatus = %q", got)
	}
}

func TestProbeRunning(t *testing.T) {
	checkLeaks(t)
	if !ProbeRunning(os.Getpid()) {
		t.Error("ProbeRunning(self) = false")
	}
	for _, pid := range []int{0, -1, 1 << 30} {
		if ProbeRunning(pid) {
			t.Errorf("ProbeRunning(%d) = true", pid)
		}
	}
	// A child that exited but is not reaped yet is a zombie: not running.
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitUntil(t, "the child to become a zombie", func() bool { return !ProbeRunning(pid) })
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Errorf("unreaped child vanished from /proc: %v", err)
	}
	if st, ok := procfs.Read(pid); !ok || st.State != 'Z' {
		t.Errorf("state = %q, %v; want Z", st.State, ok)
	}
	_ = cmd.Wait()
}

// A descendant that left the process group keeps the output pipe open
// forever; Stop must still return and end the output goroutines (goleak).
func TestStopCutsPipesHeldOutsideGroup(t *testing.T) {
	checkLeaks(t)
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	var out syncBuffer
	p := start(t, Config{
		Command: []string{"/bin/sh", "-c", "setsid sleep 1000 & echo $!; wait"},
		Stdout:  &out,
	})
	escaped := atoi(t, out.waitLine(t))
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	waitUntil(t, "the escaped grandchild to start its own session", func() bool {
		st, ok := procfs.Read(escaped)
		return ok && st.PGRP == escaped
	})
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !ProbeRunning(escaped) {
		t.Fatal("the escaped grandchild died; the test does not test what it should")
	}
	for _, o := range p.outputs {
		select {
		case <-o.done:
		default:
			t.Errorf("%s copying still running after Stop", o.name)
		}
	}
}
