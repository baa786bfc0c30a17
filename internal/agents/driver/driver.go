// Package driver gives the executor one per-instance interface over every
// resource class: the supervised process class (internal/agents/process)
// and the script classes driven through an agents.Invoker (ocf, lsb, and
// systemd units, whose Invoker is injected by the caller).
//
// A Driver runs the operations of one resource instance: start, stop,
// monitor (interval 0 is a probe), promote, demote, notify, reload-agent
// and validate-all, each with the timeout resolved by Resolve or Monitor.
// Every outcome is an agents.Result in the OCF code space, whatever the
// class, so the executor maps results to recovery in one place:
//
//   - process: start runs the command and waits until its health check
//     passes (the start timeout); monitor is "the process is alive and its
//     health check is not failing" (the check runs on its own, and its
//     failures arrive on Failed, as do exits, the moment they happen);
//     stop is SIGTERM to the process
//     group, SIGKILL after stopTimeout; promote, demote, notify and
//     reload-agent are not implemented (3);
//   - ocf, lsb, systemd: the Invoker's actions, with the instance's
//     parameters, clone meta attributes and notification environment; a
//     stop that reports "not running" (7) succeeded.
//
// Kill is the self-fencing path: the process class kills the group at
// once (SIGKILL) and Kill reports true; a script class cannot be killed —
// what an agent started (an IP address, a mount, a daemon) outlives any
// process — so Kill reports false and the caller must run stop.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/lsb"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/agents/process"
	"github.com/paceline/paceline/internal/agents/vip"
	"github.com/paceline/paceline/internal/guard"
	"github.com/paceline/paceline/internal/spec"
)

// Driver runs the operations of one resource instance. Its methods are
// safe for concurrent use, but the executor runs one operation at a time
// per instance (as Pacemaker does), except that ctx cancellation may end
// the running one.
type Driver interface {
	// Class is the resource's class, e.g. "ocf:heartbeat:Dummy".
	Class() string
	// Run runs op and returns its result; it never panics and never
	// returns a zero Status. Stop of a stopped instance and start of a
	// started one succeed.
	Run(ctx context.Context, op Op) agents.Result
	// Failed returns a channel that receives a reason when the instance
	// started last fails on its own between monitors (the process class:
	// the process exited or its health check failed), or nil when the
	// class learns of failures only from monitors. Call it after each
	// successful start.
	Failed() <-chan string
	// Kill ends the instance at once if the class can: it returns true
	// once it is gone (the process class). Script classes return false:
	// run stop instead.
	Kill() bool
	// Metadata returns the agent's meta-data; nil and no error for the
	// process class. A broken meta-data is an error that says what is
	// wrong with it.
	Metadata(ctx context.Context) (*ocf.Metadata, error)
	// Update replaces the instance's definition (same class), epoch and
	// clone size for the actions that follow (reload-agent, a restart).
	Update(t Target)
	// Close releases what the driver holds (an instance's log file).
	Close()
}

// Target is the instance a driver is for.
type Target struct {
	Res   spec.Resource // with defaults filled in
	Slot  int
	Epoch uint64
	// CloneMax is the number of instances of a clone whose spec sets no
	// replicas (one per node): the number of peers the leader listed.
	CloneMax int
}

// InstanceName is OCF_RESOURCE_INSTANCE: the resource name, with ":SLOT"
// for clone instances (as Pacemaker names clone instances).
func (t Target) InstanceName() string {
	if t.Res.Clone() {
		return t.Res.Name + ":" + strconv.Itoa(t.Slot)
	}
	return t.Res.Name
}

// Options configure a Factory.
type Options struct {
	Node    string
	Cluster string
	// LogDir receives the output of process-class instances as
	// LogDir/<resource>-<slot>.log; "" discards it.
	LogDir string
	OCF    ocf.Options
	LSB    lsb.Options
	// Systemd returns the Invoker for a "systemd:UNIT" class (e.g.
	// systemd.New); nil: the systemd class is not available.
	Systemd func(class string) (agents.Invoker, error)
	Logger  *slog.Logger
	// Guards feeds the hold-lease deadline to the lease guards of the
	// classes whose fence action a guard performs (process, vip; see
	// FenceWait); nil: their guards act only when the agent dies.
	Guards *guard.Feed
}

// Factory makes drivers and shares the script classes' Invokers (and their
// cached meta-data) between instances of the same class.
type Factory struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	invokers map[string]agents.Invoker
	meta     map[string]*ocf.Metadata
}

// NewFactory returns a Factory.
func NewFactory(opts Options) *Factory {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.OCF.Logger == nil {
		opts.OCF.Logger = log
	}
	if opts.LSB.Logger == nil {
		opts.LSB.Logger = log
	}
	return &Factory{opts: opts, log: log, invokers: map[string]agents.Invoker{}, meta: map[string]*ocf.Metadata{}}
}

// Close closes the Invokers that hold resources (systemd bus connections).
func (f *Factory) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, inv := range f.invokers {
		if c, ok := inv.(io.Closer); ok {
			_ = c.Close()
		}
		delete(f.invokers, k)
	}
}

// New returns a driver for t. The error says why the class cannot be
// driven here (an invalid or unavailable class).
func (f *Factory) New(t Target) (Driver, error) {
	info, err := spec.ParseClass(t.Res.Class)
	if err != nil {
		return nil, err
	}
	if info.Kind == spec.ClassProcess {
		return &procDriver{f: f, t: t}, nil
	}
	inv, err := f.Invoker(t.Res.Class)
	if err != nil {
		return nil, err
	}
	return &scriptDriver{f: f, class: t.Res.Class, inv: inv, t: t}, nil
}

// Invoker returns the shared Invoker of a script class.
func (f *Factory) Invoker(class string) (agents.Invoker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inv, ok := f.invokers[class]; ok {
		return inv, nil
	}
	info, err := spec.ParseClass(class)
	if err != nil {
		return nil, err
	}
	var inv agents.Invoker
	switch info.Kind {
	case spec.KindOCF:
		inv, err = ocf.New(class, f.opts.OCF)
	case spec.KindLSB:
		inv, err = lsb.New(class, f.opts.LSB)
	case spec.KindSystemd:
		if f.opts.Systemd == nil {
			return nil, fmt.Errorf("class %s is not supported by this agent: it was built or configured without the systemd class", class)
		}
		inv, err = f.opts.Systemd(class)
	case spec.KindVIP:
		// Built in (internal/agents/vip): no script, driven like one.
		inv = vip.New(vip.Options{Logger: f.log, Guards: f.opts.Guards})
	default:
		return nil, fmt.Errorf("class %q is not supported by this agent", class)
	}
	if err != nil {
		return nil, err
	}
	f.invokers[class] = inv
	return inv, nil
}

// metadataTimeout bounds the meta-data action.
const metadataTimeout = 10 * time.Second

// metadata returns the parsed meta-data of class, cached after the first
// success.
func (f *Factory) metadata(ctx context.Context, class string, inv agents.Invoker) (*ocf.Metadata, error) {
	f.mu.Lock()
	m := f.meta[class]
	f.mu.Unlock()
	if m != nil {
		return m, nil
	}
	var err error
	if a, ok := inv.(*ocf.Agent); ok {
		m, err = a.Metadata(ctx, metadataTimeout)
	} else {
		r := inv.Run(ctx, agents.MetaData, agents.Instance{}, metadataTimeout)
		if r.Status != agents.StatusSuccess {
			reason := r.Reason
			if reason == "" {
				reason = strings.TrimSpace(r.Stderr)
			}
			return nil, fmt.Errorf("%s meta-data: exit code %d (%s): %s", class, r.Code, r.Status, reason)
		}
		m, err = ocf.ParseMetadata([]byte(r.Stdout))
		if err != nil {
			err = fmt.Errorf("%s: %w", class, err)
		}
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.meta[class] = m
	f.mu.Unlock()
	return m, nil
}

// ---------------------------------------------------------------------------
// Script classes

type scriptDriver struct {
	f     *Factory
	class string
	inv   agents.Invoker

	mu sync.Mutex
	t  Target
}

func (d *scriptDriver) Class() string         { return d.class }
func (d *scriptDriver) Failed() <-chan string { return nil }
func (d *scriptDriver) Kill() bool            { return false }
func (d *scriptDriver) Close()                {}

func (d *scriptDriver) Update(t Target) {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
}

func (d *scriptDriver) Metadata(ctx context.Context) (*ocf.Metadata, error) {
	return d.f.metadata(ctx, d.class, d.inv)
}

// Instance returns the agents.Instance op runs for.
func (d *scriptDriver) instance(op Op) agents.Instance {
	d.mu.Lock()
	t := d.t
	d.mu.Unlock()
	res := &t.Res
	inst := agents.Instance{
		Name:       t.InstanceName(),
		Params:     res.Params.Values,
		Interval:   op.Interval,
		Node:       d.f.opts.Node,
		Notify:     op.Notify,
		CheckLevel: op.Depth,
		Meta: map[string]string{
			"paceline_epoch":   strconv.FormatUint(t.Epoch, 10),
			"paceline_slot":    strconv.Itoa(t.Slot),
			"paceline_cluster": d.f.opts.Cluster,
		},
	}
	if op.Action == agents.Monitor && op.Role != "" {
		inst.Meta["role"] = mdRole(op.Role)
	}
	if res.Clone() {
		max := res.Replicas
		if max <= 0 {
			max = t.CloneMax
		}
		inst.Clone = &agents.Clone{
			Number:          t.Slot,
			Max:             max,
			NodeMax:         res.MaxPerNode,
			Promotable:      res.Mode == spec.ModePromotable,
			PromotedMax:     res.PromotedMax,
			PromotedNodeMax: res.PromotedMaxPerNode,
			Notify:          res.Notify,
		}
	}
	return inst
}

func (d *scriptDriver) Run(ctx context.Context, op Op) agents.Result {
	r := d.inv.Run(ctx, op.Action, d.instance(op), op.Timeout)
	if op.Action == agents.Stop && r.Status == agents.StatusNotRunning {
		// Stopped is what stop wants (Pacemaker treats it so, too).
		r.Code, r.Status = agents.OCFSuccess, agents.StatusSuccess
	}
	if r.Status == 0 {
		r.Status = agents.StatusSoftError
	}
	return r
}

// ---------------------------------------------------------------------------
// The process class

type procDriver struct {
	f *Factory

	mu     sync.Mutex
	t      Target
	p      *process.Proc
	g      *guard.Guard // p's lease guard
	logf   *os.File
	failed chan string
	quit   chan struct{} // ends the watcher of p
	wdone  chan struct{} // closed when the watcher ended
}

func (d *procDriver) Class() string { return spec.ClassProcess }

func (d *procDriver) Metadata(context.Context) (*ocf.Metadata, error) { return nil, nil }

func (d *procDriver) Update(t Target) {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
}

func (d *procDriver) Failed() <-chan string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil {
		return nil
	}
	return d.failed
}

func (d *procDriver) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil {
		d.closeLogLocked()
	}
}

func (d *procDriver) closeLogLocked() {
	if d.logf != nil {
		_ = d.logf.Close()
		d.logf = nil
	}
}

// Kill SIGKILLs the process group and returns once the process is reaped.
func (d *procDriver) Kill() bool {
	d.mu.Lock()
	p := d.p
	d.mu.Unlock()
	if p != nil {
		p.Kill()
		d.forget(p)
	}
	return true
}

// forget ends the watcher of p and drops p (if it is still the current one).
func (d *procDriver) forget(p *process.Proc) {
	d.mu.Lock()
	if d.p != p {
		d.mu.Unlock()
		return
	}
	quit, wdone, g := d.quit, d.wdone, d.g
	d.p, d.quit, d.wdone, d.failed, d.g = nil, nil, nil, nil, nil
	d.closeLogLocked()
	d.mu.Unlock()
	close(quit)
	<-wdone
	if g != nil {
		g.Stop()
	}
}

func (d *procDriver) Run(ctx context.Context, op Op) agents.Result {
	begin := time.Now()
	var r agents.Result
	switch op.Action {
	case agents.Start:
		r = d.start(ctx, op)
	case agents.Stop:
		r = d.stop(ctx, op)
	case agents.Monitor:
		r = d.monitor()
	case agents.ValidateAll:
		r = d.validate()
	case agents.MetaData:
		r = agents.Result{Code: agents.OCFErrUnimplemented, Status: agents.StatusHardError, Reason: "class process has no meta-data"}
	default:
		r = agents.Result{Code: agents.OCFErrUnimplemented, Status: agents.StatusHardError,
			Reason: fmt.Sprintf("class process does not implement %s", op.Action)}
	}
	r.Duration = time.Since(begin)
	return r
}

func ok() agents.Result { return agents.Result{Code: agents.OCFSuccess, Status: agents.StatusSuccess} }

func soft(format string, args ...any) agents.Result {
	return agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, Reason: fmt.Sprintf(format, args...)}
}

func (d *procDriver) monitor() agents.Result {
	d.mu.Lock()
	p := d.p
	d.mu.Unlock()
	if p == nil {
		return agents.Result{Code: agents.OCFNotRunning, Status: agents.StatusNotRunning}
	}
	select {
	case <-p.Done():
		return agents.Result{Code: agents.OCFNotRunning, Status: agents.StatusNotRunning, Reason: "process exited: " + p.ExitStatus()}
	default:
	}
	if healthy, reason := p.Healthy(); !healthy {
		return soft("%s", reason)
	}
	return ok()
}

// validate checks that the command is set and can be found.
func (d *procDriver) validate() agents.Result {
	d.mu.Lock()
	res := d.t.Res
	d.mu.Unlock()
	cmd := res.Params.Command
	if len(cmd) == 0 || cmd[0] == "" {
		return agents.Result{Code: agents.OCFErrConfigured, Status: agents.StatusFatalError, Reason: "params.command is empty: set the command to run"}
	}
	if _, err := lookPath(cmd[0], res.Params.Env["PATH"], res.Params.Dir); err != nil {
		code, st := agents.OCFErrInstalled, agents.StatusHardError
		if errors.Is(err, os.ErrPermission) {
			code = agents.OCFErrPerm
		}
		return agents.Result{Code: code, Status: st, Reason: err.Error()}
	}
	return ok()
}

// lookPath finds cmd0 as the child would: a name with a '/' as is
// (relative to dir), else in path (the agent's PATH when empty).
func lookPath(cmd0, path, dir string) (string, error) {
	if strings.Contains(cmd0, "/") {
		p := cmd0
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("command %q: %w", cmd0, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("command %q is not an executable file: %w", cmd0, os.ErrPermission)
		}
		return p, nil
	}
	if path == "" {
		path = os.Getenv("PATH")
	}
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, cmd0)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %q: %w", cmd0, path, exec.ErrNotFound)
}

func (d *procDriver) start(ctx context.Context, op Op) agents.Result {
	d.mu.Lock()
	if d.p != nil {
		select {
		case <-d.p.Done():
		default:
			d.mu.Unlock()
			return ok() // already running
		}
	}
	old := d.p
	t := d.t
	d.mu.Unlock()
	if old != nil {
		d.forget(old)
	}
	res := &t.Res
	env := map[string]string{}
	for k, v := range res.Params.Env {
		env[k] = v
	}
	env["PACELINE_RESOURCE"] = res.Name
	env["PACELINE_SLOT"] = strconv.Itoa(t.Slot)
	env["PACELINE_EPOCH"] = strconv.FormatUint(t.Epoch, 10)
	env["PACELINE_NODE"] = d.f.opts.Node
	env["PACELINE_CLUSTER"] = d.f.opts.Cluster
	var out io.Writer
	var logf *os.File
	if dir := d.f.opts.LogDir; dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", res.Name, t.Slot)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err == nil {
				out, logf = f, f
			}
		}
	}
	name := res.Name + ":" + strconv.Itoa(t.Slot)
	cfg := process.Config{Name: name, Command: res.Params.Command, Env: env, Dir: res.Params.Dir,
		StopTimeout: res.Params.StopTimeout.D(), Logger: d.f.log}
	if out != nil {
		cfg.Stdout, cfg.Stderr = out, out
	}
	if h := res.Health; h != nil {
		cfg.Health = &process.Health{HTTP: h.HTTP, TCP: h.TCP, Exec: h.Exec, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Fall: h.Fall}
	}
	p, err := process.Start(cfg)
	if err != nil {
		if logf != nil {
			_ = logf.Close()
		}
		r := soft("start failed: %v", err)
		switch {
		case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
			r.Code, r.Status = agents.OCFErrInstalled, agents.StatusHardError
		case errors.Is(err, os.ErrPermission):
			r.Code, r.Status = agents.OCFErrPerm, agents.StatusHardError
		}
		return r
	}
	// The lease guard of an exclusive instance, before anything else: it
	// SIGKILLs the group when the lease runs out even if this agent is
	// hung (FenceWait relies on it). No guard, no process.
	var g *guard.Guard
	if res.Exclusive() { // a clone holds no lease; Pdeathsig covers the agent's death
		g, err = startGroupGuard(d.f.opts.Guards, name, p.PID())
	}
	if err != nil && !exited(p) { // an exited process: WaitHealthy says why
		p.Kill()
		if logf != nil {
			_ = logf.Close()
		}
		return soft("%v", err)
	}
	timeout := op.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultStartTimeout.D()
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err = p.WaitHealthy(wctx)
	timedOut := wctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
	cancel()
	if err != nil {
		p.Kill()
		g.Stop()
		if logf != nil {
			_ = logf.Close()
		}
		r := soft("did not become healthy: %v", err)
		r.TimedOut = timedOut
		return r
	}
	// Checks that failed while it was starting do not count.
	select {
	case <-p.Unhealthy():
	default:
	}
	failed, quit, wdone := make(chan string, 1), make(chan struct{}), make(chan struct{})
	d.mu.Lock()
	d.p, d.g, d.logf, d.failed, d.quit, d.wdone = p, g, logf, failed, quit, wdone
	d.mu.Unlock()
	go watch(p, g, failed, quit, wdone)
	return ok()
}

func exited(p *process.Proc) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// startGroupGuard starts the lease guard of the process group led by pid.
func startGroupGuard(f *guard.Feed, name string, pid int) (*guard.Guard, error) {
	st, err := guard.StartTime(pid)
	if err != nil {
		return nil, fmt.Errorf("no lease guard for %s: %w", name, err)
	}
	return f.Start(guard.KillGroup(name, pid, st))
}

// watch reports p's exit and health-check failures on failed until quit.
// An exit by SIGKILL after g's deadline passed is reported as
// agents.ReasonLeaseGuard.
func watch(p *process.Proc, g *guard.Guard, failed chan<- string, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	send := func(s string) {
		select {
		case failed <- s:
		default: // one pending report is enough
		}
	}
	for {
		select {
		case <-quit:
			return
		case <-p.Done():
			if st := p.ExitStatus(); st == "killed by signal 9" && g.MayHaveFired() {
				send(agents.ReasonLeaseGuard)
			} else {
				send("process exited: " + st)
			}
			return
		case r := <-p.Unhealthy():
			send("health check failed: " + r)
		}
	}
}

func (d *procDriver) stop(ctx context.Context, op Op) agents.Result {
	d.mu.Lock()
	p := d.p
	d.mu.Unlock()
	if p == nil {
		return ok()
	}
	timeout := op.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultStopTimeout.D() + processStopSlack
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	err := p.Stop(sctx)
	cancel()
	d.forget(p)
	if err != nil {
		// Stop fell back to SIGKILL: the process is gone all the same.
		r := ok()
		r.Reason = err.Error()
		return r
	}
	return ok()
}
