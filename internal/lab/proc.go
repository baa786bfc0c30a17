package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

var procNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// startShim runs as "/bin/sh -c startShim pl-start PROCSFILE NETNS ARGV...":
// it moves itself into the host's cgroup before anything else can run, then
// enters the namespace and becomes ARGV, keeping its PID.
const startShim = `echo $$ > "$1" || exit 126; ns=$2; shift 2; exec ip netns exec "$ns" "$@"`

// Start starts a long-running process in h's network namespace and cgroup,
// in a new session (it outlives the calling process). stdout and stderr are
// appended to LogPath(h, name). The environment is PATH, PACELINE_LAB,
// PACELINE_LAB_HOST and PACELINE_LAB_ADDR, followed by env (later entries
// win); the working directory is StateDir/<host>. The process is recorded under name in the state file so that
// PowerOn, also from another process, can start it again with the same argv
// and env. Starting a name that is recorded but not running replaces it.
func (l *Lab) Start(h *Host, name string, argv []string, env []string) (pid int, err error) {
	if !procNameRE.MatchString(name) {
		return 0, fmt.Errorf("lab %s: process name %q invalid: want %s", l.name, name, procNameRE)
	}
	if len(argv) == 0 {
		return 0, fmt.Errorf("lab %s: start %s: empty argv", l.name, name)
	}
	argv = slices.Clone(argv)
	if strings.Contains(argv[0], "/") {
		// The process runs in its host's state directory, so a relative
		// path would not resolve there (nor from another caller's cwd).
		abs, err := filepath.Abs(argv[0])
		if err != nil {
			return 0, fmt.Errorf("lab %s: start %s: %w", l.name, name, err)
		}
		argv[0] = abs
	}
	err = l.update(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		if hs.PoweredOff {
			return fmt.Errorf("host %s is powered off (killed): run poweron first", hs.Name)
		}
		for i, p := range hs.Procs {
			if p.Name != name {
				continue
			}
			if procRunning(p.PID, p.Start) {
				return fmt.Errorf("process %s already running on %s as pid %d", name, hs.Name, p.PID)
			}
			hs.Procs = append(hs.Procs[:i], hs.Procs[i+1:]...)
			break
		}
		p, err := l.spawn(st, hs, procState{Name: name, Argv: argv, Env: env})
		if err != nil {
			return err
		}
		hs.Procs = append(hs.Procs, p)
		pid = p.PID
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("lab %s: start %s on %s: %w", l.name, name, h.Name, err)
	}
	return pid, nil
}

// spawn starts p on hs; callers hold l.mu (through update).
func (l *Lab) spawn(st *state, hs *hostState, p procState) (procState, error) {
	if frozen, err := cgroupOpsFor(st.CgroupKind).frozen(hs.Cgroup); err != nil {
		return p, fmt.Errorf("cgroup of %s: %w", hs.Name, err)
	} else if frozen {
		return p, fmt.Errorf("host %s is paused: resume it first", hs.Name)
	}
	if _, err := exec.LookPath(p.Argv[0]); err != nil {
		return p, err
	}
	dir := filepath.Join(l.stateDir, hs.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return p, err
	}
	logPath := filepath.Join(dir, p.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return p, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== paceline lab: %s start %q\n", time.Now().Format(time.RFC3339Nano), p.Argv)

	args := append([]string{"-c", startShim, "pl-start", filepath.Join(hs.Cgroup, "cgroup.procs"), hs.NS}, p.Argv...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PACELINE_LAB=" + st.Name,
		"PACELINE_LAB_HOST=" + hs.Name,
		"PACELINE_LAB_ADDR=" + hs.Addr,
	}, p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return p, err
	}
	p.PID = cmd.Process.Pid
	done := make(chan struct{})
	l.waiters[p.PID] = done
	go func() {
		_ = cmd.Wait() // reap; the exit status is in the log if anywhere
		close(done)
	}()
	_, p.Start, err = procStat(p.PID)
	if err == nil {
		err = waitInNetns(p.PID, hs.NS, done)
	}
	if err != nil {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		return p, fmt.Errorf("%w (log %s: %s)", err, logPath, tail(logPath, 400))
	}
	l.log.Info("lab process started", "lab", st.Name, "host", hs.Name, "name", p.Name, "pid", p.PID)
	return p, nil
}

// waitInNetns waits until pid runs in network namespace ns (which the shim
// enters only after joining the cgroup).
func waitInNetns(pid int, ns string, exited <-chan struct{}) error {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, ns), &want); err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got); err == nil &&
			got.Ino == want.Ino && got.Dev == want.Dev && procAlive(pid) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("process %d exited before entering netns %s", pid, ns)
		default:
		}
		if !procAlive(pid) {
			return fmt.Errorf("process %d exited before entering netns %s", pid, ns)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not enter netns %s", pid, ns)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Exec runs argv to completion inside h's network namespace (not in its
// cgroup, so it works while h is paused) and returns its combined stdout
// and stderr.
func (l *Lab) Exec(ctx context.Context, h *Host, argv ...string) ([]byte, error) {
	if h == nil || len(argv) == 0 {
		return nil, fmt.Errorf("lab %s: exec: need a host and a command", l.name)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("lab %s: exec on %s %q: %w: %s", l.name, h.Name, argv, err, tailBytes(out, 400))
	}
	return out, nil
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Kill crashes h like a power loss: it cuts h's link first (so that the
// kernel's FIN/RST for the dying sockets never leave the host), then
// freezes h's cgroup, SIGKILLs every process in it, thaws it and waits until
// none of them runs any more; the host loses its sockets, neighbour entries
// and every address but its lab address, as after a real power loss.
// PowerOn reverses it.
func (l *Lab) Kill(h *Host) error {
	err := l.update(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		if err := setLink(st, hs, false); err != nil {
			return err
		}
		hs.PoweredOff = true
		return cgroupOpsFor(st.CgroupKind).killAll(hs.Cgroup)
	})
	if err != nil {
		return fmt.Errorf("lab %s: kill %s: %w", l.name, h.Name, err)
	}
	if err := l.dropInFlight(h); err != nil {
		return fmt.Errorf("lab %s: kill %s: %w", l.name, h.Name, err)
	}
	l.log.Info("lab host killed", "lab", l.name, "host", h.Name)
	return nil
}

// dropInFlight makes a killed host's network state die with its processes,
// as on a real power loss: the dead processes' TCP sockets linger in the
// namespace (the kernel would still retransmit their data) and a last write
// may sit queued behind an ARP request, to be delivered after PowerOn.
// Destroy the sockets (ss -K) and reset the interface, which drops every
// neighbour entry with its queue, and remove every address but the host's
// own (a vip added by a resource would otherwise answer again after
// PowerOn, which a real power loss does not allow); the interface stays
// without carrier until PowerOn.
func (l *Lab) dropInFlight(h *Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Sockets of processes still finishing their exit appear a moment
	// later: destroy until none is left (bounded).
	for i := 0; ; i++ {
		if out, err := l.Exec(ctx, h, "ss", "-K", "-t", "-a", "-n"); err != nil {
			return fmt.Errorf("destroy orphaned sockets: %w: %s", err, out)
		}
		out, err := l.Exec(ctx, h, "ss", "-t", "-a", "-n", "-H")
		if err != nil {
			return fmt.Errorf("list sockets: %w", err)
		}
		if strings.TrimSpace(string(out)) == "" {
			break
		}
		if i >= 50 {
			return fmt.Errorf("TCP sockets survive the power loss (kernel without INET_DIAG_DESTROY?):\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A power loss also forgets the kernel's network configuration: the
	// addresses resources added (a vip) must not answer again after
	// PowerOn. Keep only the host's lab address.
	bits := l.Subnet().Bits()
	for _, c := range [][]string{
		{"ip", "link", "set", h.Iface, "down"},
		{"ip", "-4", "addr", "flush", "dev", h.Iface},
		{"ip", "-6", "addr", "flush", "dev", h.Iface, "scope", "global"},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", h.Addr, bits), "dev", h.Iface},
		{"ip", "link", "set", h.Iface, "up"},
	} {
		if out, err := l.Exec(ctx, h, c...); err != nil {
			return fmt.Errorf("reset %s: %w: %s", h.Iface, err, out)
		}
	}
	return nil
}

// PowerOn brings h back after Kill: it thaws h's cgroup if paused, brings
// its link up (unless h is isolated; Heal does that) and starts again every
// recorded process that is not running, with the same argv and env.
func (l *Lab) PowerOn(h *Host) error {
	err := l.update(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		cg := cgroupOpsFor(st.CgroupKind)
		if frozen, _ := cg.frozen(hs.Cgroup); frozen {
			if err := cg.thaw(hs.Cgroup); err != nil {
				return err
			}
		}
		if !hs.Isolated {
			if err := setLink(st, hs, true); err != nil {
				return err
			}
		}
		hs.PoweredOff = false
		var errs []error
		for i := range hs.Procs {
			p := &hs.Procs[i]
			if procRunning(p.PID, p.Start) {
				continue
			}
			np, err := l.spawn(st, hs, *p)
			if err != nil {
				errs = append(errs, fmt.Errorf("restart %s: %w", p.Name, err))
				continue
			}
			*p = np
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("lab %s: poweron %s: %w", l.name, h.Name, err)
	}
	l.log.Info("lab host powered on", "lab", l.name, "host", h.Name)
	return nil
}

// Pause freezes every process of h (SIGSTOP-like, invisible to them).
func (l *Lab) Pause(h *Host) error {
	err := l.view(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		return cgroupOpsFor(st.CgroupKind).freeze(hs.Cgroup)
	})
	if err != nil {
		return fmt.Errorf("lab %s: pause %s: %w", l.name, h.Name, err)
	}
	l.log.Info("lab host paused", "lab", l.name, "host", h.Name)
	return nil
}

// Resume thaws h after Pause.
func (l *Lab) Resume(h *Host) error {
	err := l.view(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		return cgroupOpsFor(st.CgroupKind).thaw(hs.Cgroup)
	})
	if err != nil {
		return fmt.Errorf("lab %s: resume %s: %w", l.name, h.Name, err)
	}
	l.log.Info("lab host resumed", "lab", l.name, "host", h.Name)
	return nil
}

// Paused reports whether h's cgroup is frozen.
func (l *Lab) Paused(h *Host) (bool, error) {
	var frozen bool
	err := l.view(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		frozen, err = cgroupOpsFor(st.CgroupKind).frozen(hs.Cgroup)
		return err
	})
	return frozen, err
}

// PIDs returns the processes currently in h's cgroup (Start'ed processes and
// their descendants).
func (l *Lab) PIDs(h *Host) ([]int, error) {
	var out []int
	err := l.view(func(st *state) error {
		hs, err := st.host(h)
		if err != nil {
			return err
		}
		pids, err := cgroupPIDs(hs.Cgroup)
		for _, p := range pids {
			if procAlive(p) {
				out = append(out, p)
			}
		}
		return err
	})
	return out, err
}
