// Package lbmanager runs the spec's load balancers on one node: it turns
// the loadBalancers section, the discovery snapshot (where each resource
// runs healthy) and the VIPs this node holds into one internal/lb load
// balancer per entry, and keeps each current with lb.Update — live, only
// when its configuration changed, so listeners stay bound and connections
// stay open. A load balancer with a vip runs only while this node holds
// that VIP (its frontends close when the VIP leaves); one without runs on
// every node. Servers that change state (up, down, ejected) become
// cluster events. See docs/lb.md, "Spec and agent wiring".
package lbmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/discovery"
	"github.com/paceline/paceline/internal/lb"
	"github.com/paceline/paceline/internal/spec"
)

// Inputs are what the load balancers of this node are built from.
type Inputs struct {
	// LoadBalancers is the spec's section (the manager does not modify it).
	LoadBalancers []spec.LoadBalancer
	// Snapshot gives healthy instances, node addresses and VIP addresses.
	Snapshot *discovery.Snapshot
	// Held reports whether this node holds (runs, started) a vip resource.
	Held func(vip string) bool
}

// Event is a cluster event the manager reports.
type Event struct {
	Type     string // lb-started, lb-stopped, lb-server-up, lb-server-down
	Resource string // the resource a server belongs to, when it follows one
	Message  string
}

// Config configures a Manager.
type Config struct {
	Node   string
	Logger *slog.Logger
	Clock  lb.Clock // nil: the system clock
	// Events receives events; it must not block.
	Events func(Event)
	// Sysctl writes a sysctl under /proc/sys (nil: the real file); used
	// for net.ipv4.ip_nonlocal_bind and net.ipv6.ip_nonlocal_bind.
	Sysctl func(name, value string) error
	// ReadFile reads check password files (nil: os.ReadFile).
	ReadFile func(string) ([]byte, error)
	// LocalAddrs lists this network namespace's addresses (nil: none is
	// known, a bind must fail before ip_nonlocal_bind is set; New sets
	// the real list unless Sysctl is given).
	LocalAddrs func() ([]netip.Addr, error)
	// RetryEvery is how often a frontend that failed to start is tried
	// again (default 2s).
	RetryEvery time.Duration
}

// Manager owns the load balancers of one node. Apply and Status may be
// called from different goroutines.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	lbs      map[string]*instance
	errs     map[string]string // load balancer → why it does not run at all
	warned   map[string]bool   // warnings logged once
	nonlocal map[string]bool   // sysctls set
	closed   bool
}

type instance struct {
	name, vip string
	l         *lb.LB
	cfg       lb.Config
	resOf     map[string]string // backend/server → resource
	states    map[string]string // backend/server → last state seen
	err       string            // frontends that did not start
	retryAt   time.Time
}

// New returns a manager that runs nothing yet.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	if cfg.Sysctl == nil {
		cfg.Sysctl = writeSysctl
		if cfg.LocalAddrs == nil {
			cfg.LocalAddrs = localAddrs
		}
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = 2 * time.Second
	}
	return &Manager{cfg: cfg, log: cfg.Logger, lbs: map[string]*instance{}, errs: map[string]string{},
		warned: map[string]bool{}, nonlocal: map[string]bool{}}
}

// Run applies inputs() every interval until ctx ends, then closes every
// load balancer.
func (m *Manager) Run(ctx context.Context, interval time.Duration, inputs func() Inputs) {
	t := time.NewTicker(interval)
	defer t.Stop()
	defer m.Close()
	for {
		m.Apply(inputs())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Apply brings the running load balancers in line with in: starts those
// that should run here, updates those whose configuration changed (and
// nothing else), closes those that should not run here anymore, and
// reports server state changes as events.
func (m *Manager) Apply(in Inputs) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	want := map[string]bool{}
	m.errs = map[string]string{}
	for i := range in.LoadBalancers {
		sl := &in.LoadBalancers[i]
		if sl.VIP != "" && (in.Held == nil || !in.Held(sl.VIP)) {
			continue
		}
		var vip netip.Addr
		if sl.VIP != "" {
			v, ok := vipAddr(in.Snapshot, sl.VIP)
			if !ok {
				m.errs[sl.Name] = fmt.Sprintf("the address of vip %s is unknown here", sl.VIP)
				continue
			}
			vip = v
		}
		want[sl.Name] = true
		cfg, warns := sl.LBConfig(spec.LBInputs{VIP: vip, Instances: instances(in.Snapshot), ReadFile: m.cfg.ReadFile})
		for _, w := range warns {
			m.warnOnce(w.Error())
		}
		m.run(sl, cfg)
	}
	for name, inst := range m.lbs {
		if !want[name] {
			m.stop(inst, "no longer wanted here")
		}
	}
	for _, inst := range m.lbs {
		m.events(inst)
	}
}

func (m *Manager) run(sl *spec.LoadBalancer, cfg lb.Config) {
	inst := m.lbs[sl.Name]
	now := time.Now()
	switch {
	case inst == nil:
		m.enableNonlocal(cfg, m.notLocal)
		l, err := lb.New(cfg, m.log.With("lb", sl.Name), m.cfg.Clock)
		if l == nil {
			m.errs[sl.Name] = err.Error()
			m.warnOnce(fmt.Sprintf("load balancer %s not started: %v", sl.Name, err))
			return
		}
		inst = &instance{name: sl.Name, vip: sl.VIP, l: l, cfg: cfg, states: map[string]string{}}
		m.lbs[sl.Name] = inst
		where := "on every node"
		if sl.VIP != "" {
			where = "with vip " + sl.VIP
		}
		m.log.Info("load balancer started", "lb", sl.Name, "vip", sl.VIP)
		m.cfg.Events(Event{Type: "lb-started", Message: fmt.Sprintf("load balancer %s started on %s (%s)", sl.Name, m.cfg.Node, where)})
		m.settle(inst, err, now)
	case inst.vip != sl.VIP:
		// Colocated with another VIP (or none): start afresh.
		m.stop(inst, "its vip changed")
		m.run(sl, cfg)
		return
	case !reflect.DeepEqual(inst.cfg, cfg):
		m.enableNonlocal(cfg, m.notLocal)
		err := inst.l.Update(cfg)
		var fe *lb.FieldError
		if errors.As(err, &fe) {
			m.errs[sl.Name] = err.Error()
			m.warnOnce(fmt.Sprintf("load balancer %s: update refused: %v", sl.Name, err))
			return
		}
		inst.cfg = cfg
		m.settle(inst, err, now)
	case inst.err != "" && now.After(inst.retryAt):
		m.settle(inst, inst.l.Update(cfg), now)
	}
	inst.resOf = resourcesOf(sl, cfg)
}

// settle records frontend errors of New/Update; a bind refused for an
// address that is not (yet) local turns on ip_nonlocal_bind for its
// family, once, and tries again.
func (m *Manager) settle(inst *instance, err error, now time.Time) {
	if err != nil && errors.Is(err, syscall.EADDRNOTAVAIL) {
		failed := map[netip.Addr]bool{}
		for _, f := range inst.l.Status().Frontends {
			if f.Addr == "" && strings.Contains(f.Error, syscall.EADDRNOTAVAIL.Error()) {
				if ap, err := netip.ParseAddrPort(f.Bind); err == nil {
					failed[ap.Addr().Unmap()] = true
				}
			}
		}
		if m.enableNonlocal(inst.cfg, func(a netip.Addr) bool { return failed[a] }) {
			err = inst.l.Update(inst.cfg)
		}
	}
	old := inst.err
	inst.err = ""
	if err != nil {
		inst.err = err.Error()
		inst.retryAt = now.Add(m.cfg.RetryEvery)
	}
	switch {
	case inst.err != "" && inst.err != old:
		m.cfg.Events(Event{Type: "lb-frontend-failed", Message: fmt.Sprintf(
			"load balancer %s on %s: %s; its other frontends serve, and the failed ones are retried every %v: free the address (see who listens with `ss -ltnp`) or change the frontend's bind",
			inst.name, m.cfg.Node, inst.err, m.cfg.RetryEvery)})
	case inst.err == "" && old != "":
		m.cfg.Events(Event{Type: "lb-frontend-recovered", Message: fmt.Sprintf("load balancer %s on %s: every frontend listens again", inst.name, m.cfg.Node)})
	}
}

// notLocal reports whether a is on none of this namespace's interfaces.
func (m *Manager) notLocal(a netip.Addr) bool {
	if m.cfg.LocalAddrs == nil {
		return false
	}
	addrs, err := m.cfg.LocalAddrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if x == a {
			return false
		}
	}
	return true
}

// enableNonlocal sets ip_nonlocal_bind for the families of the frontends
// whose address is not local (by notLocal); it reports whether it changed
// anything. The VIP's load balancer is started when the VIP's start
// begins, before its address is added, so that no connection finds the
// address without a listener.
func (m *Manager) enableNonlocal(cfg lb.Config, notLocal func(netip.Addr) bool) bool {
	changed := false
	for _, f := range cfg.Frontends {
		host, _, err := net.SplitHostPort(f.Bind)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsUnspecified() {
			continue
		}
		a = a.Unmap()
		if !notLocal(a) {
			continue
		}
		name := "net.ipv4.ip_nonlocal_bind"
		if a.Is6() {
			name = "net.ipv6.ip_nonlocal_bind"
		}
		if m.nonlocal[name] {
			continue
		}
		m.nonlocal[name] = true
		if err := m.cfg.Sysctl(name, "1"); err != nil {
			m.log.Warn("could not allow binding addresses that are not local", "sysctl", name, "err", err)
			continue
		}
		m.log.Info("set "+name+"=1 in this network namespace: a load balancer frontend binds an address that is not (yet) on an interface", "addr", host)
		changed = true
	}
	return changed
}

func (m *Manager) stop(inst *instance, why string) {
	_ = inst.l.Close()
	delete(m.lbs, inst.name)
	m.log.Info("load balancer stopped", "lb", inst.name, "why", why)
	m.cfg.Events(Event{Type: "lb-stopped", Message: fmt.Sprintf("load balancer %s stopped on %s (%s)", inst.name, m.cfg.Node, why)})
}

// events reports servers that went up or down since the last call.
func (m *Manager) events(inst *instance) {
	st := inst.l.Status()
	seen := map[string]bool{}
	for _, s := range st.Servers {
		k := s.Backend + "/" + s.Name
		seen[k] = true
		old, known := inst.states[k]
		inst.states[k] = s.State
		if !known {
			old = "up" // a new server counts as up until its first check
		}
		if old == s.State {
			continue
		}
		up := func(x string) bool { return x == "up" }
		down := func(x string) bool { return x == "down" || x == "ejected" }
		switch {
		case up(s.State) && down(old):
			m.cfg.Events(Event{Type: "lb-server-up", Resource: inst.resOf[k], Message: fmt.Sprintf("load balancer %s on %s: server %s (%s) of backend %s is up: %s", inst.name, m.cfg.Node, s.Name, s.Address, s.Backend, s.Reason)})
		case down(s.State) && !down(old):
			m.cfg.Events(Event{Type: "lb-server-down", Resource: inst.resOf[k], Message: fmt.Sprintf("load balancer %s on %s: server %s (%s) of backend %s is %s: %s", inst.name, m.cfg.Node, s.Name, s.Address, s.Backend, s.State, s.Reason)})
		}
	}
	for k := range inst.states {
		if !seen[k] {
			delete(inst.states, k)
		}
	}
}

func (m *Manager) warnOnce(msg string) {
	if m.warned[msg] {
		return
	}
	if len(m.warned) > 1000 {
		clear(m.warned)
	}
	m.warned[msg] = true
	m.log.Warn(msg)
}

// Status reports the load balancers running here, and those that should
// but could not start.
func (m *Manager) Status() []api.LoadBalancerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.LoadBalancerStatus
	for _, inst := range m.lbs {
		st := inst.l.Status()
		s := api.LoadBalancerStatus{Name: inst.name, Node: m.cfg.Node, VIP: inst.vip, Error: inst.err}
		for _, f := range st.Frontends {
			s.Frontends = append(s.Frontends, api.LBFrontendStatus{Name: f.Name, Bind: f.Bind, Addr: f.Addr, Mode: f.Mode, Backend: f.Backend, Error: f.Error})
		}
		for _, x := range st.Servers {
			s.Servers = append(s.Servers, api.LBServerStatus{Backend: x.Backend, Name: x.Name, Address: x.Address, State: x.State,
				Backup: x.Backup, Active: x.Active, Total: x.Total, Failed: x.Failed, Reason: x.Reason})
		}
		out = append(out, s)
	}
	for name, e := range m.errs {
		if m.lbs[name] == nil {
			out = append(out, api.LoadBalancerStatus{Name: name, Node: m.cfg.Node, Error: e})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Addr is the bound address of a frontend of a load balancer running
// here, or nil.
func (m *Manager) Addr(lbName, frontend string) net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if inst := m.lbs[lbName]; inst != nil {
		return inst.l.Addr(frontend)
	}
	return nil
}

// Close stops every load balancer; Apply does nothing afterwards.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, inst := range m.lbs {
		_ = inst.l.Close()
	}
	clear(m.lbs)
}

// instances lists the healthy instances of a resource with a known
// address, from the snapshot.
func instances(snap *discovery.Snapshot) func(string) []spec.LBInstance {
	return func(res string) []spec.LBInstance {
		if snap == nil {
			return nil
		}
		var out []spec.LBInstance
		for _, ep := range snap.Services[res] {
			if ep.Healthy && ep.Addr.IsValid() {
				out = append(out, spec.LBInstance{Node: ep.Node, Addr: ep.Addr})
			}
		}
		return out
	}
}

func vipAddr(snap *discovery.Snapshot, name string) (netip.Addr, bool) {
	if snap == nil {
		return netip.Addr{}, false
	}
	v, ok := snap.VIPs[name]
	if !ok || len(v.Addrs) == 0 {
		return netip.Addr{}, false
	}
	return v.Addrs[0], true
}

// resourcesOf maps backend/server to the resource it follows.
func resourcesOf(sl *spec.LoadBalancer, cfg lb.Config) map[string]string {
	out := map[string]string{}
	for i, b := range sl.Backends {
		if i >= len(cfg.Backends) {
			break
		}
		var res []string
		for _, s := range b.Servers {
			if s.Resource != "" {
				res = append(res, s.Resource)
			}
		}
		if len(res) == 0 {
			continue
		}
		for _, s := range cfg.Backends[i].Servers {
			r, _, ok := strings.Cut(s.Name, "@")
			if ok {
				out[b.Name+"/"+s.Name] = r
			} else if len(res) > 0 {
				static := false
				for _, x := range b.Servers {
					static = static || (x.Resource == "" && x.Name == s.Name)
				}
				if !static {
					out[b.Name+"/"+s.Name] = res[0]
				}
			}
		}
	}
	return out
}

// localAddrs lists the addresses of this network namespace's interfaces.
func localAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

// writeSysctl writes /proc/sys/NAME (dots become slashes).
func writeSysctl(name, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
