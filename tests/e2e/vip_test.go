package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
)

// newVIPCluster is newCluster with a fourth lab host, the client, that
// runs no agent: it returns the 3-node cluster and the client host.
func newVIPCluster(t *testing.T, tag string) (*cluster, *lab.Host) {
	t.Helper()
	requireLab(t)
	name := fmt.Sprintf("pl%s%d", tag, os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Name: name, Hosts: 4})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	all := l.Hosts()
	c := &cluster{t: t, l: l, hosts: all[:3]}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PL_E2E_LOGS") != "" {
			c.dumpLogs()
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	for _, h := range c.hosts {
		if err := labcluster.StartAgent(l, h, labcluster.Options{Exe: exe}); err != nil {
			t.Fatalf("start agent on %s: %v", h.Name, err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := labcluster.WaitReady(rctx, l, exe); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.hosts {
		c.waitWhole(60*time.Second, h.Name, 0)
	}
	return c, all[3]
}

// run runs argv inside h and returns its output; it fails the test on error.
func (c *cluster) run(h *lab.Host, argv ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.l.Exec(ctx, h, argv...)
	if err != nil {
		c.t.Fatalf("%s on %s: %v\n%s", strings.Join(argv, " "), h.Name, err, out)
	}
	return string(out)
}

// mac returns the MAC address of h's lab interface.
func (c *cluster) mac(h *lab.Host) string {
	c.t.Helper()
	f := strings.Fields(c.run(h, "ip", "-o", "link", "show", "dev", h.Iface))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			return f[i+1]
		}
	}
	c.t.Fatalf("no MAC for %s %s", h.Name, h.Iface)
	return ""
}

// neighMAC returns the MAC client caches for addr ("" if none) and the
// entry's line.
func (c *cluster) neighMAC(client *lab.Host, addr netip.Addr) (string, string) {
	line := strings.TrimSpace(c.run(client, "ip", "neigh", "show", addr.String(), "dev", client.Iface))
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1], line
		}
	}
	return "", line
}

// addrHolders lists the hosts whose lab interface carries addr.
func (c *cluster) addrHolders(addr netip.Addr, except string) []string {
	var hs []string
	for _, h := range c.hosts {
		if h.Name == except {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := c.l.Exec(ctx, h, "ip", "-o", "addr", "show", "dev", h.Iface)
		cancel()
		if err == nil && strings.Contains(string(b), " "+addr.String()+"/") {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

// TestVIP drives the built-in vip class in a lab of three paceline hosts
// and a client host (no agent) on the same segment:
//
//   - failover: the client's ARP entry for the address points at the
//     holder; after the holder is crashed, it points at the new holder —
//     moved by the new holder's gratuitous ARP, since the client sends
//     nothing to the address after the crash (a STALE entry is not
//     re-resolved without traffic);
//   - an address another host (the client) already answers for is never
//     taken: every start is refused by the ARP probe, with an event naming
//     the MAC that answered;
//   - an interface that does not exist is a configuration error, with an
//     event that says so;
//
// and the failures leave the healthy address where it is. Deadlines are
// generous; durations are logged, never asserted.
func TestVIP(t *testing.T) {
	c, client := newVIPCluster(t, "vip")
	sub := c.l.Subnet()
	nth := func(n int) netip.Addr {
		a := sub.Addr()
		for i := 0; i < n; i++ {
			a = a.Next()
		}
		return a
	}
	vip, taken := nth(200), nth(201)
	iface := c.hosts[0].Iface
	resource := func(name string, addr netip.Addr, ifc string) string {
		return fmt.Sprintf(`  - name: %s
    class: vip
    params: {address: "%s/%d", interface: %s, garpCount: "3", garpInterval: 100ms}
    operations: [{name: monitor, interval: 1s}]
`, name, addr, sub.Bits(), ifc)
	}
	head := fmt.Sprintf("apiVersion: paceline/v1\ncluster: {name: %s}\nresources:\n", labcluster.ClusterName)

	// (a) failover seen from the client's ARP cache.
	out := c.mustCLI(c.hosts[0], "apply", "-f", c.writeSpec("vip", head+resource("plvip", vip, iface)))
	if !strings.Contains(out, "applied as version") {
		t.Fatalf("apply:\n%s", out)
	}
	var first string
	waitFor(t, 60*time.Second, "the address on exactly one host", func() bool {
		hs := c.addrHolders(vip, "")
		if len(hs) == 1 {
			first = hs[0]
		}
		return len(hs) == 1
	})
	c.waitStatus(c.other(first), 30*time.Second, "plvip running on "+first, func(st *api.Status) bool {
		hs := labcluster.Holders(st, "plvip")
		return len(hs) == 1 && hs[0] == first
	})
	// Leader placement: raft leadership leaves the vip's holder (a holder
	// that also leads fails over slowest), and the vip stays where it is.
	// Put the vip on the leader first, so that the move is always seen.
	st := c.waitStatus(c.other(first), 30*time.Second, "a leader", func(st *api.Status) bool { return st.Leader != "" })
	if st.Leader != first {
		c.mustCLI(c.hosts[0], "resource", "move", "plvip", st.Leader)
		first = st.Leader
		waitFor(t, 60*time.Second, "the address on the leader "+first, func() bool {
			hs := c.addrHolders(vip, "")
			return len(hs) == 1 && hs[0] == first
		})
	}
	c.waitStatus(c.other(first), 60*time.Second, "raft leadership away from the vip holder "+first, func(st *api.Status) bool {
		hs := labcluster.Holders(st, "plvip")
		return st.Leader != "" && st.Leader != first && len(hs) == 1 && hs[0] == first
	})
	firstMAC := c.mac(c.host(first))
	// One ping creates the client's entry (a gratuitous ARP only updates
	// an existing one: arp_accept is 0).
	c.run(client, "ping", "-c", "1", "-W", "5", vip.String())
	if got, line := c.neighMAC(client, vip); got != firstMAC {
		t.Fatalf("client caches %s at %q (%s), want the holder %s's %s", vip, got, line, first, firstMAC)
	}
	t.Logf("%s holds %s; the client caches %s", first, vip, firstMAC)

	tKill := time.Now()
	if err := labcluster.Kill(c.l, c.host(first)); err != nil {
		t.Fatal(err)
	}
	var second, secondMAC string
	waitFor(t, 60*time.Second, "the address on one surviving host", func() bool {
		hs := c.addrHolders(vip, first)
		if len(hs) == 1 {
			second = hs[0]
		}
		return len(hs) == 1
	})
	tAddr := time.Now()
	secondMAC = c.mac(c.host(second))
	var line string
	waitFor(t, 30*time.Second, "the client's ARP entry to point at the new holder", func() bool {
		var got string
		got, line = c.neighMAC(client, vip)
		return got == secondMAC
	})
	t.Logf("after %s crashed: address on %s seen %v after the kill; client entry %q seen %v after the kill, without sending to the address",
		first, second, tAddr.Sub(tKill).Round(time.Millisecond), line, time.Since(tKill).Round(time.Millisecond))
	// Now the address answers from the new holder.
	c.run(client, "ping", "-c", "1", "-W", "5", vip.String())

	// (b) an address the client already holds, and (c) a missing interface.
	c.run(client, "ip", "addr", "add", fmt.Sprintf("%s/%d", taken, sub.Bits()), "dev", client.Iface)
	clientMAC := c.mac(client)
	doc := head + resource("plvip", vip, iface) + resource("pltaken", taken, iface) + resource("plnoif", nth(202), "plnope0")
	out = c.mustCLI(c.host(second), "apply", "-f", c.writeSpec("vip2", doc))
	if !strings.Contains(out, "applied as version") {
		t.Fatalf("apply:\n%s", out)
	}
	watcher := c.host(second)
	waitFor(t, 60*time.Second, "events for pltaken (ARP probe answered by the client) and plnoif (no interface)", func() bool {
		ev, err := c.cli(watcher, "events", "--json")
		if err != nil {
			return false
		}
		return strings.Contains(ev, "already in use") && strings.Contains(ev, clientMAC) && strings.Contains(ev, "interface plnope0 does not exist")
	})
	ev, _ := c.cli(watcher, "events")
	for _, l := range strings.Split(ev, "\n") {
		if strings.Contains(l, "pltaken") || strings.Contains(l, "plnoif") {
			t.Logf("event: %s", strings.TrimSpace(l))
		}
	}
	st, err := c.status(watcher)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status: %s", describe(st))
	if hs := c.addrHolders(taken, first); len(hs) > 0 {
		t.Errorf("%s (answered by the client) was added on %v", taken, hs)
	}
	if hs := labcluster.Holders(st, "pltaken"); len(hs) > 0 {
		t.Errorf("pltaken runs on %v although the client holds the address", hs)
	}
	if hs := labcluster.Holders(st, "plnoif"); len(hs) > 0 {
		t.Errorf("plnoif runs on %v without its interface", hs)
	}
	// Nothing else stopped working: the healthy address stayed put.
	if hs := c.addrHolders(vip, first); len(hs) != 1 || hs[0] != second {
		t.Errorf("%s is on %v, want only %s", vip, hs, second)
	}
	if hs := labcluster.Holders(st, "plvip"); len(hs) != 1 || hs[0] != second {
		t.Errorf("plvip runs on %v, want %s", hs, second)
	}
	if got, line := c.neighMAC(client, vip); got != secondMAC {
		t.Errorf("client entry %q, want %s", line, secondMAC)
	}
}

// TestVIPAgentCrash kills only the holder's agent (SIGKILL; the host and
// its link stay up). The address would outlive the agent — kernel state —
// and keep answering ARP, so that every other node's ARP probe would
// refuse it; the address's guard removes it when the agent dies, and the
// address moves like after a power loss.
func TestVIPAgentCrash(t *testing.T) {
	c, client := newVIPCluster(t, "vk")
	vip, first := c.startVIP(t, client)
	pid, err := labcluster.AgentPID(c.l, c.host(first))
	if err != nil {
		t.Fatal(err)
	}
	tKill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second string
	waitFor(t, 60*time.Second, "the address on exactly one other host", func() bool {
		hs := c.addrHolders(vip, "")
		if len(hs) == 1 && hs[0] != first {
			second = hs[0]
		}
		return second != ""
	})
	t.Logf("agent on %s killed; address on %s %v later", first, second, time.Since(tKill).Round(time.Millisecond))
	secondMAC := c.mac(c.host(second))
	waitFor(t, 30*time.Second, "the client's ARP entry to point at the new holder", func() bool {
		got, _ := c.neighMAC(client, vip)
		return got == secondMAC
	})
	st := c.waitStatus(c.host(second), 30*time.Second, "plvip running on "+second, func(st *api.Status) bool {
		hs := labcluster.Holders(st, "plvip")
		return len(hs) == 1 && hs[0] == second
	})
	t.Logf("status: %s", describe(st))
	ev, _ := c.cli(c.host(second), "events")
	if strings.Contains(ev, "already in use") {
		t.Errorf("a start was refused by the ARP probe:\n%s", ev)
	}
}

// TestVIPPartition cuts the holder off from everyone else (ARP included):
// it removes the address by itself (self-fence) before the majority takes
// it, so no ARP probe is answered and the address is never on two hosts
// as far as 20 ms sampling can tell, also after healing.
func TestVIPPartition(t *testing.T) {
	c, client := newVIPCluster(t, "vp")
	vip, first := c.startVIP(t, client)
	tCut := time.Now()
	if err := c.l.Partition([]*lab.Host{c.host(first)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.l.Heal() })
	var second string
	var gone time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for second == "" {
		hs := c.addrHolders(vip, "")
		if len(hs) > 1 {
			t.Fatalf("the address is on %v at once", hs)
		}
		if gone == 0 && (len(hs) == 0 || hs[0] != first) {
			gone = time.Since(tCut)
		}
		if len(hs) == 1 && hs[0] != first {
			second = hs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the address did not move off %s (on %v)", first, hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s cut off: address gone from it after ~%v, on %s after ~%v", first, gone.Round(10*time.Millisecond), second, time.Since(tCut).Round(10*time.Millisecond))
	secondMAC := c.mac(c.host(second))
	waitFor(t, 30*time.Second, "the client's ARP entry to point at the new holder", func() bool {
		got, _ := c.neighMAC(client, vip)
		return got == secondMAC
	})
	if err := c.l.Heal(); err != nil {
		t.Fatal(err)
	}
	// After healing: never on two hosts at once. (On a loaded machine a
	// lease may lapse while the cluster settles, and the address may move
	// again; that is the cluster's business, not a double holding.)
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if hs := c.addrHolders(vip, ""); len(hs) > 1 {
			t.Fatalf("after healing the address is on %v at once", hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.waitWhole(60*time.Second, second, 0)
	if hs := c.addrHolders(vip, ""); len(hs) != 1 || hs[0] != second {
		t.Logf("after healing the address is on %v (was on %s)", hs, second)
	}
	ev, _ := c.cli(c.host(second), "events")
	if strings.Contains(ev, "already in use") {
		t.Errorf("a start was refused by the ARP probe:\n%s", ev)
	}
}

// startVIP applies a spec with one vip resource (subnet address .200 on
// the hosts' interface), waits until exactly one host holds it, lets the
// client resolve it, and returns the address and its holder.
func (c *cluster) startVIP(t *testing.T, client *lab.Host) (netip.Addr, string) {
	t.Helper()
	sub := c.l.Subnet()
	vip := sub.Addr()
	for i := 0; i < 200; i++ {
		vip = vip.Next()
	}
	doc := fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: %s}
resources:
  - name: plvip
    class: vip
    params: {address: "%s/%d", interface: %s}
    operations: [{name: monitor, interval: 1s}]
`, labcluster.ClusterName, vip, sub.Bits(), c.hosts[0].Iface)
	if out := c.mustCLI(c.hosts[0], "apply", "-f", c.writeSpec("vip", doc)); !strings.Contains(out, "applied as version") {
		t.Fatalf("apply:\n%s", out)
	}
	var first string
	waitFor(t, 60*time.Second, "the address on exactly one host", func() bool {
		hs := c.addrHolders(vip, "")
		if len(hs) == 1 {
			first = hs[0]
		}
		return len(hs) == 1
	})
	c.run(client, "ping", "-c", "1", "-W", "5", vip.String())
	return vip, first
}
