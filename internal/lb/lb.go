// Package lb is paceline's built-in load balancer: tcp and http frontends,
// weighted backends with backup servers, active and passive health checks,
// and live reconfiguration without dropping established connections.
// See docs/lb.md.
package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Clock gives the time for stick tables and passive ejection; nil means the
// system clock.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// LB is a running load balancer.
type LB struct {
	log   *slog.Logger
	clock Clock

	mu        sync.Mutex
	cfg       *Config
	frontends map[string]*frontend
	backends  map[string]*backend
	feErr     map[string]error
	closed    bool
	noRawHTTP bool    // tests: force the net/http path
	tcpLoops  loopSet // tcp mode event loops (tcploop_linux.go)

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

type frontend struct {
	cfg     Frontend // fixed while the listener lives
	tls     *TLS     // current certificate files; under LB.mu
	idle    atomic.Int64
	stopped atomic.Bool
	ln      net.Listener
	backend atomic.Pointer[backend]
	srv     *http.Server                    // http mode
	cert    atomic.Pointer[tls.Certificate] // TLS termination
	done    chan struct{}
}

// New validates cfg and starts every frontend and health check. A config
// error returns (nil, err), the error naming the field. A frontend that
// cannot start (address in use, malformed certificate) does not stop the
// others: New returns the running LB together with an error that explains
// each failed frontend, and Status reports it.
func New(cfg Config, logger *slog.Logger, clock Clock) (*LB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if clock == nil {
		clock = systemClock{}
	}
	l := &LB{log: logger, clock: clock, frontends: map[string]*frontend{},
		backends: map[string]*backend{}, feErr: map[string]error{}, conns: map[net.Conn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.cfg = &Config{}
	return l, l.apply(cfg.withDefaults())
}

// Update applies a new configuration live. Listeners whose frontend keeps
// its name, address and mode stay open; established connections are never
// closed; servers removed from a backend drain. A config error changes
// nothing. As with New, a frontend that cannot start is reported in the
// error without affecting the others.
func (l *LB) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return l.apply(cfg.withDefaults())
}

func (l *LB) apply(cfg *Config) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lb: closed")
	}
	// Backends first, so frontends can point at them.
	nb := map[string]*backend{}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		b := l.backends[bc.Name]
		if b == nil {
			b = &backend{name: bc.Name, lb: l, log: l.log}
		}
		l.updateBackend(b, bc)
		nb[bc.Name] = b
	}
	for name, b := range l.backends {
		if nb[name] == nil {
			l.removeBackend(b)
		}
	}
	l.backends = nb

	var errs []error
	want := map[string]bool{}
	// Stop frontends that are removed or changed, before binding new ones
	// (a frontend may move its mode on the same address).
	for i, fc := range cfg.Frontends {
		want[fc.Name] = true
		if f := l.frontends[fc.Name]; f != nil && !sameListener(f, fc) {
			l.stopFrontend(f)
			delete(l.frontends, fc.Name)
		}
		_ = i
	}
	for name, f := range l.frontends {
		if !want[name] {
			l.stopFrontend(f)
			delete(l.frontends, name)
		}
	}
	l.feErr = map[string]error{}
	for i, fc := range cfg.Frontends {
		field := fmt.Sprintf("frontends[%d](%s)", i, fc.Name)
		if f := l.frontends[fc.Name]; f != nil {
			if fc.TLS != nil {
				f.tls = fc.TLS
				if c, err := loadCert(field, fc.TLS); err != nil {
					err = fmt.Errorf("%w; the frontend keeps its previous certificate", err)
					errs = append(errs, err)
					l.feErr[fc.Name] = err
				} else {
					f.cert.Store(c)
				}
			}
			f.idle.Store(int64(fc.ClientTimeout))
			f.backend.Store(nb[fc.Backend])
			continue
		}
		f, err := l.startFrontend(field, fc, nb[fc.Backend])
		if err != nil {
			l.log.Error("frontend not started", "frontend", fc.Name, "err", err)
			errs = append(errs, err)
			l.feErr[fc.Name] = err
			continue
		}
		l.frontends[fc.Name] = f
	}
	l.cfg = cfg
	return errors.Join(errs...)
}

// sameListener: the frontend keeps its listener (and its established
// connections) under the new config. A bind with port 0 matches the address
// it got. In http mode client_timeout is fixed while the listener lives.
func sameListener(f *frontend, b Frontend) bool {
	a := f.cfg
	return (a.Bind == b.Bind || f.ln.Addr().String() == b.Bind) && a.Mode == b.Mode && a.H2C == b.H2C && (a.TLS == nil) == (b.TLS == nil)
}

func (l *LB) startFrontend(field string, fc Frontend, b *backend) (*frontend, error) {
	f := &frontend{cfg: fc, tls: fc.TLS, done: make(chan struct{})}
	f.idle.Store(int64(fc.ClientTimeout))
	f.backend.Store(b)
	if fc.TLS != nil {
		c, err := loadCert(field, fc.TLS)
		if err != nil {
			return nil, fmt.Errorf("%w; this frontend is not started, the others work", err)
		}
		f.cert.Store(c)
	}
	ln, err := net.Listen("tcp", fc.Bind)
	if err != nil {
		return nil, fmt.Errorf("%s.bind: %w", field, err)
	}
	f.ln = ln
	l.log.Info("frontend listening", "frontend", fc.Name, "addr", ln.Addr().String(), "mode", fc.Mode)
	l.wg.Add(1)
	if fc.Mode == "http" && fc.TLS == nil && !fc.H2C && !l.noRawHTTP {
		f.srv = l.newHTTPServer(f)
		cl := &chanListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.serveHTTPOn(f, cl) }()
		go func() { defer l.wg.Done(); defer close(f.done); l.acceptRaw(f, cl) }()
	} else if fc.Mode == "http" {
		f.srv = l.newHTTPServer(f)
		go func() { defer l.wg.Done(); defer close(f.done); l.serveHTTP(f) }()
	} else {
		go func() { defer l.wg.Done(); defer close(f.done); l.acceptTCP(f) }()
	}
	return f, nil
}

// stopFrontend closes the listener; established connections continue.
func (l *LB) stopFrontend(f *frontend) {
	f.stopped.Store(true)
	f.ln.Close() // synchronously: a new frontend may bind the same address
	if f.srv != nil {
		// Shutdown closes the listener and idle keep-alive connections and
		// lets requests in flight finish.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), f.cfg.ClientTimeout)
			defer cancel()
			f.srv.Shutdown(ctx)
		}()
	}
}

func (l *LB) updateBackend(b *backend, bc *Backend) {
	b.mu.Lock()
	old := b.cfg
	checkChanged := old == nil || !reflect.DeepEqual(old.Check, bc.Check)
	byName := map[string]*server{}
	for _, s := range b.srvs {
		byName[s.name] = s
	}
	var srvs []*server
	var started, stopped []*server
	for i := range bc.Servers {
		sc := bc.Servers[i]
		s := byName[sc.Name]
		if s != nil && s.addr == sc.Address {
			delete(byName, sc.Name)
		} else {
			s = &server{name: sc.Name, addr: sc.Address}
			s.up.Store(true)
			s.setReason("no check yet")
			started = append(started, s)
		}
		prev := s.cfg.Load()
		s.cfg.Store(&sc)
		if prev != nil && prev.Maintenance != sc.Maintenance {
			if sc.Maintenance {
				stopped = append(stopped, s)
			} else {
				started = append(started, s)
			}
		} else if prev != nil && checkChanged && !sc.Maintenance {
			stopped = append(stopped, s)
			started = append(started, s)
		}
		srvs = append(srvs, s)
	}
	for _, s := range byName { // removed: drain
		s.removed.Store(true)
		stopped = append(stopped, s)
	}
	b.cfg = bc
	b.srvs = srvs
	if b.stuck != nil && b.stuck.removed.Load() {
		b.stuck = nil
	}
	b.mu.Unlock()
	for _, s := range stopped {
		l.stopCheck(s)
	}
	for _, s := range byName {
		s.mu.Lock()
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
		s.mu.Unlock()
		s.closeIdle()
	}
	for _, s := range started {
		if !s.cfg.Load().Maintenance {
			l.startCheck(b, s, bc.Check)
		}
	}
	b.wakeQueue()
}

func (l *LB) removeBackend(b *backend) {
	b.mu.Lock()
	srvs := b.srvs
	b.mu.Unlock()
	for _, s := range srvs {
		s.removed.Store(true)
		l.stopCheck(s)
		s.mu.Lock()
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
		s.mu.Unlock()
		s.closeIdle()
	}
}

// Close stops every listener and health check and closes every connection.
func (l *LB) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.cancel()
	for _, f := range l.frontends {
		f.stopped.Store(true)
		f.ln.Close()
		if f.srv != nil {
			f.srv.Close()
		}
	}
	for _, b := range l.backends {
		l.removeBackend(b)
	}
	l.mu.Unlock()
	l.connMu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.connMu.Unlock()
	l.wg.Wait()
	return nil
}

func (l *LB) trackConn(c net.Conn, add bool) bool {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if add {
		if l.ctx.Err() != nil {
			return false
		}
		l.conns[c] = struct{}{}
	} else {
		delete(l.conns, c)
	}
	return true
}

// Addr is the bound address of a frontend (useful with port 0), or nil.
func (l *LB) Addr(frontend string) net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.frontends[frontend]; f != nil {
		return f.ln.Addr()
	}
	return nil
}

// ServerStatus is the state of one server.
type ServerStatus struct {
	Backend, Name, Address string
	// State is up, down, drain, maintenance or ejected.
	State  string
	Backup bool
	Active int64  // connections (tcp) or requests (http) in flight
	Total  int64  // connections or requests sent to it (attempts included)
	Failed int64  // failed connects
	Reason string // last check result or ejection cause
}

// FrontendStatus is the state of one frontend.
type FrontendStatus struct {
	Name, Bind, Addr, Mode, Backend string
	Error                           string // why it is not running
}

// Status is a snapshot of the load balancer.
type Status struct {
	Frontends []FrontendStatus
	Servers   []ServerStatus
}

// Status returns the state of every frontend and server.
func (l *LB) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st Status
	for _, fc := range l.cfg.Frontends {
		fs := FrontendStatus{Name: fc.Name, Bind: fc.Bind, Mode: fc.Mode, Backend: fc.Backend}
		if f := l.frontends[fc.Name]; f != nil {
			fs.Addr = f.ln.Addr().String()
		}
		if err := l.feErr[fc.Name]; err != nil {
			fs.Error = err.Error()
		}
		st.Frontends = append(st.Frontends, fs)
	}
	names := make([]string, 0, len(l.backends))
	for n := range l.backends {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := l.backends[n]
		b.mu.Lock()
		for _, s := range b.srvs {
			c := s.cfg.Load()
			ss := ServerStatus{Backend: n, Name: s.name, Address: s.addr, Backup: c.Backup, Active: s.active.Load(),
				Total: s.total.Load(), Failed: s.failures.Load(), Reason: *s.lastCheck.Load()}
			switch {
			case c.Maintenance:
				ss.State = "maintenance"
			case !s.up.Load():
				ss.State = "down"
			case s.ejectUntil.Load() > l.clock.Now().UnixNano():
				ss.State = "ejected"
			case c.Drain:
				ss.State = "drain"
			default:
				ss.State = "up"
			}
			st.Servers = append(st.Servers, ss)
		}
		b.mu.Unlock()
	}
	return st
}

// Server returns the status of one server.
func (st Status) Server(backend, name string) (ServerStatus, bool) {
	for _, s := range st.Servers {
		if s.Backend == backend && s.Name == name {
			return s, true
		}
	}
	return ServerStatus{}, false
}
