package discovery

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what is written.
type recorder struct {
	udp bool
	out *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr {
	if r.udp {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.out = m; return nil }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

func seed(f *testing.F, name string, qtype uint16, edns int) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(uint16(edns), false)
	}
	b, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, true)
}

// FuzzServeDNS feeds arbitrary packets to the handler the way the server
// does (unpack, then ServeDNS): it must never panic, always answer a
// parsed query with the same ID, and never exceed the UDP size limit.
func FuzzServeDNS(f *testing.F) {
	seed(f, "web.service.paceline.", dns.TypeA, 0)
	seed(f, "_web._tcp.service.paceline.", dns.TypeSRV, 1232)
	seed(f, "api-vip.vip.paceline.", dns.TypeANY, 4096)
	seed(f, "n1.node.paceline.", dns.TypeAAAA, 0)
	seed(f, "big.service.paceline.", dns.TypeA, 0)
	seed(f, "paceline.", dns.TypeSOA, 0)
	seed(f, "example.com.", dns.TypeA, 0)
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0}, false)
	f.Add([]byte{}, true)

	snap := FromState(testState(), testReports(), Options{})
	for name, eps := range bigState(200).Services {
		snap.Services[name] = eps
	}
	for node, a := range bigState(200).Nodes {
		snap.Nodes[node] = a
	}
	var shuffle, sorted *Server
	for _, o := range []Order{Shuffle, Sorted} {
		s, err := NewServer(Config{Addr: "127.0.0.1:0", Order: o}, snap)
		if err != nil {
			f.Fatal(err)
		}
		if o == Shuffle {
			shuffle = s
		} else {
			sorted = s
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte, udp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the dns package answers FORMERR or drops it
		}
		for _, s := range []*Server{shuffle, sorted} {
			w := &recorder{udp: udp}
			s.ServeDNS(w, req)
			if w.out == nil {
				t.Fatal("no answer")
			}
			if w.out.Id != req.Id || !w.out.Response {
				t.Fatalf("id %d response %v", w.out.Id, w.out.Response)
			}
			if w.out.Rcode == dns.RcodeServerFailure {
				t.Fatal("SERVFAIL")
			}
			w.out.Compress = true
			b, err := w.out.Pack()
			if err != nil {
				t.Fatalf("answer does not pack: %v", err)
			}
			if udp && len(b) > DefaultMaxUDPSize {
				t.Fatalf("udp answer of %d bytes", len(b))
			}
			if udp && req.IsEdns0() == nil && len(b) > dns.MinMsgSize {
				t.Fatalf("udp answer of %d bytes without edns", len(b))
			}
		}
	})
}
