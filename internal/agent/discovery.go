package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/discovery"
	"github.com/paceline/paceline/internal/httpapi"
	"github.com/paceline/paceline/internal/state"
)

// Discovery wiring (docs/discovery.md, "Wiring"): every agent keeps a
// discovery.Holder current from its own replicated state and the leader's
// reports of what each node runs, serves it over HTTP (/v1/discovery/,
// always) and over DNS (when discovery.dns is set).
const (
	// discoveryInterval is how often the snapshot is rebuilt.
	discoveryInterval = 500 * time.Millisecond
	// discoveryFetchTimeout bounds one fetch of the leader's reports.
	discoveryFetchTimeout = time.Second
	// discoveryReportsKeep is how long a follower keeps answering from the
	// last reports it fetched while it cannot fetch new ones; after that it
	// treats them as none (every instance unhealthy: DNS answers NODATA).
	discoveryReportsKeep = 5 * time.Second
)

// discoveryWiring is the agent's discovery state.
type discoveryWiring struct {
	holder      discovery.Holder
	handlerOnce sync.Once
	handler     http.Handler

	// Used by the Follow goroutine only.
	reports   map[string][]api.ActiveInstance
	reportsAt time.Time // when reports was last fetched

	mu  sync.Mutex
	dns *discovery.Server
}

var _ httpapi.DiscoveryBackend = (*Agent)(nil)

// Discovery is the agent's discovery view (tests).
func (a *Agent) Discovery() discovery.View { return &a.disc.holder }

// DNSAddr is the address the discovery DNS server listens on (UDP), or ""
// when it is off.
func (a *Agent) DNSAddr() string {
	a.disc.mu.Lock()
	defer a.disc.mu.Unlock()
	if a.disc.dns == nil {
		return ""
	}
	udp, _ := a.disc.dns.Addrs()
	if udp == nil {
		return ""
	}
	return udp.String()
}

// DiscoveryHandler implements httpapi.DiscoveryBackend.
func (a *Agent) DiscoveryHandler() http.Handler {
	a.disc.handlerOnce.Do(func() { a.disc.handler = discovery.Handler(&a.disc.holder) })
	return a.disc.handler
}

// ActiveReports implements httpapi.DiscoveryBackend (leader only).
func (a *Agent) ActiveReports(ctx context.Context) (api.ActiveReports, error) {
	c := a.coordinator()
	if c == nil {
		return api.ActiveReports{}, a.notLeader()
	}
	return api.ActiveReports{Leader: a.cfg.NodeName, Nodes: c.ActiveReports()}, nil
}

// startDNS starts the discovery DNS server when discovery.dns is set.
func (a *Agent) startDNS() error {
	d := a.cfg.Discovery
	if d.DNS == "" {
		return nil
	}
	srv, err := discovery.NewServer(discovery.Config{Addr: d.DNS, Domain: d.Domain, TTL: d.TTL}, &a.disc.holder)
	if err != nil {
		return fmt.Errorf("discovery.dns: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("discovery.dns: listen on %s: %w (set discovery.dns to a free address, or empty to turn DNS off)", d.DNS, err)
	}
	a.disc.mu.Lock()
	a.disc.dns = srv
	a.disc.mu.Unlock()
	udp, _ := srv.Addrs()
	a.log.Info("discovery DNS server listening", "addr", udp, "domain", d.Domain)
	return nil
}

// stopDNS stops the DNS server, if one runs.
func (a *Agent) stopDNS() {
	a.disc.mu.Lock()
	srv := a.disc.dns
	a.disc.dns = nil
	a.disc.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		a.log.Warn("discovery DNS server shutdown", "err", err)
	}
}

// discoveryLoop keeps the holder current until ctx ends.
func (a *Agent) discoveryLoop(ctx context.Context) {
	discovery.Follow(ctx, &a.disc.holder, discoveryInterval, func() *discovery.Snapshot {
		return a.discoverySnapshot(ctx)
	})
}

// discoverySnapshot builds one snapshot from the local replicated state
// and the reports.
func (a *Agent) discoverySnapshot(ctx context.Context) *discovery.Snapshot {
	if ctx.Err() != nil {
		return nil
	}
	reports := a.discoveryReports(ctx)
	var snap *discovery.Snapshot
	a.fsm.Read(func(s *state.State) { snap = discovery.FromState(s, reports, discovery.Options{}) })
	return snap
}

// discoveryReports returns what each node runs: the coordinator's reports
// on the leader; on other nodes the leader's, fetched through
// GET /v1/internal/reports (at most discoveryFetchTimeout per round). A
// failed fetch keeps the last reports for discoveryReportsKeep, then
// returns none.
func (a *Agent) discoveryReports(ctx context.Context) map[string][]api.ActiveInstance {
	d := &a.disc
	if c := a.coordinator(); c != nil {
		d.reports, d.reportsAt = c.ActiveReports(), time.Now()
		return d.reports
	}
	addr := a.currentLeaderAPI()
	if _, l := a.leader(); l != "" {
		addr = l
	}
	if addr != "" && addr != a.apiAddr {
		cctx, cancel := context.WithTimeout(ctx, discoveryFetchTimeout)
		var out api.ActiveReports
		err := a.peerClient(addr).Do(cctx, "GET", "/v1/internal/reports", nil, &out)
		cancel()
		if err == nil {
			d.reports, d.reportsAt = out.Nodes, time.Now()
			return d.reports
		}
		a.log.Debug("discovery: fetching the leader's reports failed", "leader", addr, "err", err)
	}
	if time.Since(d.reportsAt) > discoveryReportsKeep {
		d.reports = nil
	}
	return d.reports
}
