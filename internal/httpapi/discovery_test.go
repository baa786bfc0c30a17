package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/errs"
)

// discoBackend adds the discovery routes to the fake backend.
type discoBackend struct {
	fakeBackend
	leader bool
}

func (d *discoBackend) ActiveReports(ctx context.Context) (api.ActiveReports, error) {
	if !d.leader {
		return api.ActiveReports{}, &errs.NotLeader{Leader: "n1", LeaderAPI: "10.0.0.1:7480"}
	}
	return api.ActiveReports{Leader: "n1", Nodes: map[string][]api.ActiveInstance{"n2": {{Resource: "web", Slot: 0, Epoch: 7, State: "running"}}}}, nil
}

func (d *discoBackend) DiscoveryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"path":"` + r.URL.Path + `"}`))
	})
}

func TestDiscoveryRoutes(t *testing.T) {
	s := newServer(&discoBackend{leader: true})
	cases := []struct {
		name, target, token string
		hdr                 []string
		want                int
	}{
		{"reports need the join token", "/v1/internal/reports", opToken, nil, 401},
		{"reports with the join token", "/v1/internal/reports", "", []string{"X-Paceline-Join", joinToken}, 200},
		{"discovery without a token", "/v1/discovery/services", "", nil, 401},
		{"discovery with a bad token", "/v1/discovery/services", "nope", nil, 401},
		{"discovery read-only", "/v1/discovery/services", roToken, nil, 200},
		{"discovery operator", "/v1/discovery/vips/x", opToken, nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := do(t, s, "GET", tc.target, tc.token, "", tc.hdr...)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
		})
	}
	rec, _ := do(t, s, "GET", "/v1/internal/reports", "", "", "X-Paceline-Join", joinToken)
	var got api.ActiveReports
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Leader != "n1" || got.Nodes["n2"][0].Epoch != 7 {
		t.Fatalf("reports %s (%v)", rec.Body, err)
	}
	rec, _ = do(t, s, "GET", "/v1/discovery/services/web?healthy=true", roToken, "")
	if rec.Body.String() != `{"path":"/v1/discovery/services/web"}` {
		t.Fatalf("handler got %s", rec.Body)
	}
	if rec, _ := do(t, s, "POST", "/v1/discovery/services", opToken, ""); rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
		t.Fatalf("POST discovery: %d", rec.Code)
	}
}

func TestDiscoveryReportsNotLeader(t *testing.T) {
	s := newServer(&discoBackend{})
	rec, body := do(t, s, "GET", "/v1/internal/reports", "", "", "X-Paceline-Join", joinToken)
	if rec.Code != http.StatusMisdirectedRequest || body.Leader != "10.0.0.1:7480" {
		t.Fatalf("status %d %+v", rec.Code, body)
	}
}

func TestDiscoveryRoutesWithoutBackendSupport(t *testing.T) {
	s := newServer(&fakeBackend{})
	if rec, _ := do(t, s, "GET", "/v1/internal/reports", "", "", "X-Paceline-Join", joinToken); rec.Code != http.StatusNotFound {
		t.Fatalf("reports: %d", rec.Code)
	}
	if rec, _ := do(t, s, "GET", "/v1/discovery/services", roToken, ""); rec.Code != http.StatusNotFound {
		t.Fatalf("discovery: %d", rec.Code)
	}
}
