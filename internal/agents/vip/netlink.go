package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// rtnetlink, spoken directly (a handful of messages do not justify a
// dependency): RTM_NEWADDR, RTM_DELADDR and an RTM_GETADDR dump. The socket
// is opened per call, in the network namespace of the calling thread —
// which is the agent's, since the agent never switches namespaces.

var nlSeq atomic.Uint32

// nlAttr is one rtattr.
type nlAttr struct {
	typ  uint16
	data []byte
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// addrMsg builds an RTM_NEWADDR/RTM_DELADDR request for pfx on ifindex.
func addrMsg(typ uint16, flags uint16, ifindex int, pfx netip.Prefix, label string, ifaFlags uint32) []byte {
	ip := pfx.Addr()
	fam := byte(unix.AF_INET)
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	raw := ip.AsSlice()
	attrs := []nlAttr{{unix.IFA_LOCAL, raw}, {unix.IFA_ADDRESS, raw}}
	if ip.Is4() && typ == unix.RTM_NEWADDR {
		if pfx.Bits() <= 30 {
			attrs = append(attrs, nlAttr{unix.IFA_BROADCAST, broadcast(pfx).AsSlice()})
		}
		if label != "" {
			attrs = append(attrs, nlAttr{unix.IFA_LABEL, append([]byte(label), 0)})
		}
	}
	if ifaFlags != 0 {
		b := make([]byte, 4)
		binary.NativeEndian.PutUint32(b, ifaFlags)
		attrs = append(attrs, nlAttr{unix.IFA_FLAGS, b})
	}
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0] = fam
	body[1] = byte(pfx.Bits())
	body[2] = byte(ifaFlags) // the low 8 bits; IFA_FLAGS carries all
	body[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(body[4:], uint32(ifindex))
	for _, a := range attrs {
		hdr := make([]byte, 4)
		binary.NativeEndian.PutUint16(hdr[0:], uint16(4+len(a.data)))
		binary.NativeEndian.PutUint16(hdr[2:], a.typ)
		body = append(body, hdr...)
		body = append(body, a.data...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
	}
	return nlMsg(typ, flags, body)
}

func nlMsg(typ, flags uint16, body []byte) []byte {
	m := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(m[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], flags|unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(m[8:], nlSeq.Add(1))
	return append(m, body...)
}

// broadcast returns the IPv4 broadcast address of pfx.
func broadcast(pfx netip.Prefix) netip.Addr {
	a := pfx.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (uint32(1)<<(32-pfx.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// nlRequest sends req and returns the messages of the answer (for a dump,
// all parts up to NLMSG_DONE); an NLMSG_ERROR with a non-zero code is
// returned as the errno.
func nlRequest(req []byte) ([][]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket(netlink)", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("bind(netlink)", err)
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto(netlink)", err)
	}
	seq := binary.NativeEndian.Uint32(req[8:])
	var out [][]byte
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, os.NewSyscallError("recvfrom(netlink)", err)
		}
		b := buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			mseq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return nil, errors.New("netlink: truncated message")
			}
			msg := b[unix.NLMSG_HDRLEN:l]
			b = b[min(nlAlign(l), len(b)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(msg) < 4 {
					return nil, errors.New("netlink: short error message")
				}
				if code := int32(binary.NativeEndian.Uint32(msg)); code != 0 {
					return nil, unix.Errno(-code)
				}
				return out, nil // the ACK
			default:
				out = append(out, msg)
			}
		}
	}
}

// addAddr puts pfx on ifindex. An address already there is not an error.
func addAddr(ifindex int, pfx netip.Prefix, label string) error {
	var flags uint32
	if pfx.Addr().Is6() {
		flags = unix.IFA_F_NODAD
	}
	_, err := nlRequest(addrMsg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, ifindex, pfx, label, flags))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("add %s: %w", pfx, err)
	}
	return nil
}

// delAddr removes pfx from ifindex. An address (or interface) already gone
// is not an error.
func delAddr(ifindex int, pfx netip.Prefix) error {
	_, err := nlRequest(addrMsg(unix.RTM_DELADDR, unix.NLM_F_ACK, ifindex, pfx, "", 0))
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", pfx, err)
	}
	return nil
}

// ifAddr is an address on an interface.
type ifAddr struct {
	Index int
	Pfx   netip.Prefix
	Flags uint32
}

// listAddrs dumps the addresses of family (AF_INET or AF_INET6) on every
// interface.
func listAddrs(family int) ([]ifAddr, error) {
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0] = byte(family)
	msgs, err := nlRequest(nlMsg(unix.RTM_GETADDR, unix.NLM_F_DUMP, body))
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []ifAddr
	for _, m := range msgs {
		if len(m) < unix.SizeofIfAddrmsg {
			continue
		}
		a := ifAddr{Index: int(binary.NativeEndian.Uint32(m[4:])), Flags: uint32(m[2])}
		bits := int(m[1])
		var local, address []byte
		for b := m[unix.SizeofIfAddrmsg:]; len(b) >= 4; {
			l := int(binary.NativeEndian.Uint16(b[0:]))
			typ := binary.NativeEndian.Uint16(b[2:])
			if l < 4 || l > len(b) {
				break
			}
			data := b[4:l]
			switch typ {
			case unix.IFA_LOCAL:
				local = data
			case unix.IFA_ADDRESS:
				address = data
			case unix.IFA_FLAGS:
				if len(data) >= 4 {
					a.Flags = binary.NativeEndian.Uint32(data)
				}
			}
			b = b[min(nlAlign(l), len(b)):]
		}
		raw := local // the local address (IFA_ADDRESS is the peer's on point-to-point links)
		if raw == nil {
			raw = address
		}
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		a.Pfx = netip.PrefixFrom(ip, bits)
		out = append(out, a)
	}
	return out, nil
}

// findAddr returns the address ip on ifindex (ok false: not there).
func findAddr(ifindex int, ip netip.Addr) (ifAddr, bool, error) {
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	all, err := listAddrs(fam)
	if err != nil {
		return ifAddr{}, false, err
	}
	for _, a := range all {
		if a.Index == ifindex && a.Pfx.Addr() == ip {
			return a, true, nil
		}
	}
	return ifAddr{}, false, nil
}
