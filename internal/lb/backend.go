package lb

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errNoServer     = errors.New("no server is up")
	errQueueTimeout = errors.New("queue timeout: every server is at maxconn")
)

// server is the runtime state of one backend server.
type server struct {
	name, addr string
	cfg        atomic.Pointer[Server]

	up         atomic.Bool
	active     atomic.Int64
	consecFail atomic.Int64
	ejectUntil atomic.Int64 // unix nanoseconds; passive ejection without checks
	upSince    atomic.Int64 // unix nanoseconds of the last down→up; slow start
	total      atomic.Int64 // connections (tcp) or requests (http) sent
	failures   atomic.Int64 // failed connects
	removed    atomic.Bool
	lastCheck  atomic.Pointer[string]

	cw int // smooth weighted round robin; under backend.mu

	checkStop chan struct{}
	checkDone chan struct{}

	mu        sync.Mutex
	transport *http.Transport
	tkey      transportKey
	conns     map[net.Conn]struct{} // tcp sessions, for shutdown on down
	idle      []*bconn              // http keep-alive pool
}

func (s *server) weight() int { return *s.cfg.Load().Weight }

// effWeight is the weight scaled by 16, ramped up during slow start after
// the server came back up (roundrobin and leastconn).
func (b *backend) effWeight(s *server) int {
	w := s.weight() * 16
	if b.cfg.SlowStart <= 0 {
		return w
	}
	since := s.upSince.Load()
	if since == 0 {
		return w
	}
	el := b.now().UnixNano() - since
	if el >= int64(b.cfg.SlowStart) {
		return w
	}
	if el < 0 {
		el = 0
	}
	return max(1, int(int64(w)*el/int64(b.cfg.SlowStart)))
}

func (s *server) setReason(r string) { s.lastCheck.Store(&r) }

func (s *server) track(c net.Conn, add bool) {
	s.mu.Lock()
	if add {
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// backend is the runtime state of one backend.
type backend struct {
	name  string
	lb    *LB
	log   *slog.Logger
	mu    sync.Mutex
	cfg   *Backend
	srvs  []*server
	stuck *server // failback=false: the backup server traffic stays on
	stick map[string]stickEntry
	wait  int
	slot  chan struct{} // closed when a slot frees and someone waits
}

type stickEntry struct {
	srv     *server
	expires time.Time
}

func (b *backend) config() *Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

func (b *backend) now() time.Time { return b.lb.clock.Now() }

// eligible: may receive new connections.
func (b *backend) eligible(s *server) bool {
	c := s.cfg.Load()
	if s.removed.Load() || c.Drain || c.Maintenance || !s.up.Load() {
		return false
	}
	if u := s.ejectUntil.Load(); u != 0 && b.now().UnixNano() < u {
		return false
	}
	return true
}

func hasRoom(s *server) bool {
	m := s.cfg.Load().MaxConn
	return m == 0 || s.active.Load() < int64(m)
}

func hashIP(ip string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(ip))
	return h.Sum32()
}

// pickLocked chooses a server. full reports that servers are eligible but
// all at maxconn (the caller queues).
func (b *backend) pickLocked(ip string, pref *server, exclude map[*server]bool) (s *server, full bool) {
	ok := func(s *server) bool { return !exclude[s] && b.eligible(s) }
	if b.stuck != nil && !ok(b.stuck) {
		b.stuck = nil
	}
	if b.stuck != nil && !b.cfg.Failback {
		if hasRoom(b.stuck) {
			return b.stuck, false
		}
		return nil, true
	}
	if pref != nil && ok(pref) && pref.weight() > 0 {
		if hasRoom(pref) {
			return pref, false
		}
	}
	var cands []*server
	backup := false
	for _, backupPass := range []bool{false, true} {
		for _, s := range b.srvs {
			if s.cfg.Load().Backup == backupPass && ok(s) && s.weight() > 0 {
				cands = append(cands, s)
			}
		}
		if len(cands) > 0 {
			backup = backupPass
			break
		}
	}
	if len(cands) == 0 {
		return nil, false
	}
	room := cands[:0:0]
	for _, s := range cands {
		if hasRoom(s) {
			room = append(room, s)
		}
	}
	if len(room) == 0 {
		return nil, true
	}
	switch b.cfg.Balance {
	case "first":
		s = room[0]
	case "leastconn":
		for _, c := range room {
			if s == nil || c.active.Load()*int64(b.effWeight(s)) < s.active.Load()*int64(b.effWeight(c)) {
				s = c
			}
		}
	case "source":
		total := 0
		for _, c := range room {
			total += c.weight()
		}
		h := int(hashIP(ip) % uint32(total))
		for _, c := range room {
			h -= c.weight()
			if h < 0 {
				s = c
				break
			}
		}
	default: // smooth weighted round robin
		total := 0
		for _, c := range room {
			w := b.effWeight(c)
			c.cw += w
			total += w
			if s == nil || c.cw > s.cw {
				s = c
			}
		}
		s.cw -= total
	}
	if backup && !b.cfg.Failback {
		b.stuck = s
	}
	return s, false
}

// acquire picks a server and takes a connection slot on it, queueing up to
// QueueTimeout when every eligible server is at maxconn.
func (b *backend) acquire(ctx context.Context, ip string, pref *server, exclude map[*server]bool) (*server, error) {
	var timer *time.Timer
	for {
		b.mu.Lock()
		if pref == nil && b.cfg.Stick == "source" {
			if e, ok := b.stick[ip]; ok && e.expires.After(b.now()) {
				pref = e.srv
			}
		}
		s, full := b.pickLocked(ip, pref, exclude)
		if s != nil {
			s.active.Add(1)
			s.total.Add(1)
			if b.cfg.Stick == "source" {
				if b.stick == nil {
					b.stick = map[string]stickEntry{}
				}
				if len(b.stick) > 100000 {
					b.expireStickLocked()
				}
				b.stick[ip] = stickEntry{s, b.now().Add(b.cfg.StickTTL)}
			}
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return s, nil
		}
		if !full {
			b.mu.Unlock()
			return nil, errNoServer
		}
		if timer == nil {
			timer = time.NewTimer(b.cfg.QueueTimeout)
		}
		if b.slot == nil {
			b.slot = make(chan struct{})
		}
		ch := b.slot
		b.wait++
		b.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-timer.C:
			err = errQueueTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		b.wait--
		b.mu.Unlock()
		if err != nil {
			timer.Stop()
			return nil, err
		}
	}
}

func (b *backend) expireStickLocked() {
	now := b.now()
	for k, e := range b.stick {
		if !e.expires.After(now) || e.srv.removed.Load() {
			delete(b.stick, k)
		}
	}
}

// release frees a slot taken by acquire.
func (b *backend) release(s *server) {
	s.active.Add(-1)
	b.wakeQueue()
}

func (b *backend) wakeQueue() {
	b.mu.Lock()
	if b.wait > 0 && b.slot != nil {
		close(b.slot)
		b.slot = nil
	}
	b.mu.Unlock()
}

// connFailed records a failed connect (passive ejection).
func (b *backend) connFailed(s *server, err error) {
	cfg := b.config()
	var dnsErr *net.DNSError
	s.failures.Add(1)
	n := s.consecFail.Add(1)
	if cfg.EjectAfter < 0 {
		return
	}
	if n < int64(cfg.EjectAfter) && !errors.As(err, &dnsErr) {
		return
	}
	if cfg.Check != nil {
		if s.up.Swap(false) {
			s.setReason("ejected after connection errors: " + err.Error())
			b.log.Warn("server down (passive ejection)", "backend", b.name, "server", s.name, "err", err)
			b.shutdownSessions(s)
		}
		return
	}
	until := b.now().Add(cfg.EjectFor).UnixNano()
	if s.ejectUntil.Swap(until) < b.now().UnixNano() {
		s.setReason("ejected for " + cfg.EjectFor.String() + " after connection errors: " + err.Error())
		b.log.Warn("server ejected", "backend", b.name, "server", s.name, "for", cfg.EjectFor, "err", err)
	}
}

func (b *backend) connOK(s *server) {
	if s.consecFail.Load() != 0 {
		s.consecFail.Store(0)
	}
}

func (b *backend) shutdownSessions(s *server) {
	if !b.config().ShutdownOnDown {
		return
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func (b *backend) markUp(s *server, up bool, reason string) {
	s.setReason(reason)
	if s.up.Swap(up) != up {
		if up {
			s.upSince.Store(b.now().UnixNano())
			s.consecFail.Store(0)
			s.ejectUntil.Store(0)
			b.log.Info("server up", "backend", b.name, "server", s.name, "check", reason)
			b.wakeQueue()
		} else {
			b.log.Warn("server down", "backend", b.name, "server", s.name, "check", reason)
			b.shutdownSessions(s)
		}
	}
}

// dial connects to s within the connect timeout and writes the PROXY header.
func (b *backend) dial(ctx context.Context, s *server, cfg *Backend, client, local net.Addr) (net.Conn, error) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	if cfg.ProxyProtocol != 0 && client != nil {
		c.SetWriteDeadline(time.Now().Add(cfg.ConnectTimeout))
		if _, err := c.Write(proxyHeader(cfg.ProxyProtocol, client, local)); err != nil {
			c.Close()
			return nil, err
		}
		c.SetWriteDeadline(time.Time{})
	}
	return c, nil
}
