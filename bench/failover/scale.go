package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"github.com/paceline/paceline/bench/internal/benchutil"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/tlsutil"
)

// Scale-test agents listen on 127.78.x.y (the whole of 127/8 is loopback
// on Linux), each on its own address with the same ports.
const scalePort = 27480

type scaleNode struct {
	name, addr, role string
	cmd              *exec.Cmd
	done             chan struct{}
}

// scale starts `controls` control agents and `remotes` remote agents on
// loopback in the root namespace and measures the time from the first
// start until status shows every node online.
func scale(ctx context.Context, exe string, controls, remotes int, lease, timeout time.Duration, atOnce bool) int {
	mode := "control agents first, remote agents once the control plane is initialised"
	if atOnce {
		mode = "all agents started at once"
	}
	fmt.Printf("\n(scale agents run with GOMAXPROCS=%s; control agents at nice -10, remote agents at nice 10)", *scaleProcs)
	fmt.Printf("\n== scale: %d control + %d remote agents on loopback (127.78.x.y, ports %d-%d), TLS and join token; %s\n",
		controls, remotes, scalePort, scalePort+3, mode)
	dir, err := os.MkdirTemp("", "pl-scale-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tdir := filepath.Join(dir, "tls")
	if err := tlsutil.InitCA(tdir, "plscale", false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tok := filepath.Join(dir, "join.token")
	if err := os.WriteFile(tok, []byte(fmt.Sprintf("plscale-%d\n", time.Now().UnixNano())), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var nodes []*scaleNode
	for i := 1; i <= controls; i++ {
		nodes = append(nodes, &scaleNode{name: fmt.Sprintf("c%d", i), addr: fmt.Sprintf("127.78.0.%d", i), role: "control"})
	}
	for j := 0; j < remotes; j++ {
		nodes = append(nodes, &scaleNode{name: fmt.Sprintf("r%03d", j+1), addr: fmt.Sprintf("127.78.%d.%d", 1+j/250, 1+j%250), role: "remote"})
	}
	var join, controlAPIs []string
	for _, n := range nodes[:controls] {
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("%s:%d", n.addr, scalePort)))
		controlAPIs = append(controlAPIs, fmt.Sprintf("%s:%d", n.addr, scalePort))
	}
	leaseLine := ""
	if lease > 0 {
		leaseLine = fmt.Sprintf("lease: {duration: %s, margin: %s}\n", lease, lease/10)
	}
	fmt.Printf("issuing %d certificates and writing configs in %s ...\n", len(nodes), dir)
	for _, n := range nodes {
		if err := tlsutil.Issue(tdir, tdir, n.name, []string{n.addr}, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		expect := 0
		if n.role == "control" {
			expect = controls
		}
		cfg := fmt.Sprintf(`nodeName: %s
clusterName: plscale
role: %s
bindAddr: %s
ports: {api: %d, raft: %d, gossip: %d, coarse: %d}
dataDir: %s
join: [%s]
bootstrapExpect: %d
joinTokenFile: %s
tls: {ca: %s, cert: %s, key: %s}
logLevel: warn
%s`, n.name, n.role, n.addr, scalePort, scalePort+1, scalePort+2, scalePort+3, filepath.Join(dir, n.name), strings.Join(join, ", "), expect, tok,
			filepath.Join(tdir, "ca.crt"), filepath.Join(tdir, n.name+".crt"), filepath.Join(tdir, n.name+".key"), leaseLine)
		if err := os.WriteFile(filepath.Join(dir, n.name+".yaml"), []byte(cfg), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	defer stopAll(nodes)

	t0 := time.Now()
	for i, n := range nodes {
		if i == controls && !atOnce {
			// Staged: bring the control plane up first (until the
			// bootstrap leader wrote the operator token), as an operator
			// would, then add the remote nodes.
			for ctx.Err() == nil && time.Since(t0) < timeout && tokenFile(dir, nodes[:controls]) == "" {
				benchutil.Sleep(ctx, 100*time.Millisecond)
			}
			fmt.Printf("control plane initialised after %.1f s; starting %d remote agents\n", time.Since(t0).Seconds(), remotes)
		}
		logf, err := os.Create(filepath.Join(dir, n.name+".log"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Control nodes stand for machines of their own: on this one shared
		// machine they get CPU before the remote agents (nice), as they
		// would have their own cores in a real deployment.
		nice := "10"
		if n.role == "control" {
			nice = "-10"
		}
		cmd := exec.Command("nice", "-n", nice, exe, "agent", "--config", filepath.Join(dir, n.name+".yaml"))
		// 205 Go runtimes with 2 Ps each on 2 cores spend their time
		// spinning for work and starve each other (measured: 179 s to
		// converge instead of 14 s); one P each, as a small agent on a
		// machine of its own would effectively have.
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+*scaleProcs)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			logf.Close()
			fmt.Fprintf(os.Stderr, "start %s: %v\n", n.name, err)
			return 1
		}
		n.cmd, n.done = cmd, make(chan struct{})
		go func(n *scaleNode, f *os.File) { _ = n.cmd.Wait(); f.Close(); close(n.done) }(n, logf)
	}
	fmt.Printf("started %d agents in %.2f s; waiting until status shows all %d online (at most %v)\n", len(nodes), time.Since(t0).Seconds(), len(nodes), timeout)

	pem, _ := os.ReadFile(filepath.Join(tdir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var client *api.Client
	var converged time.Duration
	lastPrint := time.Now()
	best, last := 0, "no answer yet"
	deadline := t0.Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if dead := deadControls(nodes[:controls]); dead != "" {
			fmt.Fprintf(os.Stderr, "control agent %s exited; its log:\n%s\n", dead, tailFile(filepath.Join(dir, dead+".log")))
			return 1
		}
		if client == nil {
			if p := tokenFile(dir, nodes[:controls]); p != "" {
				if b, err := os.ReadFile(p); err == nil {
					client = api.NewClient(controlAPIs, strings.TrimSpace(string(b)), &tls.Config{RootCAs: pool})
				}
			}
		}
		if client != nil {
			sctx, c := context.WithTimeout(ctx, 5*time.Second)
			st, err := client.Status(sctx)
			c()
			if err == nil {
				online := 0
				for _, n := range st.Nodes {
					if n.Online {
						online++
					}
				}
				best = max(best, online)
				last = fmt.Sprintf("%d/%d online (%d known), leader %s", online, len(nodes), len(st.Nodes), st.Leader)
				if online == len(nodes) {
					converged = time.Since(t0)
					break
				}
			} else {
				last = err.Error()
			}
		}
		if time.Since(lastPrint) >= 5*time.Second {
			lastPrint = time.Now()
			fmt.Printf("  t=%5.1f s  %s\n", time.Since(t0).Seconds(), last)
		}
		benchutil.Sleep(ctx, 500*time.Millisecond)
	}

	fmt.Printf("\n== scale results (%d control + %d remote, one 2-CPU machine, all agents on loopback)\n", controls, remotes)
	if converged > 0 {
		fmt.Printf("  convergence (first agent started -> status shows all %d online): %.1f s\n", len(nodes), converged.Seconds())
	} else {
		fmt.Printf("  NOT converged within %v: best %d/%d online; last: %s\n", timeout, best, len(nodes), last)
	}
	var crss, rrss []int64
	for _, n := range nodes {
		if n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		if v, err := vmRSS(n.cmd.Process.Pid); err == nil {
			if n.role == "control" {
				crss = append(crss, v)
			} else {
				rrss = append(rrss, v)
			}
		}
	}
	if len(crss) > 0 {
		fmt.Printf("  RSS now: control max %.1f MB", float64(slices.Max(crss))/mib)
		if len(rrss) > 0 {
			slices.Sort(rrss)
			fmt.Printf(", remote median %.1f MB, remote max %.1f MB", float64(rrss[len(rrss)/2])/mib, float64(rrss[len(rrss)-1])/mib)
		}
		fmt.Println()
	}
	if converged > 0 {
		idleCPU(ctx, nodes)
	}
	fmt.Println("  reference (ANCHORS.md, not measured here): Corosync stops near 32 nodes; DESIGN.md target 5 control + 500 remote")
	if converged == 0 {
		return 1
	}
	return 0
}

// tokenFile returns the operator token file the bootstrap leader wrote, or "".
func tokenFile(dir string, controls []*scaleNode) string {
	for _, n := range controls {
		if p := filepath.Join(dir, n.name, "operator.token"); benchutil.FileExists(p) {
			return p
		}
	}
	return ""
}

func deadControls(ns []*scaleNode) string {
	for _, n := range ns {
		select {
		case <-n.done:
			return n.name
		default:
		}
	}
	return ""
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stopAll sends SIGTERM to every agent this benchmark started, waits up to
// 30 s, then SIGKILLs the rest (by PID) and reaps them.
func stopAll(nodes []*scaleNode) {
	fmt.Printf("stopping %d scale agents ...\n", len(nodes))
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	expired, killed := false, 0
	for _, n := range nodes {
		if n.done == nil {
			continue
		}
		if !expired {
			select {
			case <-n.done:
				continue
			case <-timer.C:
				expired = true
			}
		}
		select {
		case <-n.done:
		default:
			_ = n.cmd.Process.Kill()
			killed++
			<-n.done
		}
	}
	if killed > 0 {
		fmt.Printf("  %d agents did not stop within 30 s of SIGTERM and were killed\n", killed)
	}
}

// idleCPU measures the agents' CPU use over 10 s once converged and prints
// it per role (percent of one core).
func idleCPU(ctx context.Context, nodes []*scaleNode) {
	ticks := func(pid int) (int64, bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, false
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) < 13 {
			return 0, false
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return u + s, true
	}
	before := map[*scaleNode]int64{}
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			if t, ok := ticks(n.cmd.Process.Pid); ok {
				before[n] = t
			}
		}
	}
	const window = 10 * time.Second
	benchutil.Sleep(ctx, window)
	var ctl, rem []float64
	total := 0.0
	for n, b := range before {
		a, ok := ticks(n.cmd.Process.Pid)
		if !ok {
			continue
		}
		pct := float64(a-b) / 100 / window.Seconds() * 100 // CLK_TCK is 100 on Linux
		total += pct
		if n.role == "control" {
			ctl = append(ctl, pct)
		} else {
			rem = append(rem, pct)
		}
	}
	slices.Sort(ctl)
	slices.Sort(rem)
	fmt.Printf("  idle CPU over %v after convergence (percent of one core): all agents %.1f%%", window, total)
	if len(ctl) > 0 {
		fmt.Printf(", control max %.1f%%", ctl[len(ctl)-1])
	}
	if len(rem) > 0 {
		fmt.Printf(", remote median %.2f%% max %.2f%%", rem[len(rem)/2], rem[len(rem)-1])
	}
	fmt.Println()
}

var scaleProcs = flag.String("scale-gomaxprocs", "1", "GOMAXPROCS of each scale agent")
