package agents

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/procfs"
)

const helperEnv = "PACELINE_AGENTS_TEST_HELPER"

func TestMain(m *testing.M) {
	if f := os.Getenv(helperEnv); f != "" {
		// Play an agent running one action that hangs; the script writes
		// its PID to f first. Then hang until killed.
		RunCommand(context.Background(), Command{Path: "/bin/sh",
			Args: []string{"-c", `echo $$ > "$F.tmp" && mv "$F.tmp" "$F"; exec sleep 1000`}, Env: []string{"F=" + f}, Timeout: time.Hour})
		select {}
	}
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
	}
	os.Exit(code)
}

const patience = 30 * time.Second

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An action process dies with the agent that runs it (Pdeathsig), even
// when the action has hours left before its timeout.
func TestActionDiesWithAgent(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+pidFile)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	waitUntil(t, "the action to start", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && procfs.Running(pid)
	})
	_ = helper.Process.Signal(syscall.SIGKILL) // the agent crashes
	_ = helper.Wait()
	waitUntil(t, "the action to die with its agent", func() bool { return !procfs.Running(pid) })
}

// A hanging action is killed, with its whole process group, at its timeout.
func TestTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ex := RunCommand(context.Background(), Command{Path: "/bin/sh",
		Args: []string{"-c", `trap '' TERM; sleep 1000 & echo $! > "$F"; wait`}, Env: []string{"F=" + pidFile},
		Timeout: 200 * time.Millisecond, KillGrace: 100 * time.Millisecond})
	if !ex.TimedOut || ex.ExitCode != -1 {
		t.Fatalf("execution %+v", ex)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if procfs.Running(child) {
		t.Fatalf("the action's child %d survived the timeout", child)
	}
	r := ResultOf(ex, 200*time.Millisecond, nil)
	if r.Status != StatusSoftError || !r.TimedOut || !strings.Contains(r.Reason, "timed out") {
		t.Fatalf("result %+v", r)
	}
}

func TestStatusFromOCFUnknownIsSoft(t *testing.T) {
	for _, c := range []int{10, 99, 127, 189, 192, 255} {
		if s := StatusFromOCF(c); s != StatusSoftError {
			t.Errorf("code %d: %s", c, s)
		}
	}
}
