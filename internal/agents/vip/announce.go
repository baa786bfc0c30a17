package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ARP over an AF_PACKET datagram socket (the kernel adds the Ethernet
// header) and neighbour advertisements over a raw ICMPv6 socket (the kernel
// computes the checksum).

const (
	arpRequest = 1
	arpReply   = 2
	arpLen     = 28
)

var ethBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// arpPacket builds an Ethernet/IPv4 ARP packet.
func arpPacket(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], sha)
	s := spa.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], tha)
	t := tpa.As4()
	copy(b[24:28], t[:])
	return b
}

// arpSocket is a packet socket bound to ETH_P_ARP on one interface.
type arpSocket struct {
	fd      int
	ifindex int
}

func openARP(ifindex int) (*arpSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return nil, os.NewSyscallError("socket(AF_PACKET)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind(AF_PACKET)", err)
	}
	return &arpSocket{fd: fd, ifindex: ifindex}, nil
}

func (s *arpSocket) Close() { unix.Close(s.fd) }

func (s *arpSocket) send(pkt []byte, dst net.HardwareAddr) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: s.ifindex, Halen: 6}
	copy(sa.Addr[:], dst)
	if err := unix.Sendto(s.fd, pkt, 0, sa); err != nil {
		return os.NewSyscallError("sendto(ARP)", err)
	}
	return nil
}

// pollSlice bounds each wait in recv, so that a cancelled context (a
// self-fence stop waiting for this start) is noticed within it.
const pollSlice = 10 * time.Millisecond

// recv waits until deadline (or ctx is done) for an ARP packet; ok false
// at the deadline.
func (s *arpSocket) recv(ctx context.Context, deadline time.Time, buf []byte) (n int, ok bool, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		left := min(time.Until(deadline), pollSlice)
		if left <= 0 {
			return 0, false, nil
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		c, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, os.NewSyscallError("poll", err)
		}
		if c == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, os.NewSyscallError("recvfrom(ARP)", err)
		}
		return n, true, nil
	}
}

// Probe timing (RFC 5227 uses 3 probes 1–2 s apart; a failover cannot wait
// that long: the lease already guarantees no other paceline node holds
// the address, so the probe only looks for a foreign host — or a frozen
// one, whose kernel still answers). A host on the segment answers an ARP
// request from its kernel within a millisecond or two; 15 ms per probe
// leaves room for a loaded host, and 3 probes for a lost frame. (It was
// 50 ms: the 105 ms saved are measured in bench/vip-failover.)
const (
	probeWait = 15 * time.Millisecond
)

// ConflictError says which host answered for the address.
type ConflictError struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("address %s is already in use on the network: host %s answered the ARP probe; not taking it (remove it from that host, or choose another address)", e.Addr, e.MAC)
}

// probeARP sends up to probeCount ARP probes (sender IP 0.0.0.0) for ip
// and returns a *ConflictError if another host claims it: a reply or a
// request from ip, or another host's probe for ip.
func probeARP(ctx context.Context, ifindex int, mac net.HardwareAddr, ip netip.Addr, probeCount int) error {
	s, err := openARP(ifindex)
	if err != nil {
		return err
	}
	defer s.Close()
	zero := netip.AddrFrom4([4]byte{})
	probe := arpPacket(arpRequest, mac, zero, make(net.HardwareAddr, 6), ip)
	buf := make([]byte, 1500)
	for i := 0; i < probeCount; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.send(probe, ethBroadcast); err != nil {
			return err
		}
		deadline := time.Now().Add(probeWait)
		for {
			n, ok, err := s.recv(ctx, deadline, buf)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if n < arpLen {
				continue
			}
			p := buf[:n]
			if binary.BigEndian.Uint16(p[2:]) != 0x0800 || p[4] != 6 || p[5] != 4 {
				continue
			}
			sha := net.HardwareAddr(append([]byte(nil), p[8:14]...))
			if sha.String() == mac.String() {
				continue // our own (PACKET_OUTGOING copies are not delivered, but be safe)
			}
			spa := netip.AddrFrom4([4]byte(p[14:18]))
			tpa := netip.AddrFrom4([4]byte(p[24:28]))
			op := binary.BigEndian.Uint16(p[6:])
			if spa == ip || (op == arpRequest && spa == zero && tpa == ip) {
				return &ConflictError{Addr: ip, MAC: sha}
			}
		}
	}
	return nil
}

// sendGARP sends one round of gratuitous ARP for ip: a request and a reply,
// both broadcast, both with sender and target IP ip (RFC 5227 §3 and what
// Keepalived sends: some stacks only update their caches on one of them).
func sendGARP(s *arpSocket, mac net.HardwareAddr, ip netip.Addr) error {
	if err := s.send(arpPacket(arpRequest, mac, ip, make(net.HardwareAddr, 6), ip), ethBroadcast); err != nil {
		return err
	}
	return s.send(arpPacket(arpReply, mac, ip, mac, ip), ethBroadcast)
}

// ndpSocket sends unsolicited neighbour advertisements from one address.
type ndpSocket struct {
	fd      int
	ifindex int
}

func openNDP(ifindex int, src netip.Addr) (*ndpSocket, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return nil, os.NewSyscallError("socket(ICMPv6)", err)
	}
	fail := func(what string, err error) (*ndpSocket, error) {
		unix.Close(fd)
		return nil, os.NewSyscallError(what, err)
	}
	// Neighbour discovery messages must have hop limit 255 (RFC 4861 §7.1.2).
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return fail("setsockopt(IPV6_MULTICAST_HOPS)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
		return fail("setsockopt(IPV6_MULTICAST_IF)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0); err != nil {
		return fail("setsockopt(IPV6_MULTICAST_LOOP)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: src.As16(), ZoneId: uint32(ifindex)}); err != nil {
		return fail("bind(ICMPv6)", err)
	}
	return &ndpSocket{fd: fd, ifindex: ifindex}, nil
}

func (s *ndpSocket) Close() { unix.Close(s.fd) }

// allNodes is ff02::1.
var allNodes = netip.MustParseAddr("ff02::1")

// sendNA sends one unsolicited neighbour advertisement for target to all
// nodes, with the Override flag (replace cached entries) and the target
// link-layer address option (RFC 4861 §7.2.6).
func (s *ndpSocket) sendNA(mac net.HardwareAddr, target netip.Addr) error {
	b := make([]byte, 32)
	b[0] = 136 // neighbour advertisement
	b[4] = 0x20
	t := target.As16()
	copy(b[8:24], t[:])
	b[24], b[25] = 2, 1 // target link-layer address, 8 bytes
	copy(b[26:32], mac)
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrInet6{Addr: allNodes.As16(), ZoneId: uint32(s.ifindex)}); err != nil {
		return os.NewSyscallError("sendto(ICMPv6)", err)
	}
	return nil
}

// announcer sends the takeover announcements for one address.
type announcer struct {
	ifindex int
	mac     net.HardwareAddr
	ip      netip.Addr
}

// round sends one announcement: gratuitous ARP request and reply (IPv4) or
// an unsolicited NA with Override (IPv6). Sockets are opened per round: a
// round is rare, and a socket held open would pin a deleted interface.
func (a announcer) round() error {
	if a.ip.Is4() {
		s, err := openARP(a.ifindex)
		if err != nil {
			return err
		}
		defer s.Close()
		return sendGARP(s, a.mac, a.ip)
	}
	s, err := openNDP(a.ifindex, a.ip)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.sendNA(a.mac, a.ip)
}

// burst sends count rounds interval apart (the first at once) until ctx
// is done; it returns the first error.
func (a announcer) burst(ctx context.Context, count int, interval time.Duration) error {
	for i := 0; i < count; i++ {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		// Never announce an address no longer held (removed by hand, or
		// by a stop that raced with this burst).
		if _, held, err := findAddr(a.ifindex, a.ip); err != nil || !held {
			return err
		}
		if err := a.round(); err != nil {
			return err
		}
	}
	return nil
}
