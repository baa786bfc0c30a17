package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Config.
const (
	DefaultAddr       = "127.0.0.1:8600"
	DefaultDomain     = "paceline."
	DefaultTTL        = 2 * time.Second
	DefaultMaxUDPSize = 1232
)

// Order is how the records of one answer are ordered.
type Order int

const (
	// Shuffle randomises the order of A, AAAA and SRV records in every
	// answer, so clients that take the first address spread the load.
	Shuffle Order = iota
	// Sorted orders them by address (A, AAAA) and target (SRV): for tests.
	Sorted
)

// Config configures the DNS server.
type Config struct {
	// Addr is the one address the server listens on, over UDP and TCP
	// (same port); default 127.0.0.1:8600. Port 0 picks a free port (the
	// same for both).
	Addr string
	// Domain is the zone, default "paceline.".
	Domain string
	// TTL of every record and of negative answers (the SOA minimum):
	// 1s to 1h, whole seconds (rounded down); 0 means the default, 2s.
	TTL time.Duration
	// MaxUDPSize is the EDNS0 buffer size the server advertises and the
	// most it sends over UDP (default 1232, range 512–4096).
	MaxUDPSize int
	// Order of records in answers (default Shuffle).
	Order Order
}

func (c *Config) defaults() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = dns.CanonicalName(c.Domain)
	if _, ok := dns.IsDomainName(c.Domain); !ok || c.Domain == "." {
		return fmt.Errorf("discovery: domain %q is not a valid DNS name", c.Domain)
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < time.Second || c.TTL > time.Hour {
		return fmt.Errorf("discovery: ttl %s out of range (1s to 1h)", c.TTL)
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = DefaultMaxUDPSize
	}
	if c.MaxUDPSize < dns.MinMsgSize || c.MaxUDPSize > 4096 {
		return fmt.Errorf("discovery: maxUDPSize %d out of range (512 to 4096)", c.MaxUDPSize)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("discovery: addr %q: %v", c.Addr, err)
	}
	return nil
}

// Server is the discovery DNS server. Its ServeDNS method is a dns.Handler
// usable on its own.
type Server struct {
	cfg  Config
	view View
	ttl  uint32

	idx atomic.Pointer[index]

	nQueries, nNX, nNoData, nRefused, nFormErr, nTC atomic.Uint64

	mu      sync.Mutex
	udp     *dns.Server
	tcp     *dns.Server
	udpAddr net.Addr
	tcpAddr net.Addr
	done    chan struct{}
	errs    []error
}

// NewServer checks cfg and returns a server reading v; Start listens.
func NewServer(cfg Config, v View) (*Server, error) {
	if v == nil {
		return nil, errors.New("discovery: nil view")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, view: v, ttl: uint32(cfg.TTL / time.Second)}, nil
}

// Start listens on cfg.Addr over UDP and TCP and serves in the background.
// It returns once both sockets are bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("discovery: server already started")
	}
	pc, l, err := listenBoth(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.udpAddr, s.tcpAddr = pc.LocalAddr(), l.Addr()
	// Each server signals once it serves (or fails to), so that a Shutdown
	// right after Start never finds a server "not started" that then serves
	// forever.
	ready := make(chan error, 2)
	notify := func() { ready <- nil }
	s.udp = &dns.Server{PacketConn: pc, Handler: s, UDPSize: 4096, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	s.done = make(chan struct{})
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
				select {
				case ready <- err:
				default:
				}
			}
		}()
	}
	go func() { wg.Wait(); close(s.done) }()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for range 2 {
		select {
		case err := <-ready:
			if err != nil {
				pc.Close()
				l.Close()
				return fmt.Errorf("discovery: serve: %w", err)
			}
		case <-timeout.C:
			pc.Close()
			l.Close()
			return errors.New("discovery: the DNS listeners did not start within 10s")
		}
	}
	return nil
}

// listenBoth binds UDP then TCP on the same port; with port 0 it retries a
// few times when the port UDP got is taken for TCP.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	tries := 1
	if port == "0" {
		tries = 10
	}
	var lastErr error
	for range tries {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("discovery: listen udp %s: %w", addr, err)
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = pc.LocalAddr().String()
		}
		l, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = fmt.Errorf("discovery: listen tcp %s: %w", tcpAddr, err)
	}
	return nil, nil, lastErr
}

// Addrs returns the bound UDP and TCP addresses (nil before Start).
func (s *Server) Addrs() (udp, tcp net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr, s.tcpAddr
}

// Shutdown stops both listeners and waits for the serving goroutines (at
// most until ctx ends).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	udp, tcp, done := s.udp, s.tcp, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	err1 := udp.ShutdownContext(ctx)
	err2 := tcp.ShutdownContext(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return errors.Join(err1, err2)
}

// index is what a snapshot gives the server, looked up by lower-case name.
type index struct {
	snap     *Snapshot
	services map[string]*svcIndex
	vips     map[string][]netip.Addr
	nodes    map[string]netip.Addr
}

type svcIndex struct {
	v4, v6 []netip.Addr // healthy instances' addresses, deduplicated
	srv    []srvTarget  // healthy instances with a port, deduplicated
	// promoted is the same for the promoted instances only.
	promoted *svcIndex
}

// buildSvc indexes the healthy endpoints (the promoted ones only if
// promotedOnly).
func (s *Server) buildSvc(ix *index, eps []Endpoint, promotedOnly bool) *svcIndex {
	si := &svcIndex{}
	seenA := map[netip.Addr]bool{}
	seenSRV := map[string]bool{}
	for _, ep := range eps {
		if !ep.Healthy || (promotedOnly && ep.Role != RolePromoted) {
			continue
		}
		if ep.Addr.IsValid() && !seenA[ep.Addr] {
			seenA[ep.Addr] = true
			if ep.Addr.Is4() {
				si.v4 = append(si.v4, ep.Addr)
			} else {
				si.v6 = append(si.v6, ep.Addr)
			}
		}
		if ep.Port == 0 {
			continue
		}
		target := strings.ToLower(ep.Node) + ".node." + s.cfg.Domain
		if _, ok := dns.IsDomainName(target); !ok {
			continue
		}
		key := fmt.Sprintf("%s/%d", target, ep.Port)
		if seenSRV[key] {
			continue
		}
		seenSRV[key] = true
		a := ep.Addr
		if !a.IsValid() {
			a = ix.nodes[strings.ToLower(ep.Node)]
		}
		si.srv = append(si.srv, srvTarget{node: ep.Node, target: target, addr: a, port: ep.Port})
	}
	return si
}

type srvTarget struct {
	node, target string // node name; target NODE.node.DOMAIN
	addr         netip.Addr
	port         uint16
}

func (s *Server) current() *index {
	snap := s.view.Snapshot()
	if ix := s.idx.Load(); ix != nil && ix.snap == snap {
		return ix
	}
	ix := s.build(snap)
	s.idx.Store(ix)
	return ix
}

func (s *Server) build(snap *Snapshot) *index {
	ix := &index{snap: snap, services: map[string]*svcIndex{}, vips: map[string][]netip.Addr{}, nodes: map[string]netip.Addr{}}
	if snap == nil {
		return ix
	}
	// Sorted names so that names equal but for case resolve the same way
	// every time (the first in byte order wins).
	for _, name := range sortedKeys(snap.Nodes) {
		k := strings.ToLower(name)
		if _, dup := ix.nodes[k]; !dup && snap.Nodes[name].IsValid() {
			ix.nodes[k] = snap.Nodes[name]
		}
	}
	for _, name := range sortedKeys(snap.Services) {
		k := strings.ToLower(name)
		if _, dup := ix.services[k]; dup {
			continue
		}
		si := s.buildSvc(ix, snap.Services[name], false)
		si.promoted = s.buildSvc(ix, snap.Services[name], true)
		ix.services[k] = si
	}
	for _, name := range sortedKeys(snap.VIPs) {
		k := strings.ToLower(name)
		if _, dup := ix.vips[k]; dup {
			continue
		}
		var addrs []netip.Addr
		for _, a := range snap.VIPs[name].Addrs {
			if a.IsValid() {
				addrs = append(addrs, a)
			}
		}
		ix.vips[k] = addrs
	}
	return ix
}

// ServeDNS answers one query (dns.Handler).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	resp := s.Answer(req, udp)
	if resp == nil {
		return
	}
	s.count(resp)
	_ = w.WriteMsg(resp)
}

// Stats counts the answers the server sent since it was created.
type Stats struct {
	Queries   uint64 // every answer
	NXDomain  uint64 // NXDOMAIN
	NoData    uint64 // NOERROR without records
	Refused   uint64 // outside the zone, other class, zone transfers
	FormErr   uint64 // FORMERR, NOTIMP, BADVERS answered by this handler
	Truncated uint64 // answers sent with TC over UDP
}

// Stats returns the counters (for metrics).
func (s *Server) Stats() Stats {
	return Stats{Queries: s.nQueries.Load(), NXDomain: s.nNX.Load(), NoData: s.nNoData.Load(),
		Refused: s.nRefused.Load(), FormErr: s.nFormErr.Load(), Truncated: s.nTC.Load()}
}

func (s *Server) count(resp *dns.Msg) {
	s.nQueries.Add(1)
	switch {
	case resp.Rcode == dns.RcodeNameError:
		s.nNX.Add(1)
	case resp.Rcode == dns.RcodeRefused:
		s.nRefused.Add(1)
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0:
		s.nNoData.Add(1)
	case resp.Rcode != dns.RcodeSuccess:
		s.nFormErr.Add(1)
	}
	if resp.Truncated {
		s.nTC.Add(1)
	}
}

// Answer builds the reply to req; udp limits its size to what the client
// can take over UDP (512 bytes, or its EDNS0 buffer size up to
// cfg.MaxUDPSize). It returns nil only for a nil request.
func (s *Server) Answer(req *dns.Msg, udp bool) *dns.Msg {
	if req == nil {
		return nil
	}
	resp := new(dns.Msg)
	resp.Id = req.Id
	resp.Response = true
	resp.Opcode = req.Opcode
	resp.RecursionDesired = req.RecursionDesired
	resp.CheckingDisabled = req.CheckingDisabled
	if len(req.Question) > 0 {
		resp.Question = req.Question[:1]
	}
	if req.Response {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	if req.Opcode != dns.OpcodeQuery {
		resp.Rcode = dns.RcodeNotImplemented
		return resp
	}
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}

	size := dns.MinMsgSize
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil { // two OPT records: RFC 6891 §6.1.1
				resp.Rcode = dns.RcodeFormatError
				return resp
			}
			opt = o
		}
	}
	if opt != nil {
		resp.SetEdns0(uint16(s.cfg.MaxUDPSize), false)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers // the OPT carries the extended bits
			return resp
		}
		size = max(dns.MinMsgSize, min(int(opt.UDPSize()), s.cfg.MaxUDPSize))
	}
	if !udp {
		size = dns.MaxMsgSize
	}

	s.fill(resp, req.Question[0])
	resp.Compress = true
	if resp.Len() > size {
		// Glue first: dropping additional records does not truncate the
		// answer (RFC 2181 §9).
		var keep []dns.RR
		for _, rr := range resp.Extra {
			if _, ok := rr.(*dns.OPT); ok {
				keep = append(keep, rr)
			}
		}
		resp.Extra = keep
		if resp.Len() > size {
			resp.Truncate(size)
		}
	}
	return resp
}

// fill answers one question.
func (s *Server) fill(resp *dns.Msg, q dns.Question) {
	resp.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Authoritative = false
		resp.Rcode = dns.RcodeRefused
		return
	}
	name := dns.CanonicalName(q.Name)
	zone := s.cfg.Domain
	if !dns.IsSubDomain(zone, name) {
		resp.Authoritative = false
		resp.Rcode = dns.RcodeRefused
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		resp.Authoritative = false
		resp.Rcode = dns.RcodeRefused
		return
	}
	ix := s.current()
	if name == zone {
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			resp.Answer = append(resp.Answer, s.soa(ix))
			return
		}
		s.nodata(resp, ix)
		return
	}
	rel := strings.TrimSuffix(strings.TrimSuffix(name, zone), ".")
	dot := strings.LastIndexByte(rel, '.')
	if dot < 0 {
		switch rel {
		case "service", "vip", "node": // empty non-terminals
			s.nodata(resp, ix)
		default:
			s.nxdomain(resp, ix)
		}
		return
	}
	item, kind := rel[:dot], rel[dot+1:]
	ttl := s.ttl
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	want := func(t uint16) bool { return q.Qtype == t || q.Qtype == dns.TypeANY }
	addrs := func(v4, v6 []netip.Addr) {
		if want(dns.TypeA) {
			for _, a := range s.order(v4) {
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
			}
		}
		if want(dns.TypeAAAA) {
			for _, a := range s.order(v6) {
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
	}
	switch kind {
	case "service":
		srvOnly, promoted := false, false
		if svc, proto, ok := strings.Cut(item, "."); ok && strings.HasPrefix(svc, "_") && (proto == "_tcp" || proto == "_udp") {
			item, srvOnly = svc[1:], true
		} else if rest, ok := strings.CutPrefix(item, RolePromoted+"."); ok {
			item, promoted = rest, true
		}
		si, ok := ix.services[item]
		if !ok {
			s.nxdomain(resp, ix)
			return
		}
		if promoted {
			si = si.promoted
		}
		if !srvOnly {
			addrs(si.v4, si.v6)
		}
		if want(dns.TypeSRV) {
			for _, t := range s.orderSRV(si.srv) {
				resp.Answer = append(resp.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 1, Weight: 1, Port: t.port, Target: t.target})
				if t.addr.Is4() {
					resp.Extra = append(resp.Extra, &dns.A{Hdr: dns.RR_Header{Name: t.target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: t.addr.AsSlice()})
				} else if t.addr.Is6() {
					resp.Extra = append(resp.Extra, &dns.AAAA{Hdr: dns.RR_Header{Name: t.target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: t.addr.AsSlice()})
				}
			}
		}
	case "vip":
		vs, ok := ix.vips[item]
		if !ok {
			s.nxdomain(resp, ix)
			return
		}
		var v4, v6 []netip.Addr
		for _, a := range vs {
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
		addrs(v4, v6)
	case "node":
		a, ok := ix.nodes[item]
		if !ok {
			s.nxdomain(resp, ix)
			return
		}
		if a.Is4() {
			addrs([]netip.Addr{a}, nil)
		} else {
			addrs(nil, []netip.Addr{a})
		}
	default:
		s.nxdomain(resp, ix)
		return
	}
	if len(resp.Answer) == 0 {
		s.nodata(resp, ix)
	}
}

func (s *Server) soa(ix *index) *dns.SOA {
	var serial uint32
	if ix.snap != nil {
		serial = uint32(ix.snap.Version)
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.cfg.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:      "ns." + s.cfg.Domain,
		Mbox:    "hostmaster." + s.cfg.Domain,
		Serial:  serial,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: s.ttl,
	}
}

// nodata: the name exists, no record of that type (RFC 2308 §2.2).
func (s *Server) nodata(resp *dns.Msg, ix *index) {
	resp.Rcode = dns.RcodeSuccess
	resp.Ns = append(resp.Ns, s.soa(ix))
}

// nxdomain: the name does not exist (RFC 2308 §2.1).
func (s *Server) nxdomain(resp *dns.Msg, ix *index) {
	resp.Rcode = dns.RcodeNameError
	resp.Ns = append(resp.Ns, s.soa(ix))
}

func (s *Server) order(in []netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), in...)
	if s.cfg.Order == Sorted {
		sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	} else {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

func (s *Server) orderSRV(in []srvTarget) []srvTarget {
	out := append([]srvTarget(nil), in...)
	if s.cfg.Order == Sorted {
		sort.Slice(out, func(i, j int) bool {
			if out[i].target != out[j].target {
				return out[i].target < out[j].target
			}
			return out[i].port < out[j].port
		})
	} else {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}
