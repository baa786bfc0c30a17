package fencing

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/process"
	"github.com/paceline/paceline/internal/procfs"
)

// runStdin is agents.RunCommand with a stdin: fence agents read their
// parameters (secrets included) from stdin, and agents.Command has no
// Stdin field (it always gives /dev/null). Everything else is the same
// contract: own process group, Pdeathsig SIGKILL (forked on the spawner
// thread), at the timeout or when ctx is done the whole group gets
// SIGTERM, then SIGKILL after KillGrace, and it returns only after the
// script was reaped and no member of its group is left.
//
// TODO(wiring): add `Stdin io.Reader` to agents.Command and replace this
// with agents.RunCommand.
func runStdin(ctx context.Context, c agents.Command, stdin []byte) agents.Execution {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = agents.DefaultTimeout
	}
	grace := c.KillGrace
	if grace <= 0 {
		grace = agents.DefaultKillGrace
	}
	limit := c.MaxOutput
	if limit <= 0 {
		limit = 1 << 20
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	stdout, stderr := &capBuffer{limit: limit}, &capBuffer{limit: limit}
	cmd := &exec.Cmd{
		Path:        c.Path,
		Args:        append([]string{c.Path}, c.Args...),
		Env:         c.Env,
		Dir:         dir,
		Stdin:       bytes.NewReader(stdin),
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		WaitDelay:   500 * time.Millisecond,
	}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	begin := time.Now()
	if err := process.Spawn(cmd); err != nil {
		return agents.Execution{ExitCode: -1, Err: err, Duration: time.Since(begin)}
	}
	ex := agents.Execution{PID: cmd.Process.Pid, ExitCode: -1}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var werr error
	select {
	case werr = <-done:
	case <-timer.C:
		ex.TimedOut = true
	case <-ctx.Done():
		ex.Canceled = true
	}
	if ex.TimedOut || ex.Canceled {
		pgid := ex.PID
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		kill := time.NewTimer(grace)
		select {
		case werr = <-done:
			kill.Stop()
		case <-kill.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			werr = <-done
		}
		deadline := time.Now().Add(5 * time.Second)
		for procfs.GroupAlive(pgid) && time.Now().Before(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			time.Sleep(10 * time.Millisecond)
		}
	}
	ex.Duration = time.Since(begin)
	ex.Stdout, ex.Stderr = stdout.String(), stderr.String()
	if st := cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = ws.Signal()
		} else if st.Exited() {
			ex.ExitCode = st.ExitCode()
		}
	}
	var exitErr *exec.ExitError
	if werr != nil && !errors.As(werr, &exitErr) && !errors.Is(werr, exec.ErrWaitDelay) {
		ex.Err = werr
	}
	if ex.TimedOut || ex.Canceled {
		ex.ExitCode = -1
	}
	return ex
}

// capBuffer keeps the first limit bytes written to it.
type capBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	limit int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.limit - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
