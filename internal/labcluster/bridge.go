package labcluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/witness"
)

// BridgeAddr is the address of the lab's bridge (.1 of its subnet), which
// every host reaches even under a partition: partitions cut host-to-host
// forwarding, not traffic to the bridge itself. A Kill or Isolate cuts a
// host off the bridge too.
func BridgeAddr(l *lab.Lab) netip.Addr { return l.Subnet().Addr().Next() }

// InBridge runs fn on an OS thread that is inside the lab's bridge network
// namespace (NAME-br) and restores the thread afterwards. Sockets fn
// creates stay in that namespace after InBridge returns, so a listener
// opened in fn accepts connections from the lab's hosts while being served
// by ordinary goroutines of this process. fn must not start goroutines that
// expect to run in the bridge namespace.
func InBridge(l *lab.Lab, fn func() error) error {
	if err := InNetns(l.Name()+"-br", fn); err != nil {
		return fmt.Errorf("lab %s: %w", l.Name(), err)
	}
	return nil
}

// InNetns runs fn on an OS thread inside the network namespace ns (a name
// under /run/netns, e.g. a lab host's Host.NS) and restores the thread;
// sockets fn creates stay in ns (see InBridge). It is lab.InNetns.
func InNetns(ns string, fn func() error) error { return lab.InNetns(ns, fn) }

// ListenInBridge opens a TCP listener on the bridge address and port (0:
// any) inside the lab's bridge namespace.
func ListenInBridge(l *lab.Lab, port int) (net.Listener, error) {
	var ln net.Listener
	err := InBridge(l, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(BridgeAddr(l).String(), strconv.Itoa(port)))
		return err
	})
	return ln, err
}

// Witness starts a witness server on the bridge address and port (0: any)
// inside the lab's bridge namespace; hosts write to its Addr().
func Witness(l *lab.Lab, port int) (*witness.Server, error) {
	var w *witness.Server
	err := InBridge(l, func() error {
		var err error
		w, err = witness.Listen(net.JoinHostPort(BridgeAddr(l).String(), strconv.Itoa(port)))
		return err
	})
	return w, err
}

// AgentPID returns the PID of h's agent as recorded by the lab, or 0 when
// it is not running.
func AgentPID(l *lab.Lab, h *lab.Host) (int, error) {
	st, err := l.Status()
	if err != nil {
		return 0, err
	}
	for _, hs := range st.Hosts {
		if hs.Name != h.Name {
			continue
		}
		for _, p := range hs.Procs {
			if p.Name == "agent" && p.State == "running" {
				return p.PID, nil
			}
		}
	}
	return 0, nil
}

// Kill is lab.Kill (which also drops the dead processes' sockets and
// queued packets, see lab.Kill) plus a check that nothing of the host
// survives: it fails if any process or TCP socket remains in h's network
// namespace, since a survivor could deliver "ghost" writes to a witness
// after PowerOn.
func Kill(l *lab.Lab, h *lab.Host) error {
	if err := l.Kill(h); err != nil {
		return err
	}
	if left := procsInNetns(h.NS); len(left) > 0 {
		return fmt.Errorf("kill %s: processes outside its cgroup survive in its network namespace: %s", h.Name, strings.Join(left, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, h, "ss", "-t", "-a", "-n", "-H")
	if err != nil {
		return fmt.Errorf("kill %s: list sockets: %w", h.Name, err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return fmt.Errorf("kill %s: TCP sockets survive the power loss (kernel without INET_DIAG_DESTROY?):\n%s", h.Name, s)
	}
	return nil
}

// procsInNetns lists "PID cmdline" of every process in network namespace ns.
func procsInNetns(ns string) []string {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var got unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got) != nil || got.Ino != want.Ino || got.Dev != want.Dev {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " ")))
	}
	return out
}
