// Package process implements the supervised-process resource class: it
// starts a command as a child of the agent, notices its exit at once,
// optionally health-checks it (HTTP, TCP or a command), and stops it.
//
// Safety properties (DESIGN.md §3):
//   - the child runs in its own process group, and Stop and Kill signal the
//     whole group, so helpers and workers the service forked go with it;
//   - the child gets Pdeathsig = SIGKILL, so it dies if the agent dies.
//     Forks happen on a dedicated OS thread that lives as long as the agent
//     (see spawner.go), because Linux ties Pdeathsig to the forking thread;
//   - Kill is the self-fencing path: immediate SIGKILL of the group,
//     returning once the child is reaped, never waiting for StopTimeout.
//
// Done depends only on the main child's exit, never on descendants that
// still hold its stdout/stderr. Use ProbeRunning to check a PID from
// elsewhere: a zombie is not running.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one supervised process.
type Config struct {
	Name    string            // resource instance name (for logs and errors)
	Command []string          // argv, required; Command[0] is looked up in PATH unless it contains '/'
	Env     map[string]string // added to a minimal inherited environment (see minimalEnv)
	Dir     string            // working directory; empty = the agent's

	// StopTimeout is how long Stop waits after SIGTERM to the process group
	// before sending SIGKILL (default 10s).
	StopTimeout time.Duration

	// Stdout and Stderr receive the child's output; nil discards it. They are
	// written from package goroutines, never concurrently with each other. A
	// slow writer never blocks the child: output is buffered up to a bound
	// and dropped beyond it (with a warning log).
	Stdout, Stderr io.Writer

	Health *Health      // optional
	Logger *slog.Logger // nil = discard
}

const (
	defaultStopTimeout = 10 * time.Second
	// drainGrace bounds how long Stop waits for output to drain after the
	// group was stopped before cutting the pipes (descendants that left the
	// process group may hold them forever).
	drainGrace = 2 * time.Second
	// groupPoll is how often Stop looks for surviving group members.
	groupPoll = 20 * time.Millisecond
)

// defaultPath is used when neither the agent nor Config.Env sets PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// inheritedEnv lists the agent's environment variables a child inherits.
// Everything else must be set explicitly in Config.Env, so that a resource
// behaves the same whichever way the agent was started.
var inheritedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Proc is a running (or exited) supervised process.
type Proc struct {
	name        string
	pid         int
	cmd         *exec.Cmd
	log         *slog.Logger
	stopTimeout time.Duration
	hasHealth   bool

	done       chan struct{} // closed once cmd.Wait returned
	exitStatus string        // written before done is closed

	stopping     chan struct{} // closed on the first Stop or Kill
	stoppingOnce sync.Once
	termOnce     sync.Once
	cancelHealth context.CancelFunc

	healthDone  chan struct{} // closed when the health loop ended (or never ran)
	healthy     chan struct{} // closed when a check first passed
	healthyOnce sync.Once
	unhealthy   chan string

	mu            sync.Mutex
	lastHealthErr error
	sick          string // the last Unhealthy reason until a check passes again

	outputs []*outputStream
}

// Start starts cfg.Command now. It returns an error if the configuration is
// invalid or the command cannot be executed; the error names the command and
// says what to check.
func Start(cfg Config) (*Proc, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("resource", cfg.Name)
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, fmt.Errorf("process %q: command is empty: set the command to run", cfg.Name)
	}
	if cfg.StopTimeout < 0 {
		return nil, fmt.Errorf("process %q: stop timeout %s is negative", cfg.Name, cfg.StopTimeout)
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = defaultStopTimeout
	}
	env := buildEnv(cfg.Env)
	path, err := resolveCommand(cfg.Name, cfg.Command[0], env, cfg.Dir)
	if err != nil {
		return nil, err
	}

	var chk *checker
	if cfg.Health != nil {
		h, err := normalizeHealth(cfg.Name, *cfg.Health)
		if err != nil {
			return nil, err
		}
		execPath := ""
		if len(h.Exec) > 0 {
			execPath, err = resolveCommand(cfg.Name, h.Exec[0], env, cfg.Dir)
			if err != nil {
				return nil, fmt.Errorf("health check: %w", err)
			}
		}
		chk = newChecker(h, execPath, env, cfg.Dir)
	}

	cmd := &exec.Cmd{
		Path: path,
		Args: append([]string(nil), cfg.Command...),
		Env:  env,
		Dir:  cfg.Dir,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,            // own group: Stop/Kill reach descendants
			Pdeathsig: syscall.SIGKILL, // die with the agent (see spawner.go)
		},
	}
	// Stdin nil = /dev/null. Output goes to pipes we read ourselves (or to
	// /dev/null), so cmd.Wait never waits for output copying.
	type pipe struct {
		name  string
		w     io.Writer
		r, wf *os.File
	}
	var pipes []*pipe
	closeAll := func(readEnds bool) {
		for _, p := range pipes {
			_ = p.wf.Close()
			if readEnds {
				_ = p.r.Close()
			}
		}
	}
	for _, s := range []struct {
		name string
		w    io.Writer
		dst  *io.Writer
	}{{"stdout", cfg.Stdout, &cmd.Stdout}, {"stderr", cfg.Stderr, &cmd.Stderr}} {
		if s.w == nil {
			continue // exec.Cmd connects nil to /dev/null
		}
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(true)
			return nil, fmt.Errorf("process %q: creating %s pipe: %w", cfg.Name, s.name, err)
		}
		pipes = append(pipes, &pipe{name: s.name, w: s.w, r: r, wf: w})
		*s.dst = w
	}

	if err := spawn(cmd); err != nil {
		closeAll(true)
		return nil, fmt.Errorf("process %q: starting %q: %w (check that it is executable and Dir %q exists)",
			cfg.Name, cfg.Command[0], err, cfg.Dir)
	}
	closeAll(false) // the child has its copies of the write ends

	p := &Proc{
		name:        cfg.Name,
		pid:         cmd.Process.Pid,
		cmd:         cmd,
		log:         log,
		stopTimeout: cfg.StopTimeout,
		hasHealth:   chk != nil,
		done:        make(chan struct{}),
		stopping:    make(chan struct{}),
		healthDone:  make(chan struct{}),
		healthy:     make(chan struct{}),
		unhealthy:   make(chan string, 1),
	}
	p.log = log.With("pid", p.pid)
	wmu := new(sync.Mutex)
	for _, pp := range pipes {
		p.outputs = append(p.outputs, newOutputStream(pp.name, pp.r, pp.w, wmu, p.log))
	}
	p.log.Info("process started", "command", cfg.Command)

	ctx, cancel := context.WithCancel(context.Background())
	p.cancelHealth = cancel
	go p.wait()
	if chk != nil {
		go p.healthLoop(ctx, chk)
	} else {
		close(p.healthDone)
	}
	return p, nil
}

func normalizeHealth(name string, h Health) (Health, error) {
	if h.HTTP == "" && h.TCP == "" && len(h.Exec) == 0 {
		return h, fmt.Errorf("process %q: health: set at least one of HTTP, TCP or Exec", name)
	}
	if len(h.Exec) > 0 && h.Exec[0] == "" {
		return h, fmt.Errorf("process %q: health: Exec command is empty", name)
	}
	if h.Interval < 0 || h.Timeout < 0 || h.Fall < 0 {
		return h, fmt.Errorf("process %q: health: Interval, Timeout and Fall must not be negative", name)
	}
	if h.Interval == 0 {
		h.Interval = defaultInterval
	}
	if h.Timeout == 0 {
		h.Timeout = defaultTimeout
	}
	if h.Fall == 0 {
		h.Fall = 1
	}
	h.Exec = append([]string(nil), h.Exec...)
	return h, nil
}

// buildEnv returns the inherited minimal environment plus extra, sorted.
func buildEnv(extra map[string]string) []string {
	m := make(map[string]string, len(inheritedEnv)+len(extra))
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	if _, ok := m["PATH"]; !ok {
		m["PATH"] = defaultPath
	}
	for k, v := range extra {
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// resolveCommand finds cmd0 the way a shell would for the child: a name
// with a '/' is used as is (relative to dir), otherwise it is searched in the
// child's PATH.
func resolveCommand(name, cmd0 string, env []string, dir string) (string, error) {
	if strings.Contains(cmd0, "/") {
		p := cmd0
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("process %q: command %q: %w (check the path and its execute permission)", name, cmd0, err)
		}
		return cmd0, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, cmd0)
		if !filepath.IsAbs(p) {
			// A relative PATH entry: exec.Cmd resolves a relative Path
			// against Dir, so check it there too.
			p = "./" + p
			if checkExecutable(filepath.Join(dir, p)) == nil {
				return p, nil
			}
			continue
		}
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %q: command %q not found in PATH %q: check that it is installed and spelled correctly, or give its absolute path: %w",
		name, cmd0, path, exec.ErrNotFound)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %w", p, os.ErrPermission)
	}
	return nil
}

// wait reaps the main child, records its status and closes done.
func (p *Proc) wait() {
	err := p.cmd.Wait()
	switch {
	case p.cmd.ProcessState != nil:
		p.exitStatus = describeExit(p.cmd.ProcessState)
	case err != nil:
		p.exitStatus = "wait failed: " + err.Error()
	default:
		p.exitStatus = "exited"
	}
	close(p.done)
	p.cancelHealth()
	p.log.Info("process exited", "status", p.exitStatus)
}

// describeExit renders "exit status N" or "killed by signal N".
func describeExit(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			return fmt.Sprintf("exit status %d", ws.ExitStatus())
		case ws.Signaled():
			s := fmt.Sprintf("killed by signal %d", int(ws.Signal()))
			if ws.CoreDump() {
				s += " (core dumped)"
			}
			return s
		}
	}
	return ps.String()
}

// PID returns the process ID of the main child, which is also its process
// group ID.
func (p *Proc) PID() int { return p.pid }

// Done is closed the moment the main child has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitStatus describes how the process ended, e.g. "exit status 3" or
// "killed by signal 9". Before Done is closed it returns "running".
func (p *Proc) ExitStatus() string {
	select {
	case <-p.done:
		return p.exitStatus
	default:
		return "running"
	}
}

// Unhealthy receives a reason each time the health check reaches Fall
// consecutive failures (the count then restarts, so a process that stays
// unhealthy is reported again every Fall failures). Sends never block: the
// channel has a buffer of 1 and a report is dropped while one is pending.
// The channel is never closed; select on Done as well. Failures before the
// first passing check count too: callers that allow a start-up period should
// wait with WaitHealthy first and then drain this channel.
func (p *Proc) Unhealthy() <-chan string { return p.unhealthy }

// WaitHealthy returns nil once a health check has passed (at once if there
// is no health check). It returns an error if ctx ends, or if the process
// exits or is stopped before a check passed.
func (p *Proc) WaitHealthy(ctx context.Context) error {
	if !p.hasHealth {
		return nil
	}
	select {
	case <-p.healthy:
		return nil
	default:
	}
	select {
	case <-p.healthy:
		return nil
	case <-p.done:
		select {
		case <-p.healthy:
			return nil
		default:
		}
		return fmt.Errorf("process %q exited (%s) before becoming healthy%s", p.name, p.ExitStatus(), p.lastHealthSuffix())
	case <-p.stopping:
		return fmt.Errorf("process %q was stopped before becoming healthy%s", p.name, p.lastHealthSuffix())
	case <-ctx.Done():
		return fmt.Errorf("process %q not healthy yet%s: %w", p.name, p.lastHealthSuffix(), ctx.Err())
	}
}

// Healthy reports the health verdict now: false, with the reason, from
// the moment the check reached Fall consecutive failures until a check
// passes again; true without a health check.
func (p *Proc) Healthy() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sick == "", p.sick
}

func (p *Proc) setSick(reason string) {
	p.mu.Lock()
	p.sick = reason
	p.mu.Unlock()
}

func (p *Proc) setLastHealthErr(err error) {
	p.mu.Lock()
	p.lastHealthErr = err
	p.mu.Unlock()
}

func (p *Proc) lastHealthSuffix() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastHealthErr == nil {
		return ""
	}
	return " (last check: " + p.lastHealthErr.Error() + ")"
}

// beginStop marks the process as stopping: the health loop ends and
// WaitHealthy gives up.
func (p *Proc) beginStop() {
	p.stoppingOnce.Do(func() {
		close(p.stopping)
		p.cancelHealth()
	})
}

// signalGroup sends sig to the child's process group. The group ID is the
// child's PID; while any member lives, the kernel does not reuse that number
// for a new process, and a reused PID would not lead a group of that ID.
func (p *Proc) signalGroup(sig syscall.Signal) {
	err := syscall.Kill(-p.pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		p.log.Warn("signalling process group failed", "signal", sig.String(), "err", err)
	}
}

// Stop stops the process gracefully: SIGTERM to the whole process group,
// then SIGKILL to the group if the main child or any other group member is
// still running after StopTimeout. It returns once the main child has been
// reaped (and output has drained, for at most a short grace). If the process
// had already exited, leftover group members are stopped the same way, which
// is immediate when there are none. Stop is idempotent and safe to call
// concurrently with Stop and Kill.
//
// If ctx ends first, Stop falls back to Kill and returns an error wrapping
// ctx.Err(); the process is dead and reaped by then.
func (p *Proc) Stop(ctx context.Context) error {
	p.beginStop()
	select {
	case <-p.done:
		if !groupHasLive(p.pid) {
			p.waitBackground(ctx)
			return nil
		}
	default:
	}
	p.termOnce.Do(func() {
		p.log.Info("stopping process group", "signal", "SIGTERM", "timeout", p.stopTimeout)
		p.signalGroup(syscall.SIGTERM)
	})
	timer := time.NewTimer(p.stopTimeout)
	defer timer.Stop()

	// Wait for the main child, then for the rest of the group.
	var tick <-chan time.Time
	doneCh := p.done
	for {
		select {
		case <-doneCh:
			doneCh = nil
			t := time.NewTicker(groupPoll)
			defer t.Stop()
			tick = t.C
			if !groupHasLive(p.pid) {
				p.waitBackground(ctx)
				return nil
			}
		case <-tick:
			if !groupHasLive(p.pid) {
				p.waitBackground(ctx)
				return nil
			}
		case <-timer.C:
			p.log.Warn("process group still running after stop timeout; sending SIGKILL", "timeout", p.stopTimeout)
			p.signalGroup(syscall.SIGKILL)
			<-p.done
			p.waitBackground(ctx)
			return nil
		case <-ctx.Done():
			p.log.Warn("stop cancelled before the process group ended; sending SIGKILL", "err", ctx.Err())
			p.Kill()
			return fmt.Errorf("stopping process %q: killed with SIGKILL: %w", p.name, ctx.Err())
		}
	}
}

// Kill sends SIGKILL to the whole process group at once and returns when the
// main child has been reaped. It is the self-fencing path: it never waits for
// StopTimeout, health checks or output.
func (p *Proc) Kill() {
	p.beginStop()
	p.signalGroup(syscall.SIGKILL)
	<-p.done
}

// waitBackground waits for the health loop and output copying to end. The
// group has been stopped, so pipes normally reach EOF at once; after
// drainGrace they are cut, because a descendant that left the process group
// may hold them forever. A Writer stuck in Write is not waited for beyond
// that. ctx ending also ends the wait.
func (p *Proc) waitBackground(ctx context.Context) {
	select {
	case <-p.healthDone:
	case <-ctx.Done():
		return
	}
	grace := time.NewTimer(drainGrace)
	defer grace.Stop()
	for _, o := range p.outputs {
		select {
		case <-o.done:
			continue
		case <-ctx.Done():
			return
		case <-grace.C:
		}
		// Grace over: cut all pipes and give writers one last chance.
		p.log.Warn("child output still open after stop; closing the pipes")
		for _, o := range p.outputs {
			o.closeRead()
		}
		for _, o := range p.outputs {
			select {
			case <-o.done:
			case <-ctx.Done():
				return
			case <-time.After(drainGrace):
				return
			}
		}
		return
	}
}
