package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	echoPort = 7000
	udpPort  = 7001
	// negTimeout bounds a connection attempt that is expected to fail.
	negTimeout = "700ms"
	// waitTimeout bounds waiting for a condition that must become true.
	waitTimeout = 20 * time.Second
)

func needRoot(t *testing.T) {
	t.Helper()
	if err := Root(); err != nil {
		t.Skipf("skipping network-namespace lab test: %v", err)
	}
}

// uniqueName returns a lab name no other test (or test binary) uses.
func uniqueName(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "plt" + string(b)
}

func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newLab brings up a lab that is destroyed (and checked to be gone) when the
// test ends, whatever happens.
func newLab(t *testing.T, hosts int, cgroup string) *Lab {
	t.Helper()
	needRoot(t)
	name := uniqueName(t)
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() {
		if err := Destroy(name, dir); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		assertGone(t, name, dir)
	})
	l, err := Up(context.Background(), Options{Name: name, Hosts: hosts, StateDir: dir, Cgroup: cgroup})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { // runs before Destroy: keep the evidence of failures
		if !t.Failed() {
			return
		}
		if s, err := l.Status(); err == nil {
			t.Logf("status:\n%s", s)
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
		for _, p := range logs {
			b, _ := os.ReadFile(p)
			t.Logf("%s:\n%s", p, b)
		}
	})
	return l
}

// assertGone fails unless nothing of lab name is left.
func assertGone(t *testing.T, name, stateDir string) {
	t.Helper()
	if ns := labNetns(name); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	for _, kind := range []string{"v1", "v2"} {
		if base, err := cgroupBase(kind); err == nil {
			if _, err := os.Stat(filepath.Join(base, name)); err == nil {
				t.Errorf("cgroup left: %s", filepath.Join(base, name))
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err != nil {
		t.Errorf("ip link: %v", err)
	} else if strings.Contains(string(out), name) {
		t.Errorf("links of %s left in the root namespace:\n%s", name, out)
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err != nil {
		t.Errorf("nft list tables: %v", err)
	} else if strings.Contains(string(out), name) {
		t.Errorf("nft tables of %s left:\n%s", name, out)
	}
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("state dir %s left", stateDir)
	}
}

func hosts(t *testing.T, l *Lab, names ...string) []*Host {
	t.Helper()
	var hs []*Host
	for _, n := range names {
		h, err := l.Host(n)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	return hs
}

func startEcho(t *testing.T, l *Lab, h *Host) int {
	t.Helper()
	pid, err := l.Start(h, "echo", []string{self(t), "pl-helper", "echo", fmt.Sprintf("%s:%d", h.Addr, echoPort)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// dial makes one echo round trip from one host to another's echo server.
func dial(l *Lab, from, to *Host, timeout string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := l.Exec(ctx, from, self0, "pl-helper", "dial", fmt.Sprintf("%s:%d", to.Addr, echoPort), timeout)
	return err
}

var self0, _ = os.Executable()

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, waitTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reachable(t *testing.T, l *Lab, from, to *Host) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s -> %s", from.Name, to.Name), func() error { return dial(l, from, to, "2s") })
}

func unreachable(t *testing.T, l *Lab, from, to *Host) {
	t.Helper()
	if err := dial(l, from, to, negTimeout); err == nil {
		t.Errorf("%s -> %s: reachable, want cut", from.Name, to.Name)
	}
}

func TestUpConnectivityOpenDown(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, "")
	hs := l.Hosts()
	if len(hs) != 3 {
		t.Fatalf("Hosts() = %d hosts, want 3", len(hs))
	}
	for _, h := range hs {
		startEcho(t, l, h)
	}
	for _, a := range hs {
		for _, b := range hs {
			if a != b {
				reachable(t, l, a, b)
			}
		}
	}
	if _, err := exec.LookPath("ping"); err == nil {
		if out, err := l.Exec(context.Background(), hs[0], "ping", "-c", "1", "-W", "5", hs[2].Addr.String()); err != nil {
			t.Errorf("ping h1 -> h3: %v\n%s", err, out)
		}
	}

	// A second handle, as the CLI would open it, sees the same lab.
	l2, err := Open(l.Name(), l.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range l2.Hosts() {
		if h.Name != hs[i].Name || h.Addr != hs[i].Addr || h.NS != hs[i].NS {
			t.Errorf("Open: host %d = %+v, want %+v", i, h, hs[i])
		}
	}
	s, err := l2.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if len(h.Procs) != 1 || h.Procs[0].State != "running" || !h.LinkUp {
			t.Errorf("status of %s: %+v", h.Name, h)
		}
	}
	if _, err := l2.Host("h9"); err == nil || !strings.Contains(err.Error(), "h1, h2, h3") {
		t.Errorf("Host(h9) error = %v, want it to list the hosts", err)
	}

	// Up refuses to overwrite an existing lab.
	if _, err := Up(context.Background(), Options{Name: l.Name(), Hosts: 1, StateDir: l.StateDir()}); err == nil ||
		!strings.Contains(err.Error(), "down") {
		t.Errorf("second Up: err = %v, want 'run down first'", err)
	}

	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l.Name(), l.StateDir())
	if err := l2.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if _, err := Open(l.Name(), l.StateDir()); err == nil {
		t.Error("Open after Down succeeded")
	}
}

func cgroupKinds(t *testing.T) []string {
	var kinds []string
	for _, k := range []string{"v1", "v2"} {
		if _, err := cgroupBase(k); err == nil {
			kinds = append(kinds, k)
		} else {
			t.Logf("cgroup %s not available: %v", k, err)
		}
	}
	return kinds
}

func TestKillPowerOn(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, kind := range cgroupKinds(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 2, kind)
			h1, h2 := hosts(t, l, "h1")[0], hosts(t, l, "h2")[0]
			pidFile := filepath.Join(t.TempDir(), "child.pid")
			pid, err := l.Start(h1, "spawn", []string{self(t), "pl-helper", "spawn", fmt.Sprintf("%s:%d", h1.Addr, echoPort), pidFile}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var child int
			eventually(t, "child pid file", func() error {
				b, err := os.ReadFile(pidFile)
				if err == nil {
					child, err = strconv.Atoi(string(b))
				}
				return err
			})
			reachable(t, l, h2, h1)
			if !procAlive(pid) || !procAlive(child) {
				t.Fatalf("pid %d alive %v, child %d alive %v", pid, procAlive(pid), child, procAlive(child))
			}
			pids, err := l.PIDs(h1)
			if err != nil || len(pids) != 2 {
				t.Fatalf("PIDs(h1) = %v, %v; want parent and child", pids, err)
			}

			if err := l.Kill(h1); err != nil {
				t.Fatal(err)
			}
			if procAlive(pid) || procAlive(child) {
				t.Errorf("after Kill: pid %d alive %v, child %d alive %v", pid, procAlive(pid), child, procAlive(child))
			}
			if pids, _ := l.PIDs(h1); len(pids) != 0 {
				t.Errorf("after Kill: PIDs(h1) = %v", pids)
			}
			unreachable(t, l, h2, h1)
			s, err := l.Status()
			if err != nil {
				t.Fatal(err)
			}
			if hs := s.Hosts[0]; !hs.PoweredOff || hs.LinkUp || hs.Procs[0].State != "dead" {
				t.Errorf("status after Kill: %+v", hs)
			}

			if err := os.Remove(pidFile); err != nil {
				t.Fatal(err)
			}
			if err := l.PowerOn(h1); err != nil {
				t.Fatal(err)
			}
			reachable(t, l, h2, h1)
			s, err = l.Status()
			if err != nil {
				t.Fatal(err)
			}
			if p := s.Hosts[0].Procs[0]; p.State != "running" || p.PID == pid {
				t.Errorf("after PowerOn: %+v, want running with a new pid (old %d)", p, pid)
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, kind := range cgroupKinds(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 2, kind)
			h1, h2 := hosts(t, l, "h1")[0], hosts(t, l, "h2")[0]
			pid := startEcho(t, l, h1)
			reachable(t, l, h2, h1)

			if err := l.Pause(h1); err != nil {
				t.Fatal(err)
			}
			if p, err := l.Paused(h1); err != nil || !p {
				t.Errorf("Paused(h1) = %v, %v", p, err)
			}
			if st, _, err := procStat(pid); err != nil || st == 'R' {
				t.Errorf("frozen process state %q, %v", st, err)
			}
			unreachable(t, l, h2, h1)
			s, err := l.Status()
			if err != nil {
				t.Fatal(err)
			}
			if p := s.Hosts[0].Procs[0]; p.State != "paused" {
				t.Errorf("status while paused: %+v", p)
			}
			// Start refuses to put a process into a frozen host.
			if _, err := l.Start(h1, "other", []string{"sleep", "100"}, nil); err == nil {
				t.Error("Start on a paused host succeeded")
			}

			if err := l.Resume(h1); err != nil {
				t.Fatal(err)
			}
			reachable(t, l, h2, h1)
			if !procAlive(pid) {
				t.Error("process died across pause/resume")
			}
		})
	}
}

func udpSend(t *testing.T, l *Lab, from, to *Host, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := l.Exec(ctx, from, self(t), "pl-helper", "udpsend", fmt.Sprintf("%s:%d", to.Addr, udpPort), msg); err != nil {
		t.Fatalf("udpsend: %v\n%s", err, out)
	}
}

func logHas(l *Lab, h *Host, name, s string) error {
	b, err := os.ReadFile(l.LogPath(h, name))
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(s)) {
		return fmt.Errorf("%s's %s log lacks %q", h.Name, name, s)
	}
	return nil
}

func TestPartitionHealIsolate(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, "")
	hs := hosts(t, l, "h1", "h2", "h3")
	h1, h2, h3 := hs[0], hs[1], hs[2]
	for _, h := range hs {
		startEcho(t, l, h)
	}
	reachable(t, l, h1, h2)

	// Symmetric: h1 | h2,h3.
	if err := l.Partition([]*Host{h1}, []*Host{h2, h3}); err != nil {
		t.Fatal(err)
	}
	unreachable(t, l, h1, h2)
	unreachable(t, l, h2, h1)
	unreachable(t, l, h3, h1)
	reachable(t, l, h2, h3)
	reachable(t, l, h3, h2)
	s, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.Partition); got != "[[h1] [h2 h3]]" {
		t.Errorf("status partition = %s", got)
	}
	// Unnamed hosts form their own group.
	if err := l.Partition([]*Host{h1}); err != nil {
		t.Fatal(err)
	}
	unreachable(t, l, h1, h3)
	reachable(t, l, h2, h3)
	if err := l.Partition([]*Host{h1}, []*Host{h1}); err == nil {
		t.Error("Partition accepted a host in two groups")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, a := range hs {
		for _, b := range hs {
			if a != b {
				reachable(t, l, a, b)
			}
		}
	}

	// One-way: h1 -> h2 dropped, h2 -> h1 passes. UDP shows the direction.
	for _, h := range []*Host{h1, h2} {
		if _, err := l.Start(h, "udp", []string{self(t), "pl-helper", "udpsink", fmt.Sprintf("%s:%d", h.Addr, udpPort)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "udp sinks up", func() error {
		udpSend(t, l, h3, h1, "warmup")
		udpSend(t, l, h3, h2, "warmup")
		return errorsJoin(logHas(l, h1, "udp", "warmup"), logHas(l, h2, "udp", "warmup"))
	})
	if err := l.PartitionOneWay([]*Host{h1}, []*Host{h2}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		udpSend(t, l, h1, h2, fmt.Sprintf("blocked-%d", i))
	}
	eventually(t, "h2 -> h1 passes", func() error {
		udpSend(t, l, h2, h1, "reverse")
		return logHas(l, h1, "udp", "reverse")
	})
	// A later datagram from h3 arriving at h2 shows h1's would have arrived too.
	eventually(t, "h3 -> h2 passes", func() error {
		udpSend(t, l, h3, h2, "control")
		return logHas(l, h2, "udp", "control")
	})
	if err := logHas(l, h2, "udp", "blocked-"); err == nil {
		t.Error("h1 -> h2 datagram passed a one-way cut")
	}
	unreachable(t, l, h1, h2)
	reachable(t, l, h1, h3)
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	reachable(t, l, h1, h2)

	// Isolate h3.
	if err := l.Isolate(h3); err != nil {
		t.Fatal(err)
	}
	unreachable(t, l, h1, h3)
	unreachable(t, l, h3, h2)
	reachable(t, l, h1, h2)
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	reachable(t, l, h1, h3)
	reachable(t, l, h3, h2)
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestDownHalfCreated(t *testing.T) {
	t.Parallel()
	needRoot(t)
	name := uniqueName(t)
	dir := filepath.Join(t.TempDir(), "state")
	_, base, err := findCgroup("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = Destroy(name, dir)
		assertGone(t, name, dir)
	})
	// Remnants of a crashed Up: a namespace and a cgroup, no state file.
	if out, err := exec.Command("ip", "netns", "add", name+"-br").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(base, name, "h1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Up(context.Background(), Options{Name: name, Hosts: 1, StateDir: dir}); err == nil ||
		!strings.Contains(err.Error(), "down") {
		t.Fatalf("Up over remnants: err = %v, want 'run down first'", err)
	}
	if _, err := Open(name, dir); err == nil {
		t.Error("Open without state file succeeded")
	}
	if err := Destroy(name, dir); err != nil {
		t.Fatal(err)
	}
	assertGone(t, name, dir)
	if err := Destroy(name, dir); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Name: "lab1", Hosts: 1},                                     // no pl prefix
		{Name: "plwaytoolongname", Hosts: 1},                         // interface names would overflow
		{Name: "pl1", Hosts: 0},                                      // no hosts
		{Name: "pl1", Hosts: 2, Subnet: "10.0.0.0/28"},               // too small
		{Name: "pl1", Hosts: 2, Subnet: "fd00::/64"},                 // not IPv4
		{Name: "pl1", Hosts: 2, Subnet: "10.0.0.0/24", Cgroup: "v3"}, // bad cgroup kind
	} {
		if _, err := Up(context.Background(), o); err == nil {
			t.Errorf("Up(%+v) succeeded", o)
		}
	}
}
