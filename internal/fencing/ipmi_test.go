package fencing

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests drive Debian's fence_ipmilan (fence-agents) against
// OpenIPMI's ipmi_sim (openipmi) acting as the BMC of a simulated node:
// the chassis hook testdata/ipmi/chassis.sh (from /work/shared/ipmi-lab)
// starts NODE_CMD (a sleep) on power on and SIGKILLs it on power off.
// Each test runs its own ipmi_sim on a loopback address of its own (bmcIP).

const ipmiPort = "6623"

func needIPMI(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/bin/ipmi_sim", "/usr/sbin/fence_ipmilan", "/usr/bin/ipmitool"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (apt-get install -y --no-install-recommends openipmi fence-agents ipmitool): skipping the IPMI tests", p)
		}
	}
}

type bmc struct {
	addr, dir, nodeCmd string
	cmd                *exec.Cmd
}

// startBMC runs ipmi_sim on addr:ipmiPort with user admin / password; it is
// stopped, reaped, and its node process killed at cleanup.
func startBMC(t *testing.T, addr, password string) *bmc {
	t.Helper()
	needIPMI(t)
	dir := t.TempDir()
	for _, d := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	chassis := filepath.Join(dir, "chassis.sh")
	copyFile("testdata/ipmi/chassis.sh", chassis, 0o755)
	copyFile("testdata/ipmi/bmc.emu", filepath.Join(dir, "bmc.emu"), 0o644)
	tmpl, err := os.ReadFile("testdata/ipmi/lan.conf.in")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("@ADDR@", addr, "@PORT@", ipmiPort, "@CHASSIS@", chassis, "@PASSWORD@", password).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "lan.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sleep with a recognisable argument stands for the node.
	b := &bmc{addr: addr, dir: dir, nodeCmd: fmt.Sprintf("sleep %d", 900000+os.Getpid()%10000)}
	out, err := os.Create(filepath.Join(dir, "run", "ipmi_sim.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/ipmi_sim", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NODE_CMD=" + b.nodeCmd}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ipmi_sim: %v", err)
	}
	b.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		out.Close()
		if pid := b.nodePID(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// Ready when ipmitool gets an answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := exec.Command("/usr/bin/ipmitool", "-I", "lanplus", "-C", "3", "-H", addr, "-p", ipmiPort,
			"-U", "admin", "-P", password, "-N", "1", "-R", "1", "mc", "info").Run()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "run", "ipmi_sim.out"))
			t.Fatalf("ipmi_sim on %s:%s not ready: %v\n%s", addr, ipmiPort, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b
}

// nodePID returns the PID of the simulated node if it runs, else 0.
// waitNodePID waits (generously) for the node process a power-on started
// to be running its command: the chassis hook records the PID of a shell
// that only then execs the command, so right after "on" returns the PID
// may still show the shell.
func (b *bmc) waitNodePID(not int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := b.nodePID(); (pid > 0 && pid != not) || time.Now().After(deadline) {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bmcIP is a loopback address for a test BMC, derived from the process ID
// so that test binaries running at once never share a BMC address.
func bmcIP(host int) string {
	pid := os.Getpid()
	return fmt.Sprintf("127.%d.%d.%d", 1+pid%250, (pid/250)%250, host)
}

func (b *bmc) nodePID() int {
	s, err := os.ReadFile(filepath.Join(b.dir, "run", "node.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(s)))
	if pid <= 0 || processGone(pid) {
		return 0
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ") != b.nodeCmd {
		return 0
	}
	return pid
}

func secretFile(t *testing.T, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ipmiDev(name, addr, pwfile string, extra map[string]string) DeviceConfig {
	p := map[string]string{"ip": addr, "ipport": ipmiPort, "username": "admin", "lanplus": "1", "cipher": "3"}
	for k, v := range extra {
		p[k] = v
	}
	return DeviceConfig{Name: name, Agent: "fence_ipmilan", Params: p, SecretFiles: map[string]string{"password": pwfile},
		Hosts: []string{"n1"}}
}

func TestIPMIMetadataCheck(t *testing.T) {
	needIPMI(t)
	pw := secretFile(t, "x")
	f := newFencer(t, Config{Devices: []DeviceConfig{ipmiDev("ipmi", bmcIP(201), pw, nil)}}, Options{})
	if err := f.Check(context.Background()); err != nil {
		t.Fatalf("Check of a valid fence_ipmilan device: %v", err)
	}
	d := ipmiDev("ipmi", bmcIP(201), pw, map[string]string{"ipadress": "10.0.0.1"})
	d.HostArgument = "none"
	f = newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	err := f.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), `devices[0].params[ipadress]: agent fence_ipmilan has no parameter "ipadress"`) {
		t.Fatalf("unknown parameter: %v", err)
	}
	t.Logf("refused: %v", err)
}

func TestIPMIOffOnReboot(t *testing.T) {
	const pw = "ipmi-S3cret-pw"
	b := startBMC(t, bmcIP(202), pw)
	f := newFencer(t, Config{Devices: []DeviceConfig{ipmiDev("ipmi", b.addr, secretFile(t, pw), map[string]string{"power_wait": "0"})}}, Options{})
	ctx := context.Background()

	r := f.Fence(ctx, "n1", On)
	logAttempts(t, r)
	if !r.OK {
		t.Fatalf("on: %s", r.Error)
	}
	node1 := b.waitNodePID(0)
	if node1 == 0 {
		t.Fatal("power on did not start the node process")
	}

	r = f.Fence(ctx, "n1", Off)
	logAttempts(t, r)
	if !r.OK {
		t.Fatalf("off: %s", r.Error)
	}
	last := r.Attempts[len(r.Attempts)-1]
	if last.Action != Status || last.Power != PowerOff || last.ExitCode != ExitOff {
		t.Errorf("off not confirmed by status: %+v", last)
	}
	if !processGone(node1) {
		t.Errorf("node process %d still alive after a confirmed off", node1)
	}
	t.Logf("off confirmed after %s", r.Finished.Sub(r.Started))

	r = f.Fence(ctx, "n1", On)
	if !r.OK {
		t.Fatalf("on: %s", r.Error)
	}
	node2 := b.waitNodePID(node1)
	if node2 == 0 || node2 == node1 {
		t.Fatalf("power on did not restart the node (pid %d, before %d)", node2, node1)
	}

	r = f.Fence(ctx, "n1", Reboot)
	logAttempts(t, r)
	if !r.OK || r.Warning != "" {
		t.Fatalf("reboot: %+v", r)
	}
	node3 := b.waitNodePID(node2)
	if !processGone(node2) || node3 == 0 || node3 == node2 {
		t.Errorf("reboot: old node %d gone=%v, new node %d", node2, processGone(node2), node3)
	}
	dev, _ := f.Device("ipmi")
	if o := dev.Exec(ctx, Status, Target{Node: "n1", Port: "n1"}, 0); o.Power != PowerOn {
		t.Errorf("status after reboot: %+v", o)
	}
	if err := f.Monitor(ctx, "ipmi"); err != nil {
		t.Errorf("monitor: %v", err)
	}
	if o := dev.Exec(ctx, List, Target{}, 0); !o.OK() {
		t.Errorf("list: %+v", o)
	}
	h := f.History()
	if len(h) != 4 || !h[1].OK || h[1].Action != "off" || h[3].Action != "reboot" {
		t.Errorf("history: %+v", h)
	}
}

func TestIPMIWrongPassword(t *testing.T) {
	b := startBMC(t, bmcIP(203), "right-password")
	const wrong = "Wr0ng-Passw0rd-value"
	cfg := Config{Devices: []DeviceConfig{ipmiDev("ipmi", b.addr, secretFile(t, wrong), map[string]string{"power_wait": "0"})},
		Retries: intp(1), RetryDelay: 100 * time.Millisecond}
	f := newFencer(t, cfg, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK {
		t.Fatal("fence with a wrong password succeeded")
	}
	if err := f.Monitor(context.Background(), "ipmi"); err == nil {
		t.Error("monitor with a wrong password succeeded")
	} else {
		t.Logf("monitor: %v", err)
	}
	if len(r.Attempts) != 2 {
		t.Errorf("want 2 attempts (1 retry), got %d", len(r.Attempts))
	}
	for _, a := range r.Attempts {
		if a.ExitCode != 1 || !strings.Contains(a.Error, "fence_ipmilan off: exit 1: ERROR: Failed: Unable to obtain correct plug status") {
			t.Errorf("attempt: %+v", a)
		}
	}
	if strings.Contains(fmt.Sprintf("%+v %+v", r, f.History()), wrong) {
		t.Error("the password appears in the result or history")
	}
	if h := f.History(); len(h) != 1 || h[0].OK || h[0].Error != r.Error || h[0].Attempts != 2 {
		t.Errorf("history: %+v", h)
	}
	t.Logf("reported: %s", r.Error)
}

func TestIPMIUnreachable(t *testing.T) {
	needIPMI(t)
	// Nothing listens on 127.0.0.204:6623.
	pw := secretFile(t, "whatever")
	t.Run("agent timeouts", func(t *testing.T) {
		d := ipmiDev("ipmi", bmcIP(204), pw, map[string]string{"login_timeout": "1", "power_timeout": "1", "ipmitool_timeout": "1", "retry_on": "1"})
		d.Retries = intp(1)
		f := newFencer(t, Config{Devices: []DeviceConfig{d}, RetryDelay: 100 * time.Millisecond}, Options{})
		begin := time.Now()
		r := f.Fence(context.Background(), "n1", Off)
		logAttempts(t, r)
		if r.OK || len(r.Attempts) != 2 || r.Attempts[0].ExitCode != 1 || r.Attempts[1].ExitCode != 1 {
			t.Fatalf("unreachable BMC: %+v", r)
		}
		t.Logf("reported after %s: %s", time.Since(begin).Round(time.Millisecond), r.Error)
	})
	t.Run("device timeout", func(t *testing.T) {
		// fence_ipmilan's own timeouts (20 s) are longer than the device's
		// timeout: the agent is killed.
		d := ipmiDev("ipmi", bmcIP(204), pw, nil)
		d.Retries, d.Timeout = intp(0), 2*time.Second
		f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
		r := f.Fence(context.Background(), "n1", Off)
		logAttempts(t, r)
		if r.OK || len(r.Attempts) != 1 || !r.Attempts[0].TimedOut || !strings.Contains(r.Error, "timed out after 2s, process group killed") {
			t.Fatalf("result: %+v", r)
		}
	})
}

// Level 1 is a fence_ipmilan device with a wrong password, level 2 a
// second fence_ipmilan device with the right one.
func TestIPMITwoLevels(t *testing.T) {
	const pw = "level2-pw"
	b := startBMC(t, bmcIP(205), pw)
	extra := map[string]string{"power_wait": "0"}
	cfg := Config{
		Devices: []DeviceConfig{ipmiDev("bmc-bad", b.addr, secretFile(t, "nope"), extra), ipmiDev("bmc-good", b.addr, secretFile(t, pw), extra)},
		Levels: []LevelConfig{{Node: "n1", Level: 1, Devices: []string{"bmc-bad"}},
			{Node: "n1", Level: 2, Devices: []string{"bmc-good"}}},
		Retries: intp(0),
	}
	f := newFencer(t, cfg, Options{})
	if r := f.Fence(context.Background(), "n1", On); !r.OK || r.Level != 2 {
		t.Fatalf("on: %+v", r)
	}
	node := b.waitNodePID(0)
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if !r.OK || r.Level != 2 || r.Devices[0] != "bmc-good" {
		t.Fatalf("off: %+v", r)
	}
	if r.Attempts[0].Level != 1 || r.Attempts[0].Device != "bmc-bad" || r.Attempts[0].ExitCode != 1 {
		t.Errorf("level 1 attempt: %+v", r.Attempts[0])
	}
	if node == 0 || !processGone(node) {
		t.Errorf("node %d not killed", node)
	}
}

// Measures fence-to-confirmed-off time; never asserts durations.
func TestIPMIFenceToOffTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing measurement skipped in -short mode")
	}
	const pw = "timing-pw"
	b := startBMC(t, bmcIP(206), pw)
	pwf := secretFile(t, pw)
	for _, pwait := range []string{"0", ""} {
		extra := map[string]string{}
		label := "power_wait=default(2)"
		if pwait != "" {
			extra["power_wait"] = pwait
			label = "power_wait=" + pwait
		}
		f := newFencer(t, Config{Devices: []DeviceConfig{ipmiDev("ipmi", b.addr, pwf, extra)}}, Options{})
		for i := 0; i < 3; i++ {
			if r := f.Fence(context.Background(), "n1", On); !r.OK {
				t.Fatalf("on: %s", r.Error)
			}
			node := b.waitNodePID(0)
			begin := time.Now()
			r := f.Fence(context.Background(), "n1", Off)
			total := time.Since(begin)
			if !r.OK {
				t.Fatalf("off: %s", r.Error)
			}
			off, st := r.Attempts[0], r.Attempts[len(r.Attempts)-1]
			t.Logf("%s run %d: fence-to-confirmed-off %s (off action %s, confirm %s in %d status polls); node killed: %v",
				label, i+1, total.Round(time.Millisecond), off.Duration.Round(time.Millisecond),
				st.Duration.Round(time.Millisecond), st.Polls, node != 0 && processGone(node))
		}
	}
}
