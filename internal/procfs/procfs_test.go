package procfs

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	st, ok := Parse([]byte("42 (a) b (c) S) Z 1 4242 4242 0 -1 4194560"))
	if !ok || st.PID != 42 || st.State != 'Z' || st.PPID != 1 || st.PGRP != 4242 || !st.Dead() {
		t.Errorf("got %+v, %v", st, ok)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) R", "42 (x) R 1 nope", "42 (x) RR 1 2"} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

// An exited, unreaped child is listed as our child but does not run.
func TestZombieIsNotRunning(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	if !slices.Contains(Children(os.Getpid()), pid) {
		t.Fatalf("child %d not among Children", pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for Running(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the exited child never showed as not running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, ok := Read(pid); !ok || st.State != 'Z' {
		t.Fatalf("state %+v %v, want a zombie", st, ok)
	}
	if !Running(os.Getpid()) || !GroupAlive(syscall.Getpgrp()) {
		t.Fatal("this process does not show as running")
	}
}
