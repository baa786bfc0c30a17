package state

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

// opState has nodes n1..n3, resources web and db, and group g of a and b.
func opState(t *testing.T) (*State, uint64) {
	t.Helper()
	s := New()
	idx := addNodes(t, s, 0, "n1", "n2", "n3")
	sp := mkSpec("web", "db", "a", "b")
	sp.Groups = []spec.Group{{Name: "g", Members: []string{"a", "b"}}}
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: sp})
	return s, idx
}

func addC(kind, res, node string, expires time.Time) Command {
	return Command{Type: CmdConstraintAdd, Time: t0, Author: "op", Operator: &OperatorArgs{Constraint: &OperatorConstraint{Kind: kind, Resource: res, Node: node, Expires: expires}}}
}

func ids(cs []OperatorConstraint) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestConstraintAddAndLocations(t *testing.T) {
	s, idx := opState(t)
	idx++
	apply(t, s, idx, addC(KindMove, "web", "n2", t0.Add(10*time.Minute)))
	idx++
	apply(t, s, idx, addC(KindBan, "db", "n1", time.Time{}))
	idx++
	apply(t, s, idx, addC(KindBan, "g", "n3", time.Time{}))
	got := ids(s.OperatorConstraints(t0))
	want := []string{"cli-ban-db-on-n1", "cli-ban-g-on-n3", "cli-prefer-web"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("constraints %v, want %v", got, want)
	}
	c := s.Constraints["cli-prefer-web"]
	if !c.Created.Equal(t0) || c.Author != "op" || !c.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("constraint %+v: created/author/expires not from the command", c)
	}
	locs := s.OperatorLocations(t0)
	if len(locs) != 3 || locs[2].Resource != "web" || locs[2].Node != "n2" || *locs[2].Score != spec.Infinity || *locs[0].Score != -spec.Infinity {
		t.Fatalf("locations %+v", locs)
	}
	if e := lastEvent(t, s); e.Type != "constraint-added" || e.Resource != "g" || !strings.Contains(e.Message, "until cleared") {
		t.Fatalf("event %+v", e)
	}
	// After the lifetime the move is not in force any more, even before
	// the leader removes it.
	if got := ids(s.ConstraintsFor("web", t0.Add(10*time.Minute))); len(got) != 0 {
		t.Fatalf("expired move still in force: %v", got)
	}
	if got := len(s.OperatorLocations(t0.Add(10 * time.Minute))); got != 2 {
		t.Fatalf("%d locations after the move expired, want 2", got)
	}
	// A new move replaces the previous one (one cli-prefer per resource).
	idx++
	apply(t, s, idx, addC(KindMove, "web", "n3", time.Time{}))
	if c := s.Constraints["cli-prefer-web"]; c.Node != "n3" || !c.Expires.IsZero() || len(s.Constraints) != 3 {
		t.Fatalf("move not replaced: %+v (%d constraints)", c, len(s.Constraints))
	}
}

func TestMoveAndBanNeverContradict(t *testing.T) {
	s, idx := opState(t)
	idx++
	apply(t, s, idx, addC(KindBan, "web", "n2", time.Time{}))
	idx++
	apply(t, s, idx, addC(KindMove, "web", "n2", time.Time{}))
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-prefer-web"}) {
		t.Fatalf("a move to n2 must lift the ban on n2: %v", got)
	}
	idx++
	apply(t, s, idx, addC(KindBan, "web", "n2", time.Time{}))
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-web-on-n2"}) {
		t.Fatalf("a ban on n2 must replace the move to n2: %v", got)
	}
	// A ban elsewhere keeps the move.
	idx++
	apply(t, s, idx, addC(KindMove, "web", "n3", time.Time{}))
	idx++
	apply(t, s, idx, addC(KindBan, "web", "n1", time.Time{}))
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-web-on-n1", "cli-ban-web-on-n2", "cli-prefer-web"}) {
		t.Fatalf("constraints %v", got)
	}
}

func TestBanIDCollision(t *testing.T) {
	s := New()
	idx := addNodes(t, s, 0, "c", "b-on-c")
	idx++
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: mkSpec("a-on-b", "a")})
	idx++
	apply(t, s, idx, addC(KindBan, "a-on-b", "c", time.Time{}))
	idx++
	apply(t, s, idx, addC(KindBan, "a", "b-on-c", time.Time{}))
	got := s.OperatorConstraints(time.Time{})
	if len(got) != 2 || got[0].ID != "cli-ban-a-on-b-on-c" || got[1].ID != "cli-ban-a-on-b-on-c+" || got[1].Resource != "a" {
		t.Fatalf("colliding ban IDs: %+v", got)
	}
	// The same ban again replaces its own entry, not the other one.
	idx++
	apply(t, s, idx, addC(KindBan, "a", "b-on-c", t0.Add(time.Hour)))
	if got := s.OperatorConstraints(time.Time{}); len(got) != 2 || got[1].Expires.IsZero() || !got[0].Expires.IsZero() {
		t.Fatalf("after renewing: %+v", got)
	}
}

func TestConstraintAddRejects(t *testing.T) {
	s, idx := opState(t)
	reject(t, s, idx+1, Command{Type: CmdConstraintAdd, Time: t0}, "without a constraint")
	reject(t, s, idx+2, addC("prefer", "web", "n1", time.Time{}), "neither move nor ban")
	reject(t, s, idx+3, addC(KindMove, "nope", "n1", time.Time{}), `no resource or group "nope"`)
	reject(t, s, idx+4, addC(KindMove, "web", "n9", time.Time{}), `unknown node "n9"`)
	reject(t, s, idx+5, addC(KindMove, "web", "n1", t0), "would expire")
	reject(t, s, idx+6, addC(KindMove, "web", "n1", t0.Add(-time.Second)), "would expire")
	// A node declared in the spec but not joined yet may be named.
	sp := s.Spec.Clone()
	sp.Nodes = []spec.NodeSpec{{Name: "later"}}
	apply(t, s, idx+7, Command{Type: CmdSetSpec, Time: t0, Spec: sp})
	apply(t, s, idx+8, addC(KindBan, "web", "later", time.Time{}))
}

func TestConstraintExpiry(t *testing.T) {
	s, idx := opState(t)
	for _, c := range []Command{
		addC(KindMove, "web", "n2", t0.Add(time.Minute)),
		addC(KindBan, "db", "n1", t0.Add(2*time.Minute)),
		addC(KindBan, "db", "n2", time.Time{}),
	} {
		idx++
		apply(t, s, idx, c)
	}
	if got := s.ExpiredConstraints(t0.Add(time.Minute - time.Nanosecond)); got != nil {
		t.Fatalf("expired too early: %v", got)
	}
	if got := s.NextConstraintExpiry(t0); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next expiry %v", got)
	}
	at := t0.Add(time.Minute)
	got := s.ExpiredConstraints(at)
	if !reflect.DeepEqual(got, []string{"cli-prefer-web"}) {
		t.Fatalf("expired at exactly the expiry: %v", got)
	}
	if got := s.NextConstraintExpiry(at); !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("next expiry after the first %v", got)
	}
	// The operator renews the move before the leader's removal commits:
	// the stale expiry leaves the renewed constraint alone.
	idx++
	renew := addC(KindMove, "web", "n3", at.Add(time.Hour))
	renew.Time = at.Add(-time.Second)
	apply(t, s, idx, renew)
	cmd := ExpireConstraintsCommand(got)
	cmd.Time = at
	idx++
	apply(t, s, idx, *cmd)
	if c := s.Constraints["cli-prefer-web"]; c == nil || c.Node != "n3" {
		t.Fatalf("a renewed move was removed by a stale expiry: %+v", c)
	}
	// Later everything with a lifetime goes, by itself; the permanent ban stays.
	late := t0.Add(2 * time.Hour)
	cmd = ExpireConstraintsCommand(s.ExpiredConstraints(late))
	cmd.Time = late
	idx++
	apply(t, s, idx, *cmd)
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-db-on-n2"}) {
		t.Fatalf("after expiry: %v", got)
	}
	if got := s.ExpiredConstraints(late); got != nil {
		t.Fatalf("left behind: %v", got)
	}
	if !s.NextConstraintExpiry(late).IsZero() {
		t.Fatal("next expiry with no lifetime left")
	}
	var expired int
	for _, e := range s.Events {
		if e.Type == "constraint-expired" {
			expired++
			if !e.Time.Equal(at) && !e.Time.Equal(late) {
				t.Fatalf("expiry event time %v is not the command's", e.Time)
			}
		}
	}
	if expired != 2 {
		t.Fatalf("%d constraint-expired events, want 2", expired)
	}
	// An expire command with no IDs removes whatever expired at its time.
	idx++
	apply(t, s, idx, addC(KindBan, "web", "n1", t0.Add(3*time.Hour)))
	idx++
	apply(t, s, idx, Command{Type: CmdConstraintExpire, Time: t0.Add(4 * time.Hour)})
	if len(s.Constraints) != 1 {
		t.Fatalf("constraints %v", ids(s.OperatorConstraints(time.Time{})))
	}
}

func TestConstraintClear(t *testing.T) {
	s, idx := opState(t)
	for _, c := range []Command{addC(KindBan, "web", "n1", time.Time{}), addC(KindBan, "web", "n2", time.Time{}), addC(KindMove, "web", "n3", time.Time{}), addC(KindBan, "db", "n1", time.Time{})} {
		idx++
		apply(t, s, idx, c)
	}
	idx++
	apply(t, s, idx, Command{Type: CmdConstraintRemove, Time: t0, Resource: "web", NodeName: "n1"})
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-db-on-n1", "cli-ban-web-on-n2", "cli-prefer-web"}) {
		t.Fatalf("after clear web --node n1: %v", got)
	}
	idx++
	apply(t, s, idx, Command{Type: CmdConstraintRemove, Time: t0, Resource: "web"})
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-db-on-n1"}) {
		t.Fatalf("after clear web: %v", got)
	}
	reject(t, s, idx+1, Command{Type: CmdConstraintRemove, Time: t0}, "without a resource")
}

func TestConstraintsFollowSpecAndNodes(t *testing.T) {
	s, idx := opState(t)
	for _, c := range []Command{addC(KindBan, "web", "n1", time.Time{}), addC(KindBan, "db", "n2", time.Time{}), addC(KindMove, "g", "n3", time.Time{})} {
		idx++
		apply(t, s, idx, c)
	}
	idx++
	apply(t, s, idx, Command{Type: CmdRestart, Time: t0, Resource: "web"})
	// web leaves the spec: its constraint and generation go with it.
	idx++
	sp := mkSpec("db", "a", "b")
	sp.Groups = s.Spec.Groups
	apply(t, s, idx, Command{Type: CmdSetSpec, Time: t0, Spec: sp})
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-ban-db-on-n2", "cli-prefer-g"}) {
		t.Fatalf("after removing web from the spec: %v", got)
	}
	if _, ok := s.Generations["web"]; ok {
		t.Fatal("restart generation of a removed resource left behind")
	}
	// A removed node takes its constraints along.
	idx++
	apply(t, s, idx, Command{Type: CmdNodeRemove, Time: t0, NodeName: "n2"})
	if got := ids(s.OperatorConstraints(time.Time{})); !reflect.DeepEqual(got, []string{"cli-prefer-g"}) {
		t.Fatalf("after removing n2: %v", got)
	}
}

func TestRestartGeneration(t *testing.T) {
	s, idx := opState(t)
	idx++
	apply(t, s, idx, Command{Type: CmdPlan, Time: t0, Set: []Assignment{{Resource: "web", Node: "n2"}, {Resource: "a", Node: "n3"}, {Resource: "b", Node: "n3"}}})
	if s.Generation("web") != 0 {
		t.Fatal("generation before any restart")
	}
	idx++
	apply(t, s, idx, Command{Type: CmdRestart, Time: t0, Resource: "web", Author: "op"})
	if s.Generation("web") != 1 || s.NodeChanged("n2") != idx {
		t.Fatalf("generation %d, n2 changed at %d (want %d): the node must see the restart", s.Generation("web"), s.NodeChanged("n2"), idx)
	}
	if s.NodeChanged("n1") == idx {
		t.Fatal("a node not running web was woken")
	}
	if e := lastEvent(t, s); e.Type != "resource-restart" || e.Resource != "web" || !strings.Contains(e.Message, "by op") {
		t.Fatalf("event %+v", e)
	}
	idx++
	apply(t, s, idx, Command{Type: CmdRestart, Time: t0, Resource: "g"})
	if s.Generation("a") != 1 || s.Generation("b") != 1 || s.Generation("web") != 1 {
		t.Fatalf("group restart: a=%d b=%d web=%d", s.Generation("a"), s.Generation("b"), s.Generation("web"))
	}
	reject(t, s, idx+1, Command{Type: CmdRestart, Time: t0, Resource: "wbe"}, `no resource or group "wbe"`)
}

func TestResourceSetIsASpecVersion(t *testing.T) {
	s, idx := opState(t)
	v := s.SpecVersion
	idx++
	r := apply(t, s, idx, Command{Type: CmdResourceSet, Time: t0, Author: "alice", Comment: "paceline resource disable web", Resource: "web", Operator: &OperatorArgs{TargetRole: spec.RoleStopped}})
	if r.Version != v+1 || s.SpecVersion != v+1 {
		t.Fatalf("version %d (state %d), want %d", r.Version, s.SpecVersion, v+1)
	}
	h := s.History[len(s.History)-1]
	if h.Author != "alice" || h.Comment != "paceline resource disable web" || h.Index != idx {
		t.Fatalf("history entry %+v", h)
	}
	if s.Spec.Resources[0].TargetRole != spec.RoleStopped {
		t.Fatalf("web targetRole %q", s.Spec.Resources[0].TargetRole)
	}
	idx++
	reject(t, s, idx, Command{Type: CmdResourceSet, Time: t0, Resource: "web", Operator: &OperatorArgs{TargetRole: spec.RoleStopped}}, "nothing to change")
	idx++
	apply(t, s, idx, Command{Type: CmdResourceSet, Time: t0, Resource: "web", Operator: &OperatorArgs{TargetRole: "default"}})
	if s.Spec.Resources[0].TargetRole != "" {
		t.Fatalf("enable leaves targetRole %q; want it removed (default started)", s.Spec.Resources[0].TargetRole)
	}
	f, tr := false, true
	idx++
	apply(t, s, idx, Command{Type: CmdResourceSet, Time: t0, Resource: "g", Operator: &OperatorArgs{Managed: &f}})
	for _, r := range s.Spec.Resources {
		unmanaged := r.Managed != nil && !*r.Managed
		if unmanaged != (r.Name == "a" || r.Name == "b") {
			t.Fatalf("unmanage g: %s managed=%v", r.Name, r.Managed)
		}
	}
	idx++
	apply(t, s, idx, Command{Type: CmdResourceSet, Time: t0, Resource: "g", Operator: &OperatorArgs{Managed: &tr}})
	for _, r := range s.Spec.Resources {
		if r.Managed != nil {
			t.Fatalf("manage g leaves %s managed=%v", r.Name, *r.Managed)
		}
	}
	reject(t, s, idx+1, Command{Type: CmdResourceSet, Time: t0, Resource: "nope", Operator: &OperatorArgs{Managed: &tr}}, "no resource")
	if len(s.History) != 5 {
		t.Fatalf("%d history entries, want 5 (initial + 4 changes)", len(s.History))
	}
}

// TestOperatorCommandsDeterministic applies the same commands to two
// states at different wall-clock moments: everything time-dependent comes
// from the commands, so the states are identical.
func TestOperatorCommandsDeterministic(t *testing.T) {
	run := func() string {
		s, idx := opState(t)
		f := false
		exp := ExpireConstraintsCommand(nil)
		exp.Time = t0.Add(2 * time.Minute)
		for _, c := range []Command{
			addC(KindMove, "web", "n2", t0.Add(time.Minute)),
			addC(KindBan, "db", "n1", time.Time{}),
			{Type: CmdRestart, Time: t0, Resource: "g"},
			{Type: CmdResourceSet, Time: t0, Resource: "db", Operator: &OperatorArgs{Managed: &f}},
			*exp,
			{Type: CmdConstraintRemove, Time: t0, Resource: "db"},
		} {
			idx++
			apply(t, s, idx, c)
		}
		return mustJSON(t, s)
	}
	a := run()
	time.Sleep(2 * time.Millisecond)
	if b := run(); a != b {
		t.Fatalf("same commands, different states:\n%s\n%s", a, b)
	}
}

// TestOperatorApplyReadsNoClock keeps the FSM side of the operator
// commands free of clock reads: every time comes from the command.
func TestOperatorApplyReadsNoClock(t *testing.T) {
	b, err := os.ReadFile("operator.go")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`time\.(Now|Since|Until)\(|rand\.`).Find(b); m != nil {
		t.Fatalf("operator.go calls %s: Apply must take every time from the command", m)
	}
}

func TestOperatorStateSurvivesCopyAndSnapshot(t *testing.T) {
	s, idx := opState(t)
	idx++
	apply(t, s, idx, addC(KindMove, "web", "n2", t0.Add(time.Minute)))
	idx++
	apply(t, s, idx, Command{Type: CmdRestart, Time: t0, Resource: "web"})
	c := s.Copy()
	if mustJSON(t, c) != mustJSON(t, s) || c.Generation("web") != 1 || c.Constraints["cli-prefer-web"] == nil {
		t.Fatal("copy lost operator state")
	}
	c.Constraints["cli-prefer-web"].Node = "changed"
	if s.Constraints["cli-prefer-web"].Node != "n2" {
		t.Fatal("copy shares constraints")
	}
}
