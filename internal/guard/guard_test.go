package guard

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lease is a fake holder deadline the tests move.
type lease struct {
	mu sync.Mutex
	d  time.Time
}

func (l *lease) get() time.Time { l.mu.Lock(); defer l.mu.Unlock(); return l.d }
func (l *lease) set(d time.Time) {
	l.mu.Lock()
	l.d = d
	l.mu.Unlock()
}

// marker is a fence action that appends a line to a file.
func marker(t *testing.T) (Config, string) {
	p := filepath.Join(t.TempDir(), "fired")
	return Config{Name: "m", Action: `echo fired >> "$1"`, Args: []string{p}}, p
}

func fired(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "fired")
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRenewalsKeepItThenDeadlineFires(t *testing.T) {
	l := &lease{}
	l.set(time.Now().Add(time.Second))
	f := NewFeed(FeedOptions{Deadline: l.get, Lead: 20 * time.Millisecond})
	cfg, p := marker(t)
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	// Renew for 3 s (3 leases): the guard must stay quiet. The check is
	// the marker, read after every renewal; a guard that ignored the
	// renewals fires after 980 ms. (A 1 s lease: the test's own sleeps
	// may stretch on a loaded machine.)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		d := time.Now().Add(time.Second)
		l.set(d)
		f.Renewed(d)
		time.Sleep(30 * time.Millisecond)
		if n := fired(p); n != 0 {
			t.Fatalf("the guard fired while renewals came every 30 ms for a 1 s lease")
		}
		if g.MayHaveFired() {
			t.Fatal("MayHaveFired while the renewals kept the deadline ahead")
		}
	}
	stopped := time.Now()
	waitFor(t, "the guard to fire after the renewals stopped", func() bool { return fired(p) == 1 })
	if !g.MayHaveFired() {
		t.Fatal("the guard fired but MayHaveFired says no: its kill would count as a resource failure")
	}
	if since := time.Since(stopped); since < 900*time.Millisecond {
		// Not a timing assertion on speed: firing before the deadline
		// minus the lead would be a bug.
		t.Fatalf("fired %v after the last renewal of a 1 s lease", since)
	}
	select {
	case <-g.Done():
		t.Fatal("the guard exited after a timeout; it must wait for the next renewal")
	default:
	}
	// A renewal re-arms it; EOF then fires it once more and ends it.
	d := time.Now().Add(time.Hour)
	l.set(d)
	f.Renewed(d)
	if !g.MayHaveFired() {
		t.Fatal("a later renewal must not erase that the guard may have fired")
	}
	g.Fire()
	if n := fired(p); n != 2 {
		t.Fatalf("fired %d times, want 2 (deadline, then EOF)", n)
	}
}

func TestEOFFiresWithoutFeed(t *testing.T) {
	var f *Feed // no lease: only the agent's death fires it
	cfg, p := marker(t)
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Renewed(time.Now()) // no-op on a nil feed
	time.Sleep(100 * time.Millisecond)
	if fired(p) != 0 {
		t.Fatal("a guard without a feed fired before EOF")
	}
	g.Fire()
	if fired(p) != 1 {
		t.Fatal("EOF did not fire the guard")
	}
}

func TestStopNeverFires(t *testing.T) {
	l := &lease{}
	l.set(time.Now().Add(time.Hour))
	f := NewFeed(FeedOptions{Deadline: l.get})
	cfg, p := marker(t)
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Stop()
	g.Stop() // idempotent
	<-g.Done()
	// The process is reaped: nothing of it can run any more.
	if fired(p) != 0 {
		t.Fatal("a stopped guard fired")
	}
	f.Renewed(time.Now().Add(time.Hour)) // the stopped guard is no longer fed
	f.mu.Lock()
	n := len(f.guards)
	f.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d guards still fed after Stop", n)
	}
}

func TestRepeatWhileExpired(t *testing.T) {
	l := &lease{} // zero deadline: already expired
	f := NewFeed(FeedOptions{Deadline: l.get})
	cfg, p := marker(t)
	cfg.Repeat = 20 * time.Millisecond
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	waitFor(t, "the action to be repeated", func() bool { return fired(p) >= 3 })
	// A renewal stops the repetition.
	d := time.Now().Add(time.Hour)
	l.set(d)
	f.Renewed(d)
	n := fired(p)
	time.Sleep(20 * time.Millisecond) // one repeat may have been under way
	n = fired(p)
	time.Sleep(200 * time.Millisecond)
	if m := fired(p); m != n {
		t.Fatalf("still repeating after a renewal: %d then %d", n, m)
	}
}

func TestStartTime(t *testing.T) {
	st, err := StartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("StartTime(self) = %d, %v", st, err)
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Fatal("StartTime of a missing process did not fail")
	}
}

// startGroup starts `sleep` as the leader of its own process group.
func startGroup(t *testing.T) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", "600")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return c
}

func TestKillGroupChecksStartTime(t *testing.T) {
	c := startGroup(t)
	st, err := StartTime(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// A start time that does not match (the number was reused): spared.
	g, err := (*Feed)(nil).Start(KillGroup("p", c.Process.Pid, st+1))
	if err != nil {
		t.Fatal(err)
	}
	g.Fire()
	if err := syscall.Kill(c.Process.Pid, 0); err != nil {
		t.Fatalf("a group whose leader has another start time was killed: %v", err)
	}
	// The right one: killed.
	g, err = (*Feed)(nil).Start(KillGroup("p", c.Process.Pid, st))
	if err != nil {
		t.Fatal(err)
	}
	g.Fire()
	err = c.Wait()
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the group leader ended with %v, want SIGKILL", err)
	}
}

// ---------------------------------------------------------------------------
// The agent side frozen: a helper process (this test binary, re-executed)
// plays the agent. It renews a 1 s lease every 50 ms, holds a guard,
// and prints what it holds; the test stops it with SIGSTOP and waits for
// the guard to fence.

const envHelper = "PL_GUARD_TEST_HELPER"

// TestHelperAgent is the helper's body (skipped in a normal run).
func TestHelperAgent(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		t.Skip("helper process only")
	}
	l := &lease{}
	l.set(time.Now().Add(time.Second))
	f := NewFeed(FeedOptions{Deadline: l.get, Lead: 20 * time.Millisecond})
	var cfg Config
	switch mode {
	case "group":
		c := exec.Command("sleep", "600")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		st, err := StartTime(c.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		cfg = KillGroup("p", c.Process.Pid, st)
		fmt.Printf("pid %d\n", c.Process.Pid)
	default: // "addr IFNAME PREFIX"
		fs := strings.Fields(mode)
		var err error
		cfg, err = RemoveAddress("v", fs[1], fs[2])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Repeat = 100 * time.Millisecond
		fmt.Println("pid 0")
	}
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("guard %d\n", g.Pid())
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		d := time.Now().Add(time.Second)
		l.set(d)
		f.Renewed(d)
	}
}

// helper starts the helper agent (prefix: e.g. ip netns exec NS) and
// returns it with the process id it printed and its guard's.
func helper(t *testing.T, mode string, prefix ...string) (*exec.Cmd, int, int) {
	t.Helper()
	args := append(prefix, os.Args[0], "-test.run=^TestHelperAgent$", "-test.count=1", "-test.v")
	c := exec.Command(args[0], args[1:]...)
	c.Env = append(os.Environ(), envHelper+"="+mode)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGCONT)
		_ = c.Process.Kill()
		_ = c.Wait()
	})
	sc := bufio.NewScanner(out)
	pid, gpid := -1, -1
	for (pid < 0 || gpid < 0) && sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "pid "); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "guard "); ok {
			gpid, _ = strconv.Atoi(v)
		}
	}
	if pid < 0 || gpid < 0 {
		t.Fatalf("the helper agent did not start: %v", sc.Err())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return c, pid, gpid
}

// procState is the state letter of pid ("" when gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

func TestAgentStoppedProcessGroupKilled(t *testing.T) {
	c, pid, _ := helper(t, "group")
	// Renewals keep the group alive.
	time.Sleep(2 * time.Second) // two leases
	if st := procState(pid); st == "" || st == "Z" {
		t.Fatalf("the group died while the helper renewed (state %q)", st)
	}
	if err := c.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stopped helper cannot reap: dead is a zombie.
	waitFor(t, "the guard to kill the group of the stopped agent", func() bool {
		st := procState(pid)
		return st == "" || st == "Z"
	})
}

func TestAgentStoppedAddressRemoved(t *testing.T) {
	if os.Getenv(envHelper) != "" {
		t.Skip("in the helper")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not found: apt-get install iproute2")
	}
	ns := fmt.Sprintf("plvfg%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		return string(out)
	}
	run("link", "add", "plvfd0", "type", "veth", "peer", "name", "plvfd1")
	run("link", "set", "plvfd0", "up")
	run("addr", "add", "192.0.2.10/24", "dev", "plvfd0")
	held := func() bool { return strings.Contains(run("addr", "show", "dev", "plvfd0"), "192.0.2.10/24") }
	c, _, _ := helper(t, "addr plvfd0 192.0.2.10/24", "ip", "netns", "exec", ns)
	time.Sleep(2 * time.Second) // two leases
	if !held() {
		t.Fatal("the address was removed while the helper renewed")
	}
	if err := c.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guard to remove the address of the stopped agent", func() bool { return !held() })
	// Added back while the agent is still stopped (a start that was half
	// way): the guard removes it again (Repeat).
	run("addr", "add", "192.0.2.10/24", "dev", "plvfd0")
	waitFor(t, "the guard to remove the address again", func() bool { return !held() })
}

// With a keep test answering true (noQuorumPolicy freeze/ignore) a guard
// ignores deadlines: only the agent's death fires it. The answer is asked
// at Start, at Renewed and at Recheck, which tells the guards at once.
func TestKeepIgnoresDeadline(t *testing.T) {
	l := &lease{}
	l.set(time.Now().Add(time.Hour))
	f := NewFeed(FeedOptions{Deadline: l.get})
	var keep atomic.Bool
	f.SetKeepFunc(keep.Load)
	cfg, p := marker(t)
	g, err := f.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	// The policy changes, then the lease ends without another renewal:
	// Recheck alone must have disarmed the guard.
	keep.Store(true)
	f.Recheck()
	l.set(time.Now().Add(-time.Second))
	time.Sleep(time.Second)
	if fired(p) != 0 {
		t.Fatal("a kept guard fired after its deadline")
	}
	// Armed again by Recheck: the (expired) deadline counts at once.
	keep.Store(false)
	f.Recheck()
	waitFor(t, "the re-armed guard to fire", func() bool { return fired(p) == 1 })
	// A guard started while kept has no deadline either.
	keep.Store(true)
	cfg2, p2 := marker(t)
	g2, err := f.Start(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if fired(p2) != 0 {
		t.Fatal("a guard started while kept fired at an expired deadline")
	}
	g2.Fire()
	if fired(p2) != 1 {
		t.Fatal("EOF did not fire a kept guard")
	}
}
