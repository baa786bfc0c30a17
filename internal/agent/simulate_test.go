package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

func TestSuggest(t *testing.T) {
	names := []string{"db", "web", "worker"}
	for in, want := range map[string]string{"wbe": "web", "WEB": "web", "dbb": "db", "wroker": "worker", "zzzzzz": ""} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitSlot(t *testing.T) {
	for in, want := range map[string]struct {
		r string
		n int
	}{"web:0": {"web", 0}, "a:b:12": {"a:b", 12}, "plain": {"plain", 0}} {
		if r, n := splitSlot(in); r != want.r || n != want.n {
			t.Errorf("splitSlot(%q) = %q, %d", in, r, n)
		}
	}
}

func TestSpecConstraintLines(t *testing.T) {
	inf, hundred := spec.Infinity, spec.Score(100)
	sp := &spec.Spec{Constraints: &spec.Constraints{
		Location:   []spec.Location{{Resource: "web", Node: "n1", Score: &hundred}, {Resource: "db", Node: "n2", Score: &inf}, {Resource: "web", Rules: []spec.Rule{{Score: 5}}}},
		Colocation: []spec.Colocation{{Resource: "web", With: "db", Score: inf}, {Sets: []spec.Set{{Resources: []string{"x", "web"}}}, Score: -inf}},
		Order:      []spec.Order{{First: "db", Then: "web"}, {First: "a", Then: "b"}},
	}}
	got := strings.Join(specConstraintLines(sp, map[string]bool{"web": true}), "\n")
	for _, want := range []string{
		"constraints.location[0]: web on n1: 100",
		"constraints.location[2]: web by 1 rule(s)",
		"constraints.colocation[0]: web with db: +INFINITY",
		"constraints.colocation[1]: sets [x web]: -INFINITY",
		"constraints.order[0]: start db, then start web (mandatory)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "constraints.location[1]") || strings.Contains(got, "constraints.order[1]") {
		t.Errorf("lines about other resources:\n%s", got)
	}
}

func TestToAPIConstraintRemaining(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := toAPIConstraint(state.OperatorConstraint{ID: "cli-prefer-web", Kind: state.KindMove, Resource: "web", Node: "n2", Created: t0, Expires: t0.Add(10 * time.Minute)}, t0.Add(time.Minute))
	if c.Score != "+INFINITY" || c.Expires == nil || c.RemainingMS != (9*time.Minute).Milliseconds() {
		t.Fatalf("%+v", c)
	}
	c = toAPIConstraint(state.OperatorConstraint{Kind: state.KindBan, Expires: t0}, t0.Add(time.Second))
	if c.Score != "-INFINITY" || c.RemainingMS != 0 {
		t.Fatalf("expired: %+v", c)
	}
	if c := toAPIConstraint(state.OperatorConstraint{Kind: state.KindBan}, t0); c.Expires != nil {
		t.Fatalf("no lifetime: %+v", c)
	}
}
