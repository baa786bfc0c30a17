// Package executor runs, on every node, the resource instances the leader
// assigned to it: it starts what is assigned, stops what is not, restarts
// failed instances in place, reports failures, and self-fences (kills every
// exclusive instance at once) when the node's hold lease runs out.
//
// Safety rules enforced here (DESIGN §3):
//   - an exclusive instance starts only while the hold lease is valid and
//     only once the node has seen the assignments at least as new as the
//     acknowledgement that ended its last lease gap (so a reassignment made
//     while this node was presumed gone is always seen first);
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
	"strconv"
	"sync"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents/process"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/spec"
)

// Instance states as reported to the leader.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateFailed   = "failed"
)

// Config wires an executor.
type Config struct {
	Node    string
	Holder  *lease.Holder
	LogDir  string // instance output goes to LogDir/<resource>-<slot>.log
	Logger  *slog.Logger
	Report  func(api.Failure) // called from instance goroutines; must not block long
	Now     func() time.Time
	Cluster string
}

type inst struct {
	key   string
	res   spec.Resource
	slot  int
	epoch uint64

	mu    sync.Mutex
	state string

	stop     chan struct{} // graceful stop
	kill     chan struct{} // immediate kill (self-fence)
	done     chan struct{}
	once     sync.Once
	killOnce sync.Once
	wake     chan struct{}
	logf     io.Closer // output file of the current attempt
}

func (i *inst) closeLog() {
	if i.logf != nil {
		i.logf.Close()
		i.logf = nil
	}
}

func (i *inst) setState(s string) {
	i.mu.Lock()
	i.state = s
	i.mu.Unlock()
}

func (i *inst) getState() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// Executor is the node-local runner.
type Executor struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	insts    map[string]*inst
	maxEpoch map[string]uint64
	applied  uint64
	gapIndex uint64
	desired  []api.NodeAssignment
	maint    bool
	closed   bool
	changed  chan struct{}
	fresh    chan struct{}
}

// New returns an executor with nothing running.
func New(cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Executor{cfg: cfg, log: cfg.Logger, insts: map[string]*inst{}, maxEpoch: map[string]uint64{}, changed: make(chan struct{}, 1), fresh: make(chan struct{}, 1)}
}

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
	e.desired = a.Items
	e.maint = a.Maintenance
	e.mu.Unlock()
	e.Reconcile()
}

// Applied returns the assignments index acted on.
func (e *Executor) Applied() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied
}

// Active lists what runs here (including starting, stopping and failed).
func (e *Executor) Active() []api.ActiveInstance {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]api.ActiveInstance, 0, len(e.insts))
	for _, i := range e.insts {
		out = append(out, api.ActiveInstance{Resource: i.res.Name, Slot: i.slot, Epoch: i.epoch, State: i.getState()})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Resource != out[b].Resource {
			return out[a].Resource < out[b].Resource
		}
		return out[a].Slot < out[b].Slot
	})
	return out
}

// Reconcile starts what is assigned and stops what is not.
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
		// Cluster maintenance: leave everything as it is.
		return
	}
	for k, i := range e.insts {
		a, ok := want[k]
		var def spec.Resource
		if ok {
			if err := json.Unmarshal(a.Def, &def); err != nil {
				ok = false
			}
		}
		if !ok || !sameDef(def, i.res) {
			e.log.Info("stopping instance", "slot", k, "reason", map[bool]string{true: "definition changed", false: "no longer assigned here"}[ok])
			i.requestStop()
			continue
		}
		i.epoch = a.Epoch
		select {
		case i.wake <- struct{}{}:
		default:
		}
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
		i := &inst{key: k, res: def, slot: a.Slot, epoch: a.Epoch, state: StateStarting,
			stop: make(chan struct{}), kill: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
		e.insts[k] = i
		go e.run(i)
	}
	e.signal()
}

func sameDef(a, b spec.Resource) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func (i *inst) requestStop() {
	i.once.Do(func() { close(i.stop) })
}

// forceKill asks for an immediate kill. SelfFence (the fence loop) and
// StopAll (shutdown, crash) may ask at the same time.
func (i *inst) forceKill() {
	i.killOnce.Do(func() { close(i.kill) })
}

// SelfFence kills every exclusive instance at once (the lease ran out).
// It returns the slots it killed.
func (e *Executor) SelfFence() []string {
	e.mu.Lock()
	var victims []*inst
	for _, i := range e.insts {
		if i.res.Exclusive() {
			victims = append(victims, i)
		}
	}
	e.mu.Unlock()
	var out []string
	for _, i := range victims {
		i.forceKill()
		<-i.done
		out = append(out, i.key)
	}
	sort.Strings(out)
	return out
}

// HasExclusive reports whether an exclusive instance is present (any state).
func (e *Executor) HasExclusive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, i := range e.insts {
		if i.res.Exclusive() {
			return true
		}
	}
	return false
}

// StopAll stops every instance gracefully and waits (agent shutdown).
func (e *Executor) StopAll(ctx context.Context) {
	e.mu.Lock()
	e.closed = true
	var all []*inst
	for _, i := range e.insts {
		all = append(all, i)
		i.requestStop()
	}
	e.mu.Unlock()
	for _, i := range all {
		select {
		case <-i.done:
		case <-ctx.Done():
			i.forceKill()
			<-i.done
		}
	}
}

// epochOf reads an instance's epoch (Reconcile updates it under e.mu).
func (e *Executor) epochOf(i *inst) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return i.epoch
}

func (e *Executor) mayStart(i *inst) bool {
	if !i.res.Exclusive() {
		return true
	}
	if !e.cfg.Holder.Valid(e.cfg.Now()) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied >= e.gapIndex && e.gapIndex > 0
}

// run is the life of one instance: start, watch, restart in place on
// failure (per onFail), stop when asked, die at once when killed.
func (e *Executor) run(i *inst) {
	defer func() {
		i.closeLog()
		e.mu.Lock()
		if e.insts[i.key] == i {
			delete(e.insts, i.key)
		}
		e.mu.Unlock()
		close(i.done)
		e.signal()
		e.Reconcile()
	}()
	log := e.log.With("slot", i.key)
	backoff := time.Duration(0)
	for attempt := 0; ; attempt++ {
		// Wait until allowed to start (exclusive: valid lease, fresh assignments).
		for !e.mayStart(i) {
			select {
			case <-i.stop:
				return
			case <-i.kill:
				return
			case <-i.wake:
			case <-time.After(20 * time.Millisecond):
			}
		}
		if backoff > 0 {
			select {
			case <-i.stop:
				return
			case <-i.kill:
				return
			case <-time.After(backoff):
			}
			if !e.mayStart(i) {
				continue
			}
		}
		i.setState(StateStarting)
		e.signal()
		i.closeLog()
		p, err := e.start(i)
		if err != nil {
			log.Error("start failed", "err", err)
			if !e.failed(i, "start failed: "+err.Error()) {
				return
			}
			backoff = nextBackoff(backoff)
			continue
		}
		started := e.cfg.Now()
		reason := ""
		if i.res.Health != nil {
			timeout := i.res.Params.StartTimeout.D()
			if timeout <= 0 {
				timeout = 20 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			go func() {
				select {
				case <-i.stop:
				case <-i.kill:
				case <-ctx.Done():
				}
				cancel()
			}()
			if err := p.WaitHealthy(ctx); err != nil {
				reason = "did not become healthy: " + err.Error()
			}
			cancel()
			// Checks that failed while it was starting do not count.
			select {
			case <-p.Unhealthy():
			default:
			}
		}
		if reason == "" {
			i.setState(StateRunning)
			e.signal()
			log.Info("instance running", "pid", p.PID(), "epoch", e.epochOf(i))
			select {
			case <-p.Done():
				reason = "process exited: " + p.ExitStatus()
			case r := <-p.Unhealthy():
				reason = "health check failed: " + r
			case <-i.stop:
				i.setState(StateStopping)
				e.signal()
				e.stopProc(i, p)
				return
			case <-i.kill:
				p.Kill()
				log.Warn("instance killed (self-fence)")
				return
			}
		}
		// Failure path.
		select {
		case <-i.kill:
			p.Kill()
			return
		default:
		}
		p.Kill()
		select {
		case <-i.stop:
			return
		default:
		}
		log.Warn("instance failed", "reason", reason)
		if !e.failed(i, reason) {
			return
		}
		if e.cfg.Now().Sub(started) > 10*time.Second {
			backoff = 0
		} else {
			backoff = nextBackoff(backoff)
		}
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

// failed reports a failure and tells whether to restart in place.
func (e *Executor) failed(i *inst, reason string) bool {
	onFail := i.res.OnFail
	restart := onFail == "" || onFail == spec.OnFailRestart || onFail == spec.OnFailIgnore
	if e.cfg.Report != nil {
		e.cfg.Report(api.Failure{Node: e.cfg.Node, Resource: i.res.Name, Slot: i.slot, Epoch: e.epochOf(i), Reason: reason, Restarted: restart})
	}
	if restart {
		return true
	}
	i.setState(StateFailed)
	e.signal()
	select {
	case <-i.stop:
	case <-i.kill:
	}
	return false
}

func (e *Executor) stopProc(i *inst, p *process.Proc) {
	timeout := i.res.Params.StopTimeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-i.kill:
			p.Kill()
		case <-ctx.Done():
		}
	}()
	if err := p.Stop(ctx); err != nil {
		e.log.Warn("stop", "slot", i.key, "err", err)
	}
}

func (e *Executor) start(i *inst) (*process.Proc, error) {
	if i.res.Class != "process" {
		return nil, fmt.Errorf("class %q is not supported by this agent", i.res.Class)
	}
	env := map[string]string{}
	for k, v := range i.res.Params.Env {
		env[k] = v
	}
	env["PACELINE_RESOURCE"] = i.res.Name
	env["PACELINE_SLOT"] = strconv.Itoa(i.slot)
	env["PACELINE_EPOCH"] = strconv.FormatUint(e.epochOf(i), 10)
	env["PACELINE_NODE"] = e.cfg.Node
	env["PACELINE_CLUSTER"] = e.cfg.Cluster
	var out io.Writer = io.Discard
	if e.cfg.LogDir != "" {
		if err := os.MkdirAll(e.cfg.LogDir, 0o755); err == nil {
			f, err := os.OpenFile(filepath.Join(e.cfg.LogDir, fmt.Sprintf("%s-%d.log", i.res.Name, i.slot)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err == nil {
				out = f
				i.closeLog()
				i.logf = f // closed when this attempt is over (closeLog)
			}
		}
	}
	cfg := process.Config{Name: i.key, Command: i.res.Params.Command, Env: env, Dir: i.res.Params.Dir,
		StopTimeout: i.res.Params.StopTimeout.D(), Stdout: out, Stderr: out, Logger: e.log}
	if h := i.res.Health; h != nil {
		cfg.Health = &process.Health{HTTP: h.HTTP, TCP: h.TCP, Exec: h.Exec, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Fall: h.Fall}
	}
	return process.Start(cfg)
}
