package ocf

import (
	"bytes"
	"context"
	"fmt"
	"github.com/paceline/paceline/internal/procfs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

// TestMain fails the run if a test left an unreaped child process or
// goroutines behind.
func TestMain(m *testing.M) {
	// The spawner goroutine (process.Spawn) lives as long as the program:
	// start it before counting.
	agents.RunCommand(context.Background(), agents.Command{Path: "/bin/true"})
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked goroutines (%d > %d):\n%s\n", n, before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// patience bounds every wait; no test asserts a duration.
const patience = 30 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*patience)
	t.Cleanup(cancel)
	return c
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// fakeRoot builds an OCF_ROOT holding the given scripts as
// resource.d/test/NAME and returns it.
func fakeRoot(t *testing.T, scripts map[string]string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fakeAgent returns ocf:test:NAME in a fake root holding only body.
func fakeAgent(t *testing.T, name, body string, opts Options) *Agent {
	t.Helper()
	opts.Root = fakeRoot(t, map[string]string{name: body})
	if opts.RscTmp == "" {
		opts.RscTmp = t.TempDir()
	}
	a, err := New("ocf:test:"+name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// realAgent returns an installed Debian agent, skipping the test when the
// package providing it is missing.
func realAgent(t *testing.T, spec, pkg string, opts Options) *Agent {
	t.Helper()
	if opts.RscTmp == "" {
		opts.RscTmp = t.TempDir()
	}
	a, err := New(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Path()); err != nil {
		t.Skipf("%s is not installed (%v): apt-get install %s", spec, err, pkg)
	}
	return a
}

// run runs action and fails the test unless it returns wantCode.
func run(t *testing.T, a *Agent, action agents.Action, inst agents.Instance, wantCode int) agents.Result {
	t.Helper()
	r := a.Run(ctx(t), action, inst, patience)
	if r.Code != wantCode {
		t.Fatalf("%s %s: code %d (%s, reason %q), want %d\nstdout: %s\nstderr: %s",
			a, action, r.Code, r.Status, r.Reason, wantCode, r.Stdout, r.Stderr)
	}
	return r
}
