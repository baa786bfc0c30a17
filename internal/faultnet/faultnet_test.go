package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ipA = "127.0.0.10"
	ipB = "127.0.0.11"
	ipC = "127.0.0.12"
)

// echoServer listens on ip through h and echoes every connection.
func echoServer(t *testing.T, h *Host) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(h.IP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	wl := h.WrapListener(ln)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := wl.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { wl.Close(); wg.Wait() })
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	return err
}

func TestDialAndPartition(t *testing.T) {
	n := New()
	n.SetMode(ModeRefuse)
	a, b, c := n.Host(ipA), n.Host(ipB), n.Host(ipC)
	addrB := echoServer(t, b)
	addrC := echoServer(t, c)

	conn, err := a.DialContext(context.Background(), "tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.LocalAddr().(*net.TCPAddr).IP.String(); got != ipA {
		t.Fatalf("dial left from %s, want %s", got, ipA)
	}
	if err := roundTrip(conn); err != nil {
		t.Fatal(err)
	}

	n.Partition([]string{ipA}, []string{ipB, ipC})
	// The established connection is cut.
	if err := roundTrip(conn); err == nil {
		t.Fatal("connection survived the partition")
	}
	// New dials fail both ways, refused at once.
	if _, err := a.DialContext(context.Background(), "tcp", addrB); !errors.Is(err, ErrCut) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial across the partition: %v", err)
	}
	addrA := echoServer(t, a)
	if _, err := b.DialContext(context.Background(), "tcp", addrA); !errors.Is(err, ErrCut) {
		t.Fatalf("dial across the partition (reverse): %v", err)
	}
	// Within a side, links stay up.
	c2, err := b.DialContext(context.Background(), "tcp", addrC)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c2); err != nil {
		t.Fatal(err)
	}
	c2.Close()

	n.Heal()
	c3, err := a.DialContext(context.Background(), "tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c3); err != nil {
		t.Fatal(err)
	}
	c3.Close()
}

func TestListenerDropsBlockedPeers(t *testing.T) {
	n := New()
	a, b := n.Host(ipA), n.Host(ipB)
	addrB := echoServer(t, b)
	n.Partition([]string{ipA}, []string{ipB})
	// A plain dialer (not through faultnet) from A's IP: the listener drops it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipA)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err == nil {
		t.Fatal("listener served a blocked peer")
	}
	if n.Stats().AcceptsDropped == 0 {
		t.Fatal("no accept counted as dropped")
	}
	// An address no rule mentions (127.0.0.1) still gets through.
	c2, err := net.DialTimeout("tcp", addrB, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2); err != nil {
		t.Fatal(err)
	}
	_ = a
}

func TestAcceptedConnectionsAreCut(t *testing.T) {
	n := New()
	a, b := n.Host(ipA), n.Host(ipB)
	addrB := echoServer(t, b)
	// Dial with a plain dialer so that only the listener side tracks it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipA)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	n.OneWay([]string{ipB}, []string{ipA})
	if err := roundTrip(c); err == nil {
		t.Fatal("accepted connection survived a one-way cut")
	}
	_ = a
}

func TestDropModeHangsUntilDeadlineOrHeal(t *testing.T) {
	n := New()
	a, b := n.Host(ipA), n.Host(ipB)
	addrB := echoServer(t, b)
	n.Partition([]string{ipA}, []string{ipB})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := a.DialContext(ctx, "tcp", addrB)
	cancel()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, ErrCut) {
		t.Fatalf("want a timeout over a cut link, got %v", err)
	}

	// A dial hanging on a cut link completes once the link heals.
	res := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		c, err := a.DialContext(context.Background(), "tcp", addrB)
		if err == nil {
			err = roundTrip(c)
			c.Close()
		}
		res <- err
	}()
	<-started
	select {
	case err := <-res:
		t.Fatalf("dial over a cut link returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	n.Heal()
	if err := <-res; err != nil {
		t.Fatalf("dial after heal: %v", err)
	}

	// Without a deadline, the drop timeout ends the dial.
	n.SetDropTimeout(10 * time.Millisecond)
	n.Partition([]string{ipA}, []string{ipB})
	if _, err := a.DialContext(context.Background(), "tcp", addrB); !errors.Is(err, ErrCut) {
		t.Fatalf("want ErrCut, got %v", err)
	}
}

func TestRulesByHostPortAndOneWay(t *testing.T) {
	n := New()
	n.OneWay([]string{ipA + ":7000"}, []string{ipB})
	if n.CanSend(ipA, ipB+":1") || !n.CanSend(ipB, ipA) {
		t.Fatal("one-way rule is not one-way for packets")
	}
	if n.Connected(ipA, ipB) || n.Connected(ipB, ipA) {
		t.Fatal("TCP over a half-cut link must fail both ways")
	}
	if !n.Connected(ipA, ipC) {
		t.Fatal("unrelated link cut")
	}
	n.Heal()
	if !n.Connected(ipA, ipB) {
		t.Fatal("heal did not restore the link")
	}
}

// newMember starts a memberlist on h's IP behind faultnet.
func newMember(t *testing.T, h *Host, name string) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.BindAddr = h.IP()
	mc.AdvertiseAddr = h.IP()
	mc.ProbeInterval = 50 * time.Millisecond
	mc.ProbeTimeout = 25 * time.Millisecond
	mc.SuspicionMult = 1
	mc.GossipInterval = 20 * time.Millisecond
	mc.PushPullInterval = 200 * time.Millisecond
	mc.TCPTimeout = 500 * time.Millisecond
	mc.LogOutput = io.Discard
	mc.Logger = nil
	var nt *memberlist.NetTransport
	var err error
	for port := 20000 + int(time.Now().UnixNano()%20000); ; port++ {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{h.IP()}, BindPort: port, Logger: log.New(io.Discard, "", 0)})
		if err == nil {
			mc.BindPort, mc.AdvertisePort = port, port
			break
		}
	}
	mc.Transport = h.WrapTransport(nt)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml
}

func alive(ml *memberlist.Memberlist) map[string]bool {
	out := map[string]bool{}
	for _, m := range ml.Members() {
		if m.State == memberlist.StateAlive {
			out[m.Name] = true
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGossipPartition(t *testing.T) {
	n := New()
	n.SetMode(ModeRefuse)
	ha, hb, hc := n.Host(ipA), n.Host(ipB), n.Host(ipC)
	a, b, c := newMember(t, ha, "a"), newMember(t, hb, "b"), newMember(t, hc, "c")
	for _, ml := range []*memberlist.Memberlist{b, c} {
		if _, err := ml.Join([]string{fmt.Sprintf("%s:%d", ipA, a.LocalNode().Port)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all three alive", func() bool { return len(alive(a)) == 3 && len(alive(b)) == 3 && len(alive(c)) == 3 })

	n.Partition([]string{ipA}, []string{ipB, ipC})
	eventually(t, "a sees itself alone, b and c see a dead", func() bool {
		return len(alive(a)) == 1 && !alive(b)["a"] && !alive(c)["a"] && alive(b)["c"] && alive(c)["b"]
	})
	if n.Stats().PacketsDropped == 0 {
		t.Fatal("no gossip packet dropped")
	}

	n.Heal()
	// Dead members are not probed again; rejoining brings them back, as an
	// agent's join loop would.
	eventually(t, "rejoin after heal", func() bool {
		_, _ = a.Join([]string{fmt.Sprintf("%s:%d", ipB, b.LocalNode().Port)})
		return len(alive(a)) == 3 && len(alive(b)) == 3 && len(alive(c)) == 3
	})
}

func TestCloseConns(t *testing.T) {
	n := New()
	a, b := n.Host(ipA), n.Host(ipB)
	addrB := echoServer(t, b)
	c, err := a.DialContext(context.Background(), "tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	if k := a.CloseConns(); k != 1 {
		t.Fatalf("closed %d connections, want 1", k)
	}
	if err := roundTrip(c); err == nil {
		t.Fatal("connection still open")
	}
}
