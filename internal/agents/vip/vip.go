// Package vip is the built-in class "vip": a virtual IP address held by the
// agent itself, without a script (docs/vip.md). It implements
// agents.Invoker, so the executor drives it like an OCF agent:
//
//   - start: the interface must exist (else OCF_ERR_CONFIGURED) and be up;
//     an IPv4 address is first ARP-probed (RFC 5227 style, sender IP
//     0.0.0.0, 3 probes 15 ms apart) and refused with a generic error
//     naming the MAC that answered; then the address is added with
//     rtnetlink (IPv6 with IFA_F_NODAD, usable at once) and announced:
//     gratuitous ARP request and reply (IPv4) or an unsolicited neighbour
//     advertisement with Override (IPv6), garpCount rounds garpInterval
//     apart — the first before start returns, the others in the
//     background — and again every refresh while the address is held;
//     every held address has a lease guard (internal/guard), started
//     before the address is added, that removes it when the node's hold
//     lease runs out or the agent dies, even if the agent is hung — a
//     start fails if the guard cannot be started;
//   - monitor: the address is on the interface (0) or not (7);
//   - stop: the address is removed (idempotent; a missing interface or
//     address is success) and the announcements stop;
//   - validate-all and meta-data, as an OCF agent.
//
// Every netlink and packet socket is opened in the network namespace of
// the calling thread; the agent runs in one namespace, so that is the
// namespace of the agent process (tests run the agent in a helper process
// started with "ip netns exec").
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/guard"
	"github.com/paceline/paceline/internal/spec"
)

// Class is the class name in a spec.
const Class = spec.KindVIP

// Options configure an Agent.
type Options struct {
	Logger *slog.Logger
	// Guards feeds the lease deadline to the guards of held addresses;
	// nil: guards act only when the agent dies.
	Guards *guard.Feed
}

// Agent is the Invoker of class vip. It is safe for concurrent use and
// keeps, per instance, the background announcements (the rest of a burst
// and the refresh) until stop or Close.
type Agent struct {
	log    *slog.Logger
	guards *guard.Feed

	mu      sync.Mutex
	running map[string]*announcing // by instance name
	busy    map[string]chan struct{}
	guarded map[string]*guarding // by instance name
	closed  bool
}

// guarding is the guard of one held address.
type guarding struct {
	key string // interface and address
	g   *guard.Guard
}

// announcing is the background announcer of one held address.
type announcing struct {
	key    string // interface and address
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns the Agent.
func New(opts Options) *Agent {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{log: log.With("class", Class), guards: opts.Guards, running: map[string]*announcing{}, busy: map[string]chan struct{}{}, guarded: map[string]*guarding{}}
}

// serialize waits until no other action of instance name runs (or ctx is
// done: ok false) and returns the function that ends this one. A start
// cancelled at a self-fence may still be finishing when the stop comes:
// the stop must not run before it, or the start could add the address
// back (or announce it) after the stop removed it.
func (a *Agent) serialize(ctx context.Context, name string) (release func(), ok bool) {
	for {
		a.mu.Lock()
		ch, held := a.busy[name]
		if !held {
			ch = make(chan struct{})
			a.busy[name] = ch
			a.mu.Unlock()
			return func() {
				a.mu.Lock()
				delete(a.busy, name)
				a.mu.Unlock()
				close(ch)
			}, true
		}
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Close stops every background announcement. The addresses stay (they
// are removed by stop), and so do their guards: if the agent exits without
// stopping them, the guards remove them.
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	all := a.running
	a.running = map[string]*announcing{}
	a.mu.Unlock()
	for _, r := range all {
		r.cancel()
		<-r.done
	}
	return nil
}

// Run runs action for inst. It never blocks longer than timeout (the
// probe takes 45 ms, netlink requests a few).
func (a *Agent) Run(ctx context.Context, action agents.Action, inst agents.Instance, timeout time.Duration) agents.Result {
	if timeout <= 0 {
		timeout = agents.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	begin := time.Now()
	var r agents.Result
	if action != agents.MetaData {
		release, ok := a.serialize(ctx, inst.Name)
		if !ok {
			return agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, TimedOut: ctx.Err() == context.DeadlineExceeded,
				Reason: fmt.Sprintf("%s: another action of %s was still running after %s", action, inst.Name, timeout), Duration: time.Since(begin)}
		}
		defer release()
	}
	switch action {
	case agents.MetaData:
		r = success()
		r.Stdout = metadata
	case agents.ValidateAll:
		r = a.validate(inst)
	case agents.Start:
		r = a.start(ctx, inst)
	case agents.Stop:
		r = a.stop(ctx, inst)
	case agents.Monitor:
		r = a.monitor(inst)
	default:
		r = agents.Result{Code: agents.OCFErrUnimplemented, Reason: fmt.Sprintf("class vip does not implement %s", action)}
	}
	if r.Status == 0 {
		r.Status = agents.StatusFromOCF(r.Code)
	}
	if ctx.Err() == context.DeadlineExceeded && r.Status.Failed() {
		r.TimedOut = true
	}
	r.Duration = time.Since(begin)
	return r
}

func success() agents.Result { return agents.Result{Code: agents.OCFSuccess} }

func fail(code int, format string, args ...any) agents.Result {
	return agents.Result{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// target is an instance's parameters with the interface looked up.
type target struct {
	p   spec.VIPParams
	ifc *net.Interface // nil: the interface does not exist
}

// resolve parses inst's params and finds the interface. A Result with a
// non-zero Code is the failure to return (bad params: OCF_ERR_CONFIGURED).
func resolve(inst agents.Instance) (target, *agents.Result) {
	p, errs := spec.ParseVIPParams(inst.Params)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		r := fail(agents.OCFErrConfigured, "invalid parameters: %s", strings.Join(msgs, "; "))
		return target{}, &r
	}
	t := target{p: p}
	ifc, err := net.InterfaceByName(p.Interface)
	if err == nil {
		t.ifc = ifc
	} else if !isNoSuchInterface(err) {
		r := fail(agents.OCFErrGeneric, "look up interface %s: %v", p.Interface, err)
		return target{}, &r
	}
	return t, nil
}

func isNoSuchInterface(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil && strings.Contains(op.Err.Error(), "no such network interface") {
		return true
	}
	return strings.Contains(err.Error(), "no such network interface")
}

func noInterface(t target) agents.Result {
	return fail(agents.OCFErrConfigured, "interface %s does not exist on this node (params.interface; check `ip link`)", t.p.Interface)
}

func (a *Agent) validate(inst agents.Instance) agents.Result {
	t, bad := resolve(inst)
	if bad != nil {
		return *bad
	}
	if t.ifc == nil {
		return noInterface(t)
	}
	return success()
}

func (a *Agent) monitor(inst agents.Instance) agents.Result {
	t, bad := resolve(inst)
	if bad != nil {
		return *bad
	}
	if t.ifc == nil {
		// Not configured here: nothing can be held on it (a probe on a
		// node without the interface must say "not running").
		return agents.Result{Code: agents.OCFNotRunning, Reason: fmt.Sprintf("interface %s does not exist", t.p.Interface)}
	}
	_, held, err := findAddr(t.ifc.Index, t.p.Address.Addr())
	if err != nil {
		return fail(agents.OCFErrGeneric, "%v", err)
	}
	if !held {
		a.mu.Lock()
		gd := a.guarded[inst.Name]
		a.mu.Unlock()
		a.forget(inst.Name)
		a.unguard(inst.Name)
		if gd != nil && gd.g.MayHaveFired() {
			// The guard removed it when the lease ran out: a self-fence.
			return agents.Result{Code: agents.OCFNotRunning, Reason: agents.ReasonLeaseGuard}
		}
		return agents.Result{Code: agents.OCFNotRunning}
	}
	if err := a.guard(inst.Name, t); err != nil {
		a.log.Warn("held address without a lease guard", "instance", inst.Name, "err", err)
	}
	// Held, e.g. after an agent restart: make sure it is refreshed.
	if t.p.Refresh > 0 {
		a.background(inst.Name, t, 0)
	}
	return success()
}

func (a *Agent) start(ctx context.Context, inst agents.Instance) agents.Result {
	t, bad := resolve(inst)
	if bad != nil {
		return *bad
	}
	if t.ifc == nil {
		return noInterface(t)
	}
	ip := t.p.Address.Addr()
	if t.ifc.Flags&net.FlagUp == 0 {
		return fail(agents.OCFErrGeneric, "interface %s is down: not taking %s", t.p.Interface, t.p.Address)
	}
	cur, held, err := findAddr(t.ifc.Index, ip)
	if err != nil {
		return fail(agents.OCFErrGeneric, "%v", err)
	}
	if held && cur.Pfx.Bits() != t.p.Address.Bits() {
		return fail(agents.OCFErrGeneric, "interface %s already carries %s with another prefix length (/%d, want /%d): remove it first",
			t.p.Interface, ip, cur.Pfx.Bits(), t.p.Address.Bits())
	}
	// The guard first: from the moment the address exists, a lease that
	// runs out removes it whatever the agent is doing. It starts (a fork
	// and exec) while the probe waits for answers.
	guarded := make(chan error, 1)
	go func() { guarded <- a.guard(inst.Name, t) }()
	if !held && ip.Is4() {
		if len(t.ifc.HardwareAddr) == 6 && t.p.ProbeCount > 0 {
			if err := probeARP(ctx, t.ifc.Index, t.ifc.HardwareAddr, ip, t.p.ProbeCount); err != nil {
				if <-guarded == nil {
					a.unguard(inst.Name)
				}
				var c *ConflictError
				if errors.As(err, &c) {
					a.log.Warn("address in use by another host: not taking it", "instance", inst.Name, "address", ip, "mac", c.MAC.String())
					return fail(agents.OCFErrGeneric, "%v", err)
				}
				return fail(agents.OCFErrGeneric, "ARP probe for %s on %s: %v", ip, t.p.Interface, err)
			}
		}
	}
	if err := <-guarded; err != nil {
		return fail(agents.OCFErrGeneric, "not taking %s: %v", t.p.Address, err)
	}
	if !held {
		if err := addAddr(t.ifc.Index, t.p.Address, t.p.Label); err != nil {
			return fail(agents.OCFErrGeneric, "on %s: %v", t.p.Interface, err)
		}
	}
	// The first round now, so that clients move before start returns.
	r := success()
	if ann, ok := announcerFor(t); ok {
		if err := ann.round(); err != nil {
			// The address is held: a lost announcement is not a failed
			// start (clients will re-ARP), but say so.
			r.Reason = fmt.Sprintf("address added, but announcing it failed: %v", err)
			a.log.Warn("announce", "instance", inst.Name, "address", ip, "err", err)
		}
		a.background(inst.Name, t, t.p.GARPCount-1)
	}
	a.log.Info("address held", "instance", inst.Name, "address", t.p.Address.String(), "interface", t.p.Interface)
	return r
}

// announcerFor returns the announcer of t; ok false when the interface has
// no Ethernet address (no ARP/NDP to send, e.g. a tun device).
func announcerFor(t target) (announcer, bool) {
	if len(t.ifc.HardwareAddr) != 6 || t.ifc.Flags&net.FlagLoopback != 0 {
		return announcer{}, false
	}
	return announcer{ifindex: t.ifc.Index, mac: t.ifc.HardwareAddr, ip: t.p.Address.Addr()}, true
}

// background starts (or keeps) the background announcements of instance
// name: the remaining rounds of the burst, then a burst every refresh.
func (a *Agent) background(name string, t target, rest int) {
	ann, ok := announcerFor(t)
	if !ok || (rest <= 0 && t.p.Refresh <= 0) {
		return
	}
	key := t.p.Interface + " " + t.p.Address.String()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	old := a.running[name]
	if old != nil && old.key == key && rest <= 0 {
		a.mu.Unlock()
		return // already refreshing
	}
	ctx, cancel := context.WithCancel(context.Background())
	cur := &announcing{key: key, cancel: cancel, done: make(chan struct{})}
	a.running[name] = cur
	a.mu.Unlock()
	if old != nil {
		old.cancel()
		<-old.done
	}
	go func() {
		defer close(cur.done)
		wait := func(d time.Duration) bool {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-ctx.Done():
				return false
			case <-tm.C:
				return true
			}
		}
		if rest > 0 {
			if !wait(t.p.GARPInterval) {
				return
			}
			if err := ann.burst(ctx, rest, t.p.GARPInterval); err != nil && ctx.Err() == nil {
				a.log.Warn("announce", "instance", name, "address", ann.ip, "err", err)
			}
		}
		for t.p.Refresh > 0 && wait(t.p.Refresh) {
			if err := ann.burst(ctx, t.p.GARPCount, t.p.GARPInterval); err != nil && ctx.Err() == nil {
				a.log.Warn("refresh", "instance", name, "address", ann.ip, "err", err)
			}
		}
	}()
}

// guard makes sure the address of instance name has a running lease
// guard (internal/guard).
func (a *Agent) guard(name string, t target) error {
	key := t.p.Interface + " " + t.p.Address.String()
	a.mu.Lock()
	old := a.guarded[name]
	a.mu.Unlock()
	if old != nil {
		select {
		case <-old.g.Done():
			// Killed by someone: start another.
		default:
			if old.key == key {
				return nil
			}
		}
		a.unguard(name)
	}
	cfg, err := guard.RemoveAddress(name, t.p.Interface, t.p.Address.String())
	if err != nil {
		return err
	}
	// While the lease stays expired, remove it again every 100 ms: a
	// start that was half way when the agent froze may add it back.
	cfg.Repeat = guardRepeat
	g, err := a.guards.Start(cfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.guarded[name] = &guarding{key: key, g: g}
	a.mu.Unlock()
	return nil
}

// guardRepeat is how often a guard removes the address again while the
// lease stays expired.
const guardRepeat = 100 * time.Millisecond

// unguard ends the guard of instance name without removing the address.
func (a *Agent) unguard(name string) {
	a.mu.Lock()
	old := a.guarded[name]
	delete(a.guarded, name)
	a.mu.Unlock()
	if old != nil {
		old.g.Stop()
	}
}

// forget stops the background announcements of instance name.
func (a *Agent) forget(name string) {
	a.mu.Lock()
	r := a.running[name]
	delete(a.running, name)
	a.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

func (a *Agent) stop(ctx context.Context, inst agents.Instance) agents.Result {
	a.forget(inst.Name)
	t, bad := resolve(inst)
	if bad != nil {
		// Params that do not parse never got an address added.
		a.unguard(inst.Name)
		return agents.Result{Code: agents.OCFSuccess, Reason: bad.Reason}
	}
	if t.ifc == nil {
		a.unguard(inst.Name)
		return success() // no interface, no address
	}
	// The guard stays until the address is gone: a stop that fails or
	// does not finish in time (a self-fence on an overloaded host) leaves
	// the address guarded, and the guard removes it once the lease runs
	// out. Removing an address twice is harmless.
	// The stop is bounded (a self-fence relies on it, driver.FenceWait):
	// a netlink request that outlives the timeout is a failed stop, even
	// if the kernel completes it later.
	done := make(chan error, 1)
	go func() { done <- delAddr(t.ifc.Index, t.p.Address) }()
	select {
	case err := <-done:
		if err != nil {
			return fail(agents.OCFErrGeneric, "on %s: %v", t.p.Interface, err)
		}
		a.unguard(inst.Name)
	case <-ctx.Done():
		return fail(agents.OCFErrGeneric, "removing %s from %s did not finish in time: %v", t.p.Address, t.p.Interface, ctx.Err())
	}
	a.log.Info("address released", "instance", inst.Name, "address", t.p.Address.String(), "interface", t.p.Interface)
	return success()
}

// metadata is what meta-data prints, as an OCF agent would.
const metadata = `<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="vip" version="1.0">
<version>1.1</version>
<longdesc lang="en">A virtual IP address held by the paceline agent: added with netlink,
announced with gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6),
ARP-probed before it is taken. See docs/vip.md.</longdesc>
<shortdesc lang="en">Virtual IP address (built in)</shortdesc>
<parameters>
<parameter name="address" required="1" unique="1">
<longdesc lang="en">The address with its prefix length, e.g. 192.0.2.10/24 or 2001:db8::10/64.</longdesc>
<shortdesc lang="en">Address/prefix</shortdesc>
<content type="string"/>
</parameter>
<parameter name="interface" required="1">
<longdesc lang="en">The interface to put the address on.</longdesc>
<shortdesc lang="en">Interface</shortdesc>
<content type="string"/>
</parameter>
<parameter name="garpCount">
<longdesc lang="en">Announcement rounds at takeover (and at each refresh).</longdesc>
<shortdesc lang="en">Burst size</shortdesc>
<content type="integer" default="5"/>
</parameter>
<parameter name="garpInterval">
<longdesc lang="en">Time between the rounds of a burst.</longdesc>
<shortdesc lang="en">Burst interval</shortdesc>
<content type="string" default="200ms"/>
</parameter>
<parameter name="refresh">
<longdesc lang="en">Re-announce the address this often while it is held; 0 never.</longdesc>
<shortdesc lang="en">Refresh interval</shortdesc>
<content type="string" default="0"/>
</parameter>
<parameter name="label">
<longdesc lang="en">IPv4 address label, e.g. eth0:vip.</longdesc>
<shortdesc lang="en">Label</shortdesc>
<content type="string"/>
</parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="20s"/>
<action name="monitor" interval="10s" timeout="20s"/>
<action name="validate-all" timeout="20s"/>
<action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
`
