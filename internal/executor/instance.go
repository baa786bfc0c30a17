package executor

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/spec"
)

// inst is one assigned slot on this node and the goroutine that drives it.
type inst struct {
	key  string // "resource:slot"
	name string // resource
	slot int
	def0 spec.Resource // the definition it was created with (mode, for Exclusive)

	// Written by Reconcile under Executor.mu.
	want    *api.NodeAssignment // nil: no longer assigned here
	wantDef spec.Resource
	epoch   uint64

	mu        sync.Mutex
	state     string
	role      string // current role: spec.RolePromoted or ""
	score     *int
	busy      bool // something may run: started, starting, stopping or failed while running
	promoting bool // promoted, or a promotion is under way
	cancel    context.CancelFunc
	inflight  agents.Action   // the action under way ("" if none)
	fenceCut  bool            // the running action was cancelled by SelfFence
	demoteReq []chan struct{} // SelfFence asks for a demotion

	wake     chan struct{} // coalesced: look at the assignment again
	kill     chan struct{} // closed: self-fence (or shutdown deadline)
	killOnce sync.Once
	done     chan struct{}
}

func newInst(key, name string, slot int, def spec.Resource) *inst {
	return &inst{key: key, name: name, slot: slot, def0: def, state: StateStarting,
		wake: make(chan struct{}, 1), kill: make(chan struct{}), done: make(chan struct{})}
}

func (i *inst) poke() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

func (i *inst) exclusive() bool { return i.def0.Exclusive() }

func (i *inst) active() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.busy
}

func (i *inst) promoted() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.promoting
}

func (i *inst) killed() bool {
	select {
	case <-i.kill:
		return true
	default:
		return false
	}
}

// forceKill asks for the immediate end of the instance and cancels the
// action under way. SelfFence and StopAll may ask at the same time.
func (i *inst) forceKill() {
	i.killOnce.Do(func() {
		i.mu.Lock()
		i.fenceCut = true
		if i.cancel != nil {
			i.cancel()
		}
		i.mu.Unlock()
		close(i.kill)
	})
}

// requestDemote asks the instance to demote now (lease lost); the channel
// is closed once it did (or stopped the instance).
func (i *inst) requestDemote() <-chan struct{} {
	ack := make(chan struct{})
	i.mu.Lock()
	i.demoteReq = append(i.demoteReq, ack)
	// Cut short what would delay the demotion (a promotion under way, a
	// monitor, a notification), never a demote or stop.
	switch i.inflight {
	case agents.Promote, agents.Monitor, agents.Notify, agents.ReloadAgent:
		if i.cancel != nil {
			i.fenceCut = true
			i.cancel()
		}
	}
	i.mu.Unlock()
	i.poke()
	return ack
}

func (i *inst) takeDemoteReq() []chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	r := i.demoteReq
	i.demoteReq = nil
	return r
}

// takeFenceCut reports (and clears) whether the last action was cancelled
// by SelfFence: its result is not a failure of the resource.
func (i *inst) takeFenceCut() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	c := i.fenceCut
	i.fenceCut = false
	return c
}

func (i *inst) set(f func(i *inst)) {
	i.mu.Lock()
	f(i)
	i.mu.Unlock()
}

func (i *inst) setState(s string) { i.set(func(i *inst) { i.state = s }) }

func (i *inst) report() api.ActiveInstance {
	i.mu.Lock()
	defer i.mu.Unlock()
	a := api.ActiveInstance{State: i.state, Role: i.role}
	if i.score != nil {
		v := *i.score
		a.PromotionScore = &v
	}
	return a
}

// snapshot is what the instance's goroutine acts on.
type snapshot struct {
	want   *api.NodeAssignment
	def    spec.Resource
	epoch  uint64
	maint  bool
	closed bool
}

func (e *Executor) snapshot(i *inst) snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := snapshot{want: i.want, def: i.wantDef, epoch: i.epoch, maint: e.maint, closed: e.closed}
	if s.want != nil {
		w := *s.want
		s.want = &w
	}
	return s
}

// life is the goroutine's own view of the instance.
type life struct {
	d         driver.Driver
	md        *ocf.Metadata
	kind      string
	running   bool          // started (or found running) and not stopped since
	role      string        // spec.RolePromoted or ""
	def       spec.Resource // definition of the running instance
	gen       uint64        // generation it was started at
	peers     []api.Peer    // peers the last notifications knew
	validated bool
	probed    bool // unmanaged: the first check was made

	hold       bool          // failed; waiting for the leader to act (no monitor, no retry)
	holdGen    uint64        // a new generation ends the hold or block
	holdDef    spec.Resource // a new definition ends the hold
	valDef     spec.Resource // the definition validate-all last passed
	blocked    bool          // onFail block: no action at all until the generation changes
	noPromote  string        // after onFail demote: no promotion while the assignment is the same
	reported   bool          // a failure of the current streak was reported (ignore, unmanaged)
	backoff    time.Duration
	notBefore  time.Time
	startedAt  time.Time
	nextCheck  time.Time
	monitorOp  driver.Op
	hasMonitor bool
}

// assignmentID identifies an assignment for noPromote.
func assignmentID(w *api.NodeAssignment) string {
	return fmt.Sprintf("%d/%d/%s", w.Epoch, w.Generation, w.Role)
}

// run is the life of one instance.
func (e *Executor) run(i *inst) {
	l := &life{}
	defer func() {
		if l.d != nil {
			l.d.Close()
		}
		e.mu.Lock()
		if e.insts[i.key] == i {
			delete(e.insts, i.key)
		}
		e.mu.Unlock()
		i.set(func(i *inst) { i.busy, i.promoting = false, false })
		close(i.done)
		e.signal()
		e.Reconcile()
	}()
	for {
		if i.killed() {
			e.killPath(i, l)
			return
		}
		if reqs := i.takeDemoteReq(); len(reqs) > 0 {
			e.fenceDemote(i, l)
			for _, ack := range reqs {
				close(ack)
			}
			continue
		}
		s := e.snapshot(i)
		if s.want == nil || s.closed {
			if e.unassigned(i, l, s) {
				return
			}
			continue
		}
		if !e.step(i, l, s) {
			continue
		}
		e.wait(i, l, s)
	}
}

// unassigned stops the instance (if it should be stopped) and reports
// whether the goroutine may end.
func (e *Executor) unassigned(i *inst, l *life, s snapshot) bool {
	if l.blocked && l.running && !s.closed {
		// Blocked: left as it is, and still reported (failed) so that the
		// leader never takes it for stopped. A new assignment with a new
		// generation, a lost lease or the agent's shutdown end this.
		e.wait(i, l, s)
		return false
	}
	// s.def is the last definition assigned (Reconcile keeps it).
	leave := l.blocked || (l.running && (!s.def.IsManaged() || s.maint))
	if s.closed {
		leave = !s.def.IsManaged() && l.running // shutdown stops everything it manages, blocked ones too
	}
	if l.running && !leave {
		if !e.stopInst(i, l, "no longer assigned here") && !s.closed {
			e.wait(i, l, s) // blocked or retrying: keep reporting it
			return false
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if i.want != nil && !e.closed {
		return false // assigned again meanwhile
	}
	if e.insts[i.key] == i {
		delete(e.insts, i.key)
	}
	return true
}

// step makes one move towards the assignment; it returns true when there
// is nothing to do but wait.
func (e *Executor) step(i *inst, l *life, s snapshot) bool {
	def, w := s.def, s.want
	log := e.log.With("slot", i.key)
	// Maintenance (cluster or resource): nothing at all.
	if s.maint || def.Maintenance {
		return true
	}
	if l.blocked || l.hold {
		// A block ends with a new generation (an operator's restart or
		// cleanup); a hold also with a new definition (the leader may
		// leave the slot here after a fix).
		if w.Generation == l.holdGen && (l.blocked || !restartNeeded(l.holdDef, def)) {
			return true
		}
		log.Info("leaving the failed state", "generation", w.Generation)
		l.blocked, l.hold, l.reported = false, false, false
		l.backoff, l.notBefore = 0, time.Time{}
	}
	if l.d != nil && !l.running && l.d.Class() != def.Class {
		l.d.Close()
		l.d, l.md = nil, nil
	}
	if l.d == nil {
		d, err := e.drivers.New(driver.Target{Res: def, Slot: i.slot, Epoch: s.epoch, CloneMax: len(w.Peers)})
		if err != nil {
			log.Error("cannot drive this class", "class", def.Class, "err", err)
			e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: string(agents.Start),
				OnFail: def.OnFail, Hard: "node", Reason: err.Error()})
			l.def, l.hold, l.holdGen, l.holdDef = def, true, w.Generation, def
			i.setState(StateFailed)
			return true
		}
		l.d, l.def, l.kind = d, def, def.Info().Kind
	}
	if l.md == nil && l.kind != spec.ClassProcess {
		md, err := l.d.Metadata(e.ctx(i, agents.MetaData))
		i.set(func(i *inst) { i.cancel, i.inflight = nil, "" })
		if i.takeFenceCut() {
			return false
		}
		if err != nil {
			e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: string(agents.Start),
				OnFail: def.OnFail, Hard: "node", Reason: "cannot use the agent: " + err.Error()})
			l.hold, l.holdGen, l.holdDef = true, w.Generation, def
			i.setState(StateFailed)
			return true
		}
		l.md = md
	}
	if !def.IsManaged() {
		return e.unmanagedStep(i, l, s)
	}
	// Definition changes: restart, reload, or take over in place.
	if l.running && restartNeeded(l.def, def) {
		if reloadOnly(l.md, l.def, def) {
			e.update(i, l, def, s)
			op := driver.Resolve(&def, agents.ReloadAgent, "", 0, l.md)
			r := e.act(i, l, op)
			if i.takeFenceCut() {
				return false
			}
			if r.Status == agents.StatusSuccess {
				log.Info("reloaded the agent with the new parameters")
				l.def = def
				return false
			}
			e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: string(agents.ReloadAgent),
				OnFail: spec.OnFailRestart, Restarted: true, Reason: describe(r)})
		}
		log.Info("definition changed: restarting")
		e.stopInst(i, l, "definition changed")
		return false
	}
	if l.running && w.Generation != l.gen {
		log.Info("restart requested", "generation", w.Generation)
		e.stopInst(i, l, "restart requested")
		return false
	}
	if !l.running {
		l.def = def
		e.update(i, l, def, s)
		return e.startStep(i, l, s)
	}
	l.def = def
	e.update(i, l, def, s)
	// Role.
	wantPromoted := w.Role == spec.RolePromoted && def.Mode == spec.ModePromotable && l.noPromote != assignmentID(w)
	if l.noPromote != "" && l.noPromote != assignmentID(w) {
		l.noPromote = ""
	}
	switch {
	case wantPromoted && l.role != spec.RolePromoted:
		if e.leaseOK() {
			e.promote(i, l, s)
			return false
		}
		// No lease: wait for it (wait polls), monitoring meanwhile.
	case !wantPromoted && l.role == spec.RolePromoted:
		e.demote(i, l, s, "")
		return false
	}
	// Peers changed: tell the local instance.
	if def.Notify && !samePeers(l.peers, w.Peers) {
		e.notifyPeers(i, l, w.Peers)
	}
	// Monitor when due.
	if l.hasMonitor && !e.cfg.Now().Before(l.nextCheck) {
		e.monitor(i, l, s)
		return false
	}
	return true
}

// update hands the driver the current definition, epoch and clone size.
func (e *Executor) update(i *inst, l *life, def spec.Resource, s snapshot) {
	l.d.Update(driver.Target{Res: def, Slot: i.slot, Epoch: s.epoch, CloneMax: len(s.want.Peers)})
	role := ""
	if l.role == spec.RolePromoted {
		role = spec.RolePromoted
	}
	l.monitorOp, l.hasMonitor = driver.Monitor(&def, role, l.md)
}

// startStep starts a stopped instance when allowed.
func (e *Executor) startStep(i *inst, l *life, s snapshot) bool {
	def, w := l.def, s.want
	// Mark busy before checking the lease: from here SelfFence sees it.
	i.set(func(i *inst) { i.busy, i.state = true, StateStarting })
	if def.Exclusive() && !e.leaseOK() {
		i.set(func(i *inst) { i.busy = false })
		return true
	}
	if now := e.cfg.Now(); now.Before(l.notBefore) {
		i.set(func(i *inst) { i.busy = false })
		return true
	}
	e.signal()
	if !l.validated || restartNeeded(l.valDef, def) {
		if !e.validate(i, l, s) {
			return false
		}
	}
	op := driver.Resolve(&def, agents.Start, "", 0, l.md)
	r := e.act(i, l, op)
	if i.takeFenceCut() {
		l.running = true // unknown: the kill path stops it
		return false
	}
	if r.Status == agents.StatusSuccess || r.Status == agents.StatusDegraded {
		l.running, l.role, l.gen = true, "", w.Generation
		l.startedAt = e.cfg.Now()
		l.reported = false
		l.peers = w.Peers
		e.update(i, l, def, s)
		l.nextCheck = e.cfg.Now().Add(l.monitorOp.Interval)
		i.setState(StateRunning)
		e.signal()
		e.log.Info("instance running", "slot", i.key, "class", def.Class, "epoch", s.epoch)
		e.notifySelf(i, l, "post", "start")
		return false
	}
	if r.Status == agents.StatusRunningPromoted || r.Status == agents.StatusDegradedPromoted {
		// Already running promoted (found so by start): take it as it is;
		// the role step demotes it if it should not be promoted.
		l.running, l.role, l.gen, l.startedAt = true, spec.RolePromoted, w.Generation, e.cfg.Now()
		i.set(func(i *inst) { i.promoting, i.role, i.state = true, spec.RolePromoted, StateRunning })
		return false
	}
	l.running = true // a failed start may have left something behind
	e.failure(i, l, s, op, r, string(agents.Start))
	return false
}

// validate runs validate-all (and, for OCF, checks the parameters against
// the meta-data) before the first start.
func (e *Executor) validate(i *inst, l *life, s snapshot) bool {
	def := l.def
	if l.md != nil && l.kind == spec.KindOCF {
		if err := checkParams(l.md, def.Params.Values); err != nil {
			e.failure(i, l, s, driver.Resolve(&def, agents.Start, "", 0, l.md),
				agents.Result{Code: agents.OCFErrConfigured, Status: agents.StatusFatalError, Reason: err.Error()}, string(agents.Start))
			return false
		}
	}
	if l.md != nil && !l.md.Supports(string(agents.ValidateAll)) && l.kind == spec.KindOCF {
		l.validated, l.valDef = true, def
		return true
	}
	op := driver.Resolve(&def, agents.ValidateAll, "", 0, l.md)
	r := e.act(i, l, op)
	if i.takeFenceCut() {
		return false
	}
	if r.Status == agents.StatusSuccess {
		l.validated, l.valDef = true, def
		return true
	}
	if r.Reason != "" {
		r.Reason = "validate-all: " + r.Reason
	} else {
		r.Reason = fmt.Sprintf("validate-all: exit code %d (%s)", r.Code, r.Status)
	}
	e.failure(i, l, s, driver.Resolve(&def, agents.Start, "", 0, l.md), r, string(agents.Start))
	return false
}

// alwaysValid are parameters every agent built on ocf-shellfuncs accepts
// without listing them.
var alwaysValid = map[string]bool{"trace_ra": true, "trace_file": true}

func checkParams(md *ocf.Metadata, params map[string]string) error {
	p := map[string]string{}
	for k, v := range params {
		if !alwaysValid[k] {
			p[k] = v
		}
	}
	// Required parameters are the agent's validate-all's business (some
	// agents mark parameters required that have working defaults).
	var unknown []string
	for k := range p {
		if _, ok := md.Parameter(k); !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	err := md.Validate(p)
	if err == nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.Contains(l, "unknown parameter") {
			lines = append(lines, l)
		}
	}
	return fmt.Errorf("%s", strings.Join(lines, "; "))
}

// act runs op with a context SelfFence can cancel, and records the
// promotion score the agent may have set.
func (e *Executor) act(i *inst, l *life, op driver.Op) agents.Result {
	ctx := e.ctx(i, op.Action)
	r := l.d.Run(ctx, op)
	i.mu.Lock()
	if i.cancel != nil {
		i.cancel()
		i.cancel = nil
	}
	i.inflight = ""
	i.mu.Unlock()
	if l.kind == spec.KindOCF {
		sc := e.dirs.score(driver.Target{Res: l.def, Slot: i.slot}.InstanceName())
		i.set(func(i *inst) { i.score = sc })
	}
	return r
}

// ctx returns a context for the next action of i, cancelled by forceKill
// and requestDemote.
func (e *Executor) ctx(i *inst, action agents.Action) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	i.mu.Lock()
	i.cancel, i.inflight = cancel, action
	select {
	case <-i.kill:
		cancel()
	default:
	}
	i.mu.Unlock()
	return ctx
}

// promote promotes a running instance (lease checked by the caller).
func (e *Executor) promote(i *inst, l *life, s snapshot) {
	e.notifySelf(i, l, "pre", "promote")
	i.set(func(i *inst) { i.promoting = true })
	// SelfFence may have run between the caller's lease check and the
	// mark above: look again now that it would see us.
	if !e.leaseOK() {
		i.set(func(i *inst) { i.promoting = false })
		return
	}
	op := driver.Resolve(&l.def, agents.Promote, "", 0, l.md)
	r := e.act(i, l, op)
	if i.takeFenceCut() {
		l.role = spec.RolePromoted // maybe: the demote that follows makes sure
		return
	}
	if r.Status == agents.StatusSuccess {
		l.role = spec.RolePromoted
		e.update(i, l, l.def, s)
		l.nextCheck = e.cfg.Now().Add(l.monitorOp.Interval)
		i.set(func(i *inst) { i.role = spec.RolePromoted })
		e.signal()
		e.log.Info("instance promoted", "slot", i.key)
		e.notifySelf(i, l, "post", "promote")
		return
	}
	l.role = spec.RolePromoted // a failed promote may have half-promoted it
	e.failure(i, l, s, op, r, string(agents.Promote))
}

// demote demotes a promoted instance; reason "" is an ordinary demotion.
func (e *Executor) demote(i *inst, l *life, s snapshot, reason string) bool {
	op := driver.Resolve(&l.def, agents.Demote, "", 0, l.md)
	if reason == reasonLeaseLost {
		op = driver.FenceOp(&l.def, agents.Demote) // the bound the leader knows (driver.FenceWait)
	} else {
		e.notifySelf(i, l, "pre", "demote")
	}
	r := e.act(i, l, op)
	if r.Status == agents.StatusSuccess {
		l.role = ""
		e.update(i, l, l.def, s)
		l.nextCheck = e.cfg.Now().Add(l.monitorOp.Interval)
		i.set(func(i *inst) { i.role, i.promoting = "", false })
		e.signal()
		e.log.Info("instance demoted", "slot", i.key, "reason", reason)
		e.notifySelf(i, l, "post", "demote")
		return true
	}
	if reason == "" {
		e.failure(i, l, s, op, r, string(agents.Demote))
	}
	return false
}

const reasonLeaseLost = "hold lease lost"

// fenceDemote demotes at once because the lease was lost; if demote fails,
// the instance is stopped.
func (e *Executor) fenceDemote(i *inst, l *life) {
	i.takeFenceCut()
	if !l.running || l.role != spec.RolePromoted {
		i.set(func(i *inst) { i.promoting = false })
		return
	}
	e.log.Warn("hold lease lost: demoting", "slot", i.key)
	s := e.snapshot(i)
	if s.want == nil {
		s.want = &api.NodeAssignment{}
	}
	if e.demote(i, l, s, reasonLeaseLost) {
		return
	}
	e.log.Error("demote after the lease loss failed: stopping", "slot", i.key)
	if !e.fenceStop(i, l) {
		e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: string(agents.Stop), OnFail: spec.OnFailBlock,
			Reason: "hold lease lost: neither demote nor stop succeeded; the instance may still be promoted"})
	}
}

// killPath ends the instance for SelfFence (or a shutdown deadline): the
// process class is killed; script classes run their stop.
func (e *Executor) killPath(i *inst, l *life) {
	i.takeFenceCut()
	if l.d == nil || !l.running {
		return
	}
	if l.d.Kill() {
		e.log.Warn("instance killed (self-fence)", "slot", i.key)
		l.running = false
		return
	}
	i.setState(StateStopping)
	op := driver.FenceOp(&l.def, agents.Stop) // the bound the leader knows (driver.FenceWait)
	r := l.d.Run(context.Background(), op)
	if r.Status == agents.StatusSuccess {
		e.log.Warn("instance stopped (self-fence)", "slot", i.key)
		l.running = false
		return
	}
	e.log.Error("stop at self-fence failed: the resource may still run here", "slot", i.key, "reason", describe(r))
	e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: e.epochOf(i), Op: string(agents.Stop), OnFail: op.OnFail,
		Reason: "stop at self-fence failed: " + describe(r)})
}

// fenceStop stops the instance with the fence bound (lease lost).
func (e *Executor) fenceStop(i *inst, l *life) bool {
	i.setState(StateStopping)
	r := l.d.Run(context.Background(), driver.FenceOp(&l.def, agents.Stop))
	if r.Status != agents.StatusSuccess {
		return false
	}
	l.running, l.role = false, ""
	i.set(func(i *inst) { i.role, i.promoting, i.busy, i.state = "", false, false, stateStopped })
	e.signal()
	return true
}

// stopInst stops a running instance (demoting first if promoted) and
// reports whether it is stopped. A failed stop is handled by its onFail.
func (e *Executor) stopInst(i *inst, l *life, why string) bool {
	s := e.snapshot(i)
	if s.want == nil {
		s.want = &api.NodeAssignment{Peers: l.peers}
	}
	if l.role == spec.RolePromoted {
		e.demote(i, l, s, why) // a failed demote: the stop follows anyway
	}
	e.notifySelf(i, l, "pre", "stop")
	i.setState(StateStopping)
	e.signal()
	op := driver.Resolve(&l.def, agents.Stop, "", 0, l.md)
	r := e.act(i, l, op)
	if i.takeFenceCut() && i.killed() {
		return false // the kill path takes over
	}
	if r.Status == agents.StatusSuccess || op.OnFail == spec.OnFailIgnore {
		l.running, l.role = false, ""
		i.set(func(i *inst) { i.role, i.promoting, i.busy, i.state = "", false, false, stateStopped })
		e.log.Info("instance stopped", "slot", i.key, "reason", why)
		e.signal()
		return true
	}
	e.failure(i, l, s, op, r, string(agents.Stop))
	return false
}

// monitor runs the recurring monitor and acts on its result.
func (e *Executor) monitor(i *inst, l *life, s snapshot) {
	op := l.monitorOp
	r := e.act(i, l, op)
	l.nextCheck = e.cfg.Now().Add(op.Interval)
	if i.takeFenceCut() {
		return
	}
	switch r.Status {
	case agents.StatusSuccess, agents.StatusDegraded:
		if l.role == spec.RolePromoted {
			r = agents.Result{Code: r.Code, Status: agents.StatusSoftError, Reason: "the promoted instance reports it is no longer promoted"}
			break
		}
		l.reported = false
		return
	case agents.StatusRunningPromoted, agents.StatusDegradedPromoted:
		if l.role != spec.RolePromoted {
			e.log.Warn("instance found promoted", "slot", i.key)
			l.role = spec.RolePromoted
			e.update(i, l, l.def, s)
			i.set(func(i *inst) { i.role, i.promoting = spec.RolePromoted, true })
			e.signal()
		}
		l.reported = false
		return
	case agents.StatusNotRunning:
		if r.Reason == agents.ReasonLeaseGuard && l.def.Exclusive() {
			e.guardFenced(i, l)
			return
		}
		if r.Reason == "" {
			r.Reason = "not running"
		}
		r.Status = agents.StatusSoftError // a failure here, whatever its code
	case agents.StatusFailedPromoted:
		// Failed, and promoted: recovery demotes it first (demote, stop, start).
		if l.role != spec.RolePromoted {
			l.role = spec.RolePromoted
			i.set(func(i *inst) { i.role, i.promoting = spec.RolePromoted, true })
		}
		if r.Reason == "" {
			r.Reason = "failed promoted"
		}
	}
	e.failure(i, l, s, op, r, string(agents.Monitor))
}

// processExited handles the process class's own report of a failure. A
// kill by the instance's lease guard is a self-fence, not a failure: the
// instance is stopped without a report or a fail count, and starts again
// (here or wherever the leader puts it) once the lease is valid and the
// assignments are fresh, like any exclusive start.
func (e *Executor) processExited(i *inst, l *life, s snapshot, reason string) {
	if reason == agents.ReasonLeaseGuard {
		e.guardFenced(i, l)
		return
	}
	op := driver.Resolve(&l.def, agents.Monitor, "", 0, nil)
	e.log.Warn("instance failed", "slot", i.key, "reason", reason)
	e.failure(i, l, s, op, agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, Reason: reason}, "")
}

// guardFenced handles an instance its lease guard ended (the hold lease
// ran out while the agent could not act): a self-fence, not a failure.
// It is stopped without a report or a fail count and starts again
// (here, if it is still assigned here) once the lease is valid and the
// assignments are fresh, like any exclusive start.
func (e *Executor) guardFenced(i *inst, l *life) {
	e.log.Warn("instance self-fenced: its lease guard ended it when the hold lease ran out (not counted as a failure); it starts again once the lease is renewed",
		"slot", i.key)
	e.cleanupStop(i, l)
	l.backoff, l.notBefore, l.reported = 0, time.Time{}, false
	i.setState(StateStarting)
	e.signal()
}

// hardScope returns the Failure.Hard scope of a result.
func hardScope(r agents.Result) string {
	switch r.Status.Severity() {
	case agents.SeverityFatal:
		return "cluster"
	case agents.SeverityHard:
		return "node"
	}
	return ""
}

func describe(r agents.Result) string {
	if r.Reason != "" {
		if r.Code >= 0 && !r.TimedOut {
			return fmt.Sprintf("%s (exit code %d, %s)", r.Reason, r.Code, r.Status)
		}
		return r.Reason
	}
	return fmt.Sprintf("exit code %d (%s)", r.Code, r.Status)
}

// failure reports a failed operation and recovers according to its onFail
// (see docs/agents.md, "Failures").
func (e *Executor) failure(i *inst, l *life, s snapshot, op driver.Op, r agents.Result, opName string) {
	f := api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: opName, OnFail: op.OnFail, Hard: hardScope(r), Reason: describe(r)}
	if opName == "" {
		f.Reason = r.Reason
	}
	log := e.log.With("slot", i.key, "op", opName, "onFail", op.OnFail)
	gen := uint64(0)
	if s.want != nil {
		gen = s.want.Generation
	}
	processDead := l.kind == spec.ClassProcess && opName == ""
	switch {
	case opName == string(agents.Stop):
		e.report(f)
		switch op.OnFail {
		case spec.OnFailRestart, spec.OnFailStop:
			log.Warn("stop failed: retrying", "reason", f.Reason)
			l.backoff = nextBackoff(l.backoff)
			l.notBefore = e.cfg.Now().Add(l.backoff)
			e.sleepUntil(i, l.notBefore)
		default:
			log.Error("stop failed: blocked (the resource may still run; it is left alone until a restart request)", "reason", f.Reason)
			l.blocked, l.holdGen = true, gen
			i.setState(StateFailed)
		}
	case f.Hard != "":
		log.Error("failed: no retry here can fix it", "hard", f.Hard, "reason", f.Reason)
		e.report(f)
		l.hold, l.holdGen, l.holdDef = true, gen, l.def
		if processDead {
			e.cleanupStop(i, l)
		}
		i.setState(StateFailed)
	case op.OnFail == spec.OnFailBlock:
		log.Error("failed: blocked until a restart request", "reason", f.Reason)
		e.report(f)
		l.blocked, l.holdGen = true, gen
		i.setState(StateFailed)
	case op.OnFail == spec.OnFailIgnore && opName == string(agents.Monitor):
		if !l.reported {
			log.Warn("monitor failed (ignored)", "reason", f.Reason)
			e.report(f)
			l.reported = true
		}
	case op.OnFail == spec.OnFailDemote && l.role == spec.RolePromoted:
		log.Warn("failed: demoting", "reason", f.Reason)
		e.report(f)
		if s.want != nil {
			l.noPromote = assignmentID(s.want)
		}
		if !e.demote(i, l, s, "onFail demote") {
			e.recover(i, l, s, r)
		}
	case op.OnFail == spec.OnFailRestart || op.OnFail == spec.OnFailIgnore || op.OnFail == spec.OnFailDemote || op.OnFail == "":
		f.Restarted = true
		log.Warn("failed: restarting in place", "reason", f.Reason)
		e.report(f)
		e.recover(i, l, s, r)
	default: // stop, migrate, standby, fence: the leader acts
		log.Warn("failed: reported, waiting for the leader", "reason", f.Reason)
		e.report(f)
		l.hold, l.holdGen, l.holdDef = true, gen, l.def
		if processDead {
			e.cleanupStop(i, l)
		}
		i.setState(StateFailed)
	}
	if !l.running {
		i.set(func(i *inst) { i.busy = false })
	}
	e.signal()
}

// cleanupStop stops a dead process instance so that its driver lets go.
func (e *Executor) cleanupStop(i *inst, l *life) {
	l.d.Run(context.Background(), driver.Resolve(&l.def, agents.Stop, "", 0, nil))
	l.running, l.role = false, ""
	i.set(func(i *inst) { i.busy, i.promoting, i.role = false, false, "" })
}

// recover restarts in place: demote (if promoted), stop, then start after
// the backoff.
func (e *Executor) recover(i *inst, l *life, s snapshot, r agents.Result) {
	if l.running {
		if !e.stopInst(i, l, "recovering") {
			return // the stop failure was handled
		}
	}
	if !l.startedAt.IsZero() && e.cfg.Now().Sub(l.startedAt) > 10*time.Second {
		l.backoff = 0
	}
	l.backoff = nextBackoff(l.backoff)
	l.notBefore = e.cfg.Now().Add(l.backoff)
	i.setState(StateStarting)
}

// sleepUntil waits until t, a kill or a demote request.
func (e *Executor) sleepUntil(i *inst, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-i.kill:
	}
}

// unmanagedStep watches an unmanaged resource: a probe first, then its
// recurring monitor; it never starts, stops, promotes or demotes it.
func (e *Executor) unmanagedStep(i *inst, l *life, s snapshot) bool {
	def := s.def
	l.def = def
	l.d.Update(driver.Target{Res: def, Slot: i.slot, Epoch: s.epoch, CloneMax: len(s.want.Peers)})
	if l.probed && e.cfg.Now().Before(l.nextCheck) {
		return true
	}
	role := ""
	if l.role == spec.RolePromoted {
		role = spec.RolePromoted
	}
	op, ok := driver.Monitor(&def, role, l.md)
	if !ok {
		op = driver.Resolve(&def, agents.Monitor, role, 0, l.md)
		op.Interval = 0
	}
	interval := op.Interval
	if interval <= 0 {
		interval = driver.DefaultMonitorInterval
	}
	if !l.probed {
		op.Interval = 0 // the first look is a probe
	}
	r := e.act(i, l, op)
	if i.takeFenceCut() {
		return false
	}
	l.probed = true
	l.hasMonitor = ok
	l.gen = s.want.Generation // becoming managed is no restart request
	l.nextCheck = e.cfg.Now().Add(interval)
	switch r.Status {
	case agents.StatusSuccess, agents.StatusDegraded:
		l.running, l.role, l.reported = true, "", false
		i.set(func(i *inst) { i.state, i.role, i.busy, i.promoting = StateRunning, "", true, false })
	case agents.StatusRunningPromoted, agents.StatusDegradedPromoted:
		l.running, l.role, l.reported = true, spec.RolePromoted, false
		i.set(func(i *inst) { i.state, i.role, i.busy, i.promoting = StateRunning, spec.RolePromoted, true, true })
	case agents.StatusNotRunning:
		l.running, l.role, l.reported = false, "", false
		i.set(func(i *inst) { i.state, i.role, i.busy, i.promoting = stateStopped, "", false, false })
	default:
		l.running = true
		i.set(func(i *inst) { i.state, i.busy = StateFailed, true })
		if !l.reported {
			l.reported = true
			e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: s.epoch, Op: string(agents.Monitor), OnFail: op.OnFail,
				Hard: hardScope(r), Reason: "unmanaged: " + describe(r)})
		}
	}
	e.signal()
	return false
}

// wait blocks until something may have changed: the assignment, a monitor
// falling due, the process class's own failure report, a kill, a demote
// request; it polls while an exclusive action waits for the lease.
func (e *Executor) wait(i *inst, l *life, s snapshot) {
	var due time.Duration = -1
	managed := s.want != nil && s.def.IsManaged() && !s.maint && !s.def.Maintenance
	watchOnly := s.want != nil && !s.def.IsManaged() && !s.maint && !s.def.Maintenance && !l.hold && !l.blocked
	if watchOnly || (managed && l.running && !l.hold && !l.blocked && l.hasMonitor) {
		due = time.Until(l.nextCheck)
	}
	if !l.running && !l.notBefore.IsZero() {
		if d := time.Until(l.notBefore); due < 0 || d < due {
			due = d
		}
	}
	// Waiting for the lease (start of an exclusive instance, promotion):
	// poll, since nothing signals a renewed lease.
	if managed && !l.hold && !l.blocked {
		if (!l.running && s.def.Exclusive()) || (l.running && s.want.Role == spec.RolePromoted && l.role != spec.RolePromoted && l.noPromote != assignmentID(s.want)) {
			if due < 0 || due > 20*time.Millisecond {
				due = 20 * time.Millisecond
			}
		}
	}
	var timer <-chan time.Time
	if due >= 0 {
		t := time.NewTimer(max(due, 0))
		defer t.Stop()
		timer = t.C
	}
	var failed <-chan string
	if l.d != nil && l.running && managed && !l.hold && !l.blocked {
		failed = l.d.Failed()
	}
	select {
	case <-i.wake:
	case <-i.kill:
	case <-timer:
	case reason := <-failed:
		if i.killed() {
			return
		}
		e.processExited(i, l, e.snapshot(i), reason)
	}
}

// restartNeeded reports whether a definition change needs a restart (or a
// reload): a new class, mode, health check or parameters. Everything else
// (operations, policy, placement) applies in place.
func restartNeeded(old, new spec.Resource) bool {
	return old.Class != new.Class || old.Mode != new.Mode || !reflect.DeepEqual(old.Health, new.Health) || !paramsEqual(old.Params, new.Params)
}

func paramsEqual(a, b spec.Params) bool {
	return reflect.DeepEqual(a.Command, b.Command) && mapsEqual(a.Env, b.Env) && a.Dir == b.Dir &&
		a.StopTimeout == b.StopTimeout && a.StartTimeout == b.StartTimeout && mapsEqual(a.Values, b.Values)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// reloadOnly reports whether only parameters the meta-data marks
// reloadable changed, and the agent implements reload-agent.
func reloadOnly(md *ocf.Metadata, old, new spec.Resource) bool {
	if md == nil || !md.Supports(string(agents.ReloadAgent)) {
		return false
	}
	if old.Class != new.Class || old.Mode != new.Mode || !reflect.DeepEqual(old.Health, new.Health) {
		return false
	}
	changed := map[string]bool{}
	for k, v := range old.Params.Values {
		if w, ok := new.Params.Values[k]; !ok || w != v {
			changed[k] = true
		}
	}
	for k := range new.Params.Values {
		if _, ok := old.Params.Values[k]; !ok {
			changed[k] = true
		}
	}
	if len(changed) == 0 {
		return false
	}
	for k := range changed {
		p, ok := md.Parameter(k)
		if !ok || !p.Reloadable {
			return false
		}
	}
	return true
}
