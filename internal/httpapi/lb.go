package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
)

// LBBackend is implemented by backends that run the built-in load
// balancer (the agent does); a backend without it answers 404 on these
// routes.
type LBBackend interface {
	// LoadBalancers answers GET /v1/loadbalancers: every node's load
	// balancers, or only this node's when local is true.
	LoadBalancers(ctx context.Context, local bool) (*api.LoadBalancers, error)
	// PostEvents records events a node reports (leader only: else a
	// not-leader error).
	PostEvents(ctx context.Context, evs []api.Event) error
}

type handlerFunc = func(w http.ResponseWriter, r *http.Request) (any, error)

// lbRoutes registers GET /v1/loadbalancers (read-only token; ?local=1
// for the answering node only), GET /v1/internal/loadbalancers (this
// node's, for the fan-out) and POST /v1/internal/events.
func (s *Server) lbRoutes(b Backend, pub func(string, handlerFunc) http.HandlerFunc, in func(handlerFunc) http.HandlerFunc) {
	lbb := func() (LBBackend, error) {
		x, ok := b.(LBBackend)
		if !ok {
			return nil, fmt.Errorf("%w: this agent runs no load balancer", errs.ErrNotFound)
		}
		return x, nil
	}
	s.mux.HandleFunc("GET /v1/loadbalancers", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		x, err := lbb()
		if err != nil {
			return nil, err
		}
		return x.LoadBalancers(r.Context(), r.URL.Query().Get("local") == "1")
	}))
	s.mux.HandleFunc("GET /v1/internal/loadbalancers", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		x, err := lbb()
		if err != nil {
			return nil, err
		}
		return x.LoadBalancers(r.Context(), true)
	}))
	s.mux.HandleFunc("POST /v1/internal/events", in(func(w http.ResponseWriter, r *http.Request) (any, error) {
		x, err := lbb()
		if err != nil {
			return nil, err
		}
		var evs []api.Event
		if err := decodeJSON(r, &evs); err != nil {
			return nil, err
		}
		return okBody, x.PostEvents(r.Context(), evs)
	}))
}
