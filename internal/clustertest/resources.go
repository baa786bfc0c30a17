package clustertest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/internal/state"
)

// HelperEnv selects the helper role of a test binary (see MaybeHelper).
const HelperEnv = "PACELINE_CLUSTERTEST_HELPER"

// MaybeHelper turns the test binary into a resource process when HelperEnv
// is set; call it first thing in TestMain. The "exclusive" helper is an
// I1 detector made of real processes: it takes an exclusive flock on
// CT_LOCK without waiting, so a second instance that starts while another
// one is still alive — on any node — fails to lock, writes an OVERLAP line
// to CT_LOG and exits. The kernel drops the lock when the holder dies, so
// what is checked is the real lifetime of the processes, not what the
// agents believe. (An overlap shorter than the time between exec and flock
// of the second instance could go unnoticed.)
func MaybeHelper() {
	switch os.Getenv(HelperEnv) {
	case "":
		return
	case "exclusive":
		exclusiveHelper()
	case "http":
		httpHelper()
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(HelperEnv))
		os.Exit(2)
	}
}

func exclusiveHelper() {
	me := fmt.Sprintf("node=%s epoch=%s pid=%d", os.Getenv("PACELINE_NODE"), os.Getenv("PACELINE_EPOCH"), os.Getpid())
	f, err := os.OpenFile(os.Getenv("CT_LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		appendLine(os.Getenv("CT_LOG"), "OVERLAP "+me)
		os.Exit(3)
	}
	appendLine(os.Getenv("CT_LOG"), "START "+me)
	for {
		time.Sleep(time.Hour)
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(f, line)
	f.Close()
}

// Names of the resources of Spec.
const (
	Exclusive = "excl"
	Clone     = "worker"
)

// Spec returns a spec with an exclusive resource (the helper, which must
// be the running test binary) and a clone (sleep) on every node.
func (c *Cluster) Spec(extra string) string {
	exe, err := os.Executable()
	if err != nil {
		c.T.Fatal(err)
	}
	return fmt.Sprintf(`apiVersion: paceline/v1
cluster:
  name: %s
  noQuorumPolicy: stop
resources:
  - name: %s
    class: process
    mode: single
    params:
      command: [%q]
      env: {%s: exclusive, CT_LOCK: %q, CT_LOG: %q}
  - name: %s
    class: process
    mode: clone
    params:
      command: [sleep, "3600"]
%s`, c.Name, Exclusive, exe, HelperEnv, filepath.Join(c.Dir, "excl.lock"), c.exclLog(), Clone, extra)
}

func (c *Cluster) exclLog() string { return filepath.Join(c.Dir, "excl.log") }

// ExclusiveLog returns the helper's START and OVERLAP lines so far.
func (c *Cluster) ExclusiveLog() []string {
	f, err := os.Open(c.exclLog())
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// CheckNoOverlap fails the test if two exclusive processes ever ran at once.
func (c *Cluster) CheckNoOverlap() {
	c.T.Helper()
	for _, l := range c.ExclusiveLog() {
		if strings.HasPrefix(l, "OVERLAP") {
			c.T.Errorf("I1 violated: an exclusive instance started while another was alive: %s\nlog:\n%s", l, strings.Join(c.ExclusiveLog(), "\n"))
			return
		}
	}
}

// Running returns the ready nodes whose executor reports resource res
// (any slot) in state running.
func (c *Cluster) Running(res string) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.RunningHere(res) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// RunningHere counts running instances of res on the node (0 if not ready).
func (n *Node) RunningHere(res string) int {
	a := n.Agent()
	if a == nil {
		return 0
	}
	k := 0
	for _, ai := range a.Executor().Active() {
		if ai.Resource == res && ai.State == "running" {
			k++
		}
	}
	return k
}

// HasInstance reports whether the node's executor has res in any state.
func (n *Node) HasInstance(res string) bool {
	a := n.Agent()
	if a == nil {
		return false
	}
	for _, ai := range a.Executor().Active() {
		if ai.Resource == res {
			return true
		}
	}
	return false
}

// WaitPlaced waits until the exclusive resource runs on exactly one node
// and the clone on the wanted number of nodes; it returns the holder.
func (c *Cluster) WaitPlaced(clones int) *Node {
	c.T.Helper()
	var h *Node
	c.Wait(fmt.Sprintf("%s on one node and %s on %d", Exclusive, Clone, clones), func() bool {
		hs := c.Running(Exclusive)
		if len(hs) != 1 || len(c.Running(Clone)) != clones {
			return false
		}
		h = hs[0]
		return true
	})
	return h
}

// Events returns the leader's event log (the FSM's, read on the node).
func (n *Node) Events() []state.Event {
	a := n.Agent()
	if a == nil {
		return nil
	}
	var out []state.Event
	a.FSM().Read(func(s *state.State) { out = s.EventsAfter(0, 100000) })
	return out
}
