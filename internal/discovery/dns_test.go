package discovery

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/state"
)

// startServer runs a server on a free loopback port.
func startServer(t *testing.T, v View, order Order) (*Server, string) {
	t.Helper()
	s, err := NewServer(Config{Addr: "127.0.0.1:0", Order: order}, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	u, tc := s.Addrs()
	if u.(*net.UDPAddr).Port != tc.(*net.TCPAddr).Port {
		t.Fatalf("udp %v and tcp %v on different ports", u, tc)
	}
	return s, u.String()
}

func query(t *testing.T, addr, network, name string, qtype uint16, edns int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(uint16(edns), false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("id %d, want %d", r.Id, m.Id)
	}
	return r
}

func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+rr.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("SRV %d %s", rr.Port, rr.Target))
		case *dns.SOA:
			out = append(out, "SOA "+rr.Hdr.Name)
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func TestDNSRecords(t *testing.T) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	_, addr := startServer(t, h, Sorted)

	cases := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.service.paceline.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{"web.service.paceline.", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA 2001:db8::3"}},
		{"WeB.SeRvIcE.PaCeLiNe.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{"web.service.paceline.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 8080 n1.node.paceline.", "SRV 8080 n2.node.paceline.", "SRV 8080 n3.node.paceline."}},
		{"_web._tcp.service.paceline.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 8080 n1.node.paceline.", "SRV 8080 n2.node.paceline.", "SRV 8080 n3.node.paceline."}},
		{"_web._tcp.service.paceline.", dns.TypeA, dns.RcodeSuccess, nil},
		{"web.service.paceline.", dns.TypeANY, dns.RcodeSuccess, []string{"A 10.0.0.1", "A 10.0.0.2", "AAAA 2001:db8::3", "SRV 8080 n1.node.paceline.", "SRV 8080 n2.node.paceline.", "SRV 8080 n3.node.paceline."}},
		{"web.service.paceline.", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"web.service.paceline.", dns.TypeMX, dns.RcodeSuccess, nil},
		{"orphan.service.paceline.", dns.TypeSRV, dns.RcodeSuccess, nil}, // healthy but no port
		{"orphan.service.paceline.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.0.0.1"}},
		{"api.service.paceline.", dns.TypeA, dns.RcodeSuccess, nil},  // no healthy instance
		{"idle.service.paceline.", dns.TypeA, dns.RcodeSuccess, nil}, // no instance
		{"nope.service.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"_nope._tcp.service.paceline.", dns.TypeSRV, dns.RcodeNameError, nil},
		{"x.web.service.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"n1.node.paceline.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.0.0.1"}},
		{"N3.node.paceline.", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA 2001:db8::3"}},
		{"n3.node.paceline.", dns.TypeA, dns.RcodeSuccess, nil},
		{"n5.node.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"api-vip.vip.paceline.", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.10"}},
		{"api-vip.vip.paceline.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"api-vip6.vip.paceline.", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA 2001:db8::10"}},
		{"api-vip6.vip.paceline.", dns.TypeANY, dns.RcodeSuccess, []string{"AAAA 2001:db8::10"}},
		{"web.vip.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"web.other.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"service.paceline.", dns.TypeA, dns.RcodeSuccess, nil},
		{"stuff.paceline.", dns.TypeA, dns.RcodeNameError, nil},
		{"paceline.", dns.TypeSOA, dns.RcodeSuccess, []string{"SOA paceline."}},
		{"paceline.", dns.TypeA, dns.RcodeSuccess, nil},
		{"example.com.", dns.TypeA, dns.RcodeRefused, nil},
		{"paceline.example.", dns.TypeA, dns.RcodeRefused, nil},
		{".", dns.TypeNS, dns.RcodeRefused, nil},
		{"paceline.", dns.TypeAXFR, dns.RcodeRefused, nil},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			r := query(t, addr, network, c.name, c.qtype, 0)
			got := answers(r)
			if r.Rcode != c.rcode || !slices.Equal(got, c.want) {
				t.Errorf("%s %s %s: %s %v, want %s %v", network, c.name, dns.TypeToString[c.qtype],
					dns.RcodeToString[r.Rcode], got, dns.RcodeToString[c.rcode], c.want)
			}
			if c.rcode == dns.RcodeRefused {
				continue
			}
			if !r.Authoritative {
				t.Errorf("%s %s: not authoritative", network, c.name)
			}
			if len(r.Answer) == 0 {
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].(*dns.SOA).Minttl != 2 {
					t.Errorf("%s %s: negative answer without SOA: %v", network, c.name, r.Ns)
				}
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != 2 {
					t.Errorf("%s: ttl %d", rr, rr.Header().Ttl)
				}
				if rr.Header().Name != c.name && rr.Header().Rrtype != dns.TypeSOA {
					t.Errorf("%s: owner %q, want %q", rr, rr.Header().Name, c.name)
				}
			}
		}
	}

	// SRV answers carry the targets' addresses as glue.
	r := query(t, addr, "udp", "_web._tcp.service.paceline.", dns.TypeSRV, 0)
	var glue []string
	for _, rr := range r.Extra {
		glue = append(glue, rr.String())
	}
	if len(glue) != 3 || !strings.Contains(glue[0], "n1.node.paceline.\t2\tIN\tA\t10.0.0.1") || !strings.Contains(glue[2], "AAAA\t2001:db8::3") {
		t.Fatalf("glue %v", glue)
	}
}

func TestDNSShuffle(t *testing.T) {
	st := testState()
	rep := testReports()
	h := &Holder{}
	h.Set(FromState(st, rep, Options{}))
	_, addr := startServer(t, h, Shuffle)
	firsts := map[string]int{}
	for range 64 {
		r := query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0)
		got := answers(r)
		if len(got) != 2 {
			t.Fatalf("answers %v", got)
		}
		firsts[got[0]]++
	}
	if len(firsts) != 2 {
		t.Fatalf("64 queries always started with the same record: %v", firsts)
	}
}

// bigState has one service with n healthy IPv4 instances.
func bigState(n int) *Snapshot {
	snap := &Snapshot{Services: map[string][]Endpoint{}, VIPs: map[string]VIP{}, Nodes: map[string]netip.Addr{}}
	for i := range n {
		node := fmt.Sprintf("node-%03d", i)
		a := netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(1 + i%250)})
		snap.Nodes[node] = a
		snap.Services["big"] = append(snap.Services["big"], Endpoint{Node: node, Addr: a, Port: 80, Healthy: true})
	}
	snap.Version = versionOf(snap)
	return snap
}

func TestDNSTruncation(t *testing.T) {
	h := &Holder{}
	h.Set(bigState(200))
	_, addr := startServer(t, h, Shuffle)

	// Plain UDP: at most 512 bytes, TC set, a prefix of the answers.
	m := new(dns.Msg)
	m.SetQuestion("big.service.paceline.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, UDPSize: 512}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 200 {
		t.Fatalf("udp: tc=%v answers=%d", r.Truncated, len(r.Answer))
	}
	r.Compress = true
	if b, _ := r.Pack(); len(b) > 512 {
		t.Fatalf("udp answer of %d bytes", len(b))
	}
	// EDNS0 4096 asked, server caps at 1232: more answers, still truncated.
	re := query(t, addr, "udp", "big.service.paceline.", dns.TypeA, 4096)
	if !re.Truncated || len(re.Answer) <= len(r.Answer) {
		t.Fatalf("edns: tc=%v answers=%d (plain %d)", re.Truncated, len(re.Answer), len(r.Answer))
	}
	if o := re.IsEdns0(); o == nil || o.UDPSize() != DefaultMaxUDPSize {
		t.Fatalf("edns opt %v", o)
	}
	re.Compress = true
	if b, _ := re.Pack(); len(b) > DefaultMaxUDPSize {
		t.Fatalf("edns answer of %d bytes", len(b))
	}
	// TCP: everything.
	rt := query(t, addr, "tcp", "big.service.paceline.", dns.TypeA, 0)
	if rt.Truncated || len(rt.Answer) != 200 {
		t.Fatalf("tcp: tc=%v answers=%d", rt.Truncated, len(rt.Answer))
	}
	rs := query(t, addr, "tcp", "_big._tcp.service.paceline.", dns.TypeSRV, 0)
	if rs.Truncated || len(rs.Answer) != 200 || len(rs.Extra) != 200 {
		t.Fatalf("tcp srv: tc=%v answers=%d extra=%d", rs.Truncated, len(rs.Answer), len(rs.Extra))
	}
	// SRV over UDP: glue is dropped before any answer is.
	ru := query(t, addr, "udp", "_big._tcp.service.paceline.", dns.TypeSRV, 1232)
	if !ru.Truncated || len(ru.Extra) != 1 { // only the OPT left
		t.Fatalf("udp srv: tc=%v answers=%d extra=%d", ru.Truncated, len(ru.Answer), len(ru.Extra))
	}

	// A stock resolver falls back to TCP after TC and gets all 200.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := res.LookupNetIP(ctx, "ip4", "big.service.paceline.")
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 200 {
		t.Fatalf("net.Resolver got %d addresses", len(ips))
	}
	_, srvs, err := res.LookupSRV(ctx, "big", "tcp", "service.paceline.")
	if err != nil || len(srvs) != 200 {
		t.Fatalf("net.Resolver SRV: %d %v", len(srvs), err)
	}
}

func TestDNSResolver(t *testing.T) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	_, addr := startServer(t, h, Shuffle)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := res.LookupHost(ctx, "web.service.paceline.")
	sort.Strings(ips)
	if err != nil || !slices.Equal(ips, []string{"10.0.0.1", "10.0.0.2", "2001:db8::3"}) {
		t.Fatalf("LookupHost: %v %v", ips, err)
	}
	_, err = res.LookupHost(ctx, "nope.service.paceline.")
	var de *net.DNSError
	if !asDNSError(err, &de) || !de.IsNotFound {
		t.Fatalf("unknown name: %v", err)
	}
	ips, err = res.LookupHost(ctx, "api-vip.vip.paceline.")
	if err != nil || !slices.Equal(ips, []string{"192.0.2.10"}) {
		t.Fatalf("vip: %v %v", ips, err)
	}
}

func asDNSError(err error, de **net.DNSError) bool {
	e, ok := err.(*net.DNSError)
	*de = e
	return ok
}

func TestDNSViewChange(t *testing.T) {
	st, rep := testState(), testReports()
	h := &Holder{}
	h.Set(FromState(st, rep, Options{}))
	_, addr := startServer(t, h, Sorted)
	if got := answers(query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0)); len(got) != 2 {
		t.Fatalf("before: %v", got)
	}
	rep["n2"][0].State = "failed"
	h.Set(FromState(st, rep, Options{}))
	if got := answers(query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0)); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Fatalf("after n2 failed: %v", got)
	}
	rep["n1"][0].State = "stopping"
	h.Set(FromState(st, rep, Options{}))
	r := query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("no healthy: %s %v", dns.RcodeToString[r.Rcode], answers(r))
	}
	st.Spec.Resources = st.Spec.Resources[1:] // web removed from the spec
	for k, a := range st.Assignments {
		if a.Resource == "web" {
			delete(st.Assignments, k)
		}
	}
	h.Set(FromState(st, rep, Options{}))
	if r := query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed: %s", dns.RcodeToString[r.Rcode])
	}
	h.Set(nil)
	if r := query(t, addr, "udp", "api-vip.vip.paceline.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Fatalf("nil snapshot: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestDNSConcurrent(t *testing.T) {
	st, rep := testState(), testReports()
	h := &Holder{}
	h.Set(FromState(st, rep, Options{}))
	_, addr := startServer(t, h, Shuffle)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the view flips between two versions
		defer wg.Done()
		down := testReports()
		down["n2"][0].State = "failed"
		a, b := FromState(st, rep, Options{}), FromState(st, down, Options{})
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				h.Set(a)
			} else {
				h.Set(b)
			}
		}
	}()
	errs := make(chan error, 16)
	var qwg sync.WaitGroup
	for g := range 8 {
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			network := []string{"udp", "tcp"}[g%2]
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			for range 50 {
				m := new(dns.Msg)
				m.SetQuestion("web.service.paceline.", dns.TypeA)
				r, _, err := c.Exchange(m, addr)
				if err != nil {
					errs <- err
					return
				}
				if n := len(r.Answer); r.Rcode != dns.RcodeSuccess || n < 1 || n > 2 {
					errs <- fmt.Errorf("%s: rcode %d, %d answers", network, r.Rcode, n)
					return
				}
			}
		}()
	}
	qwg.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDNSMalformed(t *testing.T) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	_, addr := startServer(t, h, Sorted)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() (*dns.Msg, error) {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		return m, m.Unpack(buf[:n])
	}
	// Garbage: dropped (too short for a header) or FORMERR.
	for _, pkt := range [][]byte{
		{0x01},
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff}, // question cut short
		{0x12, 0x35, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},                   // qdcount 2, no questions
	} {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if m, err := read(); err == nil && m.Rcode != dns.RcodeFormatError {
			t.Fatalf("garbage %x answered %s", pkt, dns.RcodeToString[m.Rcode])
		}
	}
	// An update (opcode 5) is not implemented.
	m := new(dns.Msg)
	m.SetUpdate("paceline.")
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("update: %v %v", r, err)
	}
	// EDNS version 1: BADVERS.
	m = new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeBadVers {
		t.Fatalf("edns version 1: %v %v", r, err)
	}
	// Class CH: refused.
	m = new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("chaos: %v %v", r, err)
	}
	// Still serving.
	if got := answers(query(t, addr, "udp", "web.service.paceline.", dns.TypeA, 0)); len(got) != 2 {
		t.Fatalf("after garbage: %v", got)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Domain: "bad..name"},
		{TTL: time.Millisecond},
		{MaxUDPSize: 100},
		{Addr: "nohostport"},
	} {
		if _, err := NewServer(c, &Holder{}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := NewServer(Config{}, nil); err == nil {
		t.Error("nil view accepted")
	}
	// Another domain.
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	s, err := NewServer(Config{Addr: "127.0.0.1:0", Domain: "Cluster.Example", Order: Sorted}, h)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("_web._tcp.service.cluster.example.", dns.TypeSRV)
	r := s.Answer(m, true)
	if got := answers(r); len(got) != 3 || got[0] != "SRV 8080 n1.node.cluster.example." {
		t.Fatalf("other domain: %v", got)
	}
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	if r := s.Answer(m, true); r.Rcode != dns.RcodeRefused {
		t.Fatalf("old zone: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestDNSPromoted(t *testing.T) {
	st, rep := testState(), testReports()
	add := func(slot int, node, role string) {
		a := &state.Assignment{Resource: "db", Slot: slot, Node: node, Epoch: 30, Role: role}
		st.Assignments[a.Key()] = a
		rep[node] = append(rep[node], api.ActiveInstance{Resource: "db", Slot: slot, Epoch: 30, State: "running", Role: role})
	}
	add(0, "n1", RolePromoted)
	add(1, "n2", "")
	h := &Holder{}
	h.Set(FromState(st, rep, Options{Ports: map[string]uint16{"db": 5432}}))
	_, addr := startServer(t, h, Sorted)
	for _, c := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{"db.service.paceline.", dns.TypeA, []string{"A 10.0.0.1", "A 10.0.0.2"}},
		{"promoted.db.service.paceline.", dns.TypeA, []string{"A 10.0.0.1"}},
		{"promoted.db.service.paceline.", dns.TypeSRV, []string{"SRV 5432 n1.node.paceline."}},
		{"promoted.web.service.paceline.", dns.TypeA, nil},
	} {
		r := query(t, addr, "udp", c.name, c.qtype, 0)
		if got := answers(r); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, c.want) {
			t.Errorf("%s: %s %v, want %v", c.name, dns.RcodeToString[r.Rcode], got, c.want)
		}
	}
	if r := query(t, addr, "udp", "promoted.nope.service.paceline.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("promoted.nope: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestHolderVersionZero(t *testing.T) {
	h := &Holder{}
	a, b := bigState(1), bigState(2)
	a.Version, b.Version = 0, 0
	if !h.Set(a) || !h.Set(b) || h.Snapshot() != b {
		t.Fatal("version 0 snapshot not replaced")
	}
}

func TestStartShutdown(t *testing.T) {
	h := &Holder{}
	for range 20 { // Shutdown right after Start never leaves a server running
		s, err := NewServer(Config{Addr: "127.0.0.1:0"}, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err == nil {
			t.Fatal("second Start accepted")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	s, _ := NewServer(Config{Addr: "127.0.0.1:0"}, h)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown before start: %v", err)
	}
	// The port in use: a clear error.
	_, addr := startServer(t, h, Sorted)
	b, _ := NewServer(Config{Addr: addr}, h)
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), "listen udp") {
		t.Fatalf("port in use: %v", err)
	}
}

func TestDNSOddRequests(t *testing.T) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	s, err := NewServer(Config{Addr: "127.0.0.1:0", Order: Sorted}, h)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.Extra = append(m.Extra, m.Extra[0])
	if r := s.Answer(m, true); r.Rcode != dns.RcodeFormatError {
		t.Fatalf("two OPT: %s", dns.RcodeToString[r.Rcode])
	}
	m = new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	m.Response = true
	if r := s.Answer(m, true); r.Rcode != dns.RcodeFormatError {
		t.Fatalf("response as query: %s", dns.RcodeToString[r.Rcode])
	}
	m = new(dns.Msg)
	m.Id = 7
	if r := s.Answer(m, true); r.Rcode != dns.RcodeFormatError || r.Id != 7 {
		t.Fatalf("no question: %s", dns.RcodeToString[r.Rcode])
	}
	if s.Answer(nil, true) != nil {
		t.Fatal("nil request answered")
	}
	m = new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	m.SetEdns0(100, false) // below 512: treated as 512
	if r := s.Answer(m, true); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 || r.IsEdns0() == nil {
		t.Fatalf("small edns: %v", r)
	}
}

func TestStats(t *testing.T) {
	h := &Holder{}
	h.Set(bigState(200))
	s, addr := startServer(t, h, Sorted)
	query(t, addr, "udp", "big.service.paceline.", dns.TypeA, 0)   // truncated
	query(t, addr, "tcp", "big.service.paceline.", dns.TypeA, 0)   // full
	query(t, addr, "udp", "big.service.paceline.", dns.TypeTXT, 0) // nodata
	query(t, addr, "udp", "x.service.paceline.", dns.TypeA, 0)     // nxdomain
	query(t, addr, "udp", "example.", dns.TypeA, 0)                // refused
	got := s.Stats()
	want := Stats{Queries: 5, NXDomain: 1, NoData: 1, Refused: 1, Truncated: 1}
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func BenchmarkAnswer(b *testing.B) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	s, err := NewServer(Config{Addr: "127.0.0.1:0"}, h)
	if err != nil {
		b.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if r := s.Answer(m, true); len(r.Answer) != 2 {
			b.Fatal(r)
		}
	}
}

func BenchmarkUDPQuery(b *testing.B) {
	h := &Holder{}
	h.Set(FromState(testState(), testReports(), Options{}))
	s, err := NewServer(Config{Addr: "127.0.0.1:0"}, h)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	u, _ := s.Addrs()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	conn, err := c.Dial(u.String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion("web.service.paceline.", dns.TypeA)
	for b.Loop() {
		r, _, err := c.ExchangeWithConn(m, conn)
		if err != nil || len(r.Answer) != 2 {
			b.Fatal(r, err)
		}
	}
}
