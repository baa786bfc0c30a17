package state

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/paceline/paceline/internal/spec"
)

func logEntry(idx uint64, c Command) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: c.Encode()}
}

// snapshotBytes persists the FSM's snapshot through raft's in-memory
// snapshot store and returns what was written.
func snapshotBytes(t fataler, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, f.Index(), 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	f := NewFSM()
	cmds := []Command{
		{Type: CmdInit, Time: t0, ClusterName: "c1", TokenHashes: map[string]string{"h": "operator"}},
		{Type: CmdNodeUpsert, Time: t0, Node: &Node{Name: "n1", Role: RoleControl, APIAddr: "x:1", Labels: map[string]string{"z": "a"}}},
		{Type: CmdNodeOnline, Time: t0, NodeName: "n1", Online: boolp(true)},
		{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a", "b")},
		{Type: CmdPlan, Time: t0, Set: []Assignment{{Resource: "a", Node: "n1"}}},
		{Type: CmdFailure, Time: t0, Resource: "b", NodeName: "n1", Block: true, Reason: "r"},
	}
	for i, c := range cmds {
		res, ok := f.Apply(logEntry(uint64(i+1), c)).(Result)
		if !ok || res.Err != nil {
			t.Fatalf("apply %d: %#v", i, res)
		}
	}
	want := mustJSON(t, f.Copy())
	b := snapshotBytes(t, f)

	g := NewFSM()
	changed := g.Changed()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Restore did not signal Changed")
	}
	if got := mustJSON(t, g.Copy()); got != want {
		t.Fatalf("restored state differs:\nwant %s\n got %s", want, got)
	}
	if g.Index() != uint64(len(cmds)) {
		t.Fatalf("restored index %d", g.Index())
	}
	// The restored state keeps working: maps are usable and replays are no-ops.
	g.Apply(logEntry(3, Command{Type: CmdNodeRemove, Time: t0, NodeName: "n1"}))
	if got := mustJSON(t, g.Copy()); got != want {
		t.Fatal("replay after restore changed the state")
	}
	res := g.Apply(logEntry(7, Command{Type: CmdCleanup, Time: t0, Resource: "b"})).(Result)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	g.Read(func(s *State) {
		if hasKey(s.Blocked, "b") {
			t.Error("cleanup after restore did not unblock")
		}
	})
}

func TestFSMRestoreEmptyMapsAndGarbage(t *testing.T) {
	g := NewFSM()
	if err := g.Restore(io.NopCloser(strings.NewReader(`{"index":9}`))); err != nil {
		t.Fatal(err)
	}
	// fixNil: a snapshot without maps still accepts commands.
	res := g.Apply(logEntry(10, Command{Type: CmdNodeUpsert, Time: t0, Node: &Node{Name: "n1"}})).(Result)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	before := mustJSON(t, g.Copy())
	if err := g.Restore(io.NopCloser(strings.NewReader("{garbage"))); err == nil {
		t.Fatal("garbage snapshot restored")
	}
	if got := mustJSON(t, g.Copy()); got != before {
		t.Fatal("a failed restore changed the state")
	}
}

func TestFSMIgnoresNonCommandEntriesAndSignals(t *testing.T) {
	f := NewFSM()
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogConfiguration}); r != nil {
		t.Fatalf("non-command entry returned %v", r)
	}
	if f.Index() != 0 {
		t.Fatal("non-command entry advanced the index")
	}
	ch := f.Changed()
	f.Apply(logEntry(2, Command{Type: CmdEvent, Time: t0}))
	select {
	case <-ch:
	default:
		t.Fatal("Apply did not close the Changed channel")
	}
	if f.Changed() == ch {
		t.Fatal("Changed channel not replaced")
	}
}

// --- property: determinism ---

var (
	propNodes = []string{"n1", "n2", "n3"}
	propRes   = []string{"a", "b", "c"}
)

func genTime(t *rapid.T, label string) time.Time {
	return t0.Add(time.Duration(rapid.IntRange(0, 1000).Draw(t, label)) * time.Millisecond)
}

func genCommand(t *rapid.T) Command {
	c := Command{Time: genTime(t, "time"), Author: rapid.SampledFrom([]string{"", "ops"}).Draw(t, "author")}
	node := rapid.SampledFrom(append(propNodes, "ghost")).Draw(t, "node")
	r := rapid.SampledFrom(propRes).Draw(t, "res")
	switch rapid.IntRange(0, 10).Draw(t, "kind") {
	case 0:
		c.Type = CmdInit
		c.ClusterName = rapid.SampledFrom([]string{"c1", "c2"}).Draw(t, "cluster")
		c.TokenHashes = map[string]string{rapid.StringMatching(`[a-f0-9]{4}`).Draw(t, "hash"): "operator"}
	case 1:
		c.Type = CmdSetSpec
		names := rapid.SliceOfNDistinct(rapid.SampledFrom(propRes), 0, 3, rapid.ID[string]).Draw(t, "specRes")
		c.Spec = mkSpec(names...)
		for i := range c.Spec.Resources {
			c.Spec.Resources[i].FailureTimeout = spec.Duration(rapid.IntRange(0, 2).Draw(t, "ft")) * spec.Duration(time.Second)
		}
		c.Comment = rapid.SampledFrom([]string{"", "why"}).Draw(t, "comment")
	case 2:
		c.Type = CmdNodeUpsert
		c.Node = &Node{Name: node, Role: RoleControl, APIAddr: node + ":" + rapid.SampledFrom([]string{"1", "2"}).Draw(t, "port"),
			Labels: map[string]string{"zone": rapid.SampledFrom([]string{"a", "b"}).Draw(t, "zone")}}
	case 3:
		c.Type = CmdNodeOnline
		c.NodeName = node
		c.Online = boolp(rapid.Bool().Draw(t, "online"))
	case 4:
		c.Type = CmdNodeAdmin
		c.NodeName = node
		c.Standby = boolp(rapid.Bool().Draw(t, "standby"))
		c.Maintenance = boolp(rapid.Bool().Draw(t, "maint"))
	case 5:
		c.Type = CmdNodeRemove
		c.NodeName = node
	case 6:
		c.Type = CmdPlan
		c.SpecVersion = rapid.IntRange(0, 3).Draw(t, "specVersion")
		for i := rapid.IntRange(0, 3).Draw(t, "nset"); i > 0; i-- {
			c.Set = append(c.Set, Assignment{Resource: rapid.SampledFrom(propRes).Draw(t, "sr"), Slot: rapid.IntRange(0, 1).Draw(t, "slot"),
				Node: rapid.SampledFrom(propNodes).Draw(t, "sn")})
		}
		for i := rapid.IntRange(0, 2).Draw(t, "nunset"); i > 0; i-- {
			c.Unset = append(c.Unset, SlotKey(rapid.SampledFrom(propRes).Draw(t, "ur"), rapid.IntRange(0, 1).Draw(t, "us")))
		}
	case 7:
		c.Type = CmdFailure
		c.NodeName = node
		c.Resource = r
		c.Reason = "boom"
		c.Block = rapid.Bool().Draw(t, "block")
		c.NoCount = rapid.Bool().Draw(t, "nocount")
	case 8:
		c.Type = CmdCleanup
		c.Resource = r
		c.NodeName = rapid.SampledFrom(append(propNodes, "")).Draw(t, "cnode")
	case 9:
		c.Type = CmdEvent
	default:
		c.Type = "bogus"
	}
	if rapid.Bool().Draw(t, "withEvent") {
		c.Events = []Event{{Type: "note", Message: "m", Node: node, Time: genTime(t, "evtime"), DowntimeMS: 5}}
	}
	return c
}

// timesIn lists every timestamp stored in s.
func timesIn(s *State) []time.Time {
	var out []time.Time
	for _, n := range s.Nodes {
		out = append(out, n.Since)
	}
	for _, m := range s.Fails {
		for _, f := range m {
			out = append(out, f.Last)
		}
	}
	for _, h := range s.History {
		out = append(out, h.Time)
	}
	for _, e := range s.Events {
		out = append(out, e.Time)
	}
	return out
}

// TestApplyDeterministic: the same command sequence gives byte-identical
// state, whether applied directly, through the FSM, or through a snapshot
// taken midway and a replay of the whole log (as a restarted node does);
// and every timestamp in the state comes from a command (Apply reads no
// clock).
func TestApplyDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cmds := rapid.SliceOfN(rapid.Custom(genCommand), 1, 60).Draw(t, "cmds")
		cut := rapid.IntRange(0, len(cmds)).Draw(t, "snapshotAt")
		allowed := map[time.Time]bool{}
		for _, c := range cmds {
			allowed[c.Time] = true
			for _, e := range c.Events {
				allowed[e.Time] = true
			}
		}

		a, b := New(), New()
		f := NewFSM()
		var restored *FSM
		for i, c := range cmds {
			idx := uint64(i + 1)
			data := c.Encode()
			ra, rb := a.Apply(idx, data), b.Apply(idx, data)
			if fmt.Sprint(ra) != fmt.Sprint(rb) {
				t.Fatalf("results differ at %d: %v vs %v", idx, ra, rb)
			}
			f.Apply(logEntry(idx, c))
			if i+1 == cut {
				restored = NewFSM()
				if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
					t.Fatal(err)
				}
			}
		}
		if restored == nil {
			restored = NewFSM()
		}
		for i, c := range cmds { // full replay: entries ≤ the snapshot index are no-ops
			restored.Apply(logEntry(uint64(i+1), c))
		}
		ja, jb := mustJSON(t, a), mustJSON(t, b)
		if ja != jb {
			t.Fatalf("two applications differ:\n%s\n%s", ja, jb)
		}
		if jf := mustJSON(t, f.Copy()); jf != ja {
			t.Fatalf("FSM differs from State:\n%s\n%s", ja, jf)
		}
		if jr := mustJSON(t, restored.Copy()); jr != ja {
			t.Fatalf("snapshot at %d + replay differs:\n%s\n%s", cut, ja, jr)
		}
		for _, tm := range timesIn(a) {
			if !allowed[tm] {
				t.Fatalf("state holds time %v that no command carried (Apply read a clock?)", tm)
			}
		}
		checkInvariants(t, a)
	})
}

// checkInvariants are structural facts that hold after any sequence.
func checkInvariants(t *rapid.T, s *State) {
	for k, a := range s.Assignments {
		if k != a.Key() {
			t.Fatalf("assignment under key %q is %+v", k, a)
		}
		if _, ok := s.Nodes[a.Node]; !ok {
			t.Fatalf("assignment %s on unknown node %q", k, a.Node)
		}
		if a.Epoch == 0 || a.Epoch > s.Index {
			t.Fatalf("assignment %s has epoch %d (index %d)", k, a.Epoch, s.Index)
		}
	}
	if len(s.History) > MaxHistory || len(s.Events) > MaxEvents {
		t.Fatalf("history %d events %d over their caps", len(s.History), len(s.Events))
	}
}
