// Package agents holds what the resource classes share: the Invoker
// interface a resource manager drives for script-based classes (ocf, lsb),
// the Instance an action runs for, the Result it returns, the mapping of
// OCF exit codes to what the manager must do, and RunCommand, which runs
// one agent action in its own process group and kills the whole group
// when the action outlives its timeout.
//
// The classes live in sub-packages: process (supervised processes),
// ocf (OCF resource agents) and lsb (LSB init scripts).
package agents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paceline/paceline/internal/agents/process"
	"github.com/paceline/paceline/internal/procfs"
)

// Action is the name of an agent action, passed as argv[1] to the script.
type Action string

// The actions of the OCF contract (ANCHORS.md, "OCF resource agents"), plus
// Status for LSB scripts.
const (
	Start       Action = "start"
	Stop        Action = "stop"
	Monitor     Action = "monitor"
	Promote     Action = "promote"
	Demote      Action = "demote"
	Notify      Action = "notify"
	MetaData    Action = "meta-data"
	ValidateAll Action = "validate-all"
	ReloadAgent Action = "reload-agent"
	MigrateTo   Action = "migrate_to"
	MigrateFrom Action = "migrate_from"
	Status      Action = "status" // LSB only; lsb maps Monitor to it
)

// DefaultTimeout is the timeout of an action when the caller passes none
// (Pacemaker's default operation timeout).
const DefaultTimeout = 20 * time.Second

// Invoker runs actions of one agent (one script). It is implemented by
// ocf.Agent and lsb.Script and is safe for concurrent use.
//
// Run never returns an error: every outcome, including a script that
// cannot be executed, a timeout or a cancelled context, is a Result whose
// Status tells the manager what to do. A timeout <= 0 means DefaultTimeout.
type Invoker interface {
	Run(ctx context.Context, action Action, inst Instance, timeout time.Duration) Result
}

// Instance is the resource instance an action runs for.
type Instance struct {
	// Name is the resource instance name (OCF_RESOURCE_INSTANCE).
	Name string
	// Params are the resource parameters (OCF_RESKEY_<name>).
	Params map[string]string
	// Meta are further meta attributes, e.g. "globally-unique" or
	// "target-role" (OCF_RESKEY_CRM_meta_<name>, dashes become
	// underscores). Values set by the typed fields below win.
	Meta map[string]string
	// Interval is the monitor interval; 0 for a one-shot action or probe
	// (OCF_RESKEY_CRM_meta_interval, in milliseconds, always set).
	Interval time.Duration
	// Node is the node the action runs on (OCF_RESKEY_CRM_meta_on_node).
	Node string
	// Clone is set for clone and promotable-clone instances.
	Clone *Clone
	// Notify is set for notify actions.
	Notify *Notification
	// CheckLevel is the monitor depth (OCF_CHECK_LEVEL); 0 is not exported.
	CheckLevel int
}

// Clone carries the clone meta attributes of an instance.
type Clone struct {
	Number          int  // this instance's clone number (CRM_meta_clone)
	Max             int  // clone-max
	NodeMax         int  // clone-node-max
	Promotable      bool // promotable
	PromotedMax     int  // promoted-max (also exported as master_max)
	PromotedNodeMax int  // promoted-node-max (also exported as master_node_max)
	GloballyUnique  bool // globally-unique
	Notify          bool // notify
}

// Notification describes a clone notification (action Notify).
type Notification struct {
	Type      string // "pre" or "post"
	Operation string // "start", "stop", "promote" or "demote"

	// Each list pairs a clone instance with the node it is on; they are
	// exported as notify_<list>_resource and notify_<list>_uname,
	// space-separated and paired by position.
	Start, Stop, Active, Promote, Demote, Promoted, Unpromoted []Peer
	// Inactive lists instances that are active nowhere
	// (notify_inactive_resource).
	Inactive []string
	// All and Available list node names (notify_all_uname,
	// notify_available_uname).
	All, Available []string
}

// Peer is a clone instance on a node.
type Peer struct {
	Resource string
	Node     string
}

// Result is the outcome of one action.
type Result struct {
	// Code is the script's exit code, after class-specific mapping to the
	// OCF code space (lsb maps status codes); -1 when the script did not
	// exit by itself (killed by a signal, timed out) or could not run.
	Code int
	// Status is what the code means to the manager.
	Status ResultStatus
	// Reason is the failure reason: the last "ocf-exit-reason:" on stderr,
	// or a description of what went wrong when the script did not exit.
	Reason string
	// TimedOut is set when the action was killed at its timeout.
	TimedOut bool
	// Stdout and Stderr are the script's output, each capped at
	// MaxOutput bytes (the tail is dropped).
	Stdout, Stderr string
	// Duration is how long the action ran.
	Duration time.Duration
}

// ResultStatus classifies an exit code.
type ResultStatus int

// Result statuses. The zero value is not a valid status.
const (
	StatusSuccess          ResultStatus = iota + 1 // 0
	StatusNotRunning                               // 7
	StatusRunningPromoted                          // 8
	StatusFailedPromoted                           // 9: soft (demote, stop, start)
	StatusDegraded                                 // 190: success, shown degraded
	StatusDegradedPromoted                         // 191: promoted, shown degraded
	StatusSoftError                                // 1 and unknown codes: restart here
	StatusHardError                                // 2, 3, 4, 5: move and ban this node
	StatusFatalError                               // 6: stop everywhere
)

var statusNames = map[ResultStatus]string{
	StatusSuccess:          "success",
	StatusNotRunning:       "not-running",
	StatusRunningPromoted:  "running-promoted",
	StatusFailedPromoted:   "failed-promoted",
	StatusDegraded:         "degraded",
	StatusDegradedPromoted: "degraded-promoted",
	StatusSoftError:        "soft-error",
	StatusHardError:        "hard-error",
	StatusFatalError:       "fatal-error",
}

func (s ResultStatus) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("ResultStatus(%d)", int(s))
}

// Severity is how bad a failed result is, i.e. what recovery it triggers.
type Severity int

// Severities.
const (
	SeverityNone  Severity = iota // not a failure (whether it was expected is the caller's business)
	SeveritySoft                  // recover on this node; counts towards migration-threshold
	SeverityHard                  // move the resource away and ban this node
	SeverityFatal                 // stop the resource everywhere
)

func (s Severity) String() string {
	switch s {
	case SeverityNone:
		return "none"
	case SeveritySoft:
		return "soft"
	case SeverityHard:
		return "hard"
	case SeverityFatal:
		return "fatal"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// Severity returns the recovery class of s.
func (s ResultStatus) Severity() Severity {
	switch s {
	case StatusSoftError, StatusFailedPromoted:
		return SeveritySoft
	case StatusHardError:
		return SeverityHard
	case StatusFatalError:
		return SeverityFatal
	}
	return SeverityNone
}

// Failed reports whether s is a failure of any severity.
func (s ResultStatus) Failed() bool { return s.Severity() != SeverityNone }

// OCF exit codes.
const (
	OCFSuccess          = 0
	OCFErrGeneric       = 1
	OCFErrArgs          = 2
	OCFErrUnimplemented = 3
	OCFErrPerm          = 4
	OCFErrInstalled     = 5
	OCFErrConfigured    = 6
	OCFNotRunning       = 7
	OCFRunningPromoted  = 8
	OCFFailedPromoted   = 9
	OCFDegraded         = 190
	OCFDegradedPromoted = 191
)

// StatusFromOCF maps an OCF exit code to its status, the way Pacemaker
// does: anything it does not know is a soft error.
func StatusFromOCF(code int) ResultStatus {
	switch code {
	case OCFSuccess:
		return StatusSuccess
	case OCFErrGeneric:
		return StatusSoftError
	case OCFErrArgs, OCFErrUnimplemented, OCFErrPerm, OCFErrInstalled:
		return StatusHardError
	case OCFErrConfigured:
		return StatusFatalError
	case OCFNotRunning:
		return StatusNotRunning
	case OCFRunningPromoted:
		return StatusRunningPromoted
	case OCFFailedPromoted:
		return StatusFailedPromoted
	case OCFDegraded:
		return StatusDegraded
	case OCFDegradedPromoted:
		return StatusDegradedPromoted
	}
	return StatusSoftError
}

// ExitReasonPrefix marks the failure reason on an agent's stderr.
const ExitReasonPrefix = "ocf-exit-reason:"

// ExitReason returns the text after the last "ocf-exit-reason:" on
// stderr (the prefix may follow a log tag on the same line), trimmed;
// "" if there is none.
func ExitReason(stderr string) string {
	i := strings.LastIndex(stderr, ExitReasonPrefix)
	if i < 0 {
		return ""
	}
	rest := stderr[i+len(ExitReasonPrefix):]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(rest)
}

// ---------------------------------------------------------------------------
// Running a script

// Defaults of Command.
const (
	DefaultKillGrace = 2 * time.Second
	DefaultMaxOutput = 4 << 20
	// pipeGrace bounds how long RunCommand waits for stdout/stderr to close
	// after the script exited: a daemon the script started may hold them.
	pipeGrace = 500 * time.Millisecond
)

// Command is one execution of an agent script.
type Command struct {
	Path string   // absolute path of the script
	Args []string // arguments after argv[0], e.g. the action
	Env  []string // the complete environment, "KEY=value"
	Dir  string   // working directory; "" = "/"

	Timeout   time.Duration // <= 0: DefaultTimeout
	KillGrace time.Duration // SIGTERM to SIGKILL; <= 0: DefaultKillGrace
	MaxOutput int           // per stream; <= 0: DefaultMaxOutput
	// Stdin is fed to the script (fence agents read their parameters
	// there); nil means /dev/null.
	Stdin []byte
}

// Execution is what RunCommand observed.
type Execution struct {
	PID      int // also the process group ID; 0 if the script never started
	ExitCode int // -1 if the script did not exit by itself or never started
	Signal   syscall.Signal
	TimedOut bool
	Canceled bool  // ctx was done before the script exited
	Err      error // the script could not be started
	Stdout   string
	Stderr   string
	Duration time.Duration
}

// stdinOf is the reader for Command.Stdin (nil: /dev/null).
func stdinOf(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// RunCommand runs c in a new process group with stdin from Command.Stdin
// (default /dev/null) and
// waits for it. The script gets Pdeathsig SIGKILL: if the agent dies, the
// script dies with it (what the script forked does not inherit that;
// daemons it started are meant to survive, helpers it waits for are
// orphaned). When the timeout passes or ctx is done first, the whole
// group gets SIGTERM, then SIGKILL after KillGrace, and RunCommand returns
// only after the script was reaped and no member of its group is left.
//
// Processes a script leaves behind after exiting normally (daemons it
// started) are not touched; if they keep its stdout or stderr open,
// RunCommand stops reading shortly after the script exited.
func RunCommand(ctx context.Context, c Command) Execution {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	grace := c.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	limit := c.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	stdout, stderr := &capBuffer{limit: limit}, &capBuffer{limit: limit}
	cmd := &exec.Cmd{
		Path:   c.Path,
		Args:   append([]string{c.Path}, c.Args...),
		Env:    c.Env,
		Dir:    dir,
		Stdin:  stdinOf(c.Stdin),
		Stdout: stdout,
		Stderr: stderr,
		// Own group: a timeout kills the script and everything it forked
		// that stayed in the group. Pdeathsig: the script dies with the
		// agent (forked on the spawner thread, see process.Spawn).
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		WaitDelay:   pipeGrace,
	}
	if cmd.Env == nil {
		cmd.Env = []string{} // never the agent's own environment
	}
	begin := time.Now()
	if err := process.Spawn(cmd); err != nil {
		return Execution{ExitCode: -1, Err: err, Duration: time.Since(begin)}
	}
	ex := Execution{PID: cmd.Process.Pid, ExitCode: -1}
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
		// The leader is reaped; members that ignored SIGTERM may remain.
		// The group ID cannot be reused while any of them is alive.
		killGroup(pgid)
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
		ex.ExitCode = -1 // whatever it exited with, it was killed
	}
	return ex
}

// killGroup SIGKILLs what is left of process group pgid and waits (a
// bounded time) until no live member remains. Members reparented to init
// may linger as zombies until it reaps them; they count as gone.
func killGroup(pgid int) {
	deadline := time.Now().Add(5 * time.Second)
	for procfs.GroupAlive(pgid) && time.Now().Before(deadline) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}

// ResultOf turns an Execution into a Result, mapping the exit code with
// mapCode (nil = StatusFromOCF). Timeouts, cancellation and signals are
// soft errors; a script that cannot be run is a hard error (5 when it is
// missing, 4 when it is not executable).
func ResultOf(ex Execution, timeout time.Duration, mapCode func(int) ResultStatus) Result {
	if mapCode == nil {
		mapCode = StatusFromOCF
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	r := Result{Code: ex.ExitCode, Stdout: ex.Stdout, Stderr: ex.Stderr, Duration: ex.Duration, TimedOut: ex.TimedOut}
	switch {
	case ex.TimedOut:
		r.Status, r.Reason = StatusSoftError, fmt.Sprintf("timed out after %s", timeout)
	case ex.Canceled:
		r.Status, r.Reason = StatusSoftError, "canceled"
	case ex.PID == 0 && ex.Err != nil:
		switch {
		case errors.Is(ex.Err, os.ErrNotExist):
			r.Code, r.Status = OCFErrInstalled, StatusHardError
		case errors.Is(ex.Err, os.ErrPermission):
			r.Code, r.Status = OCFErrPerm, StatusHardError
		default:
			r.Status = StatusSoftError
		}
		r.Reason = fmt.Sprintf("cannot run agent: %v", ex.Err)
	case ex.Signal != 0:
		r.Status, r.Reason = StatusSoftError, fmt.Sprintf("killed by signal %d (%s)", int(ex.Signal), ex.Signal)
	case ex.ExitCode < 0:
		r.Status, r.Reason = StatusSoftError, fmt.Sprintf("agent did not exit normally: %v", ex.Err)
	default:
		r.Status = mapCode(ex.ExitCode)
		r.Reason = ExitReason(ex.Stderr)
	}
	return r
}

// capBuffer keeps the first limit bytes written to it and counts the rest.
type capBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	limit   int
	dropped int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - c.b.Len()
	if room >= len(p) {
		c.b.Write(p)
	} else {
		if room > 0 {
			c.b.Write(p[:room])
		}
		c.dropped += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return c.b.String() + fmt.Sprintf("\n[%d bytes of output dropped]\n", c.dropped)
	}
	return c.b.String()
}

// ReasonLeaseGuard is the reason an exclusive instance reports when its
// lease guard (internal/guard) ended it because the node's hold lease ran
// out (the agent was paused or cut off): the process class when the guard
// killed the process, the vip class's monitor when the guard removed the
// address. It is a self-fence, not a failure of the resource: the
// executor neither reports nor counts it, and starts the instance again
// once the lease is back (if it is still assigned here).
const ReasonLeaseGuard = "ended by its lease guard: the hold lease ran out"
