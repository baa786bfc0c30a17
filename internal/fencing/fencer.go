package fencing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Attempt is one call in a fence operation: an action on a device, or
// the status polls that confirmed (or failed to confirm) an off.
type Attempt struct {
	Level    int           `json:"level,omitempty"`
	Device   string        `json:"device"`
	Action   Action        `json:"action"`
	Try      int           `json:"try"`             // 1-based attempt on this device in this operation
	Polls    int           `json:"polls,omitempty"` // status: number of status calls
	Start    time.Time     `json:"start"`
	ExitCode int           `json:"exitCode"` // the (last) call's exit code; -1 when it did not exit
	Power    Power         `json:"power,omitempty"`
	Duration time.Duration `json:"duration"`
	TimedOut bool          `json:"timedOut,omitempty"`
	Error    string        `json:"error,omitempty"` // secrets redacted
}

func (a Attempt) String() string {
	s := fmt.Sprintf("level %d device %s %s try %d: exit %d in %s", a.Level, a.Device, a.Action, a.Try, a.ExitCode, a.Duration.Round(time.Millisecond))
	if a.Polls > 0 {
		s += fmt.Sprintf(" (%d polls, power %s)", a.Polls, a.Power)
	}
	if a.Error != "" {
		s += ": " + a.Error
	}
	return s
}

// Result is the outcome of one fence operation.
type Result struct {
	Node     string        `json:"node"`
	Action   Action        `json:"action"`
	OK       bool          `json:"ok"`
	Level    int           `json:"level,omitempty"`   // the level that succeeded
	Devices  []string      `json:"devices,omitempty"` // its devices
	Delay    time.Duration `json:"delay,omitempty"`   // the anti-race delay waited first
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Attempts []Attempt     `json:"attempts"`
	Error    string        `json:"error,omitempty"`   // why it failed (secrets redacted)
	Warning  string        `json:"warning,omitempty"` // e.g. the on half of a reboot failed
}

// Err returns the failure as an error, or nil.
func (r Result) Err() error {
	if r.OK {
		return nil
	}
	return errors.New(r.Error)
}

// Entry is one history record: a fence operation or a manual
// confirmation.
type Entry struct {
	Time     time.Time     `json:"time"`
	Node     string        `json:"node"`
	Action   string        `json:"action"` // off, reboot, on, or "confirm"
	OK       bool          `json:"ok"`
	Level    int           `json:"level,omitempty"`
	Devices  []string      `json:"devices,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Operator string        `json:"operator,omitempty"` // confirm: who acknowledged
	Error    string        `json:"error,omitempty"`
	Warning  string        `json:"warning,omitempty"`
}

// ActionConfirm is the history action of a manual acknowledgement.
const ActionConfirm = "confirm"

// Options are the injected dependencies of a Fencer; all optional.
type Options struct {
	Clock  func() time.Time                                 // history and attempt times; default time.Now
	Rand   func(n int64) int64                              // in [0, n): the random delay; default math/rand/v2
	Sleep  func(ctx context.Context, d time.Duration) error // delays and pauses; default a timer honouring ctx
	Logger *slog.Logger                                     // default slog.Default()
	// NewDevice overrides device construction (tests); nil =
	// NewAgentDevice or NewRedfishDevice by configuration.
	NewDevice func(cfg DeviceConfig, agentDir string) (Device, error)
}

// Level is a resolved topology level of one node.
type Level struct {
	Index   int
	Devices []string
}

// Fencer fences nodes through the configured topology. It is safe for
// concurrent use; concurrent requests for the same node and action are
// merged into one operation.
type Fencer struct {
	cfg     Config
	opts    Options
	devices map[string]Device
	devCfg  map[string]*DeviceConfig
	levels  map[string][]Level

	mu       sync.Mutex
	history  []Entry
	inflight map[string]*flight
}

type flight struct {
	action Action
	done   chan struct{}
	res    Result
}

// New validates cfg and returns its Fencer. It does not run any agent
// (see Check).
func New(cfg Config, opts Options) (*Fencer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Int64N
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NewDevice == nil {
		opts.NewDevice = newDevice
	}
	f := &Fencer{cfg: cfg, opts: opts, devices: map[string]Device{}, devCfg: map[string]*DeviceConfig{},
		levels: map[string][]Level{}, inflight: map[string]*flight{}}
	for i := range cfg.Devices {
		d := &cfg.Devices[i]
		dev, err := opts.NewDevice(*d, cfg.AgentDir)
		if err != nil {
			return nil, fmt.Errorf("devices[%d]: %w", i, err)
		}
		f.devices[d.Name] = dev
		f.devCfg[d.Name] = d
	}
	for _, l := range cfg.Levels {
		f.levels[l.Node] = append(f.levels[l.Node], Level{Index: l.Level, Devices: l.Devices})
	}
	for n := range f.levels {
		ls := f.levels[n]
		sortLevels(ls)
	}
	// Nodes without explicit levels: one implicit level 1 of every device
	// that maps them.
	for _, d := range cfg.Devices {
		nodes := append([]string(nil), d.Hosts...)
		nodes = append(nodes, sortedKeys(d.HostMap)...)
		for _, n := range nodes {
			if explicit(cfg.Levels, n) {
				continue
			}
			if len(f.levels[n]) == 0 {
				f.levels[n] = []Level{{Index: 1}}
			}
			f.levels[n][0].Devices = append(f.levels[n][0].Devices, d.Name)
		}
	}
	return f, nil
}

func explicit(ls []LevelConfig, node string) bool {
	for _, l := range ls {
		if l.Node == node {
			return true
		}
	}
	return false
}

func sortLevels(ls []Level) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Index < ls[j-1].Index; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

func newDevice(cfg DeviceConfig, agentDir string) (Device, error) {
	if cfg.Redfish != nil {
		return NewRedfishDevice(cfg)
	}
	return NewAgentDevice(cfg, agentDir)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Monitor runs the monitor action of device name once (is the device
// reachable and are the credentials right?), bounded by the device's
// timeout. Use it for health: a node whose devices all fail monitor
// cannot be fenced.
func (f *Fencer) Monitor(ctx context.Context, name string) error {
	dev, ok := f.devices[name]
	if !ok {
		return fmt.Errorf("unknown fence device %q", name)
	}
	timeout, _ := f.policy(name)
	if o := dev.Exec(ctx, Monitor, Target{}, timeout); !o.OK() {
		return errors.New(o.Err)
	}
	return nil
}

// Close releases the devices' idle connections.
func (f *Fencer) Close() {
	for _, d := range f.devices {
		if c, ok := d.(interface{ Close() }); ok {
			c.Close()
		}
	}
}

// Device returns the device called name.
func (f *Fencer) Device(name string) (Device, bool) {
	d, ok := f.devices[name]
	return d, ok
}

// Levels returns the topology of node, explicit or implicit, in order.
func (f *Fencer) Levels(node string) []Level {
	return append([]Level(nil), f.levels[node]...)
}

// Nodes returns the nodes some device can fence.
func (f *Fencer) Nodes() []string {
	m := map[string]bool{}
	for n := range f.levels {
		m[n] = true
	}
	return sortedKeys(m)
}

// Check runs the metadata action of every agent device and validates
// its parameters against it; call it when a configuration is applied.
func (f *Fencer) Check(ctx context.Context) error {
	var errs []error
	for i, d := range f.cfg.Devices {
		if ad, ok := f.devices[d.Name].(*AgentDevice); ok {
			if err := ad.Check(ctx, fmt.Sprintf("devices[%d]", i)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (f *Fencer) policy(dev string) (timeout time.Duration, retries int) {
	d := f.devCfg[dev]
	timeout, retries = f.cfg.Timeout, DefaultRetries
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if f.cfg.Retries != nil {
		retries = *f.cfg.Retries
	}
	if d.Timeout > 0 {
		timeout = d.Timeout
	}
	if d.Retries != nil {
		retries = *d.Retries
	}
	return timeout, retries
}

func (f *Fencer) retryDelay() time.Duration {
	if f.cfg.RetryDelay > 0 {
		return f.cfg.RetryDelay
	}
	return DefaultRetryDelay
}

func (f *Fencer) pollInterval() time.Duration {
	if f.cfg.PollInterval > 0 {
		return f.cfg.PollInterval
	}
	return DefaultPollInterval
}

// Fence powers node off (Off), reboots it (Reboot: off, confirmed, then
// on) or powers it on (On: unfencing) through its topology: levels in
// order, all devices of a level must succeed. An off is only a success
// once status reports the node off. A request for a node that already
// has the same action in flight waits for it and returns its Result.
func (f *Fencer) Fence(ctx context.Context, node string, action Action) Result {
	if action != Off && action != Reboot && action != On {
		return f.finish(Result{Node: node, Action: action, Started: f.opts.Clock(),
			Error: fmt.Sprintf("fence %s: action must be off, reboot or on, got %q", node, action)})
	}
	f.mu.Lock()
	for {
		fl, busy := f.inflight[node]
		if !busy {
			break
		}
		if fl.action == action {
			f.mu.Unlock()
			select {
			case <-fl.done:
				return fl.res
			case <-ctx.Done():
				return Result{Node: node, Action: action, Started: f.opts.Clock(), Finished: f.opts.Clock(),
					Error: fmt.Sprintf("fence %s %s: canceled while waiting for the operation in flight", node, action)}
			}
		}
		// another action in flight: wait for it, then run ours
		f.mu.Unlock()
		select {
		case <-fl.done:
		case <-ctx.Done():
			return Result{Node: node, Action: action, Started: f.opts.Clock(), Finished: f.opts.Clock(),
				Error: fmt.Sprintf("fence %s %s: canceled while waiting for %s in flight", node, action, fl.action)}
		}
		f.mu.Lock()
	}
	fl := &flight{action: action, done: make(chan struct{})}
	f.inflight[node] = fl
	f.mu.Unlock()

	res := f.fence(ctx, node, action)

	f.mu.Lock()
	delete(f.inflight, node)
	f.mu.Unlock()
	fl.res = f.finish(res)
	close(fl.done)
	return fl.res
}

func (f *Fencer) fence(ctx context.Context, node string, action Action) Result {
	res := Result{Node: node, Action: action, Started: f.opts.Clock()}
	levels := f.levels[node]
	if node == "" {
		res.Error = "fence: empty node name"
		return res
	}
	if len(levels) == 0 {
		res.Error = fmt.Sprintf("fence %s: no fence device can fence node %s (not in any device's hosts or hostMap)", node, node)
		return res
	}
	// Anti-race delay, once, from the first device tried.
	if first := f.devCfg[levels[0].Devices[0]]; first.DelayBase > 0 || first.DelayMax > 0 {
		d := first.DelayBase
		if first.DelayMax > 0 {
			d += time.Duration(f.opts.Rand(int64(first.DelayMax)))
		}
		res.Delay = d
		f.opts.Logger.Info("fencing: delaying against fence races", "node", node, "device", first.Name, "delay", d)
		if err := f.opts.Sleep(ctx, d); err != nil {
			res.Error = fmt.Sprintf("fence %s %s: canceled during the %s delay", node, action, d)
			return res
		}
	}
	var failures []string
	for _, lv := range levels {
		ok, why := f.runLevel(ctx, &res, node, action, lv)
		if ok {
			res.OK, res.Level, res.Devices = true, lv.Index, append([]string(nil), lv.Devices...)
			return res
		}
		failures = append(failures, fmt.Sprintf("level %d: %s", lv.Index, why))
		if ctx.Err() != nil {
			failures = append(failures, "canceled")
			break
		}
	}
	res.Error = fmt.Sprintf("fence %s %s failed: %s", node, action, strings.Join(failures, "; "))
	return res
}

// runLevel runs action with every device of lv; reboot is off on every
// device (each confirmed), then on on every device.
func (f *Fencer) runLevel(ctx context.Context, res *Result, node string, action Action, lv Level) (bool, string) {
	first := action
	if action == Reboot {
		first = Off
	}
	for _, name := range lv.Devices {
		if ok, why := f.runDevice(ctx, res, lv.Index, name, first, node); !ok {
			return false, why
		}
	}
	if action == Reboot {
		var warns []string
		for _, name := range lv.Devices {
			if ok, why := f.runDevice(ctx, res, lv.Index, name, On, node); !ok {
				warns = append(warns, why)
			}
		}
		if len(warns) > 0 {
			// The off half succeeded: the node is fenced (ANCHORS.md).
			res.Warning = "node is off but did not power on again: " + strings.Join(warns, "; ")
		}
	}
	return true, ""
}

// runDevice runs action on one device with retries; an off is retried
// until status confirms it, each attempt bounded by the timeout.
func (f *Fencer) runDevice(ctx context.Context, res *Result, level int, name string, action Action, node string) (bool, string) {
	dev := f.devices[name]
	port, _ := f.devCfg[name].portFor(node)
	t := Target{Node: node, Port: port}
	timeout, retries := f.policy(name)
	log := f.opts.Logger.With("node", node, "device", name, "action", string(action), "level", level)
	var last string
	for try := 1; try <= 1+retries; try++ {
		if try > 1 {
			if err := f.opts.Sleep(ctx, f.retryDelay()); err != nil {
				return false, last + " (canceled)"
			}
		}
		deadline := time.Now().Add(timeout)
		o := dev.Exec(ctx, action, t, timeout)
		a := Attempt{Level: level, Device: name, Action: action, Try: try, Start: f.opts.Clock().Add(-o.Duration),
			ExitCode: o.ExitCode, Duration: o.Duration, TimedOut: o.TimedOut, Error: o.Err}
		res.Attempts = append(res.Attempts, a)
		if !o.OK() {
			last = fmt.Sprintf("device %s: %s (attempt %d of %d)", name, o.Err, try, 1+retries)
			log.Warn("fencing: attempt failed", "try", try, "exit", o.ExitCode, "error", o.Err, "duration", o.Duration)
			if ctx.Err() != nil {
				return false, last
			}
			continue
		}
		log.Info("fencing: attempt succeeded", "try", try, "duration", o.Duration)
		if action != Off {
			return true, ""
		}
		c := f.confirmOff(ctx, dev, t, deadline)
		c.Level, c.Device, c.Try = level, name, try
		res.Attempts = append(res.Attempts, c)
		if c.Error == "" {
			log.Info("fencing: off confirmed by status", "polls", c.Polls, "duration", c.Duration)
			return true, ""
		}
		last = fmt.Sprintf("device %s: %s (attempt %d of %d)", name, c.Error, try, 1+retries)
		log.Warn("fencing: off not confirmed", "try", try, "error", c.Error)
		if ctx.Err() != nil {
			return false, last
		}
	}
	return false, last
}

// confirmOff polls status until it reports off or the deadline passes.
func (f *Fencer) confirmOff(ctx context.Context, dev Device, t Target, deadline time.Time) Attempt {
	a := Attempt{Action: Status, Start: f.opts.Clock(), ExitCode: ExitNoExit}
	begin := time.Now()
	var lastErr string
	sawOn := false
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		o := dev.Exec(ctx, Status, t, left)
		a.Polls++
		if !o.TimedOut || a.Polls == 1 {
			// a last poll cut short by the deadline does not hide the
			// state the previous ones reported
			a.ExitCode, a.Power = o.ExitCode, o.Power
		}
		if o.Power == PowerOn {
			sawOn, lastErr = true, ""
		}
		if o.Power == PowerOff {
			a.Duration = time.Since(begin)
			return a
		}
		if o.Err != "" && !(o.TimedOut && sawOn) {
			lastErr = o.Err
		}
		if o.TimedOut || ctx.Err() != nil {
			break
		}
		if left = time.Until(deadline); left <= 0 {
			break
		}
		if f.opts.Sleep(ctx, min(f.pollInterval(), left)) != nil {
			break
		}
	}
	a.Duration = time.Since(begin)
	switch {
	case ctx.Err() != nil:
		a.Error = "canceled before status confirmed the node off"
	case lastErr != "":
		a.Error = "status did not confirm the node off before the timeout: " + lastErr
	default:
		a.Error = fmt.Sprintf("status still reports power %s at the timeout (the agent reported success early)", a.Power)
	}
	return a
}

// finish stamps res and records it in the history.
func (f *Fencer) finish(res Result) Result {
	res.Finished = f.opts.Clock()
	e := Entry{Time: res.Finished, Node: res.Node, Action: string(res.Action), OK: res.OK, Level: res.Level,
		Devices: res.Devices, Attempts: len(res.Attempts), Duration: res.Finished.Sub(res.Started),
		Error: res.Error, Warning: res.Warning}
	f.record(e)
	if res.OK {
		f.opts.Logger.Info("fencing: node fenced", "node", res.Node, "action", string(res.Action), "level", res.Level, "devices", res.Devices)
	} else {
		f.opts.Logger.Error("fencing: FAILED", "node", res.Node, "action", string(res.Action), "error", res.Error)
	}
	return res
}

func (f *Fencer) record(e Entry) {
	size := f.cfg.HistorySize
	if size == 0 {
		size = DefaultHistorySize
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history = append(f.history, e)
	if over := len(f.history) - size; over > 0 {
		f.history = append([]Entry(nil), f.history[over:]...)
	}
}

// Confirm records the operator's manual acknowledgement that node is
// down (powered off by hand, unplugged): the cluster may then treat it as
// fenced. operator names who acknowledged ("" allowed).
func (f *Fencer) Confirm(node, operator string) (Entry, error) {
	if node == "" {
		return Entry{}, &FieldError{Field: "node", Msg: "is required"}
	}
	e := Entry{Time: f.opts.Clock(), Node: node, Action: ActionConfirm, OK: true, Operator: operator}
	f.record(e)
	f.opts.Logger.Warn("fencing: node confirmed down by operator", "node", node, "operator", operator)
	return e, nil
}

// History returns the recorded operations, oldest first.
func (f *Fencer) History() []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Entry(nil), f.history...)
}

// LastFenced returns the time of the last successful off, reboot or
// confirm of node (what recovery waits for), and whether there is one.
func (f *Fencer) LastFenced(node string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.history) - 1; i >= 0; i-- {
		e := f.history[i]
		if e.Node == node && e.OK && e.Action != string(On) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}
