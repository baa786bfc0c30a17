package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func boolp(b bool) *bool { return &b }

func res(name string) spec.Resource {
	return spec.Resource{Name: name, Class: spec.ClassProcess, Params: spec.Params{Command: []string{"sleep", "100"}}}
}

func mkSpec(names ...string) *spec.Spec {
	s := &spec.Spec{APIVersion: spec.APIVersion, Cluster: spec.Cluster{Name: "c1"}}
	for _, n := range names {
		s.Resources = append(s.Resources, res(n))
	}
	return s
}

// apply applies c at idx and fails the test on a rejection.
func apply(t *testing.T, s *State, idx uint64, c Command) Result {
	t.Helper()
	r := s.Apply(idx, c.Encode())
	if r.Err != nil {
		t.Fatalf("apply %s at %d: %v", c.Type, idx, r.Err)
	}
	if r.Index != idx {
		t.Fatalf("result index %d, want %d", r.Index, idx)
	}
	return r
}

// reject applies c at idx, expects ErrRejected and checks that nothing but
// the index changed.
func reject(t *testing.T, s *State, idx uint64, c Command, want string) {
	t.Helper()
	before := s.Copy()
	r := s.Apply(idx, c.Encode())
	if !errors.Is(r.Err, ErrRejected) {
		t.Fatalf("apply %s: err %v, want ErrRejected", c.Type, r.Err)
	}
	if !strings.Contains(r.Err.Error(), want) {
		t.Fatalf("apply %s: err %q does not mention %q", c.Type, r.Err, want)
	}
	after := s.Copy()
	after.Index = before.Index
	if a, b := mustJSON(t, before), mustJSON(t, after); a != b {
		t.Fatalf("rejected %s changed the state:\nbefore %s\nafter  %s", c.Type, a, b)
	}
}

// fataler is what both *testing.T and *rapid.T offer.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustJSON(t fataler, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastEvent(t *testing.T, s *State) Event {
	t.Helper()
	if len(s.Events) == 0 {
		t.Fatal("no events")
	}
	return s.Events[len(s.Events)-1]
}

func addNodes(t *testing.T, s *State, idx uint64, names ...string) uint64 {
	t.Helper()
	for _, n := range names {
		idx++
		apply(t, s, idx, Command{Type: CmdNodeUpsert, Time: t0, Node: &Node{Name: n, Role: RoleControl, APIAddr: n + ":7480"}})
	}
	return idx
}

func TestApplyInit(t *testing.T) {
	s := New()
	apply(t, s, 1, Command{Type: CmdInit, Time: t0, ClusterName: "c1", TokenHashes: map[string]string{"h1": "operator"}})
	if s.ClusterName != "c1" || s.TokenHashes["h1"] != "operator" || s.Index != 1 {
		t.Fatalf("after init: name %q tokens %v index %d", s.ClusterName, s.TokenHashes, s.Index)
	}
	if e := lastEvent(t, s); e.Type != "cluster" || !e.Time.Equal(t0) || e.Index != 1 {
		t.Fatalf("init event %+v", e)
	}
	// The same name again is accepted but does not replace the token hashes.
	apply(t, s, 2, Command{Type: CmdInit, Time: t0, ClusterName: "c1", TokenHashes: map[string]string{"h2": "operator"}})
	if !reflect.DeepEqual(s.TokenHashes, map[string]string{"h1": "operator"}) {
		t.Fatalf("token hashes replaced by a second init: %v", s.TokenHashes)
	}
	reject(t, s, 3, Command{Type: CmdInit, Time: t0, ClusterName: "other"}, `already named "c1"`)
}

func TestApplySetSpec(t *testing.T) {
	s := New()
	sp := mkSpec("a", "b")
	r := apply(t, s, 5, Command{Type: CmdSetSpec, Time: t0, Spec: sp, Author: "alice", Comment: "first"})
	if r.Version != 1 || s.SpecVersion != 1 {
		t.Fatalf("version %d/%d, want 1", r.Version, s.SpecVersion)
	}
	if len(s.History) != 1 || s.History[0].Version != 1 || s.History[0].Index != 5 || s.History[0].Author != "alice" || s.History[0].Comment != "first" {
		t.Fatalf("history %+v", s.History)
	}
	if s.NodeChanged("any-node") != 5 {
		t.Fatalf("a spec change must concern every node: NodeChanged=%d", s.NodeChanged("any-node"))
	}
	// The stored spec is a copy: the proposer's value can change afterwards.
	sp.Resources[0].Name = "mutated"
	if s.Spec.Resources[0].Name != "a" {
		t.Fatal("state aliases the command's spec")
	}
	if e := lastEvent(t, s); e.Type != "spec" || !strings.Contains(e.Message, "spec version 1 applied: first") {
		t.Fatalf("event %+v", e)
	}

	reject(t, s, 6, Command{Type: CmdSetSpec, Time: t0}, "without a spec")
	bad := mkSpec("a")
	bad.Resources[0].Class = ""
	reject(t, s, 7, Command{Type: CmdSetSpec, Time: t0, Spec: bad}, "class")
	if s.SpecVersion != 1 {
		t.Fatalf("rejected specs bumped the version to %d", s.SpecVersion)
	}
	r = apply(t, s, 8, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a")})
	if r.Version != 2 {
		t.Fatalf("version %d, want 2", r.Version)
	}
}

func TestSetSpecHistoryCap(t *testing.T) {
	s := New()
	n := MaxHistory + 7
	for i := 1; i <= n; i++ {
		apply(t, s, uint64(i), Command{Type: CmdSetSpec, Time: t0.Add(time.Duration(i)), Spec: mkSpec(fmt.Sprintf("r%d", i))})
	}
	if len(s.History) != MaxHistory {
		t.Fatalf("history has %d versions, want %d", len(s.History), MaxHistory)
	}
	if first, last := s.History[0].Version, s.History[MaxHistory-1].Version; first != n-MaxHistory+1 || last != n {
		t.Fatalf("history keeps versions %d..%d, want %d..%d", first, last, n-MaxHistory+1, n)
	}
	var got spec.Spec
	if err := json.Unmarshal(s.History[MaxHistory-1].Spec, &got); err != nil || got.Resources[0].Name != fmt.Sprintf("r%d", n) {
		t.Fatalf("last history entry does not hold the last spec: %v %+v", err, got)
	}
}

func TestSetSpecDropsFailsOfRemovedResources(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("keep", "gone")})
	for _, r := range []string{"keep", "gone"} {
		idx++
		apply(t, s, idx, Command{Type: CmdFailure, Time: t0, Resource: r, NodeName: "n1", Reason: "x", Block: true})
	}
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("keep")})
	if s.FailCount("keep", "n1") != 1 || s.Blocked["keep"] != "x" {
		t.Fatalf("fail count/block of a kept resource lost: fails %v blocked %v", s.Fails, s.Blocked)
	}
	if _, ok := s.Fails["gone"]; ok {
		t.Fatalf("fail counts of a removed resource kept: %v", s.Fails)
	}
	if hasKey(s.Blocked, "gone") {
		t.Fatalf("block of a removed resource kept: %v", s.Blocked)
	}
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func TestApplyNodeUpsert(t *testing.T) {
	s := New()
	apply(t, s, 1, Command{Type: CmdNodeUpsert, Time: t0, Node: &Node{Name: "n1", Role: RoleControl, APIAddr: "a:1", RaftAddr: "a:2", Labels: map[string]string{"zone": "a"}}})
	n := s.Nodes["n1"]
	if n == nil || n.Role != RoleControl || n.APIAddr != "a:1" || n.RaftAddr != "a:2" || n.Labels["zone"] != "a" || n.Online || !n.Since.Equal(t0) {
		t.Fatalf("node %+v", n)
	}
	if e := lastEvent(t, s); e.Type != "node-joined" || e.Node != "n1" {
		t.Fatalf("event %+v", e)
	}
	apply(t, s, 2, Command{Type: CmdNodeOnline, Time: t0, NodeName: "n1", Online: boolp(true)})
	events := len(s.Events)
	// An update changes addresses and labels but keeps liveness and Since.
	apply(t, s, 3, Command{Type: CmdNodeUpsert, Time: t0.Add(time.Hour), Node: &Node{Name: "n1", Role: RoleRemote, APIAddr: "b:1"}})
	n = s.Nodes["n1"]
	if n.Role != RoleRemote || n.APIAddr != "b:1" || n.RaftAddr != "" || n.Labels != nil || !n.Online || !n.Since.Equal(t0) {
		t.Fatalf("updated node %+v", n)
	}
	if len(s.Events) != events {
		t.Fatal("an update of a known node logged a join")
	}
	reject(t, s, 4, Command{Type: CmdNodeUpsert, Time: t0}, "without a node")
	reject(t, s, 5, Command{Type: CmdNodeUpsert, Time: t0, Node: &Node{}}, "without a node")
}

func TestApplyNodeOnline(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	t1 := t0.Add(time.Minute)
	apply(t, s, idx+1, Command{Type: CmdNodeOnline, Time: t1, NodeName: "n1", Online: boolp(true)})
	if n := s.Nodes["n1"]; !n.Online || !n.Since.Equal(t1) {
		t.Fatalf("node %+v", n)
	}
	if e := lastEvent(t, s); e.Type != "node-online" {
		t.Fatalf("event %+v", e)
	}
	// No change, no event, Since kept.
	events := len(s.Events)
	apply(t, s, idx+2, Command{Type: CmdNodeOnline, Time: t1.Add(time.Minute), NodeName: "n1", Online: boolp(true)})
	if len(s.Events) != events || !s.Nodes["n1"].Since.Equal(t1) {
		t.Fatal("a repeated online changed Since or logged an event")
	}
	t2 := t1.Add(time.Hour)
	apply(t, s, idx+3, Command{Type: CmdNodeOnline, Time: t2, NodeName: "n1", Online: boolp(false), Reason: "lease expired"})
	if n := s.Nodes["n1"]; n.Online || !n.Since.Equal(t2) {
		t.Fatalf("node %+v", n)
	}
	if e := lastEvent(t, s); e.Type != "node-offline" || !strings.Contains(e.Message, "lease expired") {
		t.Fatalf("event %+v", e)
	}
	reject(t, s, idx+4, Command{Type: CmdNodeOnline, Time: t0, NodeName: "nope", Online: boolp(true)}, `unknown node "nope"`)
	reject(t, s, idx+5, Command{Type: CmdNodeOnline, Time: t0, NodeName: "n1"}, "n1")
}

func TestApplyNodeAdmin(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	apply(t, s, idx+1, Command{Type: CmdNodeAdmin, Time: t0, NodeName: "n1", Standby: boolp(true), Author: "bob"})
	if n := s.Nodes["n1"]; !n.Standby || n.Maintenance {
		t.Fatalf("node %+v", n)
	}
	if e := lastEvent(t, s); e.Type != "node-standby" || !strings.Contains(e.Message, "by bob") {
		t.Fatalf("event %+v", e)
	}
	apply(t, s, idx+2, Command{Type: CmdNodeAdmin, Time: t0, NodeName: "n1", Maintenance: boolp(true)})
	if n := s.Nodes["n1"]; !n.Standby || !n.Maintenance {
		t.Fatalf("standby must be left alone when only maintenance is set: %+v", n)
	}
	if e := lastEvent(t, s); e.Type != "node-maintenance" || !strings.Contains(e.Message, "by unknown") {
		t.Fatalf("event %+v", e)
	}
	apply(t, s, idx+3, Command{Type: CmdNodeAdmin, Time: t0, NodeName: "n1", Standby: boolp(false), Maintenance: boolp(false)})
	if n := s.Nodes["n1"]; n.Standby || n.Maintenance {
		t.Fatalf("node %+v", n)
	}
	reject(t, s, idx+4, Command{Type: CmdNodeAdmin, Time: t0, NodeName: "nope", Standby: boolp(true)}, "unknown node")
}

func TestApplyNodeRemove(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1", "n2")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a", "b")})
	idx++
	apply(t, s, idx, Command{Type: CmdPlan, Time: t0, Set: []Assignment{{Resource: "a", Node: "n1"}, {Resource: "b", Node: "n2"}}})
	idx++
	apply(t, s, idx, Command{Type: CmdFailure, Time: t0, Resource: "a", NodeName: "n1"})
	idx++
	apply(t, s, idx, Command{Type: CmdFailure, Time: t0, Resource: "a", NodeName: "n2"})
	idx++
	apply(t, s, idx, Command{Type: CmdNodeRemove, Time: t0, NodeName: "n1", Author: "ops"})
	if _, ok := s.Nodes["n1"]; ok {
		t.Fatal("node kept")
	}
	if got := s.SortedAssignments(); len(got) != 1 || got[0].Node != "n2" {
		t.Fatalf("assignments after remove: %+v", got)
	}
	if _, ok := s.NodeVersion["n1"]; ok {
		t.Fatal("node version kept")
	}
	if s.FailCount("a", "n1") != 0 || s.FailCount("a", "n2") != 1 {
		t.Fatalf("fails after remove: %+v", s.Fails)
	}
	if e := lastEvent(t, s); e.Type != "node-removed" || e.Node != "n1" {
		t.Fatalf("event %+v", e)
	}
	reject(t, s, idx+1, Command{Type: CmdNodeRemove, Time: t0, NodeName: "n1"}, "unknown node")
}

func TestApplyPlan(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1", "n2")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a", "b")})
	idx++
	planIdx := idx
	apply(t, s, planIdx, Command{Type: CmdPlan, Time: t0, SpecVersion: 1,
		Set: []Assignment{{Resource: "a", Node: "n1", Epoch: 999}, {Resource: "b", Slot: 2, Node: "n2"}}})
	a, b := s.Assignments["a:0"], s.Assignments["b:2"]
	if a == nil || b == nil {
		t.Fatalf("assignments %v", s.SortedAssignments())
	}
	if a.Epoch != planIdx || b.Epoch != planIdx {
		t.Fatalf("epochs %d/%d, want the raft index %d (the proposer's value is ignored)", a.Epoch, b.Epoch, planIdx)
	}
	if a.Node != "n1" || b.Node != "n2" || b.Slot != 2 {
		t.Fatalf("assignments %+v %+v", a, b)
	}
	if s.NodeChanged("n1") != planIdx || s.NodeChanged("n2") != planIdx {
		t.Fatal("node versions not bumped")
	}

	// A move bumps the epoch and both nodes' versions; an unset removes.
	idx++
	apply(t, s, idx, Command{Type: CmdPlan, Time: t0, Set: []Assignment{{Resource: "a", Node: "n2"}}, Unset: []string{"b:2"}})
	if got := s.Assignments["a:0"]; got.Node != "n2" || got.Epoch != idx {
		t.Fatalf("moved assignment %+v", got)
	}
	if _, ok := s.Assignments["b:2"]; ok {
		t.Fatal("unset kept the slot")
	}
	if s.NodeChanged("n1") != idx || s.NodeChanged("n2") != idx {
		t.Fatalf("node versions after move: n1 %d n2 %d, want %d", s.NodeChanged("n1"), s.NodeChanged("n2"), idx)
	}
	// Unsetting an unknown key is harmless.
	idx++
	apply(t, s, idx, Command{Type: CmdPlan, Time: t0, Unset: []string{"nope:0"}})

	// Stale spec version: rejected whole.
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a", "b")})
	reject(t, s, idx+1, Command{Type: CmdPlan, Time: t0, SpecVersion: 1, Set: []Assignment{{Resource: "b", Node: "n1"}}}, "spec version 1, current is 2")
	// Unknown node: the whole plan is rejected, not only the bad item.
	reject(t, s, idx+2, Command{Type: CmdPlan, Time: t0, SpecVersion: 2,
		Set:   []Assignment{{Resource: "b", Node: "n1"}, {Resource: "a", Node: "ghost"}},
		Unset: []string{"a:0"}, Events: []Event{{Type: "x", Message: "y"}}}, `unknown node "ghost"`)
	if s.Assignments["a:0"] == nil || s.Assignments["b:0"] != nil {
		t.Fatalf("a rejected plan changed assignments: %+v", s.SortedAssignments())
	}
}

func TestApplyFailure(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	apply(t, s, idx+1, Command{Type: CmdFailure, Time: t1, Resource: "a", NodeName: "n1", Reason: "exit 1"})
	apply(t, s, idx+2, Command{Type: CmdFailure, Time: t2, Resource: "a", NodeName: "n1", Reason: "exit 2"})
	f := s.Fails["a"]["n1"]
	if f.Count != 2 || !f.Last.Equal(t2) || f.Reason != "exit 2" {
		t.Fatalf("fail %+v", f)
	}
	if hasKey(s.Blocked, "a") {
		t.Fatal("blocked without Block")
	}
	if e := lastEvent(t, s); e.Type != "resource-failed" || e.Resource != "a" || e.Node != "n1" || !strings.Contains(e.Message, "exit 2") {
		t.Fatalf("event %+v", e)
	}
	// NoCount records the event only.
	events := len(s.Events)
	apply(t, s, idx+3, Command{Type: CmdFailure, Time: t2, Resource: "a", NodeName: "n1", Reason: "ignored", NoCount: true})
	if s.FailCount("a", "n1") != 2 || len(s.Events) != events+1 {
		t.Fatalf("noCount: count %d, events %d->%d", s.FailCount("a", "n1"), events, len(s.Events))
	}
	// Block marks the resource blocked with the reason.
	apply(t, s, idx+4, Command{Type: CmdFailure, Time: t2, Resource: "b", NodeName: "n1", Reason: "bad config", Block: true})
	if s.Blocked["b"] != "bad config" || s.FailCount("b", "n1") != 1 {
		t.Fatalf("block: blocked %v count %d", s.Blocked, s.FailCount("b", "n1"))
	}
	reject(t, s, idx+5, Command{Type: CmdFailure, Time: t0, NodeName: "n1"}, "without resource or node")
	reject(t, s, idx+6, Command{Type: CmdFailure, Time: t0, Resource: "a"}, "without resource or node")
}

func TestApplyCleanup(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1", "n2")
	for _, n := range []string{"n1", "n2"} {
		idx++
		apply(t, s, idx, Command{Type: CmdFailure, Time: t0, Resource: "a", NodeName: n, Block: true})
	}
	idx++
	apply(t, s, idx, Command{Type: CmdCleanup, Time: t0, Resource: "a", NodeName: "n1"})
	if s.FailCount("a", "n1") != 0 || s.FailCount("a", "n2") != 1 || hasKey(s.Blocked, "a") {
		t.Fatalf("cleanup n1: fails %+v blocked %v", s.Fails, s.Blocked)
	}
	idx++
	apply(t, s, idx, Command{Type: CmdCleanup, Time: t0, Resource: "a", NodeName: "n2", Author: "carol"})
	if _, ok := s.Fails["a"]; ok {
		t.Fatal("empty fail map kept")
	}
	if e := lastEvent(t, s); e.Type != "cleanup" || !strings.Contains(e.Message, "on n2") || !strings.Contains(e.Message, "by carol") {
		t.Fatalf("event %+v", e)
	}
	for _, n := range []string{"n1", "n2"} {
		idx++
		apply(t, s, idx, Command{Type: CmdFailure, Time: t0, Resource: "a", NodeName: n})
	}
	idx++
	apply(t, s, idx, Command{Type: CmdCleanup, Time: t0, Resource: "a"})
	if _, ok := s.Fails["a"]; ok {
		t.Fatal("cleanup without a node kept fail counts")
	}
	if e := lastEvent(t, s); !strings.Contains(e.Message, "all nodes") {
		t.Fatalf("event %+v", e)
	}
}

func TestApplyEventAndCommandEvents(t *testing.T) {
	s := New()
	t1 := t0.Add(time.Minute)
	apply(t, s, 1, Command{Type: CmdEvent, Time: t0, Events: []Event{
		{Type: "resource-recovered", Node: "n1", Resource: "a", Message: "m1", DowntimeMS: 250},
		{Type: "note", Message: "m2", Time: t1},
	}})
	if len(s.Events) != 2 {
		t.Fatalf("events %+v", s.Events)
	}
	e0, e1 := s.Events[0], s.Events[1]
	if e0.Seq != 1 || e1.Seq != 2 || e0.Index != 1 || e0.DowntimeMS != 250 || e0.Node != "n1" || e0.Resource != "a" {
		t.Fatalf("events %+v", s.Events)
	}
	if !e0.Time.Equal(t0) || !e1.Time.Equal(t1) {
		t.Fatalf("event times %v %v: a zero time takes the command's, a set one is kept", e0.Time, e1.Time)
	}
}

func TestApplyUnknownAndUndecodable(t *testing.T) {
	s := New()
	reject(t, s, 1, Command{Type: "frobnicate", Time: t0, Events: []Event{{Type: "x"}}}, `unknown command type "frobnicate"`)
	if len(s.Events) != 0 {
		t.Fatal("events of a rejected command were logged")
	}
	before := mustJSON(t, s)
	if r := s.Apply(2, []byte("{not json")); !errors.Is(r.Err, ErrRejected) {
		t.Fatalf("undecodable entry: %v", r.Err)
	}
	if mustJSON(t, s) != before {
		t.Fatal("undecodable entry changed the state")
	}
}

func TestReplayIsNoOp(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a")})
	idx++
	apply(t, s, idx, Command{Type: CmdPlan, Time: t0, Set: []Assignment{{Resource: "a", Node: "n1"}}})
	before := mustJSON(t, s)
	replays := []Command{
		{Type: CmdSetSpec, Time: t0, Spec: mkSpec("b")},
		{Type: CmdPlan, Time: t0, Unset: []string{"a:0"}},
		{Type: CmdNodeRemove, Time: t0, NodeName: "n1"},
		{Type: CmdFailure, Time: t0, Resource: "a", NodeName: "n1"},
		{Type: "garbage"},
	}
	for _, c := range replays {
		for _, i := range []uint64{1, idx} {
			r := s.Apply(i, c.Encode())
			if r.Err != nil || r.Version != 0 {
				t.Fatalf("replay of %s at %d: %+v", c.Type, i, r)
			}
		}
	}
	if got := mustJSON(t, s); got != before {
		t.Fatalf("replay changed the state:\n%s\n%s", before, got)
	}
}

func TestEventsRingCap(t *testing.T) {
	s := New()
	n := MaxEvents + 25
	for i := 1; i <= n; i++ {
		apply(t, s, uint64(i), Command{Type: CmdEvent, Time: t0, Events: []Event{{Type: "note", Message: fmt.Sprint(i)}}})
	}
	if len(s.Events) != MaxEvents {
		t.Fatalf("%d events kept, want %d", len(s.Events), MaxEvents)
	}
	if s.Events[0].Seq != 26 || s.Events[MaxEvents-1].Seq != uint64(n) || s.EventSeq != uint64(n) {
		t.Fatalf("ring keeps seq %d..%d (EventSeq %d), want 26..%d", s.Events[0].Seq, s.Events[MaxEvents-1].Seq, s.EventSeq, n)
	}
	for i := 1; i < len(s.Events); i++ {
		if s.Events[i].Seq != s.Events[i-1].Seq+1 {
			t.Fatalf("gap in seq at %d", i)
		}
	}
	if got := s.EventsAfter(uint64(n-3), 0); len(got) != 3 || got[0].Seq != uint64(n-2) {
		t.Fatalf("EventsAfter: %+v", got)
	}
	if got := s.EventsAfter(0, 2); len(got) != 2 || got[1].Seq != uint64(n) {
		t.Fatalf("EventsAfter with a limit returns the newest: %+v", got)
	}
}

func TestExpireFailures(t *testing.T) {
	s := New()
	if got := s.ExpireFailures(t0); got != nil {
		t.Fatalf("no spec: %v", got)
	}
	sp := mkSpec("a", "b", "never")
	sp.Resources[0].FailureTimeout = spec.Duration(10 * time.Minute)
	sp.Resources[1].FailureTimeout = spec.Duration(time.Minute)
	idx := addNodes(t, s, 0, "n1", "n2")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: sp})
	for _, f := range []struct {
		r, n string
		at   time.Time
	}{{"a", "n2", t0}, {"a", "n1", t0}, {"b", "n1", t0.Add(5 * time.Minute)}, {"never", "n1", t0}} {
		idx++
		apply(t, s, idx, Command{Type: CmdFailure, Time: f.at, Resource: f.r, NodeName: f.n})
	}
	// a expires strictly after its timeout; b (1m after t0+5m) long before.
	got := s.ExpireFailures(t0.Add(10 * time.Minute))
	want := [][2]string{{"b", "n1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("at exactly a's timeout: expired %v, want %v", got, want)
	}
	got = s.ExpireFailures(t0.Add(10*time.Minute + time.Nanosecond))
	want = [][2]string{{"a", "n1"}, {"a", "n2"}, {"b", "n1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("expired %v, want %v (sorted; a resource without failureTimeout never expires)", got, want)
	}
	if got := s.ExpireFailures(t0.Add(5*time.Minute + time.Minute)); len(got) != 0 {
		t.Fatalf("expired too early: %v", got)
	}
}

func TestCopyIsDeep(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "n1")
	apply(t, s, idx+1, Command{Type: CmdFailure, Time: t0, Resource: "a", NodeName: "n1"})
	c := s.Copy()
	c.Nodes["n1"].APIAddr = "changed"
	c.Fails["a"]["n1"].Count = 42
	if s.Nodes["n1"].APIAddr == "changed" || s.FailCount("a", "n1") != 1 {
		t.Fatal("Copy shares memory with the original")
	}
}
