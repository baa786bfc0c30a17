package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agent"
	"github.com/paceline/paceline/internal/state"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	MaybeHelper()
	goleak.VerifyTestMain(m,
		// Process spawning happens on one goroutine that lives as long as the program.
		goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop"),
		// memberlist's Shutdown does not wait for a probe in flight; the
		// probe ends at its own timeout.
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// setup starts n nodes, applies the test spec and waits until it runs.
func setup(t *testing.T, opts Options) (*Cluster, *Node) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, opts)
	t.Cleanup(c.CheckNoOverlap)
	c.Apply(c.Spec(""), "initial")
	h := c.WaitPlaced(len(c.Nodes))
	c.Logf("setup done: holder %s", h.Name)
	return c, h
}

// lines returns the helper log lines mentioning node.
func startsOn(c *Cluster, node string) int {
	k := 0
	for _, l := range c.ExclusiveLog() {
		if strings.HasPrefix(l, "START node="+node+" ") {
			k++
		}
	}
	return k
}

func TestLeaderCrash(t *testing.T) {
	c, _ := setup(t, Options{N: 3, TLS: true})
	old := c.WaitLeader()
	c.Logf("crashing the leader %s", old.Name)
	old.Crash()
	if !errors.Is(old.RunErr(), agent.ErrCrashed) {
		t.Fatalf("Run returned %v after Crash", old.RunErr())
	}
	nl := c.WaitLeader(c.Others(old)...)
	if nl == old {
		t.Fatal("crashed node still leads")
	}
	h := c.WaitPlaced(2)
	c.CheckNoOverlap()
	c.Logf("new leader %s, holder %s; restarting %s", nl.Name, h.Name, old.Name)
	old.Start()
	c.WaitReady(old)
	c.WaitPlaced(3)
	c.CheckNoOverlap()
}

func TestHolderCrash(t *testing.T) {
	c, h := setup(t, Options{N: 5})
	c.Logf("crashing the holder %s (leader: %v)", h.Name, c.Leader() == h)
	h.Crash()
	nh := c.WaitPlaced(4)
	if nh == h {
		t.Fatal("the exclusive resource did not move")
	}
	// The recovery is recorded against the lost node.
	l := c.WaitLeader(c.Others(h)...)
	c.Wait("a resource-recover event", func() bool {
		for _, e := range l.Events() {
			if e.Type == "resource-recover" && e.Resource == Exclusive && strings.Contains(e.Message, h.Name) {
				return true
			}
		}
		return false
	})
	c.CheckNoOverlap()
}

func TestMinorityPartitionHolder(t *testing.T) {
	c, h := setup(t, Options{N: 5})
	others := c.Others(h)
	c.Logf("isolating the holder %s (leader: %v)", h.Name, c.Leader() == h)
	c.Net.Partition(Addrs(h), Addrs(others...))

	// The isolated holder self-fences; the majority restarts the resource.
	c.Wait("the isolated holder to stop "+Exclusive, func() bool { return h.RunningHere(Exclusive) == 0 })
	var nh *Node
	c.Wait(Exclusive+" running on the majority", func() bool {
		r := c.Running(Exclusive)
		if len(r) == 1 && r[0] != h {
			nh = r[0]
			return true
		}
		return false
	})
	c.CheckNoOverlap()

	// Heal: the old holder rejoins and does not resurrect its old assignment (I4).
	startsBefore := startsOn(c, h.Name)
	l := c.WaitLeader(others...)
	var idx uint64
	l.Agent().FSM().Read(func(s *state.State) { idx = s.Index })
	c.Logf("healing; new holder %s, leader %s at index %d", nh.Name, l.Name, idx)
	c.Net.Heal()
	c.Wait(h.Name+" back with its clone and up to date", func() bool {
		a := h.Agent()
		return a != nil && a.Executor().Applied() >= idx && h.RunningHere(Clone) == 1
	})
	c.WaitPlaced(5)
	if got := c.Running(Exclusive); len(got) != 1 || got[0] != nh {
		t.Fatalf("%s moved after heal: now on %v, was on %s", Exclusive, names(got), nh.Name)
	}
	if s := startsOn(c, h.Name); s != startsBefore {
		t.Fatalf("%s restarted %s after rejoining (I4): %d starts before heal, %d after", h.Name, Exclusive, startsBefore, s)
	}
	c.CheckNoOverlap()
}

func TestMajoritySideKeepsWorking(t *testing.T) {
	c, _ := setup(t, Options{N: 3})
	old := c.WaitLeader()
	maj := c.Others(old)
	c.Logf("isolating the leader %s", old.Name)
	c.Net.Partition(Addrs(old), Addrs(maj...))
	c.WaitLeader(maj...)

	// Writes succeed on the majority.
	v2 := c.Apply(c.Spec("  - name: extra\n    class: process\n    mode: clone\n    replicas: 1\n    params: {command: [sleep, \"3600\"]}\n"), "on the majority", maj...)
	c.Wait("extra running on the majority", func() bool { return len(c.Running("extra")) == 1 && c.Running("extra")[0] != old })

	// Writes on the minority fail with an error that says why.
	cl := c.Client(old)
	c.Wait("a write on the minority to fail clearly", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cl.Apply(ctx, []byte(c.Spec("")), false, "on the minority")
		var ae *api.Error
		if !errors.As(err, &ae) {
			t.Logf("minority write: %v", err)
			return false
		}
		if ae.Status != http.StatusMisdirectedRequest && ae.Status != http.StatusServiceUnavailable {
			t.Fatalf("minority write: unexpected status %d: %s", ae.Status, ae.Message)
		}
		msg := strings.ToLower(ae.Message)
		if !strings.Contains(msg, "leader") && !strings.Contains(msg, "quorum") {
			t.Fatalf("minority write error does not say why: %s", ae.Message)
		}
		t.Logf("minority write refused: %d %s", ae.Status, ae.Message)
		return true
	})

	c.Net.Heal()
	c.Wait(old.Name+" to catch up with version "+fmt.Sprint(v2), func() bool {
		a := old.Agent()
		if a == nil {
			return false
		}
		var v int
		a.FSM().Read(func(s *state.State) { v = s.SpecVersion })
		return v == v2
	})
	c.WaitPlaced(3)
	c.CheckNoOverlap()
}

func TestFullRestart(t *testing.T) {
	c, _ := setup(t, Options{N: 3})
	var want []int
	for i := 1; i <= 3; i++ {
		extra := fmt.Sprintf("  - name: extra%d\n    class: process\n    mode: clone\n    replicas: 1\n    params: {command: [sleep, \"3600\"]}\n", i)
		want = append(want, c.Apply(c.Spec(extra), fmt.Sprintf("change %d", i)))
	}
	c.Logf("versions %v acknowledged; crashing every node", want)
	for _, n := range c.Nodes {
		n.Crash()
	}
	for _, n := range c.Nodes {
		n.Start()
	}
	c.WaitReady(c.Nodes...)
	c.WaitLeader()
	cl := c.Client()
	var hist []api.SpecVersion
	c.Wait("the spec history", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		hist, err = cl.History(ctx)
		return err == nil
	})
	got := map[int]string{}
	current := 0
	for _, h := range hist {
		got[h.Version] = h.Comment
		if h.Current {
			current = h.Version
		}
	}
	for i, v := range want {
		if got[v] != fmt.Sprintf("change %d", i+1) {
			t.Errorf("version %d lost or changed after a full restart (I2): history %+v", v, hist)
		}
	}
	if current != want[len(want)-1] {
		t.Errorf("current version %d, want %d", current, want[len(want)-1])
	}
	c.WaitPlaced(3)
	c.Wait("extra3 running", func() bool { return len(c.Running("extra3")) == 1 })
	c.CheckNoOverlap()
}

func TestGracefulHolderShutdown(t *testing.T) {
	c, h := setup(t, Options{N: 3})
	if c.Leader() == h {
		t.Logf("the holder %s leads; stopping it covers leadership transfer too", h.Name)
	}
	c.Logf("stopping the holder %s gracefully", h.Name)
	h.Stop()
	if err := h.RunErr(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	nh := c.WaitPlaced(2)
	l := c.WaitLeader(c.Others(h)...)
	// It failed over because the node said it left, not because its lease ran out.
	var evs []string
	c.Wait(h.Name+" offline", func() bool {
		evs = evs[:0]
		for _, e := range l.Events() {
			evs = append(evs, e.Type+": "+e.Message)
			if e.Type == "node-offline" && e.Node == h.Name {
				return true
			}
		}
		return false
	})
	for _, e := range l.Events() {
		if e.Type == "node-offline" && e.Node == h.Name && !strings.Contains(e.Message, "shut down cleanly") {
			t.Errorf("graceful shutdown of %s waited for lease expiry: %q", h.Name, e.Message)
		}
		if e.Type == "resource-recover" && e.Resource == Exclusive && strings.Contains(e.Message, "lease expired") {
			t.Errorf("graceful shutdown handled as a loss: %q", e.Message)
		}
	}
	c.Logf("moved to %s", nh.Name)
	c.CheckNoOverlap()
}

func names(ns []*Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// TestOverlapDetector checks the I1 detector itself: a second exclusive
// helper started while the first is alive reports an overlap.
func TestOverlapDetector(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{T: t, Dir: dir}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), HelperEnv+"=exclusive", "CT_LOCK="+filepath.Join(dir, "excl.lock"), "CT_LOG="+c.exclLog(), "PACELINE_NODE=x")
	first := exec.Command(exe)
	first.Env = env
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill(); _ = first.Wait() }()
	deadline := time.Now().Add(Patience)
	for len(c.ExclusiveLog()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("first helper did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := exec.Command(exe)
	second.Env = env
	if err := second.Run(); err == nil {
		t.Fatal("second helper ran while the first held the lock")
	}
	log := c.ExclusiveLog()
	if len(log) != 2 || !strings.HasPrefix(log[0], "START") || !strings.HasPrefix(log[1], "OVERLAP") {
		t.Fatalf("log: %q", log)
	}
}
