package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// BMCs: every lab host can get a simulated baseboard management controller,
// OpenIPMI's ipmi_sim, whose chassis power commands act on the host:
//
//	power off    Kill (link cut, every process of the host SIGKILLed)
//	power on     PowerOn (link up, recorded processes such as the agent
//	             started again; their data directories are untouched)
//	power cycle  off, then on (ipmi_sim's own timer)
//	power reset  off, then on
//	power soft   SIGTERM to the host's processes, up to 10 s, then off
//	power status on unless the host is powered off (killed) — the truth,
//	             also after a Kill that did not come through the BMC
//
// The BMC listens on the lab's bridge address (.1 of the subnet, in the
// bridge namespace NAME-br) on UDP port BMCBasePort+index, so every lab host
// reaches every BMC — also under a partition, which cuts host-to-host
// traffic only, like a separate management network — and labs never
// collide, each having its own bridge namespace. Real fence_ipmilan drives
// it (lanplus, cipher 3); see BMC.FenceParams.
//
// ipmi_sim runs its chassis hook synchronously inside its event loop, so
// the hook (a bash script) only forwards the request over TCP to this
// process, which answers at once; power changes are carried out in the
// background, one at a time per BMC, and "status" reports the state before a
// change until the change is complete, so that a fence agent that polls
// status after "off" sees OFF only once nothing of the host runs any more.
//
// The BMC belongs to the process that started it: its ipmi_sim dies with it
// (parent-death signal), and Down, Destroy and Close stop it.

// BMCBasePort is the UDP port of host 1's BMC; host i's is BMCBasePort+i-1.
const BMCBasePort = 6230

// BMCUser is the administrator user of every lab BMC.
const BMCUser = "admin"

const bmcCgroup = "bmc"

// BMC is a running simulated BMC of one lab host.
type BMC struct {
	Host *Host
	// Addr and Port are where fence agents reach the BMC (UDP), from any
	// lab host or from the bridge namespace Netns.
	Addr netip.Addr
	Port int
	// User and PasswordFile are the credentials (the file holds the
	// password and a newline, mode 0600).
	User         string
	PasswordFile string
	// WrongPasswordFile holds a password the BMC refuses: a fence device
	// using it fails ("Unable to obtain correct plug status").
	WrongPasswordFile string
	// Netns is the network namespace the BMC listens in (the lab's
	// bridge namespace).
	Netns string
	// Dir holds the BMC's configuration, its state and logs
	// (ipmi_sim.log, chassis.log).
	Dir string

	l    *Lab
	cmd  *exec.Cmd
	done chan struct{} // closed when ipmi_sim has exited and was reaped
	ln   net.Listener  // the hook's connections
	ops  chan string   // "off", "on", "reset", "soft"
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	pending string // operation under way or queued last: "off", "on" or ""
	queued  int
	closed  bool
}

//go:embed testdata/bmc.emu
var bmcEmu string

//go:embed testdata/fence_pl_hang
var fenceHang []byte

const bmcHook = `#!/bin/bash
# paceline lab: chassis hook of ipmi_sim for lab host %[1]s. It forwards
# ipmi_sim's call ("get power", "set power 0", ...) to the process that owns
# the BMC and prints its answer; see internal/lab/bmc.go.
exec 3<>/dev/tcp/127.0.0.1/%[2]d || exit 1
echo "$*" >&3
while IFS= read -r -t 30 line <&3; do echo "$line"; done
echo "$(date +%%T.%%N) $*" >> %[3]q
`

const bmcLanConf = `# paceline lab BMC of host %[1]s (ipmi_sim lan.conf, see ipmi_lan(5))
name "%[2]s"
set_working_mc 0x20
  startlan 1
    addr %[3]s %[4]d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcd%02[5]x
  endlan
  chassis_control "%[6]s"
  user 2 true "%[7]s" "%[8]s" admin 10 none md2 md5 straight
`

// NeedBMC reports whether lab BMCs can run here: nil when ipmi_sim, bash
// and (for fencing through them) fence_ipmilan and ipmitool are installed;
// otherwise an error naming the Debian packages to install (tests pass it
// to t.Skip).
func NeedBMC() error {
	var missing []string
	for _, p := range []struct{ path, pkg string }{
		{"/usr/bin/ipmi_sim", "openipmi"}, {"/usr/bin/ipmitool", "ipmitool"},
		{"/usr/sbin/fence_ipmilan", "fence-agents"}, {"/bin/bash", "bash"},
	} {
		if _, err := os.Stat(p.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", p.path, p.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab BMCs unavailable: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// StartBMC starts h's BMC and waits until it answers IPMI requests. A host
// has at most one BMC; starting it again returns the running one.
func (l *Lab) StartBMC(ctx context.Context, h *Host) (*BMC, error) {
	if err := NeedBMC(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if b := l.bmcs[h.Name]; b != nil {
		l.mu.Unlock()
		return b, nil
	}
	st := l.st
	l.mu.Unlock()
	if _, err := st.host(h); err != nil {
		return nil, fmt.Errorf("lab %s: bmc: %w", l.name, err)
	}
	b, err := l.startBMC(ctx, st, h)
	if err != nil {
		return nil, fmt.Errorf("lab %s: start BMC of %s: %w", l.name, h.Name, err)
	}
	l.mu.Lock()
	if l.bmcs == nil {
		l.bmcs = map[string]*BMC{}
	}
	l.bmcs[h.Name] = b
	l.mu.Unlock()
	l.log.Info("lab BMC started", "lab", l.name, "host", h.Name, "addr", b.Addr, "port", b.Port)
	return b, nil
}

// BMC returns h's BMC started by this handle, or nil.
func (l *Lab) BMC(h *Host) *BMC {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bmcs[h.Name]
}

func (l *Lab) startBMC(ctx context.Context, st *state, h *Host) (b *BMC, err error) {
	pfx := netip.MustParsePrefix(st.Subnet)
	b = &BMC{
		Host: h, Addr: pfx.Addr().Next(), Port: BMCBasePort + h.Index - 1, User: BMCUser,
		Netns: st.BridgeNS, Dir: filepath.Join(l.stateDir, "bmc", h.Name),
		l: l, done: make(chan struct{}), ops: make(chan string, 8), stop: make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Join(b.Dir, "state"), 0o700); err != nil {
		return nil, err
	}
	pw, bad := randomSecret(), randomSecret()
	b.PasswordFile = filepath.Join(b.Dir, "password")
	b.WrongPasswordFile = filepath.Join(b.Dir, "wrong-password")
	for f, v := range map[string]string{b.PasswordFile: pw, b.WrongPasswordFile: bad} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	// The hook's listener and ipmi_sim both live in the bridge namespace:
	// the listener on its loopback, ipmi_sim on the bridge address.
	if err := InNetns(st.BridgeNS, func() error {
		var err error
		b.ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("hook listener: %w", err)
	}
	ln := b.ln
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	hook := filepath.Join(b.Dir, "chassis-hook")
	hookText := fmt.Sprintf(bmcHook, h.Name, b.ln.Addr().(*net.TCPAddr).Port, filepath.Join(b.Dir, "chassis.log"))
	if err := os.WriteFile(hook, []byte(hookText), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(bmcLanConf, h.Name, st.Name+h.Name, b.Addr, b.Port, h.Index, hook, b.User, pw)
	if err := os.WriteFile(filepath.Join(b.Dir, "lan.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "bmc.emu"), []byte(bmcEmu), 0o644); err != nil {
		return nil, err
	}
	cg := filepath.Join(st.CgroupRoot, bmcCgroup)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(b.Dir, "ipmi_sim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The shim joins the lab's bmc cgroup (so that Destroy kills a BMC
	// left behind), then becomes ipmi_sim.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$1" || exit 126; shift; exec "$@"`, "pl-bmc",
		filepath.Join(cg, "cgroup.procs"), "/usr/bin/ipmi_sim", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n")
	cmd.Dir, cmd.Stdout, cmd.Stderr = b.Dir, logf, logf
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Forked from a thread inside the bridge namespace, ipmi_sim runs there.
	if err := InNetns(st.BridgeNS, cmd.Start); err != nil {
		return nil, fmt.Errorf("ipmi_sim: %w", err)
	}
	b.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(b.done)
	}()
	b.wg.Add(2)
	go b.serve()
	go b.work()
	if err := b.waitReady(ctx); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

func randomSecret() string {
	var r [8]byte // IPMI passwords have at most 20 bytes
	_, _ = rand.Read(r[:])
	return "pl-" + hex.EncodeToString(r[:])
}

// waitReady waits until ipmitool gets an answer from the BMC.
func (b *BMC) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for {
		out, err := b.ipmitool(ctx, b.PasswordFile, "mc", "info")
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, tailBytes(out, 200))
		select {
		case <-b.done:
			return fmt.Errorf("ipmi_sim exited (log %s: %s)", filepath.Join(b.Dir, "ipmi_sim.log"), tail(filepath.Join(b.Dir, "ipmi_sim.log"), 400))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("BMC on %s:%d not answering: %v (log %s)", b.Addr, b.Port, last, filepath.Join(b.Dir, "ipmi_sim.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ipmitool runs ipmitool against the BMC from its namespace.
func (b *BMC) ipmitool(ctx context.Context, pwFile string, args ...string) ([]byte, error) {
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"netns", "exec", b.Netns, "/usr/bin/ipmitool", "-I", "lanplus", "-C", "3",
		"-H", b.Addr.String(), "-p", strconv.Itoa(b.Port), "-U", b.User, "-E", "-N", "1", "-R", "1"}, args...)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "ip", argv...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "IPMI_PASSWORD=" + strings.TrimSpace(string(pw))}
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// FenceParams returns the fence_ipmilan parameters (stdin form, without
// the password: pass PasswordFile as the password's secret file) that
// reach this BMC from a lab host or the bridge namespace.
func (b *BMC) FenceParams() map[string]string {
	return map[string]string{
		"ip": b.Addr.String(), "ipport": strconv.Itoa(b.Port), "username": b.User,
		"lanplus": "1", "cipher": "3",
	}
}

// FenceIPMI runs Debian's fence_ipmilan with action (on, off, reboot,
// status, monitor) against the BMC, from the bridge namespace, with the
// password read from pwFile (PasswordFile or WrongPasswordFile), and
// returns its combined output and exit code (fence-agents: 0 success or
// status on, 1 failure, 2 status off). extra adds or overrides parameters
// (e.g. power_wait).
func (b *BMC) FenceIPMI(ctx context.Context, action, pwFile string, extra map[string]string) (string, int, error) {
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return "", -1, err
	}
	p := b.FenceParams()
	p["action"] = action
	p["password"] = strings.TrimSpace(string(pw))
	for k, v := range extra {
		p[k] = v
	}
	var in strings.Builder
	for k, v := range p {
		fmt.Fprintf(&in, "%s=%s\n", k, v)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", b.Netns, "/usr/sbin/fence_ipmilan")
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	if err != nil {
		return string(out), -1, fmt.Errorf("fence_ipmilan: %w", err)
	}
	return string(out), 0, nil
}

// HangingFenceAgent writes, once, a fence agent into the lab's state
// directory that answers "metadata" (it declares the usual ip, username,
// password, port parameters and the on, off, reboot, status actions) and
// never returns from any other action, and returns its absolute path. A
// fencer must give up on it at its timeout (and kill its process group).
func (l *Lab) HangingFenceAgent() (string, error) {
	p := filepath.Join(l.stateDir, "fence_pl_hang")
	if err := os.WriteFile(p, fenceHang, 0o755); err != nil {
		return "", fmt.Errorf("lab %s: write hanging fence agent: %w", l.name, err)
	}
	return p, nil
}

// serve answers the chassis hook's calls.
func (b *BMC) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.handle(c)
	}
}

func (b *BMC) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	var out strings.Builder
	switch f[0] {
	case "get":
		for _, p := range f[1:] {
			switch p {
			case "power":
				on, err := b.powerOn()
				if err != nil {
					b.l.log.Warn("lab BMC: power status unknown", "host", b.Host.Name, "err", err)
					return // no answer: ipmi_sim reports an error
				}
				fmt.Fprintf(&out, "power:%d\n", map[bool]int{false: 0, true: 1}[on])
			case "boot":
				out.WriteString("boot:default\n")
			default:
				fmt.Fprintf(&out, "%s:0\n", p)
			}
		}
	case "set":
		for i := 1; i+1 < len(f); i += 2 {
			p, v := f[i], f[i+1]
			switch {
			case p == "power" && v == "0":
				b.enqueue("off")
			case p == "power" && v == "1":
				b.enqueue("on")
			case p == "reset" && v == "1":
				b.enqueue("reset")
			case p == "shutdown" && v == "1":
				b.enqueue("soft")
			}
		}
	}
	_, _ = c.Write([]byte(out.String()))
}

// powerOn reports the power state: while a change is under way, the state
// before it.
func (b *BMC) powerOn() (bool, error) {
	b.mu.Lock()
	p := b.pending
	b.mu.Unlock()
	switch p {
	case "off":
		return true, nil
	case "on":
		return false, nil
	}
	var off bool
	err := b.l.view(func(st *state) error {
		hs, err := st.host(b.Host)
		if err == nil {
			off = hs.PoweredOff
		}
		return err
	})
	return !off, err
}

func (b *BMC) enqueue(op string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	switch op {
	case "off", "soft":
		b.pending = "off"
	case "on", "reset":
		b.pending = "on"
	}
	b.queued++
	select {
	case b.ops <- op:
	default:
		b.queued-- // a flood of requests: drop, the state converges anyway
		b.l.log.Warn("lab BMC: request dropped, too many queued", "host", b.Host.Name, "op", op)
	}
}

// work carries out power changes one at a time.
func (b *BMC) work() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case op := <-b.ops:
			start := time.Now()
			err := b.do(op)
			b.mu.Lock()
			b.queued--
			if b.queued == 0 {
				b.pending = ""
			}
			b.mu.Unlock()
			if err != nil {
				b.l.log.Error("lab BMC: power change failed", "host", b.Host.Name, "op", op, "err", err)
			} else {
				b.l.log.Info("lab BMC: power change", "host", b.Host.Name, "op", op, "took", time.Since(start))
			}
			b.logChassis(op, err)
		}
	}
}

func (b *BMC) logChassis(op string, err error) {
	f, ferr := os.OpenFile(filepath.Join(b.Dir, "chassis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr != nil {
		return
	}
	defer f.Close()
	res := "done"
	if err != nil {
		res = "failed: " + err.Error()
	}
	fmt.Fprintf(f, "%s power %s %s\n", time.Now().Format("15:04:05.000000"), op, res)
}

func (b *BMC) do(op string) error {
	switch op {
	case "off":
		if on, err := b.stateOn(); err == nil && !on {
			return nil
		}
		return b.l.Kill(b.Host)
	case "on":
		if on, err := b.stateOn(); err == nil && on {
			return nil
		}
		return b.l.PowerOn(b.Host)
	case "reset":
		if err := b.l.Kill(b.Host); err != nil {
			return err
		}
		return b.l.PowerOn(b.Host)
	case "soft":
		if pids, err := b.l.PIDs(b.Host); err == nil {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGTERM)
			}
			_ = waitFor(10*time.Second, func() (bool, error) {
				left, err := b.l.PIDs(b.Host)
				return len(left) == 0, err
			}, "processes of %s to stop", b.Host.Name)
		}
		return b.l.Kill(b.Host)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// stateOn reads the host's power state from the lab state.
func (b *BMC) stateOn() (bool, error) {
	var off bool
	err := b.l.view(func(st *state) error {
		hs, err := st.host(b.Host)
		if err == nil {
			off = hs.PoweredOff
		}
		return err
	})
	return !off, err
}

// Close stops the BMC (ipmi_sim and the hook's listener); the host keeps
// its power state.
func (b *BMC) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	var err error
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			_ = b.cmd.Process.Kill()
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
				err = fmt.Errorf("ipmi_sim of %s (pid %d) not reaped", b.Host.Name, b.cmd.Process.Pid)
			}
		}
	}
	b.ln.Close()
	close(b.stop)
	b.wg.Wait()
	b.l.mu.Lock()
	if b.l.bmcs[b.Host.Name] == b {
		delete(b.l.bmcs, b.Host.Name)
	}
	b.l.mu.Unlock()
	return err
}

// closeBMCs stops every BMC this handle started; callers must not hold l.mu.
func (l *Lab) closeBMCs() error {
	l.mu.Lock()
	var bs []*BMC
	for _, b := range l.bmcs {
		bs = append(bs, b)
	}
	l.mu.Unlock()
	var errs []error
	for _, b := range bs {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// InNetns runs fn on an OS thread inside the network namespace ns (a name
// under /run/netns, e.g. a lab host's Host.NS) and restores the thread
// afterwards; sockets fn creates and processes it forks stay in that
// namespace.
func InNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("own netns: %w", err)
	}
	defer self.Close()
	f, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it.
		return fmt.Errorf("restore netns: %w (fn: %v)", err, ferr)
	}
	runtime.UnlockOSThread()
	return ferr
}
