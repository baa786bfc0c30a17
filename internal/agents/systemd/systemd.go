// Package systemd drives systemd units (class "systemd:UNIT") as an
// agents.Invoker, talking to systemd's manager (org.freedesktop.systemd1)
// over the D-Bus system bus the way Pacemaker's systemd class does:
//
//   - start and stop call Manager.StartUnit / StopUnit(UNIT, "replace"),
//     wait for the job (the JobRemoved signal; the subscription is made
//     before the call, so a job that finishes at once is not missed, and
//     the unit's Job property is polled in case a signal is lost), then
//     read the unit's ActiveState. Start succeeds only when the unit is
//     active (it waits while it is activating or reloading); a job result
//     other than "done" ("failed", "timeout", "dependency", "canceled"...)
//     is a soft error. Stop succeeds when the unit is inactive, or failed
//     (the failure is then reset with ResetFailedUnit); stop of a unit that
//     does not exist and does not run succeeds (it is stopped), as in
//     Pacemaker.
//   - monitor (and status): ActiveState active or reloading is running (0),
//     inactive or failed is not running (7); while it is activating or
//     deactivating the state is polled until it settles or the timeout
//     passes (Pacemaker's "pending"). A unit that does not exist
//     (LoadState not-found), is masked or whose unit file cannot be loaded
//     is not installed (5, a hard error), with a reason — unless it still
//     runs (masked, or its file deleted, while it ran): then its state is
//     reported, and stop stops it.
//   - meta-data is synthesised (no parameters; the unit's Description when
//     systemd can be asked); validate-all checks that the unit exists and
//     is not masked.
//   - promote, demote, notify, migrate_*, reload-agent: not implemented by
//     systemd units (3, a hard error).
//
// Every action is bounded by its timeout, which covers connecting, every
// D-Bus call and the waiting; when it passes the action is abandoned (a
// queued job is left to systemd: a later stop, mode "replace", replaces
// it) and the Result says what was being waited for.
//
// Failures to reach systemd (no bus, the bus refused paceline, systemd
// not on the bus) are soft errors whose Reason tells the operator what to
// check; they never panic. A lost connection is re-established by the
// next action (see Bus); an action whose connection breaks while it runs
// (a restart of the bus daemon) waits up to Options.ReconnectWindow for
// the bus to come back and runs once more.
//
// Like Pacemaker's "50-pacemaker.conf", start writes a runtime drop-in
// (/run/systemd/system/UNIT.d/50-paceline.conf: Restart=no, so systemd
// does not restart a failed service behind the cluster manager's back,
// and Before=paceline.service, so that at shutdown systemd stops the
// manager before the unit) and reloads systemd when the file changed;
// stop removes it again. See docs/systemd.md.
package systemd

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/paceline/paceline/internal/agents"
)

// Defaults of Options.
const (
	DefaultDropInDir    = "/run/systemd/system"
	DefaultManagerUnit  = "paceline.service"
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultReconnectWindow covers a restart of the bus daemon.
	DefaultReconnectWindow = 5 * time.Second
	reconnectPause         = 100 * time.Millisecond
	// DropInName is the file name of the drop-in in UNIT.d/.
	DropInName = "50-paceline.conf"
	// jobPollInterval is how often a job whose JobRemoved signal has not
	// come is checked through the unit's Job property.
	jobPollInterval = time.Second
	// metaDataTimeout bounds the D-Bus query of meta-data.
	metaDataTimeout = 5 * time.Second
)

// ActiveState values of a unit.
const (
	StateActive       = "active"
	StateReloading    = "reloading"
	StateInactive     = "inactive"
	StateFailed       = "failed"
	StateActivating   = "activating"
	StateDeactivating = "deactivating"
)

// LoadState values of a unit that matter here.
const (
	LoadLoaded     = "loaded"
	LoadNotFound   = "not-found"
	LoadMasked     = "masked"
	LoadError      = "error"
	LoadBadSetting = "bad-setting"
)

// Options configure a Unit. The zero value talks to systemd on the system
// bus and writes the drop-in under /run/systemd/system.
type Options struct {
	// Bus is the connection to use, shared with other Units. Nil: the
	// Unit opens its own, to Address; Unit.Close closes it.
	Bus *Bus
	// Address is the D-Bus address when Bus is nil; "" = SystemBusAddress()
	// ($DBUS_SYSTEM_BUS_ADDRESS or unix:path=/run/dbus/system_bus_socket).
	Address string
	// NoDropIn disables the runtime drop-in (Restart=no) written at start.
	NoDropIn bool
	// DropInDir is where UNIT.d/50-paceline.conf is written; "" =
	// DefaultDropInDir (runtime units: gone at reboot).
	DropInDir string
	// ManagerUnit is the cluster manager's own unit, named in the drop-in's
	// Before=; "" = DefaultManagerUnit.
	ManagerUnit string
	// ReconnectWindow is how long an action whose connection broke tries
	// to reconnect (within its timeout) before it fails; then it runs
	// again once. 0 = DefaultReconnectWindow; < 0: fail at once.
	ReconnectWindow time.Duration
	// PollInterval is how often the unit's state is read while it is
	// activating or deactivating; 0 = DefaultPollInterval.
	PollInterval time.Duration
	// Logger; nil = discard.
	Logger *slog.Logger
}

// Unit is one systemd unit driven over D-Bus.
type Unit struct {
	name    string
	opts    Options
	bus     *Bus
	ownsBus bool
	log     *slog.Logger
}

var _ agents.Invoker = (*Unit)(nil)

// unitSuffixes are systemd's unit types; a name without one is a service.
var unitSuffixes = []string{".service", ".socket", ".target", ".device", ".mount", ".automount",
	".swap", ".timer", ".path", ".slice", ".scope"}

// UnitName returns the unit named by spec: "systemd:UNIT" or a bare UNIT.
// A name without a unit type suffix gets ".service" ("nginx" is
// "nginx.service"), as in Pacemaker. Names systemd would refuse are errors.
func UnitName(spec string) (string, error) {
	name := strings.TrimPrefix(spec, "systemd:")
	if name == "" {
		return "", fmt.Errorf("systemd unit %q: want systemd:UNIT or UNIT", spec)
	}
	typed := false
	for _, suf := range unitSuffixes {
		if strings.HasSuffix(name, suf) && len(name) > len(suf) {
			typed = true
			break
		}
	}
	if !typed {
		name += ".service"
	}
	if len(name) > 255 {
		return "", fmt.Errorf("systemd unit %q: name longer than 255 bytes", spec)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(":-_.\\@", c)
		if !ok {
			return "", fmt.Errorf("systemd unit %q: %q is not allowed in a unit name (letters, digits and :-_.\\@ are)", spec, c)
		}
	}
	if name[0] == '.' || name[0] == '@' || strings.Count(name, "@") > 1 {
		return "", fmt.Errorf("systemd unit %q: not a valid unit name", spec)
	}
	return name, nil
}

// New returns the unit named by spec ("systemd:UNIT", "UNIT" or
// "UNIT.TYPE"). It does not connect to the bus: a unit that does not
// exist, or a bus that cannot be reached, is reported by Run.
func New(spec string, opts Options) (*Unit, error) {
	name, err := UnitName(spec)
	if err != nil {
		return nil, err
	}
	if opts.DropInDir == "" {
		opts.DropInDir = DefaultDropInDir
	}
	if opts.ManagerUnit == "" {
		opts.ManagerUnit = DefaultManagerUnit
	}
	if opts.ReconnectWindow == 0 {
		opts.ReconnectWindow = DefaultReconnectWindow
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &Unit{name: name, opts: opts, bus: opts.Bus, log: log.With("agent", "systemd:"+name)}
	if u.bus == nil {
		u.bus, u.ownsBus = NewBus(opts.Address, log), true
	}
	return u, nil
}

// Name returns the unit name, e.g. "nginx.service".
func (u *Unit) Name() string { return u.name }

// String returns "systemd:UNIT".
func (u *Unit) String() string { return "systemd:" + u.name }

// Bus returns the connection the unit uses.
func (u *Unit) Bus() *Bus { return u.bus }

// Close closes the unit's own bus connection (not a shared Options.Bus).
func (u *Unit) Close() error {
	if u.ownsBus {
		return u.bus.Close()
	}
	return nil
}

// Run runs action; see the package documentation for the mapping.
func (u *Unit) Run(ctx context.Context, action agents.Action, inst agents.Instance, timeout time.Duration) agents.Result {
	if timeout <= 0 {
		timeout = agents.DefaultTimeout
	}
	begin := time.Now()
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o := &op{u: u, ctx: actx, parent: ctx, timeout: timeout, action: action}
	r := o.do()
	if o.lost && u.opts.ReconnectWindow >= 0 {
		// The connection broke during the action (the bus daemon
		// restarted, say): reconnect and run the action again, once. Every
		// action is idempotent; a start or stop job systemd still has is
		// joined by the second StartUnit/StopUnit ("replace" merges it).
		if err := o.reconnect(); err != nil {
			switch {
			case o.parent.Err() != nil:
				r.Reason += "; canceled while reconnecting"
			case actx.Err() != nil:
				r.TimedOut = true
				r.Reason += fmt.Sprintf("; still no connection when the action timed out after %s", timeout)
			default:
				if ex := u.bus.explain("reconnecting", err); strings.HasPrefix(r.Reason, ex) {
					r.Reason += fmt.Sprintf(" (still so after retrying for %s)", u.opts.ReconnectWindow)
				} else {
					r.Reason += "; reconnecting failed: " + ex
				}
			}
		} else {
			u.log.Info("reconnected to systemd; running the action again", "action", string(action))
			o = &op{u: u, ctx: actx, parent: ctx, timeout: timeout, action: action}
			r = o.do()
		}
	}
	r.Duration = time.Since(begin)
	lvl := slog.LevelDebug
	if r.Status.Failed() {
		lvl = slog.LevelWarn
	}
	u.log.Log(ctx, lvl, "action finished", "action", string(action), "instance", inst.Name,
		"code", r.Code, "status", r.Status.String(), "reason", r.Reason, "duration", r.Duration)
	return r
}

// do runs the action once.
func (o *op) do() agents.Result {
	switch o.action {
	case agents.Start:
		return o.start()
	case agents.Stop:
		return o.stop()
	case agents.Monitor, agents.Status:
		return o.monitor()
	case agents.MetaData:
		return o.metaData()
	case agents.ValidateAll:
		return o.validate()
	}
	return agents.Result{Code: agents.OCFErrUnimplemented, Status: agents.StatusHardError,
		Reason: fmt.Sprintf("systemd units do not implement %s", o.action)}
}

// reconnect tries to get a working connection for up to the reconnect
// window (bounded by the action's timeout). Until systemd is back on the
// bus, a connection fails too.
func (o *op) reconnect() error {
	deadline := time.Now().Add(o.u.opts.ReconnectWindow)
	for {
		_, err := o.u.bus.get(o.ctx)
		if err == nil || o.ctx.Err() != nil || errors.Is(err, ErrBusClosed) || !time.Now().Before(deadline) {
			return err
		}
		t := time.NewTimer(reconnectPause)
		select {
		case <-t.C:
		case <-o.ctx.Done():
			t.Stop()
			return o.ctx.Err()
		}
	}
}

// op is one running action.
type op struct {
	u       *Unit
	ctx     context.Context // bounded by the timeout
	parent  context.Context // the caller's
	timeout time.Duration
	action  agents.Action
	s       *session

	lost bool // the connection broke during the action

	waiting string    // what the action waits for now, for a timeout's reason
	last    unitState // the last state read
	seen    bool      // last is set
}

// unitState is what is read of a unit.
type unitState struct {
	Path        dbus.ObjectPath
	LoadState   string
	ActiveState string
	SubState    string
	Description string
	JobID       uint32
	LoadError   string
}

// running reports whether the unit has a process or is changing state,
// i.e. is not plainly stopped (inactive or failed).
func (st unitState) running() bool {
	return st.ActiveState != "" && st.ActiveState != StateInactive && st.ActiveState != StateFailed
}

func (st unitState) String() string {
	if st.SubState != "" {
		return st.ActiveState + "/" + st.SubState
	}
	return st.ActiveState
}

func ok() agents.Result { return agents.Result{Code: agents.OCFSuccess, Status: agents.StatusSuccess} }

func softError(format string, args ...any) agents.Result {
	return agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, Reason: fmt.Sprintf(format, args...)}
}

func notInstalled(format string, args ...any) agents.Result {
	return agents.Result{Code: agents.OCFErrInstalled, Status: agents.StatusHardError, Reason: fmt.Sprintf(format, args...)}
}

// fail turns an error of step what into a Result: a timeout or a
// cancellation when the action's context ended, otherwise an explained
// bus or systemd failure (soft). A broken connection is dropped so that
// the next action reconnects.
func (o *op) fail(what string, err error) agents.Result {
	if o.s != nil && isTransportError(err) {
		o.u.bus.drop(o.s)
		o.lost = o.ctx.Err() == nil
	}
	if o.ctx.Err() != nil {
		state := ""
		if o.seen {
			state = fmt.Sprintf(" (unit %s)", o.last)
		}
		waiting := o.waiting
		if waiting == "" {
			waiting = what
		}
		left := ""
		if o.action == agents.Start || o.action == agents.Stop {
			left = "; a queued job is left to systemd (a later stop replaces it)"
		}
		if o.parent.Err() != nil {
			return agents.Result{Code: -1, Status: agents.StatusSoftError,
				Reason: fmt.Sprintf("canceled while %s%s%s", waiting, state, left)}
		}
		return agents.Result{Code: -1, Status: agents.StatusSoftError, TimedOut: true,
			Reason: fmt.Sprintf("timed out after %s while %s%s%s", o.timeout, waiting, state, left)}
	}
	return agents.Result{Code: -1, Status: agents.StatusSoftError, Reason: o.u.bus.explain(what, err)}
}

// connect gets the session, reconnecting if needed.
func (o *op) connect() error {
	o.waiting = "connecting to systemd over D-Bus at " + o.u.bus.addr
	s, err := o.u.bus.get(o.ctx)
	if err != nil {
		// A bus that was there before and is gone now is probably
		// restarting: worth waiting for (Run reconnects). Without any
		// connection so far, fail at once.
		o.lost = o.ctx.Err() == nil && o.u.bus.everConnected() && !errors.Is(err, ErrBusClosed)
		return err
	}
	o.s = s
	return nil
}

// load loads the unit (Manager.LoadUnit) and reads its state. A unit
// systemd does not know is reported with LoadState not-found.
// connectAndLoad connects to the bus and loads the unit; bad reports a
// failure, with the Result to return.
func (o *op) connectAndLoad() (st unitState, failed agents.Result, bad bool) {
	if err := o.connect(); err != nil {
		return st, o.fail("connecting", err), true
	}
	st, err := o.load()
	if err != nil {
		return st, o.fail("LoadUnit("+o.u.name+")", err), true
	}
	return st, agents.Result{}, false
}

func (o *op) load() (unitState, error) {
	o.waiting = "loading " + o.u.name
	var path dbus.ObjectPath
	err := o.s.call(o.ctx, o.s.manager(), managerIface+".LoadUnit", []any{o.u.name}, &path)
	if dbusErrorName(err) == errNoSuchUnit {
		return unitState{LoadState: LoadNotFound, ActiveState: StateInactive}, nil
	}
	if err != nil {
		return unitState{}, err
	}
	return o.state(path)
}

// state reads the unit's properties.
func (o *op) state(path dbus.ObjectPath) (unitState, error) {
	var props map[string]dbus.Variant
	obj := o.s.conn.Object(busName, path)
	if err := o.s.call(o.ctx, obj, propertiesIface+".GetAll", []any{unitIface}, &props); err != nil {
		return unitState{}, err
	}
	str := func(k string) string {
		if v, ok := props[k]; ok {
			if s, ok := v.Value().(string); ok {
				return s
			}
		}
		return ""
	}
	st := unitState{Path: path, LoadState: str("LoadState"), ActiveState: str("ActiveState"),
		SubState: str("SubState"), Description: str("Description")}
	if v, ok := props["Job"]; ok {
		var job struct {
			ID   uint32
			Path dbus.ObjectPath
		}
		if dbus.Store([]any{v.Value()}, &job) == nil {
			st.JobID = job.ID
		}
	}
	if v, ok := props["LoadError"]; ok {
		var le struct{ Name, Message string }
		if dbus.Store([]any{v.Value()}, &le) == nil && le.Name != "" {
			st.LoadError = le.Message
			if st.LoadError == "" {
				st.LoadError = le.Name
			}
		}
	}
	if st.ActiveState == "" || st.LoadState == "" {
		return st, fmt.Errorf("unit %s has no ActiveState/LoadState property", path)
	}
	o.last, o.seen = st, true
	return st, nil
}

// installed returns a hard error if the unit cannot be used on this node.
func (o *op) installed(st unitState) (agents.Result, bool) {
	n := o.u.name
	switch st.LoadState {
	case LoadLoaded:
		return agents.Result{}, true
	case LoadNotFound:
		return notInstalled("unit %s is not installed on this node (systemd: LoadState not-found; 'systemctl cat %s')", n, n), false
	case LoadMasked:
		return notInstalled("unit %s is masked on this node ('systemctl unmask %s' to let it run)", n, n), false
	case LoadError, LoadBadSetting:
		why := st.LoadError
		if why == "" {
			why = "see 'systemctl status " + n + "'"
		}
		return notInstalled("unit %s cannot be loaded (LoadState %s: %s)", n, st.LoadState, why), false
	}
	// "stub", "merged" or a future state: let the action try.
	return agents.Result{}, true
}

// settle reads the state until pending says it has settled.
func (o *op) settle(path dbus.ObjectPath, why string, pending func(string) bool) (unitState, error) {
	for {
		st, err := o.state(path)
		if err != nil || !pending(st.ActiveState) {
			return st, err
		}
		o.waiting = fmt.Sprintf("waiting for %s to %s", o.u.name, why)
		t := time.NewTimer(o.u.opts.PollInterval)
		select {
		case <-t.C:
		case <-o.ctx.Done():
			t.Stop()
			return st, o.ctx.Err()
		case <-o.s.done:
			t.Stop()
			return st, errConnLost
		}
	}
}

// job queues a start or stop job and waits until it is gone. It returns
// the job's result ("done", "failed", ...; "" when the job vanished
// without a JobRemoved signal being seen).
func (o *op) job(method string, path dbus.ObjectPath) (string, error) {
	w := o.s.watch() // before the call: the signal may beat the reply
	defer w.close()
	o.waiting = fmt.Sprintf("calling %s(%s)", method, o.u.name)
	var job dbus.ObjectPath
	if err := o.s.call(o.ctx, o.s.manager(), managerIface+"."+method, []any{o.u.name, "replace"}, &job); err != nil {
		return "", err
	}
	o.waiting = fmt.Sprintf("waiting for the %s job %s of %s", strings.ToLower(strings.TrimSuffix(method, "Unit")), job, o.u.name)
	// Read the state once, so that a timeout can tell where the unit is.
	if _, err := o.state(path); err != nil && (o.ctx.Err() != nil || isTransportError(err)) {
		return "", err
	}
	poll := time.NewTicker(jobPollInterval)
	defer poll.Stop()
	for {
		if ev, ok := w.find(job); ok {
			return ev.Result, nil
		}
		select {
		case <-w.notify:
		case <-o.ctx.Done():
			return "", o.ctx.Err()
		case <-o.s.done:
			return "", errConnLost
		case <-poll.C:
			// A lost signal must not hang the action: the job is gone when
			// the unit no longer refers to it.
			st, err := o.state(path)
			if err != nil {
				return "", err
			}
			if st.JobID != 0 && job == jobPath(st.JobID) {
				continue
			}
			if ev, ok := w.find(job); ok {
				return ev.Result, nil
			}
			o.u.log.Debug("job gone without a JobRemoved signal", "job", job)
			return "", nil
		}
	}
}

// jobPath is the object path systemd gives job id.
func jobPath(id uint32) dbus.ObjectPath {
	return dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
}

// jobFailure explains a start or stop job result other than "done".
func (o *op) jobFailure(kind, result string, st unitState) agents.Result {
	n := o.u.name
	var why string
	switch result {
	case "failed":
		why = "the unit failed"
	case "timeout":
		why = "systemd's own timeout for the unit passed (TimeoutStartSec/TimeoutStopSec)"
	case "dependency":
		why = "a unit it requires failed ('systemctl list-dependencies " + n + "')"
	case "canceled":
		why = "the job was canceled, e.g. replaced by a conflicting job"
	case "skipped":
		why = "systemd skipped the job"
	case "invalid":
		why = "the job does not apply to the unit"
	default:
		why = "job result " + result
	}
	return softError("systemd %s job of %s ended with %q: %s; unit is %s (see 'systemctl status %s' and 'journalctl -u %s')",
		kind, n, result, why, st, n, n)
}

func (o *op) start() agents.Result {
	st, failed, bad := o.connectAndLoad()
	if bad {
		return failed
	}
	if r, ok := o.installed(st); !ok {
		return r
	}
	if err := o.ensureDropIn(); err != nil {
		return o.fail("Reload (after writing the drop-in)", err)
	}
	result, err := o.job("StartUnit", st.Path)
	if err != nil {
		return o.fail("StartUnit("+o.u.name+")", err)
	}
	st, err = o.settle(st.Path, "become active", func(a string) bool { return a == StateActivating || a == StateReloading })
	if err != nil {
		return o.fail("reading the state of "+o.u.name, err)
	}
	if result != "done" && result != "" {
		return o.jobFailure("start", result, st)
	}
	if st.ActiveState != StateActive {
		n := o.u.name
		return softError("%s is %s after its start job: not active (see 'systemctl status %s' and 'journalctl -u %s')", n, st, n, n)
	}
	return ok()
}

func (o *op) stop() agents.Result {
	st, failed, bad := o.connectAndLoad()
	if bad {
		return failed
	}
	if st.LoadState == LoadNotFound && !st.running() {
		// Pacemaker too: a unit that does not exist is stopped. (A unit
		// whose file was deleted while it ran is not-found but active:
		// that one is stopped below.)
		return o.stopped()
	}
	result, err := o.job("StopUnit", st.Path)
	if dbusErrorName(err) == errNoSuchUnit {
		return o.stopped()
	}
	if err != nil {
		return o.fail("StopUnit("+o.u.name+")", err)
	}
	st, err = o.settle(st.Path, "stop", func(a string) bool { return a == StateDeactivating })
	if err != nil {
		return o.fail("reading the state of "+o.u.name, err)
	}
	switch st.ActiveState {
	case StateInactive:
		return o.stopped()
	case StateFailed:
		// Stopped, but remembered as failed: forget it, as Pacemaker's
		// cleanup would, so that the next start is not refused.
		o.waiting = "resetting the failed state of " + o.u.name
		if err := o.s.call(o.ctx, o.s.manager(), managerIface+".ResetFailedUnit", []any{o.u.name}); err != nil {
			if o.ctx.Err() != nil {
				return o.fail("ResetFailedUnit("+o.u.name+")", err)
			}
			o.u.log.Warn("ResetFailedUnit failed; the unit is stopped", "err", err)
		}
		return o.stopped()
	}
	if result != "done" && result != "" {
		return o.jobFailure("stop", result, st)
	}
	n := o.u.name
	return softError("%s is still %s after its stop job (see 'systemctl status %s')", n, st, n)
}

// stopped removes the drop-in of a stopped unit and returns success.
func (o *op) stopped() agents.Result {
	if err := o.removeDropIn(); err != nil {
		if o.ctx.Err() != nil {
			return o.fail("Reload (after removing the drop-in)", err)
		}
		o.u.log.Warn("reloading systemd after removing the drop-in failed; the unit is stopped", "err", err)
	}
	return ok()
}

func (o *op) monitor() agents.Result {
	st, failed, bad := o.connectAndLoad()
	if bad {
		return failed
	}
	if r, ok := o.installed(st); !ok {
		if !st.running() {
			return r
		}
		// Masked, or its file deleted, while it runs: report what runs
		// (stop stops it), not "not installed", which would hide it.
		o.u.log.Warn("unit runs but cannot be started again", "reason", r.Reason)
	}
	st, err := o.settle(st.Path, "leave "+st.ActiveState, func(a string) bool { return a == StateActivating || a == StateDeactivating })
	if err != nil {
		return o.fail("reading the state of "+o.u.name, err)
	}
	switch st.ActiveState {
	case StateActive, StateReloading:
		return ok()
	case StateInactive:
		return agents.Result{Code: agents.OCFNotRunning, Status: agents.StatusNotRunning}
	case StateFailed:
		return agents.Result{Code: agents.OCFNotRunning, Status: agents.StatusNotRunning,
			Reason: fmt.Sprintf("%s failed (%s; see 'journalctl -u %s')", o.u.name, st, o.u.name)}
	}
	return softError("%s is in a state paceline does not know: %s", o.u.name, st)
}

func (o *op) validate() agents.Result {
	st, failed, bad := o.connectAndLoad()
	if bad {
		return failed
	}
	if r, ok := o.installed(st); !ok {
		return r
	}
	return ok()
}

// metaData synthesises OCF meta-data. It asks systemd for the unit's
// Description, briefly; without systemd the meta-data is still produced.
func (o *op) metaData() agents.Result {
	desc := ""
	ctx, cancel := context.WithTimeout(o.ctx, metaDataTimeout)
	defer cancel()
	q := &op{u: o.u, ctx: ctx, parent: o.parent, timeout: metaDataTimeout, action: o.action}
	if err := q.connect(); err == nil {
		if st, err := q.load(); err == nil && st.LoadState == LoadLoaded {
			desc = st.Description
		} else if err != nil && isTransportError(err) {
			o.u.bus.drop(q.s)
		}
	}
	out, err := MetadataXML(o.u.name, desc)
	if err != nil {
		return softError("%v", err)
	}
	return agents.Result{Code: agents.OCFSuccess, Status: agents.StatusSuccess, Stdout: string(out)}
}

// MetadataXML renders OCF meta-data for a systemd unit as Pacemaker
// synthesises it: no parameters, the actions with 100s timeouts, and a
// <special tag="systemd"/>. description is the unit's Description ("" =
// none known).
func MetadataXML(unit, description string) ([]byte, error) {
	type desc struct {
		Lang string `xml:"lang,attr"`
		Text string `xml:",chardata"`
	}
	type action struct {
		Name     string `xml:"name,attr"`
		Timeout  string `xml:"timeout,attr"`
		Interval string `xml:"interval,attr,omitempty"`
	}
	type special struct {
		Tag string `xml:"tag,attr"`
	}
	type agent struct {
		XMLName    xml.Name `xml:"resource-agent"`
		Name       string   `xml:"name,attr"`
		Version    string   `xml:"version,attr"`
		OCFVersion string   `xml:"version"`
		LongDesc   desc     `xml:"longdesc"`
		ShortDesc  desc     `xml:"shortdesc"`
		Parameters struct{} `xml:"parameters"`
		Actions    []action `xml:"actions>action"`
		Special    special  `xml:"special"`
	}
	long := description
	if long == "" {
		long = "systemd unit " + unit
	}
	a := agent{
		Name: unit, Version: "0.1", OCFVersion: "1.1",
		LongDesc:  desc{"en", long},
		ShortDesc: desc{"en", "systemd unit file for " + unit},
		Actions: []action{
			{Name: "start", Timeout: "100s"},
			{Name: "stop", Timeout: "100s"},
			{Name: "status", Timeout: "100s"},
			{Name: "monitor", Timeout: "100s", Interval: "60s"},
			{Name: "meta-data", Timeout: "5s"},
		},
		Special: special{Tag: "systemd"},
	}
	out, err := xml.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("systemd:%s meta-data: %w", unit, err)
	}
	return append([]byte(xml.Header+"<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n"), append(out, '\n')...), nil
}
