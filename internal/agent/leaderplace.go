package agent

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/paceline/paceline/internal/consensus"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Leader placement: a VIP whose holder is also the raft leader fails over
// slowest — when that host dies, a new leader must be elected first and
// then wait out every lease from its election (docs/safety.md) — so a
// leader that holds a vip hands leadership to a healthy voter that holds
// none. At most once per leaderMoveEvery, and only after leading for
// leaderSettle, so leadership does not bounce. (It cannot bounce for
// long anyway: leadership moves only to a voter without a vip, and only
// a vip moving — a failure — makes the new leader a holder again.)
const (
	leaderSettle    = 2 * time.Second
	leaderMoveEvery = 5 * time.Second
	leaderCheck     = time.Second
)

// leaderPlacement runs during a leadership term.
func (a *Agent) leaderPlacement(ctx context.Context, since time.Time) {
	t := time.NewTicker(leaderCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(since) < leaderSettle || time.Since(a.lastLeaderMove.Load().(time.Time)) < leaderMoveEvery {
			continue
		}
		to, addr, ok := a.leaderTarget()
		if !ok {
			continue
		}
		a.lastLeaderMove.Store(time.Now())
		a.log.Info("moving raft leadership away from this vip holder (a holder that also leads fails over slowest)", "to", string(to))
		if err := a.cons.Raft.LeadershipTransferToServer(to, addr).Error(); err != nil {
			a.log.Warn("leadership transfer failed", "to", string(to), "err", err)
		}
		return
	}
}

// leaderTarget names a voter to hand leadership to: this node runs a vip
// instance, the target is an online control voter whose last report shows
// no vip running.
func (a *Agent) leaderTarget() (raft.ServerID, raft.ServerAddress, bool) {
	vips := map[string]bool{}
	online := map[string]bool{}
	a.fsm.Read(func(s *state.State) {
		if s.Spec != nil {
			for _, r := range s.Spec.Resources {
				if r.Class == spec.KindVIP {
					vips[r.Name] = true
				}
			}
		}
		for n, x := range s.Nodes {
			online[n] = x.Online && x.Role == "control"
		}
	})
	if len(vips) == 0 {
		return "", "", false
	}
	holds := func(active []string) bool {
		for _, r := range active {
			if vips[r] {
				return true
			}
		}
		return false
	}
	var mine []string
	for _, i := range a.exec.Active() {
		if i.State == "running" || i.State == "starting" {
			mine = append(mine, i.Resource)
		}
	}
	if !holds(mine) {
		return "", "", false
	}
	c := a.coordinator()
	if c == nil {
		return "", "", false
	}
	reports := c.ActiveReports()
	servers, err := a.cons.Voters()
	if err != nil {
		return "", "", false
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	for _, s := range servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == a.cfg.NodeName || consensus.IsWitness(id) || !online[id] {
			continue
		}
		rep, ok := reports[id]
		if !ok {
			continue
		}
		var theirs []string
		for _, x := range rep {
			theirs = append(theirs, x.Resource)
		}
		if !holds(theirs) {
			return s.ID, s.Address, true
		}
	}
	return "", "", false
}
