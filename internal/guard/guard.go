// Package guard runs the lease guards of exclusive instances: one small
// process per held instance that performs the instance's fence action (for
// a vip, remove the address; for a process, SIGKILL its process group)
// when the node's hold lease runs out or the agent dies — even if the
// agent itself is hung (SIGSTOP, a stuck runtime, swapped out) and cannot
// run its own fence loop (docs/safety.md, "Lease guards").
//
// A guard is a bash process reading a pipe whose only write end the agent
// holds. At every acknowledged renewal the agent writes the time left
// until its deadline (minus Lead) as one line of decimal seconds; the
// guard waits for the next line with `read -t <time left>`:
//
//   - a line arrives: the deadline moved, wait again with the new time;
//   - the wait times out (no renewal in time, whatever the agent is doing):
//     run the fence action; then, if Repeat is set, run it again every
//     Repeat until a new line re-arms the guard (an agent that adds the
//     address back after the deadline, e.g. a start that was half way when
//     the agent froze, has it removed again); else wait for a new line;
//   - end of file (the agent died, however: the kernel closes its end of
//     the pipe): run the fence action and exit.
//
// When the instance stops, the agent kills the guard (SIGKILL, then reaps
// it) before it does anything else, so a stopped guard never acts.
//
// Why bash and not a re-exec of the agent binary: `read -t` is a timed
// wait on the pipe in one process that needs nothing of the agent's
// runtime or scheduling; bash is about 1 MB of resident memory per guard
// against several for a Go process, needs no hook in every binary that
// links the vip or process classes (tests included), and is installed on
// every system paceline supports (the script classes need it too). The
// price is that a guard measures time from when it reads a line, not from
// when the agent computed it: its deadline is later than the agent's by
// the pipe latency δ (the agent's write to bash's return from read: tens
// of microseconds on an idle host, the guard's scheduling delay on a busy
// one). Lead (half the lease margin) is subtracted from what the agent
// sends, so the guard fires no later than the agent's own deadline while
// δ < Lead, and the fence action still completes before the leader's
// expiry (agent deadline + 2 × margin) while δ + the action's run time
// < 2 × margin + Lead.
package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// script is the guard: $1 the first wait (seconds, "" = none), $2 the
// repeat interval ("" = none), $3 the fence action (a shell snippet), the
// rest its arguments ($1… inside the action). read -t 0 would not read,
// so the agent never sends less than minWait.
const script = `t=$1 rep=$2 act=$3
shift 3
fence() { eval "$act"; }
while :; do
	if [ -n "$t" ]; then
		read -r -t "$t" line
	else
		read -r line
	fi
	rc=$?
	if [ $rc -eq 0 ]; then
		t=$line
		continue
	fi
	if [ $rc -le 128 ]; then
		fence "$@" >/dev/null 2>&1
		exit 0
	fi
	fence "$@" >/dev/null 2>&1
	t=$rep
done`

// writeTimeout bounds a write to a guard's pipe.
const writeTimeout = 10 * time.Millisecond

// minWait is the smallest wait sent to a guard (read -t 0 only polls).
const minWait = time.Millisecond

// Config is one guard.
type Config struct {
	// Name identifies the guard in logs (the instance).
	Name string
	// Action is the fence action, a bash snippet; Args are its positional
	// parameters ($1, $2, …). It must be idempotent and quick: it runs at
	// the deadline, at every Repeat after it, and at the agent's death.
	Action string
	Args   []string
	// Repeat re-runs the action this often while the lease stays expired
	// (0: once per expiry).
	Repeat time.Duration
}

// Feed hands the lease deadline to every guard of a node. A nil *Feed
// starts guards that act only when the agent dies (end of file), never on
// a deadline. Safe for concurrent use.
type Feed struct {
	deadline func() time.Time
	lead     time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu     sync.Mutex
	guards map[*Guard]struct{}
	keepFn func() bool // SetKeepFunc
	keep   bool        // keepFn's last answer: no deadline, only the agent's death fires
}

// FeedOptions configure a Feed.
type FeedOptions struct {
	// Deadline returns the node's current lease deadline (zero: no lease);
	// it is read when a guard starts.
	Deadline func() time.Time
	// Lead is subtracted from every deadline sent to a guard (half the
	// lease margin: see the package comment).
	Lead   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// NewFeed returns a Feed. Deadline is required.
func NewFeed(o FeedOptions) *Feed {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{deadline: o.Deadline, lead: o.Lead, now: o.Now, log: o.Logger, guards: map[*Guard]struct{}{}}
}

// wait is what is sent to a guard for deadline: the time left, minus the
// lead, at least minWait, as decimal seconds; "" (no deadline) while the
// feed keeps resources without a lease (SetKeepFunc). Called with f.mu
// held.
func (f *Feed) wait(deadline time.Time) string {
	if f.keep {
		return ""
	}
	left := deadline.Sub(f.now()) - f.lead
	if deadline.IsZero() || left < minWait {
		left = minWait
	}
	return strconv.FormatFloat(left.Seconds(), 'f', 6, 64)
}

// SetKeepFunc installs the test of whether a node that loses its lease
// keeps its exclusive resources (noQuorumPolicy freeze or ignore: the
// cluster fences it before it recovers them elsewhere). While it answers
// true, guards get no deadline (an empty line: wait without a timeout)
// and only the agent's death fires them. It is asked when a guard starts,
// at every Renewed and at every Recheck; it must be quick.
func (f *Feed) SetKeepFunc(keep func() bool) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.keepFn = keep
	f.mu.Unlock()
}

// evalKeep asks keepFn. Called with f.mu held.
func (f *Feed) evalKeep() {
	f.keep = f.keepFn != nil && f.keepFn()
}

// Recheck asks the keep test again and, if its answer changed, tells
// every guard at once (no deadline, or the current one). Call it when the
// policy may have changed (new assignments), so that a guard never acts
// on an answer older than the last renewal or assignment.
func (f *Feed) Recheck() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	was := f.keep
	f.evalKeep()
	if f.keep != was {
		f.sendLocked(f.deadline())
	}
}

// Renewed sends the new deadline to every guard. Call it at every
// acknowledged renewal, right after the holder's deadline moved.
func (f *Feed) Renewed(deadline time.Time) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evalKeep()
	f.sendLocked(deadline)
}

// sendLocked writes the wait for deadline to every guard. Called with
// f.mu held.
func (f *Feed) sendLocked(deadline time.Time) {
	w := f.wait(deadline)
	line := []byte(w + "\n")
	now := f.now()
	for g := range f.guards {
		g.rearm(now, w)
		// A failed write means the guard is gone; its owner notices
		// (Done) and starts another. The write deadline keeps a guard
		// that stopped reading (someone stopped it and its pipe buffer
		// filled up) from blocking the renewals.
		_ = g.w.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := g.w.Write(line); err != nil && !errors.Is(err, syscall.EPIPE) {
			f.log.Warn("lease guard: cannot send the deadline", "instance", g.name, "err", err)
		}
	}
}

// Guard is one running guard process.
type Guard struct {
	name string
	cmd  *exec.Cmd
	w    *os.File
	feed *Feed
	done chan struct{}
	once sync.Once

	// armedUntil is when the guard fires unless a new line re-arms it,
	// as the agent computed it (zero: no deadline). The guard's own
	// clock starts when it reads the line, so it fires at or after this
	// instant, never before. expired is set once a deadline passed
	// without a re-arm: the guard may have run its action. Both under
	// feed.mu (a guard without a feed has neither).
	armedUntil time.Time
	expired    bool
}

// rearm records a new wait w (seconds, "" none) sent at now. A deadline
// that passed before this line was sent may have fired. Called with
// feed.mu held.
func (g *Guard) rearm(now time.Time, w string) {
	if !g.armedUntil.IsZero() && !now.Before(g.armedUntil) {
		g.expired = true
	}
	g.armedUntil = time.Time{}
	if w != "" {
		if sec, err := strconv.ParseFloat(w, 64); err == nil {
			g.armedUntil = now.Add(time.Duration(sec * float64(time.Second)))
		}
	}
}

// MayHaveFired reports whether the guard's deadline ever passed without a
// re-arm, that is whether its fence action may have run because the lease
// ran out (not counting the agent's death, which ends the agent too). A
// process instance killed by SIGKILL while this is true was self-fenced,
// not failed. False for a nil *Guard or a guard without a feed.
func (g *Guard) MayHaveFired() bool {
	if g == nil || g.feed == nil {
		return false
	}
	g.feed.mu.Lock()
	defer g.feed.mu.Unlock()
	return g.expired || (!g.armedUntil.IsZero() && !g.feed.now().Before(g.armedUntil))
}

// Start starts a guard for cfg, armed with the feed's current deadline
// (f nil: no deadline, only the agent's death fires it). The error says
// what is missing (bash).
func (f *Feed) Start(cfg Config) (*Guard, error) {
	sh, err := exec.LookPath("bash")
	if err != nil {
		return nil, fmt.Errorf("lease guard for %s: %w (install bash)", cfg.Name, err)
	}
	r, w, err := os.Pipe() // O_CLOEXEC: no other child inherits the write end
	if err != nil {
		return nil, fmt.Errorf("lease guard for %s: %w", cfg.Name, err)
	}
	rep := ""
	if cfg.Repeat > 0 {
		rep = strconv.FormatFloat(cfg.Repeat.Seconds(), 'f', 6, 64)
	}
	// Registered before the first wait is computed: a renewal between
	// the two writes a newer line, never loses one.
	g := &Guard{name: cfg.Name, w: w, feed: f, done: make(chan struct{})}
	first := ""
	if f != nil {
		f.mu.Lock()
		f.evalKeep()
		first = f.wait(f.deadline())
		g.rearm(f.now(), first)
	}
	g.cmd = &exec.Cmd{
		Path: sh,
		// bash -c SCRIPT $0 $1…: $1 the first wait, $2 the repeat, $3
		// the action, then its arguments.
		Args:  append([]string{"paceline-guard", "-c", script, "paceline-guard", first, rep, cfg.Action}, cfg.Args...),
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"},
		Dir:   "/",
		Stdin: r,
		// Its own group: a signal to the agent's group (Ctrl-C) does not
		// end it before the agent.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = g.cmd.Start()
	r.Close()
	if err != nil {
		if f != nil {
			f.mu.Unlock()
		}
		w.Close()
		return nil, fmt.Errorf("lease guard for %s: %w", cfg.Name, err)
	}
	if f != nil {
		f.guards[g] = struct{}{}
		f.mu.Unlock()
	}
	// Ahead of ordinary processes: a late guard eats into the margin.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, g.cmd.Process.Pid, -10)
	go func() {
		_ = g.cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

// Done is closed when the guard process has exited (it fired on end of
// file, or was killed).
func (g *Guard) Done() <-chan struct{} { return g.done }

// Pid is the guard's process id.
func (g *Guard) Pid() int { return g.cmd.Process.Pid }

// Stop ends the guard without letting it act: SIGKILL, and it returns
// once the guard is reaped, so no fence action of it can run after Stop
// returns. Idempotent; a nil *Guard is a no-op.
func (g *Guard) Stop() {
	if g == nil {
		return
	}
	g.once.Do(func() {
		if g.feed != nil {
			g.feed.mu.Lock()
			delete(g.feed.guards, g)
			g.feed.mu.Unlock()
		}
		_ = g.cmd.Process.Kill()
		<-g.done
		g.w.Close()
	})
}

// Fire closes the guard's pipe, as the agent's death would, and waits
// until the guard ran its action and exited. Tests only.
func (g *Guard) Fire() {
	g.once.Do(func() {
		if g.feed != nil {
			g.feed.mu.Lock()
			delete(g.feed.guards, g)
			g.feed.mu.Unlock()
		}
		g.w.Close()
		<-g.done
	})
}

// RemoveAddress is the fence action of an address (class vip): delete
// pfx (e.g. "192.0.2.10/24") from interface ifname with iproute2. It
// fails quietly when the address is not there.
func RemoveAddress(name, ifname, pfx string) (Config, error) {
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return Config{}, fmt.Errorf("lease guard for %s: %w (install iproute2)", name, err)
	}
	return Config{Name: name, Action: `"$1" addr del "$2" dev "$3"`, Args: []string{ipPath, pfx, ifname}}, nil
}

// KillGroup is the fence action of a process group (class process):
// SIGKILL to group pgid, whose leader (process pgid) must be the process
// that started at startTime (field 22 of /proc/PID/stat, in clock ticks
// since boot; see StartTime). A process id is not reused while any member
// of the group, or the leader as a zombie, remains; once all are gone the
// number may be reused, and the start time tells the new process apart,
// so a guard the agent could not kill in time never signals a stranger.
// (The one group this leaves alive: the leader exited and was reaped by a
// live agent, which then fences the rest itself.)
func KillGroup(name string, pgid int, startTime uint64) Config {
	return Config{Name: name, Action: `{ read -r s < "/proc/$1/stat"; } 2>/dev/null || return 0
s=${s##*) }
f=($s)
[ "${f[19]}" = "$2" ] && kill -KILL -- "-$1"`, Args: []string{strconv.Itoa(pgid), strconv.FormatUint(startTime, 10)}}
}

// StartTime reads the start time of process pid (field 22 of
// /proc/PID/stat) for KillGroup.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command, want at least 20", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}
