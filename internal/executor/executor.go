// Package executor runs, on every node, the resource instances the leader
// assigned to it, whatever their class (process, ocf, lsb, systemd; see
// internal/agents/driver): it probes what already runs, starts what is
// assigned, promotes and demotes following the assigned role, monitors,
// recovers failed instances in place or reports them to the leader
// according to each operation's onFail, stops what is no longer assigned,
// and self-fences when the node's hold lease runs out.
//
// Safety rules enforced here (DESIGN §3, docs/safety.md):
//   - an exclusive instance starts, and a promotable instance is
//     promoted, only while the hold lease is valid and only once the node
//     has seen the assignments at least as new as the acknowledgement that
//     ended its last lease gap (so a reassignment made while this node was
//     presumed gone is always seen first);
//   - when the lease runs out (SelfFence), exclusive instances are killed
//     (process class: SIGKILL to the group) or stopped (script classes:
//     their stop action, the in-flight action cancelled first), and
//     promoted instances are demoted (stopped if demote fails);
//   - assignments older than the newest epoch seen for a slot are ignored (I4).
package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/agents/lsb"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/guard"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/spec"
)

// Instance states as reported to the leader.
const (
	StateStarting = "starting" // waiting to start (lease, backoff) or starting
	StateRunning  = "running"
	StateStopping = "stopping"
	StateFailed   = "failed" // failed and held for the leader, or blocked (onFail block)
	// stateStopped is internal: an unmanaged instance found not running,
	// or one between stop and start; it is not reported.
	stateStopped = "stopped"
)

// Config wires an executor.
type Config struct {
	Node   string
	Holder *lease.Holder
	// LogDir receives process-class output as LogDir/<resource>-<slot>.log.
	LogDir string
	// StateDir holds the executor's working files: the crm_attribute,
	// crm_master, crm_node and attrd_updater shims OCF agents call
	// (StateDir/bin), the promotion scores they set (StateDir/scores) and
	// other node attributes (StateDir/attrs). "" = LogDir/../executor, or a
	// temporary directory when LogDir is empty too.
	StateDir string
	// OCFRoot (default /usr/lib/ocf), RscTmp (HA_RSCTMP, default
	// /run/resource-agents) and LSBDir (default /etc/init.d) override
	// Debian's layout.
	OCFRoot, RscTmp, LSBDir string
	// ScriptEnv is added to the environment of every OCF and LSB action.
	ScriptEnv map[string]string
	// OCFPrefix, if set, is an argv OCF agents run under, e.g. {"ip",
	// "netns", "exec", "NAME"} (it must exec the agent); tests and labs.
	OCFPrefix []string
	// Systemd returns the Invoker of a "systemd:UNIT" class (e.g. a
	// wrapper of systemd.New); nil: that class is reported as unsupported.
	Systemd func(class string) (agents.Invoker, error)
	// MaxProbes bounds the probes run at once (default 4).
	MaxProbes int
	Logger    *slog.Logger
	Report    func(api.Failure) // called from instance goroutines; must not block long
	Now       func() time.Time
	Cluster   string
}

// Executor is the node-local runner.
type Executor struct {
	cfg     Config
	log     *slog.Logger
	drivers *driver.Factory
	guards  *guard.Feed
	dirs    shimDirs

	mu          sync.Mutex
	insts       map[string]*inst
	maxEpoch    map[string]uint64
	applied     uint64
	gapIndex    uint64
	desired     []api.NodeAssignment
	maint       bool
	closed      bool
	probeItems  map[string]api.ProbeItem
	probes      map[string]*probeRec
	probeDone   map[string]bool // identities (probeID) of the probes that finished
	changed     chan struct{}
	fresh       chan struct{}
	probeSem    chan struct{}
	bg          sync.WaitGroup // probe and orphan goroutines
	bgCtx       context.Context
	bgCancel    context.CancelFunc
	closeDriver sync.Once

	// attrMu guards the cache of agent-set node attributes (NodeAttributes).
	attrMu    sync.Mutex
	attrMtime time.Time
	attrCache map[string]string
}

// New returns an executor with nothing running. It writes the agent shims
// into StateDir (failures are logged: OCF agents then cannot report
// promotion scores).
func New(cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = 4
	}
	if cfg.StateDir == "" {
		if cfg.LogDir != "" {
			cfg.StateDir = filepath.Join(filepath.Dir(filepath.Clean(cfg.LogDir)), "executor")
		} else if d, err := os.MkdirTemp("", "paceline-executor-"); err == nil {
			cfg.StateDir = d
		}
	}
	e := &Executor{cfg: cfg, log: cfg.Logger, insts: map[string]*inst{}, maxEpoch: map[string]uint64{},
		changed: make(chan struct{}, 1), fresh: make(chan struct{}, 1),
		probeItems: map[string]api.ProbeItem{}, probes: map[string]*probeRec{}, probeDone: map[string]bool{},
		probeSem: make(chan struct{}, cfg.MaxProbes)}
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	if cfg.Holder != nil {
		// Guards fire half a margin before the holder's deadline: a
		// guard's clock starts when it reads the deadline (pipe latency).
		e.guards = guard.NewFeed(guard.FeedOptions{Deadline: cfg.Holder.Deadline, Lead: cfg.Holder.Margin() / 2, Now: cfg.Now, Logger: e.log})
	}
	dirs, err := writeShims(cfg.StateDir)
	if err != nil {
		e.log.Error("cannot write the crm_attribute/crm_master shims: OCF agents cannot report promotion scores", "dir", cfg.StateDir, "err", err)
	}
	e.dirs = dirs
	ocfEnv := map[string]string{}
	for k, v := range cfg.ScriptEnv {
		ocfEnv[k] = v
	}
	for k, v := range dirs.env(cfg.Node) {
		ocfEnv[k] = v
	}
	e.drivers = driver.NewFactory(driver.Options{
		Node: cfg.Node, Cluster: cfg.Cluster, LogDir: cfg.LogDir,
		OCF:     ocf.Options{Root: cfg.OCFRoot, RscTmp: cfg.RscTmp, Env: ocfEnv, Prefix: cfg.OCFPrefix, Logger: e.log},
		LSB:     lsb.Options{Dir: cfg.LSBDir, Env: cfg.ScriptEnv, Logger: e.log},
		Systemd: cfg.Systemd,
		Logger:  e.log,
		Guards:  e.guards,
	})
	return e
}

// LeaseRenewed hands the new hold-lease deadline to the lease guards of
// the running instances (internal/guard). Call it at every acknowledged
// renewal.
func (e *Executor) LeaseRenewed(deadline time.Time) { e.guards.Renewed(deadline) }

// KeepWithoutLease installs the test of whether the node keeps its
// exclusive resources when it loses the lease (noQuorumPolicy freeze or
// ignore): while it answers true, the lease guards act only when the agent
// dies, never at the deadline. It is asked when a guard starts, at every
// renewal and at RecheckGuards.
func (e *Executor) KeepWithoutLease(keep func() bool) { e.guards.SetKeepFunc(keep) }

// RecheckGuards asks the KeepWithoutLease test again and tells the guards
// at once if the answer changed (call it when new assignments arrive).
func (e *Executor) RecheckGuards() { e.guards.Recheck() }

// Changed signals (coalesced) that the active set changed; the renewer
// reports early.
func (e *Executor) Changed() <-chan struct{} { return e.changed }

func (e *Executor) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// LeaseRegained tells the executor that an acknowledgement ended a lease gap;
// exclusive instances wait until assignments at index ≥ idx were applied.
func (e *Executor) LeaseRegained(idx uint64) {
	e.mu.Lock()
	if idx > e.gapIndex {
		e.gapIndex = idx
	}
	behind := e.applied < e.gapIndex
	e.mu.Unlock()
	if behind {
		select {
		case e.fresh <- struct{}{}:
		default:
		}
	}
	e.Reconcile()
}

// NeedFresh signals that assignments newer than those applied are needed
// before exclusive instances may start (after a lease gap).
func (e *Executor) NeedFresh() <-chan struct{} { return e.fresh }

// Behind reports whether applied assignments are older than the last lease gap's index.
func (e *Executor) Behind() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied < e.gapIndex
}

// Update installs a new assignment set read at index idx.
func (e *Executor) Update(a api.Assignments) {
	e.mu.Lock()
	if a.Index < e.applied {
		e.mu.Unlock()
		return
	}
	e.applied = a.Index
	// A held instance (ordered bootstrap: the leader wants another node
	// to start first) is not started here; one that already runs stays.
	items := make([]api.NodeAssignment, 0, len(a.Items))
	for _, it := range a.Items {
		if it.Held {
			if i, ok := e.insts[fmt.Sprintf("%s:%d", it.Resource, it.Slot)]; !ok || !i.active() {
				continue
			}
		}
		items = append(items, it)
	}
	e.desired = items
	e.maint = a.Maintenance
	e.probeItems = map[string]api.ProbeItem{}
	listed := map[string]bool{}
	for _, p := range a.Probes {
		e.probeItems[p.Resource] = p
		listed[probeID(p)] = true
	}
	for id := range e.probeDone {
		if !listed[id] {
			delete(e.probeDone, id) // listed again later: probed again
		}
	}
	e.mu.Unlock()
	e.Reconcile()
}

// Applied returns the assignments index acted on.
func (e *Executor) Applied() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied
}

// Active lists what runs here: assigned instances (starting, running,
// stopping and failed ones; with their role and the promotion score their
// agent set) and, with Probed and Slot -1, instances a probe found running
// that are not assigned here.
func (e *Executor) Active() []api.ActiveInstance {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]api.ActiveInstance, 0, len(e.insts))
	for _, i := range e.insts {
		st := i.report()
		if st.State == stateStopped || st.State == "" {
			continue
		}
		st.Resource, st.Slot, st.Epoch = i.name, i.slot, i.epoch
		out = append(out, st)
	}
	for _, p := range e.probes {
		if a, ok := p.report(); ok {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Resource != out[b].Resource {
			return out[a].Resource < out[b].Resource
		}
		return out[a].Slot < out[b].Slot
	})
	return out
}

// Reconcile hands every instance its assignment (or the lack of one),
// creates instances for new slots and starts probes.
func (e *Executor) Reconcile() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	want := map[string]api.NodeAssignment{}
	for _, a := range e.desired {
		k := fmt.Sprintf("%s:%d", a.Resource, a.Slot)
		if a.Epoch < e.maxEpoch[k] {
			e.log.Warn("ignoring assignment older than one already seen", "slot", k, "epoch", a.Epoch, "newest", e.maxEpoch[k])
			continue
		}
		e.maxEpoch[k] = a.Epoch
		want[k] = a
	}
	if e.maint {
		// Cluster maintenance: leave everything as it is (instances see
		// e.maint and stop monitoring and recovering).
		for _, i := range e.insts {
			i.poke()
		}
		return
	}
	for k, i := range e.insts {
		a, ok := want[k]
		var def spec.Resource
		if ok {
			if err := json.Unmarshal(a.Def, &def); err != nil {
				e.log.Error("undecodable resource definition", "slot", k, "err", err)
				ok = false
			}
		}
		if ok {
			a := a
			i.want, i.wantDef, i.epoch = &a, def, a.Epoch
		} else {
			i.want = nil
		}
		i.poke()
	}
	for k, a := range want {
		if _, ok := e.insts[k]; ok {
			continue
		}
		var def spec.Resource
		if err := json.Unmarshal(a.Def, &def); err != nil {
			e.log.Error("undecodable resource definition", "slot", k, "err", err)
			continue
		}
		a := a
		i := newInst(k, a.Resource, a.Slot, def)
		i.want, i.wantDef, i.epoch = &a, def, a.Epoch
		e.insts[k] = i
		go e.run(i)
	}
	e.reconcileProbes()
	e.signal()
}

// assignedLocked reports whether resource has an assigned instance here.
func (e *Executor) assignedLocked(resource string) bool {
	for _, i := range e.insts {
		if i.name == resource && i.want != nil {
			return true
		}
	}
	return false
}

// SelfFence acts on the loss of the hold lease: every exclusive instance
// that may be running is killed (process class) or stopped (script
// classes), and every promoted instance is demoted (stopped if demote
// fails), at once; in-flight actions of those instances are cancelled
// first. It returns when that is done, with the slots it acted on.
func (e *Executor) SelfFence() []string {
	e.mu.Lock()
	var kill, demote []*inst
	for _, i := range e.insts {
		switch {
		case i.exclusive() && i.active():
			kill = append(kill, i)
		case i.promoted():
			demote = append(demote, i)
		}
	}
	orphans := e.fenceOrphansLocked()
	e.mu.Unlock()
	var out []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, i := range kill {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i.forceKill()
			<-i.done
			mu.Lock()
			out = append(out, i.key)
			mu.Unlock()
		}()
	}
	for _, i := range demote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ack := i.requestDemote()
			select {
			case <-ack:
			case <-i.done:
			}
			mu.Lock()
			out = append(out, i.key)
			mu.Unlock()
		}()
	}
	for _, p := range orphans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-p.stopped
			mu.Lock()
			out = append(out, p.res.Name+":probed")
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(out)
	return out
}

// HasExclusive reports whether anything SelfFence would act on is present:
// an exclusive instance that may be running (starting, running, stopping
// or failed), a promoted instance, or such an instance found by a probe.
func (e *Executor) HasExclusive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, i := range e.insts {
		if (i.exclusive() && i.active()) || i.promoted() {
			return true
		}
	}
	for _, p := range e.probes {
		if p.fenceable() {
			return true
		}
	}
	return false
}

// StopAll stops every instance gracefully and waits (agent shutdown);
// when ctx ends first, what is left is killed (process class) or its stop
// is not waited for beyond its own timeout (script classes).
func (e *Executor) StopAll(ctx context.Context) {
	e.mu.Lock()
	e.closed = true
	var all []*inst
	for _, i := range e.insts {
		all = append(all, i)
		i.poke()
	}
	e.stopOrphansLocked()
	e.mu.Unlock()
	for _, i := range all {
		select {
		case <-i.done:
		case <-ctx.Done():
			i.forceKill()
			<-i.done
		}
	}
	bgDone := make(chan struct{})
	go func() { e.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
		e.bgCancel()
		<-bgDone
	}
	e.bgCancel()
	e.closeDriver.Do(e.drivers.Close)
}

// epochOf reads an instance's epoch (Reconcile updates it under e.mu).
func (e *Executor) epochOf(i *inst) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return i.epoch
}

// leaseOK reports whether an exclusive action (start of an exclusive
// instance, promotion) is allowed now: the hold lease is valid and the
// assignments applied are at least as new as the last lease gap's index.
//
// The lease must also outlast the guards' lead (half the margin): a
// process started later would get a guard that fires at once.
func (e *Executor) leaseOK() bool {
	if e.cfg.Holder == nil || !e.cfg.Holder.Valid(e.cfg.Now()) {
		return false
	}
	if !e.cfg.Now().Before(e.cfg.Holder.Deadline().Add(-e.cfg.Holder.Margin() / 2)) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied >= e.gapIndex && e.gapIndex > 0
}

func (e *Executor) report(f api.Failure) {
	f.Node = e.cfg.Node
	if e.cfg.Report != nil {
		e.cfg.Report(f)
	}
}

func nextBackoff(b time.Duration) time.Duration {
	switch {
	case b == 0:
		return 0 + time.Nanosecond // first restart is immediate
	case b < 100*time.Millisecond:
		return 100 * time.Millisecond
	case b >= 5*time.Second:
		return 5 * time.Second
	default:
		return 2 * b
	}
}
