package process

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The spawner goroutine lives for the life of the program by design.
var leakOpts = []goleak.Option{goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop")}

const helperEnv = "PACELINE_PROCESS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "agent" {
		helperAgent()
		return
	}
	goleak.VerifyTestMain(m, leakOpts...)
}

// helperAgent plays an agent that supervises "sleep 1000" and then hangs
// until it is killed; it prints the child's PID.
func helperAgent() {
	p, err := Start(Config{Name: "helper", Command: []string{"sleep", "1000"}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	select {}
}

// checkLeaks must be the first call in a test so that its cleanup runs
// last, after the test's own cleanups stopped everything.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpts...) })
}

const patience = 10 * time.Second

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitDone(t *testing.T, p *Proc) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(patience):
		t.Fatalf("process %d did not exit", p.PID())
	}
}

// start starts cfg and stops the process when the test ends.
func start(t *testing.T, cfg Config) *Proc {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	p, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return p
}

// syncBuffer is a Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLine waits until the buffer has a complete first line and returns it.
func (s *syncBuffer) waitLine(t *testing.T) string {
	t.Helper()
	var line string
	waitUntil(t, "a line of output", func() bool {
		var ok bool
		line, _, ok = strings.Cut(s.String(), "\n")
		return ok
	})
	return line
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func TestPdeathsigKillsChildWhenAgentDies(t *testing.T) {
	checkLeaks(t)
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), helperEnv+"=agent")
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		t.Fatalf("reading helper output: %v", err)
	}
	child := atoi(t, line)
	if !ProbeRunning(child) {
		t.Fatalf("child %d not running while the agent lives", child)
	}
	_ = agent.Process.Kill()
	_ = agent.Wait()
	waitUntil(t, "the child to die with its agent", func() bool { return !ProbeRunning(child) })
}
