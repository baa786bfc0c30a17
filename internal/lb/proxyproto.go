package lb

import (
	"encoding/binary"
	"fmt"
	"net"
)

var proxyV2Sig = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

func tcpAddr(a net.Addr) (net.IP, int) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP, t.Port
	}
	if a == nil {
		return nil, 0
	}
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil, 0
	}
	var port int
	fmt.Sscanf(p, "%d", &port)
	return net.ParseIP(h), port
}

// proxyHeader builds a PROXY protocol v1 or v2 header for a TCP connection
// from src (the client) to dst (the address the client connected to).
func proxyHeader(version int, src, dst net.Addr) []byte {
	sip, sport := tcpAddr(src)
	dip, dport := tcpAddr(dst)
	v4 := sip.To4() != nil && dip.To4() != nil
	known := sip != nil && dip != nil && (v4 || (sip.To4() == nil && dip.To4() == nil))
	if version == 1 {
		if !known {
			return []byte("PROXY UNKNOWN\r\n")
		}
		fam := "TCP6"
		if v4 {
			fam = "TCP4"
			sip, dip = sip.To4(), dip.To4()
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, sip, dip, sport, dport)
	}
	h := append([]byte(nil), proxyV2Sig...)
	if !known {
		return append(h, 0x20, 0x00, 0, 0) // LOCAL
	}
	var addrs []byte
	if v4 {
		h = append(h, 0x21, 0x11)
		addrs = append(append(addrs, sip.To4()...), dip.To4()...)
	} else {
		h = append(h, 0x21, 0x21)
		addrs = append(append(addrs, sip.To16()...), dip.To16()...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, uint16(sport))
	addrs = binary.BigEndian.AppendUint16(addrs, uint16(dport))
	h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)))
	return append(h, addrs...)
}
