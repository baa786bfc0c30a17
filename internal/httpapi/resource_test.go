package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
)

func init() {
	fuzzPaths = append(fuzzPaths, "/v1/resources", "/v1/resources/r", "/v1/resources/r/move", "/v1/resources/r/ban",
		"/v1/resources/r/clear", "/v1/resources/r/restart", "/v1/resources/r/disable", "/v1/resources/r/failcount", "/v1/simulate")
}

func (f *fakeBackend) Resources(ctx context.Context) (*api.ResourceList, error) {
	return &api.ResourceList{}, f.record("Resources", nil, "")
}
func (f *fakeBackend) Resource(ctx context.Context, name string) (*api.ResourceDetail, error) {
	return &api.ResourceDetail{}, f.record("Resource", nil, "", name)
}
func (f *fakeBackend) FailCounts(ctx context.Context, name, node string) ([]api.FailInfo, error) {
	return []api.FailInfo{}, f.record("FailCounts", nil, "", name, node)
}
func (f *fakeBackend) Move(ctx context.Context, name string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error) {
	return &api.ConstraintResult{}, f.record("Move", nil, author, name, req)
}
func (f *fakeBackend) Ban(ctx context.Context, name string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error) {
	return &api.ConstraintResult{}, f.record("Ban", nil, author, name, req)
}
func (f *fakeBackend) Clear(ctx context.Context, name, node, author string) (*api.ConstraintResult, error) {
	return &api.ConstraintResult{}, f.record("Clear", nil, author, name, node)
}
func (f *fakeBackend) Restart(ctx context.Context, name, author string) (*api.ResourceChange, error) {
	return &api.ResourceChange{}, f.record("Restart", nil, author, name)
}
func (f *fakeBackend) SetResource(ctx context.Context, name, action, author string) (*api.ResourceChange, error) {
	return &api.ResourceChange{Version: 3}, f.record("SetResource", nil, author, name, action)
}
func (f *fakeBackend) Simulate(ctx context.Context, req api.SimulateRequest) (*api.Simulation, error) {
	return &api.Simulation{}, f.record("Simulate", nil, "", req)
}

func TestResourceRoutesAuth(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	for _, tc := range []struct {
		method, target, token string
		want                  int
	}{
		{"GET", "/v1/resources", roToken, 200},
		{"GET", "/v1/resources/web", roToken, 200},
		{"GET", "/v1/resources/web/failcount", roToken, 200},
		{"POST", "/v1/simulate", roToken, 200},
		{"GET", "/v1/resources", "", 401},
		{"POST", "/v1/simulate", "", 401},
		{"POST", "/v1/resources/web/move", roToken, 403},
		{"POST", "/v1/resources/web/ban", roToken, 403},
		{"POST", "/v1/resources/web/clear", roToken, 403},
		{"POST", "/v1/resources/web/restart", roToken, 403},
		{"POST", "/v1/resources/web/disable", roToken, 403},
		{"POST", "/v1/resources/web/unmanage", roToken, 403},
		{"POST", "/v1/resources/web/move", opToken, 200},
		{"POST", "/v1/resources/web/enable", opToken, 200},
	} {
		before := len(b.Calls())
		rec, e := do(t, s, tc.method, tc.target, tc.token, "")
		if rec.Code != tc.want {
			t.Errorf("%s %s (%q): status %d, want %d (%s)", tc.method, tc.target, tc.token, rec.Code, tc.want, e.Message)
		}
		if called := len(b.Calls()) > before; called != (tc.want == 200) {
			t.Errorf("%s %s: backend called=%v with status %d", tc.method, tc.target, called, rec.Code)
		}
	}
}

func TestResourceRequestsReachTheBackend(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	for _, r := range []struct{ method, target, body string }{
		{"POST", "/v1/resources/web/move", `{"node": "n2", "lifetime": "10m"}`},
		{"POST", "/v1/resources/web/move", ""},
		{"POST", "/v1/resources/db/ban", `{"node": "n1", "promoted": true}`},
		{"POST", "/v1/resources/web/clear?node=n2", ""},
		{"POST", "/v1/resources/web/restart", ""},
		{"POST", "/v1/resources/web/disable", ""},
		{"POST", "/v1/resources/web/manage", ""},
		{"GET", "/v1/resources/web/failcount?node=n3", ""},
		{"GET", "/v1/resources/a%2Fb", ""},
		{"POST", "/v1/simulate", `{"nodesDown": ["n1", "n2"], "spec": "apiVersion: paceline/v1\n"}`},
		{"POST", "/v1/resources/web/cleanup", ""},
	} {
		if rec, e := do(t, s, r.method, r.target, opToken, r.body); rec.Code != 200 {
			t.Fatalf("%s %s: %d %s", r.method, r.target, rec.Code, e.Message)
		}
	}
	got := b.Calls()
	want := []string{
		`Move [web {n2 10m false}]`, `Move [web {  false}]`, `Ban [db {n1  true}]`, `Clear [web n2]`, `Restart [web]`,
		`SetResource [web disable]`, `SetResource [web manage]`, `FailCounts [web n3]`, `Resource [a/b]`,
		`Simulate [{[n1 n2] apiVersion: paceline/v1` + "\n" + `}]`, `Cleanup [web ]`,
	}
	if len(got) != len(want) {
		t.Fatalf("calls %+v", got)
	}
	for i, c := range got {
		if s := fmt.Sprintf("%s %v", c.Method, c.Args); s != want[i] {
			t.Errorf("call %d: %q, want %q", i, s, want[i])
		}
		if c.Method != "Resource" && c.Method != "FailCounts" && c.Method != "Simulate" && !strings.HasPrefix(c.Author, "operator@") {
			t.Errorf("call %d %s: author %q", i, c.Method, c.Author)
		}
	}
}

func TestResourceBadInput(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	for _, r := range []struct{ target, body string }{
		{"/v1/resources/web/move", "{"},
		{"/v1/resources/web/move", `{"node": 3}`},
		{"/v1/resources/web/ban", `{"node": "n1", "lifetme": "10m"}`},
		{"/v1/simulate", `{"nodesDown": "n1"}`},
		{"/v1/simulate", `[]`},
	} {
		if rec, e := do(t, s, "POST", r.target, opToken, r.body); rec.Code != 400 || !strings.Contains(e.Message, "invalid JSON body") {
			t.Errorf("POST %s %q: %d %q", r.target, r.body, rec.Code, e.Message)
		}
	}
	// An unknown action names the known ones.
	rec, e := do(t, s, "POST", "/v1/resources/web/frobnicate", opToken, "")
	if rec.Code != 404 || !strings.Contains(e.Message, "enable | disable") {
		t.Errorf("unknown action: %d %q", rec.Code, e.Message)
	}
	if c := b.Calls(); len(c) != 0 {
		t.Fatalf("backend called with bad input: %+v", c)
	}
	// Backend errors keep their status and message.
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: no resource or group \"wbe\" in the spec (did you mean web?)", errs.ErrNotFound), 404},
		{fmt.Errorf("%w: lifetime \"10x\" is not a duration", errs.ErrBadRequest), 400},
		{fmt.Errorf("%w: web is not running anywhere", errs.ErrConflict), 409},
	} {
		b.setFail(func(string) error { return tc.err })
		rec, e := do(t, s, "POST", "/v1/resources/web/move", opToken, `{"lifetime": "10x"}`)
		if rec.Code != tc.code || e.Message != tc.err.Error() {
			t.Errorf("%v: %d %q", tc.err, rec.Code, e.Message)
		}
	}
}

// A move sent to a follower is replayed at the leader with its body.
func TestForwardMoveToLeader(t *testing.T) {
	c := newCluster(t)
	code, body := send(t, "POST", c.follower.URL+"/v1/resources/web/move", opToken, `{"node": "n3", "lifetime": "PT5M"}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var res api.ConstraintResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	lc := c.leaderB.Calls()
	if len(lc) != 1 || lc[0].Method != "Move" || fmt.Sprint(lc[0].Args) != "[web {n3 PT5M false}]" {
		t.Fatalf("leader calls %+v", lc)
	}
	if code, _ := send(t, "POST", c.follower.URL+"/v1/simulate", roToken, `{"nodesDown": ["n1"]}`); code != http.StatusOK {
		t.Fatalf("simulate via follower: %d", code)
	}
}
