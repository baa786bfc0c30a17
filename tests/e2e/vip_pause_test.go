package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/labcluster"
)

// TestVIPAgentPaused stops the holder's agent with SIGSTOP: the agent can
// neither renew nor run its own fence loop, but the host's kernel keeps
// answering ARP for every address it carries. The address's lease guard
// (internal/guard, a separate process the stop does not reach) removes it
// when the lease runs out, before the leader starts it elsewhere, so the
// address is never on two hosts at once — sampled every 20 ms on every
// host, while the agent is stopped and after it resumes — and the
// client's ARP entry moves to the new holder. Durations are logged, never
// asserted.
func TestVIPAgentPaused(t *testing.T) {
	c, client := newVIPCluster(t, "vfs")
	vip, first := c.startVIP(t, client)
	pid, err := labcluster.AgentPID(c.l, c.host(first))
	if err != nil || pid == 0 {
		t.Fatalf("agent of %s: pid %d, %v", first, pid, err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	tStop := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var second string
	var gone time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for second == "" {
		hs := c.addrHolders(vip, "")
		if len(hs) > 1 {
			t.Fatalf("the address is on %v at once (agent of %s stopped %v ago)", hs, first, time.Since(tStop))
		}
		if gone == 0 && (len(hs) == 0 || hs[0] != first) {
			gone = time.Since(tStop)
		}
		if len(hs) == 1 && hs[0] != first {
			second = hs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the address did not move off %s, whose agent is stopped (on %v)", first, hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("agent of %s stopped: address gone from it after ~%v, on %s after ~%v", first, gone.Round(10*time.Millisecond), second, time.Since(tStop).Round(10*time.Millisecond))
	secondMAC := c.mac(c.host(second))
	waitFor(t, 30*time.Second, "the client's ARP entry to point at the new holder", func() bool {
		got, _ := c.neighMAC(client, vip)
		return got == secondMAC
	})
	// Still stopped 2 s later: the address stays where it moved (the
	// guard keeps it off the stopped host).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if hs := c.addrHolders(vip, ""); len(hs) > 1 {
			t.Fatalf("the address is on %v at once while the agent of %s is stopped", hs, first)
		}
	}
	resumed = true
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Resumed: its lease is long gone, so it self-fences and rejoins; the
	// address is never on two hosts meanwhile.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if hs := c.addrHolders(vip, ""); len(hs) > 1 {
			t.Fatalf("after the agent of %s resumed the address is on %v at once", first, hs)
		}
	}
	st := c.waitStatus(c.host(second), 60*time.Second, "all 3 nodes online, plvip on one", func(st *api.Status) bool {
		n, q := labcluster.Online(st)
		return n == 3 && q && len(labcluster.Holders(st, "plvip")) == 1
	})
	t.Logf("status: %s", describe(st))
	// The guard's removal was a self-fence, not a failure of the vip: no
	// fail count (else a few pauses would ban it from every node).
	for _, r := range st.Resources {
		if r.Name == "plvip" && r.FailCount[first] != 0 {
			t.Fatalf("plvip has fail count %d on %s after its guard removed the address: %v", r.FailCount[first], first, r.FailCount)
		}
	}
}
