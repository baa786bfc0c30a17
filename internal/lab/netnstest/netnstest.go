// Package netnstest gives a test a network namespace of its own with a
// veth pair inside it, for running real agents (IPaddr2) against real
// interfaces without touching the host's. It skips the test when not root
// or when namespaces cannot be made, and removes the namespace at cleanup.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// NS is a namespace with interfaces NAME+"a" and NAME+"b" (a veth pair,
// both up) and lo up.
type NS struct {
	t    testing.TB
	Name string
	// A is the interface to put addresses on ("<prefix>a").
	A string
}

// New makes namespace prefix+PID (prefix should start with "pl").
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not found: apt-get install iproute2")
	}
	n := &NS{t: t, Name: fmt.Sprintf("%s%d", prefix, os.Getpid()), A: prefix[:min(len(prefix), 6)] + "a"}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", n.Name, err, out)
		}
	})
	b := prefix[:min(len(prefix), 6)] + "b"
	n.IP("-n", n.Name, "link", "add", n.A, "type", "veth", "peer", "name", b)
	n.IP("-n", n.Name, "link", "set", n.A, "up")
	n.IP("-n", n.Name, "link", "set", b, "up")
	n.IP("-n", n.Name, "link", "set", "lo", "up")
	return n
}

// IP runs the ip command and returns its output; it fails the test on error.
func (n *NS) IP(args ...string) string {
	n.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec is the command prefix that runs a program inside the namespace.
func (n *NS) Exec() []string { return []string{"ip", "netns", "exec", n.Name} }

// HasAddr reports whether interface A carries addr (e.g. "10.0.0.1/24").
func (n *NS) HasAddr(addr string) bool {
	return strings.Contains(n.IP("-n", n.Name, "-4", "addr", "show", "dev", n.A), " "+addr+" ")
}
