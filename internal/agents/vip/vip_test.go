package vip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/ocf"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMetadataParses(t *testing.T) {
	a := New(Options{})
	defer a.Close()
	r := a.Run(context.Background(), agents.MetaData, agents.Instance{}, 0)
	if r.Status != agents.StatusSuccess {
		t.Fatalf("meta-data: %+v", r)
	}
	md, err := ocf.ParseMetadata([]byte(r.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	if md.Name != "vip" || len(md.Parameters) != 6 {
		t.Fatalf("meta-data: %+v", md)
	}
}

func TestBadParamsAndMissingInterface(t *testing.T) {
	a := New(Options{})
	defer a.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		action agents.Action
		params map[string]string
		code   int
		reason string
	}{
		{agents.Start, map[string]string{"address": "192.0.2.1", "interface": "lo"}, agents.OCFErrConfigured, "params.address"},
		{agents.Start, map[string]string{"address": "192.0.2.1/24"}, agents.OCFErrConfigured, "params.interface: is required"},
		{agents.Start, map[string]string{"address": "192.0.2.1/24", "interface": "plnope0"}, agents.OCFErrConfigured, "interface plnope0 does not exist"},
		{agents.ValidateAll, map[string]string{"address": "192.0.2.1/24", "interface": "plnope0"}, agents.OCFErrConfigured, "interface plnope0 does not exist"},
		{agents.Monitor, map[string]string{"address": "192.0.2.1/24", "interface": "plnope0"}, agents.OCFNotRunning, ""},
		{agents.Stop, map[string]string{"address": "192.0.2.1/24", "interface": "plnope0"}, agents.OCFSuccess, ""},
		{agents.Promote, map[string]string{"address": "192.0.2.1/24", "interface": "plnope0"}, agents.OCFErrUnimplemented, "does not implement"},
	} {
		r := a.Run(ctx, tc.action, agents.Instance{Name: "v", Params: tc.params}, time.Second)
		if r.Code != tc.code || !strings.Contains(r.Reason, tc.reason) || r.Status != agents.StatusFromOCF(tc.code) {
			t.Errorf("%s %v: got code %d status %s reason %q; want code %d, reason with %q", tc.action, tc.params, r.Code, r.Status, r.Reason, tc.code, tc.reason)
		}
	}
}

func TestPackets(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip := netip.MustParseAddr("192.0.2.10")
	p := arpPacket(arpReply, mac, ip, mac, ip)
	want := "0001080006040002020000000001c000020a020000000001c000020a"
	if got := fmt.Sprintf("%x", p); got != want {
		t.Errorf("ARP reply = %s, want %s", got, want)
	}
	if b := broadcast(netip.MustParsePrefix("192.0.2.10/24")); b.String() != "192.0.2.255" {
		t.Errorf("broadcast = %s", b)
	}
	m := addrMsg(unix.RTM_NEWADDR, unix.NLM_F_ACK, 7, netip.MustParsePrefix("2001:db8::10/64"), "", unix.IFA_F_NODAD)
	if len(m)%4 != 0 || int(m[0])|int(m[1])<<8 != len(m) || m[16] != unix.AF_INET6 || m[17] != 64 || m[20] != 7 {
		t.Errorf("RTM_NEWADDR = %x", m)
	}
}

// ---------------------------------------------------------------------------
// In a network namespace (root).
//
// The agent opens its netlink and packet sockets in the namespace of the
// calling thread, and it runs goroutines (the announcements) on any
// thread: switching one locked thread with setns would not cover them. So
// the test runs the agent in a helper process started with
// "ip netns exec" in the agent's namespace: TestNamespace builds two
// namespaces joined by a veth pair (agent and client) and runs
// TestInNamespace there; the client's neighbour cache is read with
// "ip -n CLIENT neigh".

const (
	envInNS   = "PL_VIP_TEST_IN_NS"
	envClient = "PL_VIP_TEST_CLIENT"
)

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestNamespace(t *testing.T) {
	if os.Getenv(envInNS) != "" {
		t.Skip("in the helper")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not found: apt-get install iproute2")
	}
	agentNS, clientNS := fmt.Sprintf("plvipa%d", os.Getpid()), fmt.Sprintf("plvipc%d", os.Getpid())
	for _, ns := range []string{agentNS, clientNS} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create a network namespace: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip(t, "-n", agentNS, "link", "add", "plva0", "type", "veth", "peer", "name", "plvc0", "netns", clientNS)
	ip(t, "-n", agentNS, "link", "set", "lo", "up")
	ip(t, "-n", agentNS, "link", "set", "plva0", "up")
	ip(t, "-n", agentNS, "addr", "add", "10.77.0.1/24", "dev", "plva0")
	ip(t, "-n", agentNS, "link", "add", "plvdown", "type", "veth", "peer", "name", "plvdown1") // left down
	ip(t, "-n", clientNS, "link", "set", "lo", "up")
	ip(t, "-n", clientNS, "link", "set", "plvc0", "up")
	ip(t, "-n", clientNS, "addr", "add", "10.77.0.2/24", "dev", "plvc0")
	ip(t, "-n", clientNS, "addr", "add", "fd00:77::2/64", "dev", "plvc0", "nodad")

	cmd := exec.Command("ip", "netns", "exec", agentNS, os.Args[0], "-test.run", "^TestInNamespace$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envInNS+"=1", envClient+"="+clientNS)
	out, err := cmd.CombinedOutput()
	t.Logf("helper in %s:\n%s", agentNS, out)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestInNamespace") {
		t.Fatal("the helper did not run TestInNamespace")
	}
}

// neighMAC returns the MAC the client caches for addr ("" if none).
func neighMAC(t *testing.T, clientNS, addr string) string {
	f := strings.Fields(ip(t, "-n", clientNS, "neigh", "show", addr, "dev", "plvc0"))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// waitNeigh waits (generously) until the client caches addr → mac.
func waitNeigh(t *testing.T, clientNS, addr, mac, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := neighMAC(t, clientNS, addr)
		if got == mac {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: client caches %s at %q, want %s\n%s", why, addr, got, mac, ip(t, "-n", clientNS, "neigh"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const bogusMAC = "02:00:00:00:00:99"

func TestInNamespace(t *testing.T) {
	if os.Getenv(envInNS) == "" {
		t.Skip("runs in a network namespace, started by TestNamespace")
	}
	defer goleak.VerifyNone(t)
	clientNS := os.Getenv(envClient)
	ifc, err := net.InterfaceByName("plva0")
	if err != nil {
		t.Fatal(err)
	}
	mac := ifc.HardwareAddr.String()
	a := New(Options{})
	defer a.Close()
	ctx := context.Background()
	run := func(action agents.Action, params map[string]string) agents.Result {
		return a.Run(ctx, action, agents.Instance{Name: "v", Params: params}, 5*time.Second)
	}
	has := func(addr string) bool {
		out, _ := exec.Command("ip", "addr", "show", "dev", "plva0").CombinedOutput()
		return strings.Contains(string(out), " "+addr+" ")
	}

	// A missing interface, and one that is down.
	if r := run(agents.Start, map[string]string{"address": "10.77.0.100/24", "interface": "plnope0"}); r.Code != agents.OCFErrConfigured || !strings.Contains(r.Reason, "does not exist") {
		t.Errorf("start on a missing interface: %+v", r)
	}
	if r := run(agents.Start, map[string]string{"address": "10.77.0.100/24", "interface": "plvdown"}); r.Code != agents.OCFErrGeneric || !strings.Contains(r.Reason, "is down") {
		t.Errorf("start on a down interface: %+v", r)
	}

	// IPv4: the client holds a stale entry pointing elsewhere and sends
	// nothing; the gratuitous ARP alone moves it.
	v4 := map[string]string{"address": "10.77.0.100/24", "interface": "plva0", "label": "plva0:vip"}
	ip(t, "-n", clientNS, "neigh", "replace", "10.77.0.100", "lladdr", bogusMAC, "dev", "plvc0", "nud", "stale")
	if r := run(agents.Monitor, v4); r.Code != agents.OCFNotRunning {
		t.Errorf("monitor before start: %+v", r)
	}
	r := run(agents.Start, v4)
	if r.Code != agents.OCFSuccess {
		t.Fatalf("start: %+v", r)
	}
	t.Logf("start took %s", r.Duration)
	if !has("10.77.0.100/24") {
		t.Errorf("10.77.0.100/24 is not on plva0:\n%s", ip(t, "addr"))
	}
	if out := ip(t, "-4", "addr", "show", "dev", "plva0"); !strings.Contains(out, "plva0:vip") {
		t.Errorf("no label:\n%s", out)
	}
	waitNeigh(t, clientNS, "10.77.0.100", mac, "after start")
	if r := run(agents.Start, v4); r.Code != agents.OCFSuccess {
		t.Errorf("second start: %+v", r)
	}
	if r := run(agents.Monitor, v4); r.Code != agents.OCFSuccess {
		t.Errorf("monitor: %+v", r)
	}
	r = run(agents.Stop, v4)
	if r.Code != agents.OCFSuccess {
		t.Errorf("stop: %+v", r)
	}
	t.Logf("stop took %s", r.Duration)
	if has("10.77.0.100/24") {
		t.Error("10.77.0.100 still on plva0 after stop")
	}
	if r := run(agents.Monitor, v4); r.Code != agents.OCFNotRunning {
		t.Errorf("monitor after stop: %+v", r)
	}
	if r := run(agents.Stop, v4); r.Code != agents.OCFSuccess {
		t.Errorf("second stop: %+v", r)
	}

	// The guard removes the address when the agent dies: its pipe closes.
	if r := run(agents.Start, v4); r.Code != agents.OCFSuccess {
		t.Fatalf("start: %+v", r)
	}
	a.mu.Lock()
	gd := a.guarded["v"]
	a.mu.Unlock()
	if gd == nil {
		t.Fatal("no guard for a held address")
	}
	gd.g.Fire()
	if has("10.77.0.100/24") {
		t.Error("the guard did not remove 10.77.0.100 when its pipe closed")
	}
	if r := run(agents.Monitor, v4); r.Code != agents.OCFNotRunning {
		t.Errorf("monitor after the guard fired: %+v", r)
	}

	// A start cancelled during its probe (a self-fence) ends at once; a
	// stop that comes while a start runs waits for it, so the address is
	// gone after both.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	r = a.Run(cctx, agents.Start, agents.Instance{Name: "v", Params: v4}, 5*time.Second)
	cancel()
	if r.Status == agents.StatusSuccess || r.Duration > time.Second {
		t.Errorf("start cancelled during the probe: %+v", r)
	}
	t.Logf("cancelled start returned after %s: %s", r.Duration, r.Reason)
	started := make(chan agents.Result, 1)
	go func() { started <- run(agents.Start, v4) }()
	time.Sleep(20 * time.Millisecond)
	if r := run(agents.Stop, v4); r.Code != agents.OCFSuccess {
		t.Errorf("stop during a start: %+v", r)
	}
	if r := <-started; r.Code != agents.OCFSuccess {
		t.Errorf("start with a stop behind it: %+v", r)
	}
	if has("10.77.0.100/24") {
		t.Error("10.77.0.100 on plva0 after a stop that followed a start")
	}

	// Refresh: the entry is put back by the periodic re-announcement.
	refresh := map[string]string{"address": "10.77.0.101/24", "interface": "plva0", "garpCount": "1", "refresh": "1s"}
	if r := run(agents.Start, refresh); r.Code != agents.OCFSuccess {
		t.Fatalf("start with refresh: %+v", r)
	}
	time.Sleep(100 * time.Millisecond)
	ip(t, "-n", clientNS, "neigh", "replace", "10.77.0.101", "lladdr", bogusMAC, "dev", "plvc0", "nud", "stale")
	waitNeigh(t, clientNS, "10.77.0.101", mac, "after a refresh")
	if r := run(agents.Stop, refresh); r.Code != agents.OCFSuccess {
		t.Errorf("stop: %+v", r)
	}

	// Another host already answers for the address: refused, naming it.
	ip(t, "-n", clientNS, "addr", "add", "10.77.0.200/24", "dev", "plvc0")
	cmac := ""
	if f := strings.Fields(ip(t, "-n", clientNS, "-o", "link", "show", "plvc0")); len(f) > 0 {
		for i := range f {
			if f[i] == "link/ether" && i+1 < len(f) {
				cmac = f[i+1]
			}
		}
	}
	taken := map[string]string{"address": "10.77.0.200/24", "interface": "plva0"}
	r = run(agents.Start, taken)
	if r.Code != agents.OCFErrGeneric || r.Status != agents.StatusSoftError || !strings.Contains(r.Reason, "already in use") || cmac == "" || !strings.Contains(r.Reason, cmac) {
		t.Errorf("start of an address another host holds (%s): %+v", cmac, r)
	}
	t.Logf("refused: %s (after %s)", r.Reason, r.Duration)
	if has("10.77.0.200/24") {
		t.Error("10.77.0.200 was added although another host answers for it")
	}
	// probeCount 0 skips the probe: the address is taken (the operator
	// chose to trust the hold lease alone).
	noProbe := map[string]string{"address": "10.77.0.200/24", "interface": "plva0", "probeCount": "0"}
	if r := run(agents.Start, noProbe); r.Code != agents.OCFSuccess || !has("10.77.0.200/24") {
		t.Errorf("start with probeCount 0: %+v", r)
	}
	if r := run(agents.Stop, noProbe); r.Code != agents.OCFSuccess {
		t.Errorf("stop: %+v", r)
	}

	// IPv6: no DAD, an unsolicited NA with Override moves the entry.
	v6 := map[string]string{"address": "fd00:77::100/64", "interface": "plva0"}
	ip(t, "-n", clientNS, "-6", "neigh", "replace", "fd00:77::100", "lladdr", bogusMAC, "dev", "plvc0", "nud", "stale")
	if r := run(agents.Start, v6); r.Code != agents.OCFSuccess {
		t.Fatalf("start v6: %+v", r)
	}
	if out := ip(t, "-6", "-o", "addr", "show", "dev", "plva0", "to", "fd00:77::100/128"); !strings.Contains(out, "fd00:77::100/64") || strings.Contains(out, "tentative") {
		t.Errorf("v6 address missing or tentative:\n%s", out)
	}
	waitNeigh(t, clientNS, "fd00:77::100", mac, "after an IPv6 start")
	if r := run(agents.Monitor, v6); r.Code != agents.OCFSuccess {
		t.Errorf("monitor v6: %+v", r)
	}
	if r := run(agents.Stop, v6); r.Code != agents.OCFSuccess {
		t.Errorf("stop v6: %+v", r)
	}
	if r := run(agents.Monitor, v6); r.Code != agents.OCFNotRunning {
		t.Errorf("monitor v6 after stop: %+v", r)
	}
}
