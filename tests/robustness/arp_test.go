package robustness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
)

// arpWatcher asks "who has VIP?" from the client host every period over a
// packet socket and records every answer. Two different MACs answering
// the same question (within one period) means two hosts held the address
// at that instant: an I1 violation seen from the network.
type arpWatcher struct {
	fd       int
	ifindex  int
	mac      net.HardwareAddr
	src, vip netip.Addr
	period   time.Duration

	mu      sync.Mutex
	round   int
	sentAt  []time.Time // per round
	answers []arpAnswer
	garps   []arpAnswer
	stop    chan struct{}
	wg      sync.WaitGroup
}

type arpAnswer struct {
	At    time.Time
	Round int
	MAC   string
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// newARPWatcher opens the socket inside the client's namespace and starts
// asking.
func newARPWatcher(client *lab.Host, vip netip.Addr, period time.Duration) (*arpWatcher, error) {
	w := &arpWatcher{src: client.Addr, vip: vip, period: period, stop: make(chan struct{})}
	err := labcluster.InNetns(client.NS, func() error {
		ifc, err := net.InterfaceByName(client.Iface)
		if err != nil {
			return err
		}
		w.ifindex, w.mac = ifc.Index, ifc.HardwareAddr
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return os.NewSyscallError("socket(AF_PACKET)", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("bind(AF_PACKET)", err)
		}
		w.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ARP watcher on %s: %w", client.Name, err)
	}
	w.wg.Add(2)
	go w.ask()
	go w.listen()
	return w, nil
}

func (w *arpWatcher) ask() {
	defer w.wg.Done()
	pkt := make([]byte, 28)
	binary.BigEndian.PutUint16(pkt[0:], 1)
	binary.BigEndian.PutUint16(pkt[2:], 0x0800)
	pkt[4], pkt[5] = 6, 4
	binary.BigEndian.PutUint16(pkt[6:], 1) // request
	copy(pkt[8:14], w.mac)
	s, v := w.src.As4(), w.vip.As4()
	copy(pkt[14:18], s[:])
	copy(pkt[24:28], v[:])
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: w.ifindex, Halen: 6}
	copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	t := time.NewTicker(w.period)
	defer t.Stop()
	for {
		w.mu.Lock()
		w.round++
		w.sentAt = append(w.sentAt, time.Now())
		w.mu.Unlock()
		_ = unix.Sendto(w.fd, pkt, 0, sa)
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *arpWatcher) listen() {
	defer w.wg.Done()
	buf := make([]byte, 1500)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		c, err := unix.Poll(fds, 20)
		if err != nil || c == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(w.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		now := time.Now()
		if n < 28 {
			continue
		}
		p := buf[:n]
		if binary.BigEndian.Uint16(p[2:]) != 0x0800 || p[4] != 6 || p[5] != 4 {
			continue
		}
		op := binary.BigEndian.Uint16(p[6:])
		mac := net.HardwareAddr(p[8:14]).String()
		spa := netip.AddrFrom4([4]byte(p[14:18]))
		tpa := netip.AddrFrom4([4]byte(p[24:28]))
		if spa != w.vip {
			continue
		}
		w.mu.Lock()
		a := arpAnswer{At: now, Round: w.round, MAC: mac}
		switch {
		case op == 2 && tpa == w.src:
			w.answers = append(w.answers, a)
		case tpa == w.vip: // gratuitous ARP (announcement)
			w.garps = append(w.garps, a)
		}
		w.mu.Unlock()
	}
}

// Close stops the watcher.
func (w *arpWatcher) Close() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.wg.Wait()
	unix.Close(w.fd)
}

// arpReport is what the client saw of the VIP.
type arpReport struct {
	Rounds    int
	Answered  int // rounds with at least one answer
	Overlaps  []string
	Moves     int           // changes of the answering MAC
	LongestNo time.Duration // longest stretch of unanswered rounds
	LongestAt time.Time
	GARPs     int
}

// report analyses the rounds sent between from and to.
func (w *arpWatcher) report(from, to time.Time) arpReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	var r arpReport
	byRound := map[int]map[string]time.Time{}
	for _, a := range w.answers {
		if byRound[a.Round] == nil {
			byRound[a.Round] = map[string]time.Time{}
		}
		if _, ok := byRound[a.Round][a.MAC]; !ok {
			byRound[a.Round][a.MAC] = a.At
		}
	}
	for _, g := range w.garps {
		if !g.At.Before(from) && !g.At.After(to) {
			r.GARPs++
		}
	}
	last := ""
	var lastAnswered time.Time
	for i, at := range w.sentAt {
		round := i + 1
		if at.Before(from) || at.After(to) {
			continue
		}
		r.Rounds++
		if lastAnswered.IsZero() {
			lastAnswered = at
		}
		macs := byRound[round]
		if len(macs) == 0 {
			if gap := at.Sub(lastAnswered); gap > r.LongestNo {
				r.LongestNo, r.LongestAt = gap, lastAnswered
			}
			continue
		}
		r.Answered++
		lastAnswered = at
		if len(macs) > 1 {
			s := fmt.Sprintf("round %d (asked %s): answered by", round, at.Format("15:04:05.000"))
			for m, t := range macs {
				s += fmt.Sprintf(" %s at +%v", m, t.Sub(at).Round(time.Microsecond))
			}
			r.Overlaps = append(r.Overlaps, s)
		}
		for m := range macs {
			if len(macs) == 1 && m != last {
				if last != "" {
					r.Moves++
				}
				last = m
			}
		}
	}
	return r
}
