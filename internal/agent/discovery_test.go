package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/config"
	"github.com/paceline/paceline/internal/state"
)

// A follower fetches the leader's reports; after a failed fetch it keeps
// the last ones for discoveryReportsKeep, then answers with none.
func TestDiscoveryReportsFromLeader(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/internal/reports" || r.Header.Get("X-Paceline-Join") != "jt" {
			http.Error(w, `{"status":404,"error":"wrong call"}`, http.StatusNotFound)
			return
		}
		if fail.Load() {
			http.Error(w, `{"status":421,"error":"not the leader"}`, http.StatusMisdirectedRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(api.ActiveReports{Leader: "n1", Nodes: map[string][]api.ActiveInstance{
			"n2": {{Resource: "web", Slot: 0, Epoch: 3, State: "running"}}}})
	}))
	defer srv.Close()
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), apiAddr: "127.0.0.1:1", fsm: state.NewFSM()}
	a.peer = api.NewClient(nil, "", nil)
	a.peer.JoinToken, a.peer.RetryBusy = "jt", false
	defer a.peer.HTTP.CloseIdleConnections()
	a.leaderAPI = strings.TrimPrefix(srv.URL, "http://")

	ctx := context.Background()
	got := a.discoveryReports(ctx)
	if len(got["n2"]) != 1 || got["n2"][0].Epoch != 3 {
		t.Fatalf("reports %+v", got)
	}
	fail.Store(true)
	if got := a.discoveryReports(ctx); len(got["n2"]) != 1 {
		t.Fatalf("a failed fetch dropped the last reports at once: %+v", got)
	}
	a.disc.reportsAt = time.Now().Add(-2 * discoveryReportsKeep)
	if got := a.discoveryReports(ctx); got != nil {
		t.Fatalf("stale reports kept: %+v", got)
	}
	if snap := a.discoverySnapshot(ctx); snap == nil {
		t.Fatal("no snapshot")
	}
	fail.Store(false)
	if got := a.discoveryReports(ctx); len(got["n2"]) != 1 {
		t.Fatalf("reports not fetched again: %+v", got)
	}
}

// Without discovery.dns there is no DNS server; the HTTP handler exists.
func TestDiscoveryDNSOff(t *testing.T) {
	a := &Agent{cfg: config.Config{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := a.startDNS(); err != nil || a.DNSAddr() != "" {
		t.Fatalf("startDNS: %v, addr %q", err, a.DNSAddr())
	}
	a.stopDNS()
	if a.DiscoveryHandler() == nil {
		t.Fatal("no HTTP handler")
	}
}

func TestDiscoveryDNSOnAndStop(t *testing.T) {
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.cfg.Discovery = config.Discovery{DNS: "127.0.0.1:0", Domain: "paceline", TTL: 2 * time.Second}
	if err := a.startDNS(); err != nil {
		t.Fatal(err)
	}
	if a.DNSAddr() == "" {
		t.Fatal("no DNS address")
	}
	a.stopDNS()
	if a.DNSAddr() != "" {
		t.Fatal("DNS server still listed after stop")
	}
	a.stopDNS() // twice: harmless
}
