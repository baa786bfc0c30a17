package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
)

type handler = func(w http.ResponseWriter, r *http.Request) (any, error)

// resourceRoutes registers the operator commands on resources and simulate.
func (s *Server) resourceRoutes(b Backend, pub func(role string, h handler) http.HandlerFunc) {
	s.mux.HandleFunc("GET /v1/resources", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) { return b.Resources(r.Context()) }))
	s.mux.HandleFunc("GET /v1/resources/{name}", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.Resource(r.Context(), r.PathValue("name"))
	}))
	s.mux.HandleFunc("GET /v1/resources/{name}/failcount", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.FailCounts(r.Context(), r.PathValue("name"), r.URL.Query().Get("node"))
	}))
	s.mux.HandleFunc("POST /v1/resources/{name}/move", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.ConstraintRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Move(r.Context(), r.PathValue("name"), req, author(r))
	}))
	s.mux.HandleFunc("POST /v1/resources/{name}/ban", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.ConstraintRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Ban(r.Context(), r.PathValue("name"), req, author(r))
	}))
	s.mux.HandleFunc("POST /v1/resources/{name}/clear", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.Clear(r.Context(), r.PathValue("name"), r.URL.Query().Get("node"), author(r))
	}))
	s.mux.HandleFunc("POST /v1/resources/{name}/restart", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.Restart(r.Context(), r.PathValue("name"), author(r))
	}))
	// enable, disable, manage, unmanage (the backend refuses other actions).
	s.mux.HandleFunc("POST /v1/resources/{name}/{action}", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		switch a := r.PathValue("action"); a {
		case "enable", "disable", "manage", "unmanage":
			return b.SetResource(r.Context(), r.PathValue("name"), a, author(r))
		default:
			return nil, fmt.Errorf("%w: unknown resource action %q (move | ban | clear | restart | cleanup | enable | disable | manage | unmanage; see docs/api.md)", errs.ErrNotFound, a)
		}
	}))
	s.mux.HandleFunc("POST /v1/simulate", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.SimulateRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Simulate(r.Context(), req)
	}))
}

// decodeOptionalJSON is decodeJSON that takes an empty body as {}.
func decodeOptionalJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) == "" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON body: %v", errs.ErrBadRequest, err)
	}
	return nil
}
