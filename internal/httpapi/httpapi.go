// Package httpapi serves paceline's versioned JSON API (/v1) over HTTP or
// HTTPS: bearer-token auth (operator and read-only roles), agent-to-agent
// endpoints under /v1/internal (join token), forwarding of writes to the
// raft leader, and the one place where errors become status codes.
package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/spec"
)

// Roles of bearer tokens.
const (
	RoleOperator = "operator"
	RoleReadOnly = "readonly"
	// RoleNotReady is what TokenRole returns while the node cannot tell
	// yet (it has not replayed the token hashes): a 503, so clients
	// retry, possibly at another node.
	RoleNotReady = "not-ready"
)

// Backend is what the API serves; the agent implements it.
type Backend interface {
	Status(ctx context.Context) (*api.Status, error)
	ApplySpec(ctx context.Context, yaml []byte, dryRun bool, comment, author string) (*api.ApplyResult, error)
	GetSpec(ctx context.Context, version int) (*api.SpecDocument, error)
	DiffSpec(ctx context.Context, yaml []byte) (*api.Diff, error)
	History(ctx context.Context) ([]api.SpecVersion, error)
	Rollback(ctx context.Context, version int, author string) (*api.ApplyResult, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	NodeAction(ctx context.Context, node, action, author string) error
	RemoveNode(ctx context.Context, node, author string) error
	Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error)
	Cleanup(ctx context.Context, resource, node, author string) error
	// Operator commands on resources (paceline resource ..., simulate).
	Resources(ctx context.Context) (*api.ResourceList, error)
	Resource(ctx context.Context, name string) (*api.ResourceDetail, error)
	FailCounts(ctx context.Context, resource, node string) ([]api.FailInfo, error)
	Move(ctx context.Context, resource string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error)
	Ban(ctx context.Context, resource string, req api.ConstraintRequest, author string) (*api.ConstraintResult, error)
	Clear(ctx context.Context, resource, node, author string) (*api.ConstraintResult, error)
	Restart(ctx context.Context, resource, author string) (*api.ResourceChange, error)
	// SetResource runs enable, disable, manage or unmanage.
	SetResource(ctx context.Context, resource, action, author string) (*api.ResourceChange, error)
	Simulate(ctx context.Context, req api.SimulateRequest) (*api.Simulation, error)
	// TokenRole returns the role of a bearer token, or "" if unknown.
	TokenRole(token string) string

	Renew(ctx context.Context, r api.Renew) (api.RenewAck, error)
	Assignments(ctx context.Context, node string, after uint64, wait time.Duration) (api.Assignments, error)
	Failure(ctx context.Context, f api.Failure) error
	Hello(ctx context.Context, h api.Hello) (api.Welcome, error)
}

// DiscoveryBackend is implemented by backends that serve discovery
// (the agent does): the leader's reports for followers, and the
// /v1/discovery/ handler (internal/discovery.Handler). A backend without
// it answers 404 on those routes.
type DiscoveryBackend interface {
	// ActiveReports answers GET /v1/internal/reports (leader only: else a
	// not-leader error).
	ActiveReports(ctx context.Context) (api.ActiveReports, error)
	// DiscoveryHandler serves GET /v1/discovery/...
	DiscoveryHandler() http.Handler
}

// Server is the HTTP handler.
type Server struct {
	b         Backend
	joinToken string
	log       *slog.Logger
	mux       *http.ServeMux
	// proxy transport used to forward writes to the leader
	Transport http.RoundTripper
	Scheme    string
}

// New builds the handler.
func New(b Backend, joinToken string, log *slog.Logger) *Server {
	s := &Server{b: b, joinToken: joinToken, log: log, mux: http.NewServeMux(), Transport: http.DefaultTransport, Scheme: "http"}
	pub := func(role string, h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
		return s.wrap(role, h)
	}
	s.mux.HandleFunc("GET /v1/status", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) { return b.Status(r.Context()) }))
	s.mux.HandleFunc("GET /v1/spec", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		v, err := intParam(r, "version")
		if err != nil {
			return nil, err
		}
		return b.GetSpec(r.Context(), v)
	}))
	s.mux.HandleFunc("POST /v1/spec", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		dry := r.URL.Query().Get("dryRun") == "1"
		return b.ApplySpec(r.Context(), body, dry, r.URL.Query().Get("comment"), author(r))
	}))
	s.mux.HandleFunc("POST /v1/spec/diff", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		return b.DiffSpec(r.Context(), body)
	}))
	s.mux.HandleFunc("GET /v1/spec/history", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) { return b.History(r.Context()) }))
	s.mux.HandleFunc("POST /v1/spec/rollback", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req struct {
			Version int `json:"version"`
		}
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Rollback(r.Context(), req.Version, author(r))
	}))
	s.mux.HandleFunc("GET /v1/nodes", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) { return b.Nodes(r.Context()) }))
	s.mux.HandleFunc("POST /v1/nodes/{name}/{action}", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return okBody, b.NodeAction(r.Context(), r.PathValue("name"), r.PathValue("action"), author(r))
	}))
	s.mux.HandleFunc("DELETE /v1/nodes/{name}", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return okBody, b.RemoveNode(r.Context(), r.PathValue("name"), author(r))
	}))
	s.mux.HandleFunc("GET /v1/events", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		after, err := uintParam(r, "after")
		if err != nil {
			return nil, err
		}
		wait, err := durParam(r, "wait")
		if err != nil {
			return nil, err
		}
		return b.Events(r.Context(), after, wait)
	}))
	s.mux.HandleFunc("POST /v1/resources/{name}/cleanup", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return okBody, b.Cleanup(r.Context(), r.PathValue("name"), r.URL.Query().Get("node"), author(r))
	}))
	s.resourceRoutes(b, pub)
	if fb, ok := b.(FenceBackend); ok {
		s.fenceRoutes(fb, pub)
	}

	in := func(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
		return s.wrap("internal", h)
	}
	s.lbRoutes(b, pub, in)
	s.mux.HandleFunc("POST /v1/internal/renew", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.Renew
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Renew(r.Context(), req)
	}))
	s.mux.HandleFunc("GET /v1/internal/assignments", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		after, err := uintParam(r, "after")
		if err != nil {
			return nil, err
		}
		wait, err := durParam(r, "wait")
		if err != nil {
			return nil, err
		}
		return b.Assignments(r.Context(), r.URL.Query().Get("node"), after, wait)
	}))
	s.mux.HandleFunc("POST /v1/internal/failure", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var f api.Failure
		if err := decodeJSON(r, &f); err != nil {
			return nil, err
		}
		return okBody, b.Failure(r.Context(), f)
	}))
	s.mux.HandleFunc("POST /v1/internal/hello", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var h api.Hello
		if err := decodeJSON(r, &h); err != nil {
			return nil, err
		}
		return b.Hello(r.Context(), h)
	}))
	s.mux.HandleFunc("GET /v1/internal/reports", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		db, ok := b.(DiscoveryBackend)
		if !ok {
			return nil, fmt.Errorf("%w: this agent serves no discovery reports", errs.ErrNotFound)
		}
		return db.ActiveReports(r.Context())
	}))
	// Discovery answers come from this node's own view (never forwarded):
	// a read-only or operator token.
	s.mux.HandleFunc("GET /v1/discovery/", func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, RoleReadOnly); err != nil {
			s.writeError(w, r, err)
			return
		}
		db, ok := b.(DiscoveryBackend)
		if !ok {
			s.writeError(w, r, fmt.Errorf("%w: this agent serves no discovery", errs.ErrNotFound))
			return
		}
		db.DiscoveryHandler().ServeHTTP(w, r)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: no such endpoint %s %s (see docs/api.md)", errs.ErrNotFound, r.Method, r.URL.Path))
	})
	return s
}

var okBody = map[string]bool{"ok": true}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type ctxKey struct{}

func author(r *http.Request) string {
	if a, _ := r.Context().Value(ctxKey{}).(string); a != "" {
		return a
	}
	return "api"
}

func (s *Server) wrap(role string, h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, role); err != nil {
			s.writeError(w, r, err)
			return
		}
		if role != "internal" {
			who := "operator"
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				who = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, who+"@"+r.RemoteAddr))
		}
		// Keep the body: a write refused here as "not the leader" is
		// replayed at the leader.
		body, err := readBody(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		reset := func() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		reset()
		out, err := h(w, r)
		if err != nil {
			var nl *errs.NotLeader
			if errors.As(err, &nl) && nl.LeaderAPI != "" && role != "internal" && r.Header.Get("X-Paceline-Forwarded") == "" {
				reset()
				s.forward(w, r, nl.LeaderAPI)
				return
			}
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) authorize(r *http.Request, role string) error {
	if role == "internal" {
		got := r.Header.Get("X-Paceline-Join")
		if s.joinToken != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.joinToken)) != 1 {
			return fmt.Errorf("%w: wrong or missing join token (X-Paceline-Join); check joinToken/joinTokenFile in the agent config", errs.ErrUnauthorized)
		}
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return fmt.Errorf("%w: no bearer token; pass --token, set PACELINE_TOKEN, or use the token file written at bootstrap (DATADIR/operator.token)", errs.ErrUnauthorized)
	}
	got := s.b.TokenRole(tok)
	if got == "" && s.joinToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.joinToken)) == 1 {
		got = RoleOperator // agents forward with the join token
	}
	switch {
	case got == RoleNotReady:
		return fmt.Errorf("%w: this agent has just started and has not replayed the cluster state yet; retry in a moment (or ask another node)", errs.ErrUnavailable)
	case got == "":
		return fmt.Errorf("%w: unknown token", errs.ErrUnauthorized)
	case role == RoleOperator && got != RoleOperator:
		return fmt.Errorf("%w: this is a read-only token; use the operator token for changes", errs.ErrForbidden)
	}
	return nil
}

// forward replays a write at the leader.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, leaderAPI string) {
	target, err := url.Parse(s.Scheme + "://" + leaderAPI)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: bad leader address %q", errs.ErrNoQuorum, leaderAPI))
		return
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = s.Transport
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		s.writeError(w, r, fmt.Errorf("%w: forwarding to the leader at %s failed: %v", errs.ErrNoQuorum, leaderAPI, err))
	}
	r.Header.Set("X-Paceline-Forwarded", "1")
	p.ServeHTTP(w, r)
}

// StatusOf maps an error to an HTTP status: the one place this happens.
func StatusOf(err error) int {
	var se *spec.Error
	switch {
	case errors.As(err, &se), errors.Is(err, errs.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errs.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errs.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, errs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errs.ErrNotLeader):
		return http.StatusMisdirectedRequest
	case errors.Is(err, errs.ErrNoQuorum), errors.Is(err, errs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusOf(err)
	body := api.Error{Status: code, Message: err.Error()}
	var se *spec.Error
	if errors.As(err, &se) {
		body.Message = "the spec was refused; nothing changed"
		for _, fe := range se.Errors {
			body.Details = append(body.Details, fe.Error())
		}
	}
	var nl *errs.NotLeader
	if errors.As(err, &nl) {
		body.Leader = nl.LeaderAPI
	}
	if code >= 500 && s.log != nil {
		s.log.Warn("api error", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

const maxBody = 8 << 20

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", errs.ErrBadRequest, err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", errs.ErrBadRequest, maxBody)
	}
	return b, nil
}

func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON body: %v", errs.ErrBadRequest, err)
	}
	return nil
}

func intParam(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: query parameter %s=%q is not a non-negative integer", errs.ErrBadRequest, name, v)
	}
	return n, nil
}

func uintParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: query parameter %s=%q is not a non-negative integer", errs.ErrBadRequest, name, v)
	}
	return n, nil
}

func durParam(r *http.Request, name string) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > 5*time.Minute {
		return 0, fmt.Errorf("%w: query parameter %s=%q is not a duration up to 5m (e.g. 30s)", errs.ErrBadRequest, name, v)
	}
	return d, nil
}
