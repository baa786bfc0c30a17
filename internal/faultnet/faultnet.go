// Package faultnet is a fault-injecting network for in-process multi-node
// tests: partitions and one-way link failures without root.
//
// Every node of a test cluster binds its own loopback address (127.0.0.10,
// 127.0.0.11, …: all of 127.0.0.0/8 reaches the loopback interface on
// Linux) and gets a *Host from the shared *Net. A Host dials from its own
// address, wraps its listeners and its memberlist transport, and consults
// the Net's rules on every new connection, every accepted connection and
// every gossip packet. Rules are between IP addresses ("A cannot reach B");
// a rule naming host:port applies to the whole host.
//
// Semantics follow a packet filter that drops packets from A to B:
//   - a UDP packet from A to B is lost (one-way rules are one-way for gossip);
//   - a TCP connection between A and B needs packets in both directions, so
//     it fails if either direction is blocked: dials time out (ModeDrop, the
//     default: the dial blocks until its deadline, the Net's DropTimeout, or
//     the link heals) or are refused at once (ModeRefuse);
//   - connections already established between the two sides are closed
//     when a rule cuts them (as a reset would), so nobody keeps talking
//     over a link that no longer exists.
//
// Addresses no rule mentions (for instance a test's own client on
// 127.0.0.1) reach everybody.
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Mode is how a dial over a cut link fails.
type Mode int

const (
	// ModeDrop makes dials over a cut link hang like an unanswered SYN
	// until their deadline (or DropTimeout, or the link heals).
	ModeDrop Mode = iota
	// ModeRefuse makes dials over a cut link fail at once (ECONNREFUSED).
	ModeRefuse
)

// DefaultDropTimeout bounds a dropped dial that has no deadline of its own.
const DefaultDropTimeout = 3 * time.Second

// ErrCut is wrapped by errors of dials over a cut link.
var ErrCut = errors.New("faultnet: link cut")

// Net holds the rules and the connections they may cut. Safe for
// concurrent use. The zero value is not usable; call New.
type Net struct {
	mu      sync.Mutex
	blocked map[[2]string]bool // {from IP, to IP}: packets from → to are dropped
	conns   map[*Conn]struct{}
	mode    Mode
	dropTO  time.Duration
	changed chan struct{} // closed and replaced on every rule change
	stats   Stats
}

// Stats counts what the Net dropped (for tests and debugging).
type Stats struct {
	DialsFailed, AcceptsDropped, PacketsDropped, ConnsCut int
}

// New returns a Net with every link up.
func New() *Net {
	return &Net{blocked: map[[2]string]bool{}, conns: map[*Conn]struct{}{}, dropTO: DefaultDropTimeout, changed: make(chan struct{})}
}

// SetMode chooses how dials over a cut link fail (default ModeDrop).
func (n *Net) SetMode(m Mode) {
	n.mu.Lock()
	n.mode = m
	n.mu.Unlock()
}

// SetDropTimeout bounds how long a dial over a cut link hangs in ModeDrop
// when its context has no earlier deadline.
func (n *Net) SetDropTimeout(d time.Duration) {
	n.mu.Lock()
	n.dropTO = d
	n.mu.Unlock()
}

// Stats returns the counters.
func (n *Net) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// ipOf normalises "ip", "ip:port" or "[ip]:port" to the IP string.
func ipOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		addr = h
	}
	if ip := net.ParseIP(addr); ip != nil {
		return ip.String()
	}
	return addr
}

// Partition cuts every link between addresses of different groups (both
// directions). Links within a group, and of addresses in no group, are
// unchanged. Rules add up until Heal.
func (n *Net) Partition(groups ...[]string) {
	n.mu.Lock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.blocked[[2]string{ipOf(a), ipOf(b)}] = true
				}
			}
		}
	}
	n.rulesChangedLocked()
}

// OneWay drops packets from every address in from to every address in to
// (TCP between them fails in both directions, gossip only one way).
func (n *Net) OneWay(from, to []string) {
	n.mu.Lock()
	for _, a := range from {
		for _, b := range to {
			if ipOf(a) != ipOf(b) {
				n.blocked[[2]string{ipOf(a), ipOf(b)}] = true
			}
		}
	}
	n.rulesChangedLocked()
}

// Isolate cuts addr off from every address in others (both directions).
func (n *Net) Isolate(addr string, others []string) {
	n.Partition([]string{addr}, others)
}

// Heal removes every rule.
func (n *Net) Heal() {
	n.mu.Lock()
	n.blocked = map[[2]string]bool{}
	n.rulesChangedLocked()
}

// rulesChangedLocked wakes blocked dials and closes the connections the
// rules now cut; it unlocks n.mu.
func (n *Net) rulesChangedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
	var cut []*Conn
	for c := range n.conns {
		if !n.tcpUpLocked(c.local, c.remote) {
			cut = append(cut, c)
			delete(n.conns, c)
		}
	}
	n.stats.ConnsCut += len(cut)
	n.mu.Unlock()
	for _, c := range cut {
		_ = c.Conn.Close()
	}
}

// CanSend reports whether a packet from → to is delivered.
func (n *Net) CanSend(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.blocked[[2]string{ipOf(from), ipOf(to)}]
}

// Connected reports whether a TCP connection between a and b can work.
func (n *Net) Connected(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tcpUpLocked(ipOf(a), ipOf(b))
}

func (n *Net) tcpUpLocked(a, b string) bool {
	return !n.blocked[[2]string{a, b}] && !n.blocked[[2]string{b, a}]
}

// track registers c unless its link is cut (then it closes c and says so).
func (n *Net) track(c *Conn, dropped *int) bool {
	n.mu.Lock()
	if !n.tcpUpLocked(c.local, c.remote) {
		if dropped != nil {
			*dropped++ // counted before the close the peer can observe
		}
		n.mu.Unlock()
		_ = c.Conn.Close()
		return false
	}
	n.conns[c] = struct{}{}
	n.mu.Unlock()
	return true
}

func (n *Net) untrack(c *Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// OpenConns returns how many tracked connections are open (tests).
func (n *Net) OpenConns() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

// Conn is a tracked TCP connection between two hosts.
type Conn struct {
	net.Conn
	n             *Net
	local, remote string
	once          sync.Once
}

// Close closes the connection and stops tracking it.
func (c *Conn) Close() error {
	c.once.Do(func() { c.n.untrack(c) })
	return c.Conn.Close()
}

// Host is one node's view of the Net: its own IP, from which it dials.
type Host struct {
	n  *Net
	ip string
}

// Host returns the host with address ip (an IP or ip:port).
func (n *Net) Host(ip string) *Host { return &Host{n: n, ip: ipOf(ip)} }

// IP is the host's address.
func (h *Host) IP() string { return h.ip }

// Net returns the network the host belongs to.
func (h *Host) Net() *Net { return h.n }

// CloseConns closes every tracked connection whose local end is this host,
// as the kernel does when a process exits. Tests call it after stopping or
// crashing an in-process node: libraries that keep pooled connections past
// their own shutdown (raft's NetworkTransport does) would otherwise keep
// their peers' handler goroutines waiting.
func (h *Host) CloseConns() int {
	h.n.mu.Lock()
	var mine []*Conn
	for c := range h.n.conns {
		if c.local == h.ip {
			mine = append(mine, c)
			delete(h.n.conns, c)
		}
	}
	h.n.mu.Unlock()
	for _, c := range mine {
		_ = c.Conn.Close()
	}
	return len(mine)
}

// DialContext dials addr from the host's IP; it fails when the link is cut.
// Its signature fits net.Dialer.DialContext and http.Transport.DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	remote := ipOf(addr)
	for {
		h.n.mu.Lock()
		up := h.n.tcpUpLocked(h.ip, remote)
		mode, dropTO, changed := h.n.mode, h.n.dropTO, h.n.changed
		if !up {
			h.n.stats.DialsFailed++
		}
		h.n.mu.Unlock()
		if up {
			break
		}
		opErr := func(err error) error {
			return &net.OpError{Op: "dial", Net: network, Addr: staticAddr{network, addr}, Err: &cutError{h.ip, remote, err}}
		}
		if mode == ModeRefuse {
			return nil, opErr(syscall.ECONNREFUSED)
		}
		t := time.NewTimer(dropTO)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, opErr(timeoutError{ctx.Err()})
		case <-t.C:
			return nil, opErr(timeoutError{context.DeadlineExceeded})
		case <-changed:
			t.Stop()
			// Rules changed: look again.
		}
	}
	d := net.Dialer{}
	if ip := net.ParseIP(h.ip); ip != nil && (network == "tcp" || network == "tcp4" || network == "tcp6") {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &Conn{Conn: c, n: h.n, local: h.ip, remote: remote}
	if !h.n.track(tc, nil) {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: staticAddr{network, addr}, Err: &cutError{h.ip, remote, syscall.ECONNRESET}}
	}
	return tc, nil
}

// DialTimeout dials with a timeout.
func (h *Host) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.DialContext(ctx, network, addr)
}

// WrapListener returns a listener that drops connections from peers whose
// link to this host is cut and tracks the others so that a later cut
// closes them.
func (h *Host) WrapListener(ln net.Listener) net.Listener { return &listener{Listener: ln, h: h} }

type listener struct {
	net.Listener
	h *Host
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.h.adopt(c); tc != nil {
			return tc, nil
		}
	}
}

// adopt tracks an accepted connection, or closes it if its link is cut.
func (h *Host) adopt(c net.Conn) *Conn {
	tc := &Conn{Conn: c, n: h.n, local: h.ip, remote: ipOf(c.RemoteAddr().String())}
	if !h.n.track(tc, &h.n.stats.AcceptsDropped) {
		return nil
	}
	return tc
}

type staticAddr struct{ network, addr string }

func (a staticAddr) Network() string { return a.network }
func (a staticAddr) String() string  { return a.addr }

// cutError is why a dial failed: ErrCut plus how (refused, timeout).
type cutError struct {
	from, to string
	err      error
}

func (e *cutError) Error() string {
	return fmt.Sprintf("%v (%s → %s): %v", ErrCut, e.from, e.to, e.err)
}
func (e *cutError) Unwrap() []error { return []error{ErrCut, e.err} }
func (e *cutError) Timeout() bool {
	t, ok := e.err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
func (e *cutError) Temporary() bool { return true }

type timeoutError struct{ err error }

func (e timeoutError) Error() string   { return "i/o timeout (" + e.err.Error() + ")" }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }
func (e timeoutError) Unwrap() error   { return e.err }
