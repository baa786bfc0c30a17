package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// rankInterval is how often a node re-runs the rank commands of bootstrap
// resources that do not run here (their data may change while stopped:
// a restore, a manual recovery).
const rankInterval = 2 * time.Second

// ranks holds this node's latest ordered-bootstrap ranks (resource →
// rank), reported with every renewal; the leader orders a cold start by
// them (coordinator.bootstrapGate).
type ranks struct {
	mu sync.Mutex
	m  map[string]api.BootstrapRank
}

func (r *ranks) current() map[string]api.BootstrapRank {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return nil
	}
	return maps.Clone(r.m)
}

func (r *ranks) set(m map[string]api.BootstrapRank) {
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
}

// rankLoop runs the rank command of every bootstrap resource not running
// here, at once and every rankInterval, until ctx ends.
func (a *Agent) rankLoop(ctx context.Context) {
	t := time.NewTicker(rankInterval)
	defer t.Stop()
	for {
		a.runRanks(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.fsm.Changed():
		}
	}
}

func (a *Agent) runRanks(ctx context.Context) {
	var defs []spec.Resource
	a.fsm.Read(func(s *state.State) {
		if s.Spec == nil {
			return
		}
		for _, r := range s.Spec.Resources {
			if r.Bootstrap != nil {
				b := *r.Bootstrap
				b.Rank = append([]string(nil), b.Rank...)
				r.Bootstrap = &b
				defs = append(defs, r) // only Name and Bootstrap are used
			}
		}
	})
	if len(defs) == 0 {
		a.ranks.set(nil)
		return
	}
	here := map[string]bool{}
	for _, i := range a.exec.Active() {
		if i.State != "stopped" {
			here[i.Resource] = true
		}
	}
	prev := a.ranks.current()
	out := map[string]api.BootstrapRank{}
	for _, r := range defs {
		if here[r.Name] {
			continue // running here: its rank is not needed and would change
		}
		rk := a.rankOf(ctx, r)
		if old, ok := prev[r.Name]; !ok || old.OK != rk.OK || old.Rank != rk.Rank || old.Err != rk.Err {
			a.log.Info("bootstrap rank", "resource", r.Name, "ok", rk.OK, "rank", rk.Rank, "err", rk.Err)
		}
		out[r.Name] = rk
	}
	a.ranks.set(out)
}

// rankOf runs r's rank command once.
func (a *Agent) rankOf(ctx context.Context, r spec.Resource) api.BootstrapRank {
	b := r.Bootstrap
	rk := api.BootstrapRank{At: time.Now()}
	path, err := exec.LookPath(b.Rank[0])
	if err != nil {
		rk.Err = fmt.Sprintf("rank command %s: %v", b.Rank[0], err)
		return rk
	}
	env := append(os.Environ(), "PACELINE_NODE="+a.cfg.NodeName, "PACELINE_RESOURCE="+r.Name)
	x := agents.RunCommand(ctx, agents.Command{Path: path, Args: b.Rank[1:], Env: env, Timeout: b.RankTimeout()})
	switch {
	case x.Err != nil:
		rk.Err = fmt.Sprintf("rank command: %v", x.Err)
	case x.TimedOut:
		rk.Err = fmt.Sprintf("rank command timed out after %s", b.RankTimeout())
	case x.ExitCode != 0:
		rk.Err = fmt.Sprintf("rank command exited %d: %s", x.ExitCode, strings.TrimSpace(lastLine(x.Stderr)))
	default:
		n, err := strconv.ParseInt(strings.TrimSpace(x.Stdout), 10, 64)
		if err != nil {
			rk.Err = fmt.Sprintf("rank command printed %q, not an integer", strings.TrimSpace(x.Stdout))
		} else {
			rk.OK, rk.Rank = true, n
		}
	}
	return rk
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// heldAssignments is node's assignments with those the ordered bootstrap
// holds back marked (coordinator.MarkHeld).
func (a *Agent) heldAssignments(node string) api.Assignments {
	as := a.assignments.For(a.fsm, node)
	if c := a.coordinator(); c != nil {
		c.MarkHeld(node, &as)
	}
	return as
}
