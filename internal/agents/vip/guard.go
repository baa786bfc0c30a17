package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
)

// A guard removes a held address when the agent dies without stopping it
// (a crash, SIGKILL — not a power loss, which takes the address with it).
// An address is kernel state and outlives the agent; left behind, the
// kernel keeps answering ARP for it, and the next holder's ARP probe
// refuses the address everywhere (docs/vip.md, "Limits").
//
// The guard is a shell waiting on a pipe whose only write end the agent
// holds: when the agent dies, however it dies, the kernel closes that end,
// the read returns and the shell runs `ip addr del`. No signal is
// involved, so it works after SIGKILL. A stop (or a new start of the
// instance) kills the guard first and removes the address itself.
type guard struct {
	cmd  *exec.Cmd
	w    *os.File
	done chan struct{}
}

// guardShell is the guard: $0 is the ip binary, $1 the address, $2 the
// interface.
const guardShell = `read x; exec "$0" addr del "$1" dev "$2"`

// startGuard starts the guard of pfx on ifname. It fails when sh or ip
// cannot be found; the caller goes on without one.
func startGuard(ifname string, pfx netip.Prefix) (*guard, error) {
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("no guard for %s: %w (install iproute2)", pfx, err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, fmt.Errorf("no guard for %s: %w", pfx, err)
	}
	r, w, err := os.Pipe() // O_CLOEXEC: no other child inherits the write end
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:  sh,
		Args:  []string{"sh", "-c", guardShell, ipPath, pfx.String(), ifname},
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Dir:   "/",
		Stdin: r,
		// Its own group: a Ctrl-C or a signal to the agent's group does
		// not end it before the agent.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("no guard for %s: %w", pfx, err)
	}
	r.Close()
	g := &guard{cmd: cmd, w: w, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

// disarm ends the guard without letting it remove the address.
func (g *guard) disarm() {
	if err := g.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = err // already gone: nothing to do
	}
	<-g.done
	g.w.Close()
}

// fire makes the guard remove the address (what the agent's death does)
// and waits until it did. Tests only.
func (g *guard) fire() {
	g.w.Close()
	<-g.done
}
