package qwitness_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agent"
	ct "github.com/paceline/paceline/internal/clustertest"
	"github.com/paceline/paceline/internal/state"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	ct.MaybeHelper()
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// twoNodes starts two control nodes and a witness, applies the test spec
// and waits until it runs.
func twoNodes(t *testing.T, tls bool) (*ct.Cluster, *ct.Node) {
	c, h, _ := twoNodesWatched(t, tls)
	return c, h
}

// twoNodesWatched is twoNodes that also returns the count of the witness's
// terms as leader.
func twoNodesWatched(t *testing.T, tls bool) (*ct.Cluster, *ct.Node, *atomic.Int32) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := ct.New(t, ct.Options{N: 2, Witness: true, TLS: tls})
	t.Cleanup(c.CheckNoOverlap)
	led := watchWitness(t, c)
	c.Wait("the witness to be a voter", func() bool {
		w := c.Witness.Witness()
		return w != nil && w.Voter()
	})
	c.Apply(c.Spec(""), "initial")
	h := c.WaitPlaced(2)
	// The helper logs its start after the executor reports it running.
	c.Wait("the start of "+ct.Exclusive+" logged", func() bool { return len(c.ExclusiveLog()) > 0 })
	c.Logf("setup done: holder %s, leader %v", h.Name, c.Leader() == h)
	return c, h, led
}

// watchWitness logs how often the witness won an election (sampled every
// 2 ms until the test ends). It may, by design, when the surviving node's
// log is behind; it must then hand leadership on, which the tests check by
// waiting for a control node to lead.
func watchWitness(t *testing.T, c *ct.Cluster) *atomic.Int32 {
	episodes := new(atomic.Int32)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		was := false
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			w := c.Witness.Witness()
			is := w != nil && w.IsLeader()
			if is && !was {
				episodes.Add(1)
			}
			was = is
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		t.Logf("the witness led %d times", episodes.Load())
	})
	return episodes
}

func other(c *ct.Cluster, n *ct.Node) *ct.Node { return c.Others(n)[0] }

// waitOnly waits until the exclusive resource runs on n and nowhere else.
func waitOnly(c *ct.Cluster, n *ct.Node) {
	c.T.Helper()
	c.Wait(ct.Exclusive+" on "+n.Name+" only", func() bool {
		r := c.Running(ct.Exclusive)
		return len(r) == 1 && r[0] == n
	})
}

// offlineIn waits until node is offline in the state of leader l.
func offlineIn(c *ct.Cluster, l *ct.Node, node string) {
	c.T.Helper()
	c.Wait(node+" offline in "+l.Name+"'s state", func() bool {
		a := l.Agent()
		if a == nil {
			return false
		}
		var off bool
		a.FSM().Read(func(s *state.State) { n := s.Nodes[node]; off = n != nil && !n.Online })
		return off
	})
}

func TestTwoNodesSurviveHolderCrash(t *testing.T) {
	c, h := twoNodes(t, true)
	o := other(c, h)
	c.Logf("crashing the holder %s", h.Name)
	h.Crash()
	waitOnly(c, o)
	if l := c.WaitLeader(o); l != o {
		t.Fatalf("leader is %s, want the survivor %s", l.Name, o.Name)
	}
	// The survivor still commits (it has quorum with the witness).
	c.Apply(c.Spec("# v2\n"), "after the crash", o)
	h.Start()
	c.WaitPlaced(2)
}

func TestTwoNodesSurviveLeaderCrash(t *testing.T) {
	c, _ := twoNodes(t, false)
	l := c.WaitLeader()
	o := other(c, l)
	c.Logf("crashing the leader %s", l.Name)
	l.Crash()
	waitOnly(c, o)
	c.WaitLeader(o)
	c.Apply(c.Spec("# v2\n"), "after the crash", o)
}

func TestWitnessLossChangesNothing(t *testing.T) {
	c, h := twoNodes(t, false)
	starts := len(c.ExclusiveLog())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// API calls are retried while the cluster elects a leader (a loaded
	// machine flaps leaders), as an operator would retry.
	c.Wait("removing a live witness refused", func() bool {
		err := c.Client().RemoveNode(ctx, "w1")
		if err == nil {
			t.Fatal("a live witness was removed")
		}
		if !strings.Contains(err.Error(), "is alive") && !electing(err) {
			t.Fatalf("removing a live witness: %v", err)
		}
		return strings.Contains(err.Error(), "is alive")
	})
	c.Witness.Crash()
	// Both nodes up: a majority (2 of 3) remains; the cluster commits and
	// nothing moves.
	v := c.Apply(c.Spec("# v2\n"), "witness down")
	c.Wait("spec v2 applied on both nodes", func() bool {
		for _, n := range c.Nodes {
			a := n.Agent()
			if a == nil {
				return false
			}
			var sv int
			a.FSM().Read(func(s *state.State) { sv = s.SpecVersion })
			if sv < v {
				return false
			}
		}
		return true
	})
	waitOnly(c, h)
	if got := len(c.ExclusiveLog()); got != starts {
		t.Fatalf("%s restarted while the witness was down: log %v", ct.Exclusive, c.ExclusiveLog())
	}
	st := status(t, c)
	var w *api.Node
	for i := range st.Nodes {
		if st.Nodes[i].Role == "witness" {
			w = &st.Nodes[i]
		}
	}
	if w == nil || !w.Voter || w.Name != "w1" {
		t.Fatalf("status shows no witness voter w1: %+v", st.Nodes)
	}
	// Removed from the raft configuration, the cluster has two voters and
	// says so; a witness that comes back is added again.
	var rmErr error
	c.Wait("the stopped witness removed (once gossip sees it dead)", func() bool {
		rmErr = c.Client().RemoveNode(ctx, "w1")
		if rmErr != nil && !strings.Contains(rmErr.Error(), "is alive") && !electing(rmErr) {
			t.Fatalf("removing the stopped witness: %v", rmErr)
		}
		return rmErr == nil
	})
	c.Wait("the no-witness warning", func() bool {
		return slices.Contains(status(t, c).Warnings, agent.NoWitnessWarning)
	})
	c.Witness.Start()
	c.Wait("the witness a voter again, alive in status, and no warning", func() bool {
		st := status(t, c)
		for _, n := range st.Nodes {
			if n.Role == "witness" && n.Voter && n.Online {
				return len(st.Warnings) == 0
			}
		}
		return false
	})
	waitOnly(c, h)
}

func TestTwoNodePartition(t *testing.T) {
	c, h := twoNodes(t, false)
	a, b := c.Nodes[0], c.Nodes[1]
	l := c.WaitLeader()
	// 1. The two nodes lose each other; the witness reaches both and keeps
	// voting for the leader it follows: the leader's side keeps quorum,
	// the other side cannot renew and self-fences.
	c.Logf("partition %s | %s (leader %s, holder %s)", a.Name, b.Name, l.Name, h.Name)
	c.Net.Partition(ct.Addrs(a), ct.Addrs(b))
	// Exactly one side ends up leading, holding the resource and seeing the
	// other offline. It is the leader's side unless the witness lost that
	// leader too (a loaded machine can delay heartbeats past its timeout):
	// either is correct, two holders never are (the detector checks).
	var win *ct.Node
	c.Wait("one side to lead, hold "+ct.Exclusive+" and see the other offline", func() bool {
		lead := c.Leader()
		if lead == nil {
			return false
		}
		if r := c.Running(ct.Exclusive); len(r) != 1 || r[0] != lead {
			return false
		}
		var off bool
		lead.Agent().FSM().Read(func(s *state.State) { n := s.Nodes[other(c, lead).Name]; off = n != nil && !n.Online })
		win = lead
		return off
	})
	c.Logf("partition resolved: %s leads and holds %s (leader before: %s)", win.Name, ct.Exclusive, l.Name)
	if other(c, win).RunningHere(ct.Exclusive) != 0 {
		t.Fatalf("%s still runs %s on the cut-off side", other(c, win).Name, ct.Exclusive)
	}
	c.Net.Heal()
	c.WaitPlaced(2)
	c.CheckNoOverlap()

	// 2. The holder is cut off from both the other node and the witness:
	// the other side has quorum and takes the resource over.
	h = c.Running(ct.Exclusive)[0]
	o := other(c, h)
	c.Logf("isolating the holder %s from %s and the witness", h.Name, o.Name)
	c.Net.Partition(ct.Addrs(h), append(ct.Addrs(o), c.Witness.IP))
	waitOnly(c, o)
	c.WaitLeader(o)
	c.Net.Heal()
	c.WaitPlaced(2)
	c.CheckNoOverlap()
}

func TestWaitForAll(t *testing.T) {
	c, _ := twoNodes(t, false)
	a, b := c.Nodes[0], c.Nodes[1]
	cl := c.Client(a)

	// Full restart with one node missing: a leads (with the witness's
	// vote) but starts nothing while it waits for b.
	restartWithout := func(missing *ct.Node) {
		for _, n := range c.Nodes {
			n.Stop()
		}
		c.Witness.Stop()
		c.Witness.Start()
		other(c, missing).Start()
		c.Wait("the leader to wait for "+missing.Name, func() bool {
			st, err := statusOf(cl)
			return err == nil && slices.Equal(st.WaitingFor, []string{missing.Name})
		})
	}
	restartWithout(b)
	before := len(c.ExclusiveLog())
	// Nothing starts while it waits: sampled over a bounded period (the
	// gate is a state, shown by status; a start would show in the log).
	for i := 0; i < 20; i++ {
		st, err := statusOf(cl)
		if err != nil && !electing(err) {
			t.Fatalf("status while waiting: %v", err)
		}
		if err == nil && !slices.Equal(st.WaitingFor, []string{b.Name}) {
			t.Fatalf("status while waiting: waitingFor %v, want [%s]", st.WaitingFor, b.Name)
		}
		if len(c.ExclusiveLog()) != before || a.RunningHere(ct.Clone) > 0 {
			t.Fatalf("a resource started while wait-for-all waited: %v", c.ExclusiveLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Start()
	c.WaitPlaced(2)
	if st := status(t, c); len(st.WaitingFor) != 0 {
		t.Fatalf("still waiting for %v with both nodes up", st.WaitingFor)
	}

	// The operator override: b is declared down, a starts everything.
	restartWithout(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// (Retried through a leader election, as an operator would.)
	var cdErr error
	c.Wait("confirm-down accepted", func() bool {
		cdErr = cl.NodeAction(ctx, b.Name, "confirm-down")
		if cdErr != nil {
			c.Logf("confirm-down: %v", cdErr)
		}
		return cdErr == nil
	})
	waitOnly(c, a)
	c.Wait("confirm-down of an unknown node refused", func() bool {
		err := cl.NodeAction(ctx, "nosuch", "confirm-down")
		if err == nil || (!electing(err) && !strings.Contains(err.Error(), "not a control voter")) {
			t.Fatalf("confirm-down of an unknown node: %v", err)
		}
		return strings.Contains(err.Error(), "not a control voter")
	})
	b.Start()
	c.WaitPlaced(2)
}

func status(t *testing.T, c *ct.Cluster) *api.Status {
	t.Helper()
	var st *api.Status
	c.Wait("a status answer", func() bool {
		var err error
		st, err = statusOf(c.Client())
		return err == nil
	})
	return st
}

func statusOf(cl *api.Client) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Status(ctx)
}

// TestNoWitnessWarning: a two-node cluster without a witness (the second
// node joins a single-node cluster) says so in status and as an event.
func TestNoWitnessWarning(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := ct.New(t, ct.Options{N: 1})
	n1 := c.Nodes[0]
	n2 := c.AddNode()
	c.WaitReady(n2)
	c.Wait("the warning in status", func() bool {
		st, err := statusOf(c.Client(n1))
		return err == nil && slices.Contains(st.Warnings, agent.NoWitnessWarning)
	})
	c.Wait("the warning as an event", func() bool {
		for _, e := range n1.Events() {
			if e.Type == "quorum-warning" && e.Message == agent.NoWitnessWarning {
				return true
			}
		}
		return false
	})
}

// TestSurvivorBehindWitness: the surviving node lacks an entry that the
// lost leader committed with the witness's vote. Raft will not elect the
// survivor; the witness must win, bring it up to date and hand leadership
// over, and the committed spec must not be lost.
func TestSurvivorBehindWitness(t *testing.T) {
	c, _, led := twoNodesWatched(t, false)
	l := c.WaitLeader()
	o := other(c, l)
	c.Logf("cutting %s off from %s and the witness", o.Name, l.Name)
	c.Net.Partition(ct.Addrs(o), append(ct.Addrs(l), c.Witness.IP))
	offlineIn(c, l, o.Name)
	v := c.Apply(c.Spec("# committed without "+o.Name+"\n"), "while "+o.Name+" is cut off", l)
	var have int
	o.Agent().FSM().Read(func(s *state.State) { have = s.SpecVersion })
	if have >= v {
		t.Fatalf("%s has spec v%d although cut off", o.Name, have)
	}
	c.Logf("crashing the leader %s, then healing", l.Name)
	l.Crash()
	c.Net.Heal()
	c.WaitLeader(o)
	waitOnly(c, o)
	o.Agent().FSM().Read(func(s *state.State) { have = s.SpecVersion })
	if have < v {
		t.Fatalf("%s leads with spec v%d; v%d was committed (I2)", o.Name, have, v)
	}
	if led.Load() == 0 {
		t.Fatal("the survivor was elected without the witness leading first: it could not have been up to date")
	}
}

// electing reports an API error that says the cluster has no leader at
// the moment (retry).
func electing(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "no leader is known") || strings.Contains(msg, "not the leader") ||
		strings.Contains(msg, "no agent answered") || strings.Contains(msg, "unavailable")
}
