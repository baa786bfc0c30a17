package coordinator

import (
	"fmt"

	"github.com/paceline/paceline/api"
	"sort"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/scheduler"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Ordered bootstrap (spec resource.bootstrap; docs/resources.md): when no
// instance of such a resource runs anywhere (a cold start, e.g. after a
// full-cluster power loss), its first instance starts only on the node
// with the highest rank among the nodes the placement wants, once each of
// them reported a rank (or bootstrap.wait passed); the other instances
// start once that one runs.

// bootGate is the ordered-bootstrap state of one planning round.
type bootGate struct {
	c       *Coordinator
	now     time.Time
	running map[string]bool     // resource → an instance runs somewhere
	pending map[string]string   // resource → node of an assigned instance not running yet
	desired map[string][]string // resource → nodes the placement wants
	started map[string]bool     // resource → a first start was let through this round
	events  []state.Event
}

func (c *Coordinator) newBootGate(in scheduler.Input, out scheduler.Output, now time.Time) *bootGate {
	g := &bootGate{c: c, now: now, running: map[string]bool{}, pending: map[string]string{}, desired: map[string][]string{}, started: map[string]bool{}}
	for k := range in.Running {
		g.running[resourceOfKey(k)] = true
	}
	for _, a := range in.Active {
		g.running[a.Resource] = true
	}
	for k, n := range in.Current {
		if r := resourceOfKey(k); !g.running[r] {
			g.pending[r] = n
		}
	}
	seen := map[string]bool{}
	for k, n := range out.Desired {
		r := out.Resource[k]
		if n == "" || seen[r+"@"+n] {
			continue
		}
		seen[r+"@"+n] = true
		g.desired[r] = append(g.desired[r], n)
	}
	for r := range g.desired {
		sort.Strings(g.desired[r])
	}
	for r := range c.bootWaiting {
		if g.running[r] || len(g.desired[r]) == 0 {
			delete(c.bootWaiting, r)
			delete(c.bootSince, r)
		}
	}
	for r, n := range c.bootFirst {
		onIt := false
		for k, cn := range in.Current {
			onIt = onIt || (resourceOfKey(k) == r && cn == n)
		}
		if g.running[r] || !onIt {
			delete(c.bootFirst, r) // done (it runs), or undone (stopped, node lost): choose again
		}
	}
	return g
}

// hold reports whether a start of def on node must wait for the ordered
// bootstrap; it records why for status and events.
func (g *bootGate) hold(def *spec.Resource, node string) bool {
	c := g.c
	if def == nil || def.Bootstrap == nil || g.running[def.Name] {
		if def != nil {
			delete(c.bootWaiting, def.Name)
			delete(c.bootSince, def.Name)
		}
		return false
	}
	if g.started[def.Name] {
		return true // one first instance per cold start; the rest follow once it runs
	}
	if n, ok := g.pending[def.Name]; ok {
		c.bootWaiting[def.Name] = "first instance starting on " + n + "; the others join once it runs"
		return true
	}
	since, ok := c.bootSince[def.Name]
	if !ok {
		since = g.now
		c.bootSince[def.Name] = since
	}
	var missing, ranked []string
	best, bestRank, have := "", int64(0), false
	for _, n := range g.desired[def.Name] {
		rep, ok := c.reports[n]
		rk, has := rep.r.Ranks[def.Name]
		switch {
		case !ok || !has:
			missing = append(missing, n+" (no report yet)")
		case !rk.OK:
			missing = append(missing, n+" ("+rk.Err+")")
		default:
			ranked = append(ranked, fmt.Sprintf("%s: %d", n, rk.Rank))
			if !have || rk.Rank > bestRank {
				best, bestRank, have = n, rk.Rank, true
			}
		}
	}
	wait := def.Bootstrap.Wait.D()
	if len(missing) > 0 && (wait == 0 || g.now.Before(since.Add(wait))) || !have {
		why := "waiting for the rank of " + strings.Join(missing, ", ")
		if wait > 0 {
			why += fmt.Sprintf(" (at most until %s)", since.Add(wait).UTC().Format(time.RFC3339))
			if g.now.Before(since.Add(wait)) {
				g.c.soonAt(since.Add(wait))
			}
		}
		if c.bootWaiting[def.Name] != why {
			c.bootWaiting[def.Name] = why
			g.events = append(g.events, state.Event{Type: "bootstrap-wait", Resource: def.Name,
				Message: fmt.Sprintf("ordered bootstrap of %s: nothing runs anywhere; %s", def.Name, why)})
		}
		return true
	}
	if node != best {
		return true
	}
	g.started[def.Name] = true
	c.bootFirst[def.Name] = best
	msg := fmt.Sprintf("ordered bootstrap of %s: starting the first instance on %s (highest rank %d; ranks %s", def.Name, best, bestRank, strings.Join(ranked, ", "))
	if len(missing) > 0 {
		msg += "; no rank after " + wait.String() + ": " + strings.Join(missing, ", ")
	}
	g.events = append(g.events, state.Event{Type: "bootstrap-start", Node: best, Resource: def.Name, Message: msg + "); the others join once it runs"})
	c.bootWaiting[def.Name] = "first instance starting on " + best + "; the others join once it runs"
	return false
}

// BootstrapWaiting returns, per resource, what its ordered bootstrap
// waits for (leader only; empty elsewhere).
func (c *Coordinator) BootstrapWaiting() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.bootWaiting {
		out[k] = v
	}
	return out
}

// bootRunning reports whether a live node reports an instance of res
// running. Called with c.mu held.
func (c *Coordinator) bootRunning(res string) bool {
	now := c.now()
	for n, rep := range c.reports {
		if c.released[n] || c.cfg.Table.Expired(n, now) {
			continue
		}
		for _, a := range rep.r.Active {
			if a.Resource == res && a.State == "running" && !a.Probed {
				return true
			}
		}
	}
	return false
}

// MarkHeld marks the assignments of node that the ordered bootstrap holds
// back: those of a bootstrap resource that runs nowhere, except on the
// node chosen to start first. Before this leader has heard from anyone,
// every such assignment is held (after a full-cluster restart, nodes must
// not start from their old assignments before the ranks are compared).
func (c *Coordinator) MarkHeld(node string, as *api.Assignments) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sp *spec.Spec
	if c.sp != nil {
		sp = c.sp
	} else {
		c.cfg.FSM.Read(func(s *state.State) { sp = s.Spec })
	}
	if sp == nil {
		return
	}
	boot := map[string]bool{}
	for _, r := range sp.Resources {
		if r.Bootstrap != nil {
			boot[r.Name] = true
		}
	}
	if len(boot) == 0 {
		return
	}
	for i := range as.Items {
		it := &as.Items[i]
		if boot[it.Resource] && c.bootFirst[it.Resource] != node && !c.bootRunning(it.Resource) {
			it.Held = true
		}
	}
}

// releaseColdAssignments finds bootstrap resources that run nowhere yet
// still have assignments (a full-cluster restart: every node came back
// with its old assignment, held): once every node holding one has
// reported that it runs nothing of it, the assignments are removed so the
// next round starts the resource again in rank order. Called by reconcile
// with c.mu held; returns the keys to unset.
func (c *Coordinator) releaseColdAssignments(sp *spec.Spec, assign map[string]state.Assignment, gone func(string) bool) ([]string, []state.Event) {
	var keys []string
	var evs []state.Event
	for _, r := range sp.Resources {
		if r.Bootstrap == nil || c.bootFirst[r.Name] != "" || c.bootRunning(r.Name) {
			continue
		}
		var mine []string
		ready := true
		for k, a := range assign {
			if a.Resource != r.Name {
				continue
			}
			mine = append(mine, k)
			if gone(a.Node) {
				// Not while anyone holding one is silent: it may run it
				// (and a leader whose quorum wavers sees everyone gone).
				ready = false
				continue
			}
			rep, ok := c.reports[a.Node]
			if !ok || rep.r.Applied < c.startIndex {
				ready = false
				continue
			}
			for _, x := range rep.r.Active {
				if x.Resource == r.Name {
					ready = false // something of it is still there (starting, stopping, failed)
				}
			}
		}
		if !ready || len(mine) == 0 {
			continue
		}
		sort.Strings(mine)
		keys = append(keys, mine...)
		evs = append(evs, state.Event{Type: "bootstrap-release", Resource: r.Name,
			Message: fmt.Sprintf("ordered bootstrap of %s: it runs nowhere (a full-cluster restart?); its %d assignment(s) are released and it starts again in rank order", r.Name, len(mine))})
	}
	return keys, evs
}
