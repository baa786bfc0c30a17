package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/spec"
)

const (
	opToken   = "op-token"
	roToken   = "ro-token"
	joinToken = "join-secret"
)

type call struct {
	Method string
	Body   string
	Author string
	Args   []any
}

// fakeBackend records calls; fail, when set, decides the error of a method.
type fakeBackend struct {
	mu    sync.Mutex
	calls []call
	fail  func(method string) error
}

func (f *fakeBackend) record(method string, body []byte, author string, args ...any) error {
	f.mu.Lock()
	f.calls = append(f.calls, call{Method: method, Body: string(body), Author: author, Args: args})
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return fail(method)
	}
	return nil
}

func (f *fakeBackend) setFail(fn func(method string) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func (f *fakeBackend) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeBackend) Status(ctx context.Context) (*api.Status, error) {
	return &api.Status{}, f.record("Status", nil, "")
}
func (f *fakeBackend) ApplySpec(ctx context.Context, y []byte, dry bool, comment, author string) (*api.ApplyResult, error) {
	return &api.ApplyResult{DryRun: dry, Version: 7}, f.record("ApplySpec", y, author, dry, comment)
}
func (f *fakeBackend) GetSpec(ctx context.Context, v int) (*api.SpecDocument, error) {
	return &api.SpecDocument{}, f.record("GetSpec", nil, "", v)
}
func (f *fakeBackend) DiffSpec(ctx context.Context, y []byte) (*api.Diff, error) {
	return &api.Diff{}, f.record("DiffSpec", y, "")
}
func (f *fakeBackend) History(ctx context.Context) ([]api.SpecVersion, error) {
	return nil, f.record("History", nil, "")
}
func (f *fakeBackend) Rollback(ctx context.Context, v int, author string) (*api.ApplyResult, error) {
	return &api.ApplyResult{Version: v}, f.record("Rollback", nil, author, v)
}
func (f *fakeBackend) Nodes(ctx context.Context) ([]api.Node, error) {
	return []api.Node{}, f.record("Nodes", nil, "")
}
func (f *fakeBackend) NodeAction(ctx context.Context, node, action, author string) error {
	return f.record("NodeAction", nil, author, node, action)
}
func (f *fakeBackend) RemoveNode(ctx context.Context, node, author string) error {
	return f.record("RemoveNode", nil, author, node)
}
func (f *fakeBackend) Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error) {
	return []api.Event{}, f.record("Events", nil, "", after, wait)
}
func (f *fakeBackend) Cleanup(ctx context.Context, resource, node, author string) error {
	return f.record("Cleanup", nil, author, resource, node)
}
func (f *fakeBackend) TokenRole(token string) string {
	switch token {
	case opToken:
		return RoleOperator
	case roToken:
		return RoleReadOnly
	case "not-replayed-yet":
		return RoleNotReady
	}
	return ""
}
func (f *fakeBackend) Renew(ctx context.Context, r api.Renew) (api.RenewAck, error) {
	return api.RenewAck{OK: true}, f.record("Renew", nil, "", r.Node)
}
func (f *fakeBackend) Assignments(ctx context.Context, node string, after uint64, wait time.Duration) (api.Assignments, error) {
	return api.Assignments{}, f.record("Assignments", nil, "", node, after, wait)
}
func (f *fakeBackend) Failure(ctx context.Context, fl api.Failure) error {
	return f.record("Failure", nil, "", fl.Resource)
}
func (f *fakeBackend) Hello(ctx context.Context, h api.Hello) (api.Welcome, error) {
	return api.Welcome{Cluster: h.Cluster}, f.record("Hello", nil, "", h.Node)
}

func newServer(b Backend) *Server { return New(b, joinToken, nil) }

// do sends one request through the handler; token "" sends none.
func do(t testing.TB, h http.Handler, method, target, token, body string, hdr ...string) (*httptest.ResponseRecorder, api.Error) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e api.Error
	if rec.Code != http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: status %d with a non-JSON body %q", method, target, rec.Code, rec.Body.String())
		}
		if e.Status != rec.Code {
			t.Fatalf("%s %s: body status %d != %d", method, target, e.Status, rec.Code)
		}
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, target, ct)
	}
	return rec, e
}

func TestAuth(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	cases := []struct {
		name, method, target, token string
		hdr                         []string
		want                        int
	}{
		{"no token", "GET", "/v1/status", "", nil, 401},
		{"not bearer", "GET", "/v1/status", "", []string{"Authorization", "Basic " + opToken}, 401},
		{"empty bearer", "GET", "/v1/status", "", []string{"Authorization", "Bearer "}, 401},
		{"unknown token", "GET", "/v1/status", "nope", nil, 401},
		{"token hashes not replayed yet", "GET", "/v1/status", "not-replayed-yet", nil, 503},
		{"read-only reads", "GET", "/v1/status", roToken, nil, 200},
		{"read-only diff", "POST", "/v1/spec/diff", roToken, nil, 200},
		{"read-only write", "POST", "/v1/spec", roToken, nil, 403},
		{"read-only node action", "POST", "/v1/nodes/n1/standby", roToken, nil, 403},
		{"read-only remove", "DELETE", "/v1/nodes/n1", roToken, nil, 403},
		{"read-only cleanup", "POST", "/v1/resources/r/cleanup", roToken, nil, 403},
		{"read-only rollback", "POST", "/v1/spec/rollback", roToken, nil, 403},
		{"operator write", "POST", "/v1/spec", opToken, nil, 200},
		{"operator node action", "POST", "/v1/nodes/n1/standby", opToken, nil, 200},
		{"join token is an operator", "POST", "/v1/nodes/n1/standby", joinToken, nil, 200},
		{"internal without join token", "POST", "/v1/internal/renew", "", nil, 401},
		{"internal with operator bearer", "POST", "/v1/internal/renew", opToken, nil, 401},
		{"internal with wrong join token", "POST", "/v1/internal/renew", "", []string{"X-Paceline-Join", "guess"}, 401},
		{"internal with join token", "POST", "/v1/internal/renew", "", []string{"X-Paceline-Join", joinToken}, 200},
		{"internal assignments", "GET", "/v1/internal/assignments?node=n1", "", []string{"X-Paceline-Join", joinToken}, 200},
		{"internal failure", "POST", "/v1/internal/failure", "", []string{"X-Paceline-Join", joinToken}, 200},
		{"internal hello", "POST", "/v1/internal/hello", "", []string{"X-Paceline-Join", joinToken}, 200},
		{"internal hello without", "POST", "/v1/internal/hello", roToken, nil, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.Calls())
			body := ""
			if strings.Contains(tc.target, "internal/") && tc.method == "POST" || strings.HasSuffix(tc.target, "rollback") {
				body = "{}"
			}
			rec, _ := do(t, s, tc.method, tc.target, tc.token, body, tc.hdr...)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			called := len(b.Calls()) > before
			if called != (tc.want == 200) {
				t.Fatalf("backend called=%v with status %d", called, rec.Code)
			}
		})
	}
}

func TestEmptyJoinTokenStillNeedsBearer(t *testing.T) {
	// An agent without a join token refuses empty bearer tokens rather than
	// treating "" as the join token.
	s := New(&fakeBackend{}, "", nil)
	if rec, _ := do(t, s, "GET", "/v1/status", "", "", "Authorization", "Bearer "); rec.Code != 401 {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestStatusOf(t *testing.T) {
	specErr := &spec.Error{Errors: []spec.FieldError{{Line: 3, Path: "resources[0].class", Msg: "class is required"}}}
	cases := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", errs.ErrBadRequest), 400},
		{specErr, 400},
		{fmt.Errorf("apply: %w", specErr), 400},
		{fmt.Errorf("x: %w", errs.ErrUnauthorized), 401},
		{fmt.Errorf("x: %w", errs.ErrForbidden), 403},
		{fmt.Errorf("x: %w", errs.ErrNotFound), 404},
		{fmt.Errorf("x: %w", errs.ErrConflict), 409},
		{errs.ErrNotLeader, 421},
		{&errs.NotLeader{Leader: "n1", LeaderAPI: "n1:7480"}, 421},
		{fmt.Errorf("wrapped: %w", &errs.NotLeader{}), 421},
		{fmt.Errorf("x: %w", errs.ErrNoQuorum), 503},
		{fmt.Errorf("x: %w", errs.ErrUnavailable), 503},
		{fmt.Errorf("propose: %w", context.DeadlineExceeded), 503},
		{errors.Join(errors.New("other"), errs.ErrConflict), 409},
		{errors.New("disk on fire"), 500},
	}
	for _, tc := range cases {
		if got := StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestErrorBodies(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	specErr := &spec.Error{Errors: []spec.FieldError{{Line: 3, Path: "resources[0].class", Msg: "class is required"}, {Path: "cluster.name", Msg: "bad"}}}
	for _, tc := range []struct {
		err     error
		code    int
		details []string
		leader  string
	}{
		{fmt.Errorf("parse: %w", specErr), 400, []string{"line 3: resources[0].class: class is required", "cluster.name: bad"}, ""},
		{fmt.Errorf("%w: node n9", errs.ErrNotFound), 404, nil, ""},
		{&errs.NotLeader{}, 421, nil, ""},
		{errors.New("boom"), 500, nil, ""},
	} {
		b.setFail(func(string) error { return tc.err })
		rec, e := do(t, s, "POST", "/v1/spec", opToken, "spec")
		if rec.Code != tc.code || e.Leader != tc.leader {
			t.Errorf("%v: status %d leader %q", tc.err, rec.Code, e.Leader)
		}
		if tc.details != nil {
			if e.Message != "the spec was refused; nothing changed" || strings.Join(e.Details, "|") != strings.Join(tc.details, "|") {
				t.Errorf("spec error body %+v", e)
			}
		} else if e.Message != tc.err.Error() {
			t.Errorf("message %q, want %q", e.Message, tc.err.Error())
		}
	}
}

func TestRequestsReachTheBackend(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	do(t, s, "POST", "/v1/spec?dryRun=1&comment=bump+workers", opToken, "apiVersion: paceline/v1\n")
	do(t, s, "POST", "/v1/spec/rollback", opToken, `{"version": 4}`)
	do(t, s, "GET", "/v1/events?after=12&wait=30s", roToken, "")
	do(t, s, "POST", "/v1/resources/keystone/cleanup?node=ctl2", opToken, "")
	do(t, s, "GET", "/v1/internal/assignments?node=ctl1&after=5&wait=1m", "", "", "X-Paceline-Join", joinToken)
	got := b.Calls()
	if len(got) != 5 {
		t.Fatalf("calls %+v", got)
	}
	if c := got[0]; c.Body != "apiVersion: paceline/v1\n" || c.Args[0] != true || c.Args[1] != "bump workers" || !strings.HasPrefix(c.Author, "operator@") {
		t.Errorf("apply call %+v", c)
	}
	if c := got[1]; c.Args[0] != 4 {
		t.Errorf("rollback call %+v", c)
	}
	if c := got[2]; c.Args[0] != uint64(12) || c.Args[1] != 30*time.Second {
		t.Errorf("events call %+v", c)
	}
	if c := got[3]; c.Args[0] != "keystone" || c.Args[1] != "ctl2" {
		t.Errorf("cleanup call %+v", c)
	}
	if c := got[4]; c.Args[0] != "ctl1" || c.Args[1] != uint64(5) || c.Args[2] != time.Minute {
		t.Errorf("assignments call %+v", c)
	}
}

func TestBadInputIs400(t *testing.T) {
	b := &fakeBackend{}
	s := newServer(b)
	join := []string{"X-Paceline-Join", joinToken}
	big := strings.Repeat("x", maxBody+1)
	for _, tc := range []struct {
		method, target, token, body string
		hdr                         []string
	}{
		{"GET", "/v1/spec?version=abc", roToken, "", nil},
		{"GET", "/v1/spec?version=-1", roToken, "", nil},
		{"GET", "/v1/spec?version=99999999999999999999999", roToken, "", nil},
		{"GET", "/v1/events?after=-1", roToken, "", nil},
		{"GET", "/v1/events?after=1.5", roToken, "", nil},
		{"GET", "/v1/events?wait=forever", roToken, "", nil},
		{"GET", "/v1/events?wait=-1s", roToken, "", nil},
		{"GET", "/v1/events?wait=6m", roToken, "", nil},
		{"GET", "/v1/internal/assignments?after=x", "", "", join},
		{"GET", "/v1/internal/assignments?wait=1h", "", "", join},
		{"POST", "/v1/spec/rollback", opToken, "{", nil},
		{"POST", "/v1/spec/rollback", opToken, `{"version": "4"}`, nil},
		{"POST", "/v1/spec/rollback", opToken, `{"version": 4, "force": true}`, nil},
		{"POST", "/v1/spec/rollback", opToken, "", nil},
		{"POST", "/v1/internal/renew", "", `{"node": 1}`, join},
		{"POST", "/v1/internal/failure", "", `[]`, join},
		{"POST", "/v1/internal/hello", "", `{"nope": 1}`, join},
		{"POST", "/v1/spec", opToken, big, nil},
	} {
		rec, e := do(t, s, tc.method, tc.target, tc.token, tc.body, tc.hdr...)
		if rec.Code != 400 {
			t.Errorf("%s %s %.30q: status %d, want 400 (%s)", tc.method, tc.target, tc.body, rec.Code, e.Message)
		}
	}
	if c := b.Calls(); len(c) != 0 {
		t.Fatalf("backend called with bad input: %+v", c)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	s := newServer(&fakeBackend{})
	for _, target := range []string{"/", "/v2/status", "/v1/nope"} {
		rec, e := do(t, s, "GET", target, opToken, "")
		if rec.Code != 404 || !strings.Contains(e.Message, "no such endpoint") {
			t.Errorf("%s: %d %+v", target, rec.Code, e)
		}
	}
	if rec, _ := do(t, s, "PUT", "/v1/status", opToken, ""); rec.Code != 404 && rec.Code != 405 {
		t.Errorf("PUT /v1/status: %d", rec.Code)
	}
}

// cluster is a follower and a leader, each a real HTTP server.
type cluster struct {
	leaderB, followerB *fakeBackend
	leader, follower   *httptest.Server
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{leaderB: &fakeBackend{}, followerB: &fakeBackend{}}
	c.leader = httptest.NewServer(newServer(c.leaderB))
	t.Cleanup(c.leader.Close)
	leaderAPI := strings.TrimPrefix(c.leader.URL, "http://")
	c.followerB.fail = func(string) error { return &errs.NotLeader{Leader: "ctl1", LeaderAPI: leaderAPI} }
	c.follower = httptest.NewServer(newServer(c.followerB))
	t.Cleanup(c.follower.Close)
	return c
}

func send(t *testing.T, method, u, token, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Regression: a write refused by a follower as "not the leader" is replayed
// at the leader with its body intact (the body used to be lost because the
// handler had consumed it).
func TestForwardWriteToLeaderKeepsBody(t *testing.T) {
	c := newCluster(t)
	y := "apiVersion: paceline/v1\ncluster: {name: c}\n" + strings.Repeat("# padding\n", 2000)
	code, body := send(t, "POST", c.follower.URL+"/v1/spec?comment=from+follower", opToken, y)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var res api.ApplyResult
	if err := json.Unmarshal(body, &res); err != nil || res.Version != 7 {
		t.Fatalf("answer %s (%v), want the leader's result", body, err)
	}
	fc, lc := c.followerB.Calls(), c.leaderB.Calls()
	if len(fc) != 1 || fc[0].Body != y {
		t.Fatalf("follower calls %+v", fc)
	}
	if len(lc) != 1 || lc[0].Method != "ApplySpec" || lc[0].Body != y || lc[0].Args[1] != "from follower" {
		t.Fatalf("leader got %d calls; first: %.80q", len(lc), lc)
	}

	// A JSON body decoded by the handler is forwarded intact too.
	code, body = send(t, "POST", c.follower.URL+"/v1/spec/rollback", opToken, `{"version": 3}`)
	if code != 200 {
		t.Fatalf("rollback status %d: %s", code, body)
	}
	if lc := c.leaderB.Calls(); len(lc) != 2 || lc[1].Method != "Rollback" || lc[1].Args[0] != 3 {
		t.Fatalf("leader calls %+v", lc)
	}
	// The leader still checks the token: a read-only token is refused there too.
	c.followerB.setFail(func(string) error { return &errs.NotLeader{LeaderAPI: strings.TrimPrefix(c.leader.URL, "http://")} })
	if code, _ := send(t, "POST", c.follower.URL+"/v1/spec", roToken, y); code != 403 {
		t.Fatalf("read-only write via follower: %d", code)
	}
}

func TestForwardNoLoop(t *testing.T) {
	a, b := &fakeBackend{}, &fakeBackend{}
	sa := httptest.NewServer(newServer(a))
	defer sa.Close()
	sb := httptest.NewServer(newServer(b))
	defer sb.Close()
	// Each believes the other is the leader (a stale view during an election).
	a.fail = func(string) error {
		return &errs.NotLeader{Leader: "b", LeaderAPI: strings.TrimPrefix(sb.URL, "http://")}
	}
	b.fail = func(string) error {
		return &errs.NotLeader{Leader: "a", LeaderAPI: strings.TrimPrefix(sa.URL, "http://")}
	}
	code, body := send(t, "POST", sa.URL+"/v1/nodes/n1/standby", opToken, "")
	if code != http.StatusMisdirectedRequest {
		t.Fatalf("status %d: %s", code, body)
	}
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil || e.Leader != strings.TrimPrefix(sa.URL, "http://") {
		t.Fatalf("body %s: want the leader b believes in", body)
	}
	if len(a.Calls()) != 1 || len(b.Calls()) != 1 {
		t.Fatalf("calls a=%d b=%d, want one hop only", len(a.Calls()), len(b.Calls()))
	}
	// A request that already was forwarded is never forwarded again.
	code, _ = send(t, "POST", sa.URL+"/v1/nodes/n1/standby", opToken, "", "X-Paceline-Forwarded", "1")
	if code != http.StatusMisdirectedRequest || len(b.Calls()) != 1 {
		t.Fatalf("forwarded request forwarded again: %d, b calls %d", code, len(b.Calls()))
	}
}

func TestInternalNotForwarded(t *testing.T) {
	c := newCluster(t)
	code, _ := send(t, "POST", c.follower.URL+"/v1/internal/renew", "", `{"node":"n1"}`, "X-Paceline-Join", joinToken)
	if code != http.StatusMisdirectedRequest || len(c.leaderB.Calls()) != 0 {
		t.Fatalf("renew: status %d, leader calls %d", code, len(c.leaderB.Calls()))
	}
}

func TestForwardToDeadLeaderIs503(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	b := &fakeBackend{fail: func(string) error { return &errs.NotLeader{LeaderAPI: addr} }}
	s := httptest.NewServer(newServer(b))
	defer s.Close()
	code, body := send(t, "POST", s.URL+"/v1/spec", opToken, "x")
	if code != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("forwarding to the leader")) {
		t.Fatalf("status %d: %s", code, body)
	}
}

var fuzzPaths = []string{"/v1/status", "/v1/spec", "/v1/spec/diff", "/v1/spec/history", "/v1/spec/rollback", "/v1/nodes",
	"/v1/nodes/n1/standby", "/v1/nodes/n1", "/v1/events", "/v1/resources/r/cleanup", "/v1/internal/renew",
	"/v1/internal/assignments", "/v1/internal/failure", "/v1/internal/hello"}

// FuzzAPIRequest: random methods, paths, queries and bodies never panic the
// handler and never produce a 500 (the fake backend never fails, so every
// error is the input's fault).
func FuzzAPIRequest(f *testing.F) {
	for i, p := range fuzzPaths {
		f.Add(uint8(i), "POST", p+"?version=1&after=2&wait=1s", []byte(`{"version":1}`), uint8(i))
		f.Add(uint8(i), "GET", p, []byte("{"), uint8(i+1))
	}
	f.Add(uint8(0), "DELETE", "/v1/nodes/%zz", []byte{0xff, 0}, uint8(0))
	f.Add(uint8(0), "GET", "/v1/../v1/status", []byte(nil), uint8(2))
	b := &fakeBackend{}
	s := newServer(b)
	f.Fuzz(func(t *testing.T, pathSel uint8, method, rawPath string, body []byte, auth uint8) {
		if !validMethod(method) {
			method = []string{"GET", "POST", "DELETE", "PUT", "HEAD"}[int(auth)%5]
		}
		target := rawPath
		if pathSel%2 == 0 {
			target = fuzzPaths[int(pathSel/2)%len(fuzzPaths)] + rawPath
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{Method: method, URL: u, RequestURI: target, Header: http.Header{}, Host: "x",
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			RemoteAddr: "192.0.2.1:1234"}
		req = req.WithContext(context.Background())
		switch auth % 4 {
		case 0:
			req.Header.Set("Authorization", "Bearer "+opToken)
		case 1:
			req.Header.Set("Authorization", "Bearer "+roToken)
		case 2:
			req.Header.Set("X-Paceline-Join", joinToken)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, target, rec.Code, rec.Body)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}
