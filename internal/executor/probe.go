package executor

import (
	"context"
	"encoding/json"
	"sort"
	"sync"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/spec"
)

// Probes (Assignments.Probes). Each listed resource is probed once per
// definition — a monitor with interval 0, for clones as instance 0 — at
// most MaxProbes at a time. What a probe finds:
//   - not running: nothing is reported (ProbesComplete lists it);
//   - running (or running promoted, or active but failed): reported by
//     Active as ActiveInstance{Probed: true, Slot: -1, State, Role,
//     PromotionScore} until the leader decides:
//       - assigning the resource here adopts it (the assigned instance's
//         start finds it running: starts are idempotent);
//       - listing it in Probes again (same definition) leaves it alone;
//       - an assignment set that neither lists it in Probes nor assigns it
//         here has it stopped (demoted first if promoted);
//   - a hard error (the agent is not installed, not allowed, or the
//     configuration is wrong): Failure{Slot: -1, Op: "monitor", Hard}.
// A lost lease stops found-running exclusive resources and promoted ones
// too (SelfFence).

type probeRec struct {
	res spec.Resource
	def string // canonical JSON of res
	id  string // probeID of the item

	mu       sync.Mutex
	done     bool
	running  bool
	state    string
	role     string
	score    *int
	stopping bool
	d        driver.Driver
	stopped  chan struct{} // closed when a stop of the orphan ended
}

func (p *probeRec) report() (api.ActiveInstance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done || !p.running {
		return api.ActiveInstance{}, false
	}
	a := api.ActiveInstance{Resource: p.res.Name, Slot: -1, State: p.state, Role: p.role, Probed: true}
	if p.stopping && p.state != StateFailed {
		a.State = StateStopping
	}
	if p.score != nil {
		v := *p.score
		a.PromotionScore = &v
	}
	return a, true
}

// fenceable reports whether SelfFence must stop p: found running,
// exclusive or promoted, and no stop of it has ended yet (a failed stop is
// reported; trying again at every fence-loop tick would not help).
func (p *probeRec) fenceable() bool {
	select {
	case <-p.stopped:
		return false
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done && p.running && (p.res.Exclusive() || p.role == spec.RolePromoted)
}

// probeID identifies a probe item: its Key (a digest of the definition,
// set by the leader), else the definition's canonical JSON.
func probeID(it api.ProbeItem) string {
	if it.Key != "" {
		return "key:" + it.Key
	}
	return "def:" + canonical(it.Def)
}

// ProbesDone returns the keys (ProbeItem.Key) of the listed probes that
// have finished here, whatever they found: what Renew.ProbesDone carries.
// It is never nil: this node probes.
func (e *Executor) ProbesDone() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []string{}
	for _, item := range e.probeItems {
		if item.Key != "" && e.probeDone[probeID(item)] {
			out = append(out, item.Key)
		}
	}
	sort.Strings(out)
	return out
}

// ProbesComplete lists the resources whose listed probe has finished
// (found running or not), for items with or without a Key.
func (e *Executor) ProbesComplete() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name, item := range e.probeItems {
		if e.probeDone[probeID(item)] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// canonical returns a resource definition's canonical JSON ("" if it does
// not decode).
func canonical(def json.RawMessage) string {
	var r spec.Resource
	if err := json.Unmarshal(def, &r); err != nil {
		return ""
	}
	b, err := json.Marshal(r)
	if err != nil {
		return ""
	}
	return string(b)
}

// reconcileProbes starts the probes asked for and settles found-running
// instances. Called by Reconcile with e.mu held.
func (e *Executor) reconcileProbes() {
	for name, item := range e.probeItems {
		canon := canonical(item.Def)
		if canon == "" {
			e.log.Error("undecodable resource definition in a probe", "resource", name)
			continue
		}
		id := probeID(item)
		if e.probeDone[id] {
			continue // probed once for this definition
		}
		if p := e.probes[name]; p != nil && p.id == id {
			continue // under way, or its find is still pending
		}
		var def spec.Resource
		_ = json.Unmarshal([]byte(canon), &def)
		p := &probeRec{res: def, def: canon, id: id, stopped: make(chan struct{})}
		e.probes[name] = p
		e.bg.Add(1)
		go e.probe(p)
	}
	for name, p := range e.probes {
		_, listed := e.probeItems[name]
		assigned := e.assignedLocked(name)
		p.mu.Lock()
		done, running, stopping := p.done, p.running, p.stopping
		p.mu.Unlock()
		switch {
		case done && running && assigned && !stopping:
			e.log.Info("adopting the instance a probe found", "resource", name)
			delete(e.probes, name)
		case done && !running && !listed:
			delete(e.probes, name)
		case done && running && !listed && !assigned && !stopping:
			e.log.Warn("stopping an instance a probe found: not assigned here", "resource", name)
			e.stopOrphanLocked(p, "found by a probe, not assigned here")
		}
	}
}

// probe runs one probe.
func (e *Executor) probe(p *probeRec) {
	defer e.bg.Done()
	finish := func() {
		p.mu.Lock()
		p.done = true
		p.mu.Unlock()
		e.mu.Lock()
		if _, listed := e.probeItems[p.res.Name]; listed && probeID(e.probeItems[p.res.Name]) == p.id && e.bgCtx.Err() == nil {
			e.probeDone[p.id] = true
		}
		e.mu.Unlock()
		e.signal()
		e.Reconcile()
	}
	select {
	case e.probeSem <- struct{}{}:
	case <-e.bgCtx.Done():
		finish()
		return
	}
	defer func() { <-e.probeSem }()
	def := &p.res
	if def.Info().Kind == spec.ClassProcess {
		// A supervised process dies with the agent that ran it
		// (Pdeathsig): nothing of it can be running here.
		finish()
		return
	}
	d, err := e.drivers.New(driver.Target{Res: *def, Slot: 0})
	if err != nil {
		e.report(api.Failure{Resource: def.Name, Slot: -1, Op: string(agents.Monitor), Hard: "node", Reason: "probe: " + err.Error()})
		finish()
		return
	}
	md, err := d.Metadata(e.bgCtx)
	if err != nil {
		e.log.Warn("probe: no usable meta-data; default timeouts", "resource", def.Name, "err", err)
	}
	op := driver.Resolve(def, agents.Monitor, "", 0, md)
	r := d.Run(e.bgCtx, op)
	p.mu.Lock()
	p.d = d
	switch r.Status {
	case agents.StatusSuccess, agents.StatusDegraded:
		p.running, p.state = true, StateRunning
	case agents.StatusRunningPromoted, agents.StatusDegradedPromoted:
		p.running, p.state, p.role = true, StateRunning, spec.RolePromoted
	case agents.StatusNotRunning:
	case agents.StatusFailedPromoted:
		p.running, p.state, p.role = true, StateFailed, spec.RolePromoted
	default:
		if h := hardScope(r); h != "" {
			p.mu.Unlock()
			e.report(api.Failure{Resource: def.Name, Slot: -1, Op: string(agents.Monitor), OnFail: op.OnFail, Hard: h, Reason: "probe: " + describe(r)})
			p.mu.Lock()
		} else if e.bgCtx.Err() == nil {
			p.running, p.state = true, StateFailed // active in a failed state
		}
	}
	if p.running && def.Info().Kind == spec.KindOCF {
		p.score = e.dirs.scoreOf(def, 0)
	}
	if p.running {
		e.log.Warn("probe found the resource active here", "resource", def.Name, "state", p.state, "role", p.role)
	}
	p.mu.Unlock()
	finish()
}

// stopOrphanLocked starts the stop of a found-running instance (e.mu held).
func (e *Executor) stopOrphanLocked(p *probeRec, why string) {
	if e.closed && why != "shutdown" {
		return
	}
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	e.bg.Add(1)
	go e.stopOrphan(p, why)
}

func (e *Executor) stopOrphan(p *probeRec, why string) {
	defer e.bg.Done()
	defer close(p.stopped)
	p.mu.Lock()
	d, role := p.d, p.role
	p.mu.Unlock()
	def := &p.res
	if d == nil {
		return
	}
	md, _ := d.Metadata(context.Background())
	if role == spec.RolePromoted {
		d.Run(context.Background(), driver.Resolve(def, agents.Demote, "", 0, md))
	}
	op := driver.Resolve(def, agents.Stop, "", 0, md)
	r := d.Run(context.Background(), op) // bounded by its timeout
	if r.Status == agents.StatusSuccess {
		e.log.Info("stopped an instance found by a probe", "resource", def.Name, "reason", why)
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
		e.mu.Lock()
		if e.probes[def.Name] == p {
			delete(e.probes, def.Name)
		}
		e.mu.Unlock()
	} else {
		e.log.Error("cannot stop an instance found by a probe", "resource", def.Name, "reason", describe(r))
		p.mu.Lock()
		p.state = StateFailed
		p.mu.Unlock()
		e.report(api.Failure{Resource: def.Name, Slot: -1, Op: string(agents.Stop), OnFail: op.OnFail, Hard: hardScope(r),
			Reason: "stopping the instance a probe found (" + why + "): " + describe(r)})
	}
	e.signal()
}

// fenceOrphansLocked stops found-running exclusive or promoted instances
// (lease lost) and returns them; SelfFence waits for their stop.
func (e *Executor) fenceOrphansLocked() []*probeRec {
	if e.closed {
		return nil
	}
	var out []*probeRec
	for _, p := range e.probes {
		if !p.fenceable() {
			continue
		}
		p.mu.Lock()
		stopping := p.stopping
		p.mu.Unlock()
		if !stopping {
			e.stopOrphanLocked(p, "hold lease lost")
		}
		out = append(out, p)
	}
	return out
}

// stopOrphansLocked stops every found-running instance (shutdown).
func (e *Executor) stopOrphansLocked() {
	for _, p := range e.probes {
		p.mu.Lock()
		run := p.done && p.running && !p.stopping
		p.mu.Unlock()
		if run {
			e.stopOrphanLocked(p, "shutdown")
		}
	}
}
