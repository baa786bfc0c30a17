package httpapi

import (
	"context"
	"net/http"

	"github.com/paceline/paceline/api"
)

// FenceBackend is implemented by backends that serve fencing (the agent
// does); without it the /v1/fence routes answer 404.
type FenceBackend interface {
	// Fence, FenceConfirm and FenceCheck run on the leader (else a
	// not-leader error, and the request is forwarded).
	Fence(ctx context.Context, node, action, author string) (*api.FenceRecord, error)
	FenceConfirm(ctx context.Context, node, author string) (*api.FenceRecord, error)
	FenceCheck(ctx context.Context, device string) ([]api.FenceCheck, error)
	FenceHistory(ctx context.Context, node string) ([]api.FenceRecord, error)
	FenceStatus(ctx context.Context) (*api.FenceStatus, error)
}

// fenceRoutes registers the fencing commands.
func (s *Server) fenceRoutes(b FenceBackend, pub func(role string, h handler) http.HandlerFunc) {
	s.mux.HandleFunc("GET /v1/fence", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.FenceStatus(r.Context())
	}))
	s.mux.HandleFunc("GET /v1/fence/history", pub(RoleReadOnly, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.FenceHistory(r.Context(), r.URL.Query().Get("node"))
	}))
	s.mux.HandleFunc("POST /v1/fence/check", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.FenceCheck(r.Context(), r.URL.Query().Get("device"))
	}))
	s.mux.HandleFunc("POST /v1/fence/{node}", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.FenceRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			return nil, err
		}
		return b.Fence(r.Context(), r.PathValue("node"), req.Action, author(r))
	}))
	s.mux.HandleFunc("POST /v1/fence/{node}/confirm", pub(RoleOperator, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return b.FenceConfirm(r.Context(), r.PathValue("node"), author(r))
	}))
}
