// Command vip-failover compares how fast a virtual IP address moves after a
// power loss of its holder, paceline's `vip` class against Keepalived (the
// Debian package), in the same lab and the same invocation:
//
//	sudo go run ./bench/vip-failover [--runs 20] [--peer keepalived|none] [--partition 8s]
//
// A lab of 3 hosts plus a client host (no agent) is brought up per system.
// Each of the 3 hosts runs a tiny UDP responder (this program, `respond`
// subcommand) that answers every datagram with its host name; the client
// sends a datagram to VIP:port every 10 ms from a socket in the client
// host's namespace. A crash is labcluster.Kill of the holder (link cut,
// every process SIGKILLed); the figure is the time from the kill to the
// first answer from another host. A partition case cuts the holder off for
// a bounded time while every host's addresses are sampled every 10 ms over
// rtnetlink, and reports for how long two hosts held the VIP at once.
//
// See bench/vip-failover/README.md. It exits 1 when a measurement cannot
// complete, or when paceline held the VIP on two hosts at once.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/paceline/paceline/bench/internal/benchutil"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
)

const (
	resource  = "plvip"
	probePort = 7999
	every     = 10 * time.Millisecond
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "respond" {
		os.Exit(respond(os.Args[2:]))
	}
	os.Exit(run())
}

// respond is the responder run on each lab host: it answers every UDP
// datagram on the port with the host name.
func respond(args []string) int {
	fs := flag.NewFlagSet("respond", flag.ExitOnError)
	port := fs.Int("port", probePort, "UDP port")
	name := fs.String("name", "", "host name to answer")
	_ = fs.Parse(args)
	pc, err := net.ListenPacket("udp4", ":"+strconv.Itoa(*port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "respond:", err)
		return 1
	}
	buf := make([]byte, 64)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "respond:", err)
			return 1
		}
		_, _ = pc.WriteTo([]byte(*name), from)
	}
}

// system is one configuration under test.
type system struct {
	name  string // "paceline", "keepalived advert_int 1", ...
	tag   byte   // lab name letter
	setup func(e *env) error
	// steady waits until the VIP is held by one host the client reaches,
	// and returns the holder.
	steady func(e *env, timeout time.Duration) (string, error)
}

type result struct {
	sys        string
	took       []time.Duration
	partDouble time.Duration // double holding while partitioned
	healDouble time.Duration // double holding in the seconds after healing
	partMoved  time.Duration // when another host first held the VIP
	partGone   time.Duration // when the cut-off holder first no longer held it
	partDone   bool
	err        error
	leaderRuns []time.Duration // paceline: the runs where the holder was also the raft leader
}

func run() int {
	runs := flag.Int("runs", 20, "holder crashes per system and configuration")
	peer := flag.String("peer", "keepalived", "incumbent to compare with: keepalived or none")
	partFor := flag.Duration("partition", 8*time.Second, "how long the holder is cut off in the partition case")
	bin := flag.String("paceline", "", "paceline binary (default: go build ./cmd/paceline into a temporary directory)")
	flag.Parse()
	if *peer != "keepalived" && *peer != "none" {
		fmt.Fprintln(os.Stderr, "--peer: keepalived or none")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := lab.Root(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vip-failover:", err)
		return 3
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exe := *bin
	if exe == "" {
		dir, err := os.MkdirTemp("", "pl-vipbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		_ = os.Chmod(dir, 0o755)
		exe = filepath.Join(dir, "paceline")
		fmt.Printf("building paceline into %s ...\n", exe)
		if out, err := exec.Command(benchutil.GoTool(), "build", "-o", exe, "github.com/paceline/paceline/cmd/paceline").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
	} else if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
	kaPath := ""
	if *peer == "keepalived" {
		if kaPath, err = exec.LookPath("keepalived"); err != nil {
			fmt.Fprintln(os.Stderr, "keepalived not found: apt-get install -y --no-install-recommends keepalived (or --peer none)")
			return 1
		}
	}
	kaVersion := ""
	if kaPath != "" {
		out, _ := exec.Command(kaPath, "--version").CombinedOutput()
		kaVersion = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	fmt.Printf("vip failover benchmark — %s, %d CPUs, load average at start %s\n", time.Now().Format(time.RFC3339), runtime.NumCPU(), benchutil.LoadAvg())
	if kaVersion != "" {
		fmt.Printf("incumbent: %s\n", kaVersion)
	}
	fmt.Println()

	systems := []system{paceline(exe)}
	if kaPath != "" {
		systems = append(systems, keepalived(kaPath, 'k', "1", 2), keepalived(kaPath, 'f', "0.1", 3))
	}
	var results []result
	code := 0
	for _, s := range systems {
		if ctx.Err() != nil {
			break
		}
		r := bench(ctx, s, self, exe, *runs, *partFor)
		results = append(results, r)
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, r.err)
			code = 1
		}
		if s.tag == 'p' && r.partDone && (r.partDouble > 0 || r.healDouble > 0) {
			code = 1
		}
	}
	report(results, *runs, *partFor)
	fmt.Printf("\nload average at the end: %s\n", benchutil.LoadAvg())
	return code
}

func report(rs []result, runs int, partFor time.Duration) {
	fmt.Printf("\n== crash: time from the power loss of the holder to the first answer from another host (client polls every %v)\n", every)
	fmt.Printf("  %-28s %5s %8s %8s %8s %8s\n", "system", "runs", "p50", "p99", "min", "max")
	stats := map[string][4]time.Duration{}
	for _, r := range rs {
		if len(r.took) == 0 {
			fmt.Printf("  %-28s %5d   (no completed run)\n", r.sys, 0)
			continue
		}
		s := slices.Clone(r.took)
		slices.Sort(s)
		st := [4]time.Duration{benchutil.Percentile(s, 50), benchutil.Percentile(s, 99), s[0], s[len(s)-1]}
		stats[r.sys] = st
		fmt.Printf("  %-28s %5d %7.3fs %7.3fs %7.3fs %7.3fs\n", r.sys, len(s), st[0].Seconds(), st[1].Seconds(), st[2].Seconds(), st[3].Seconds())
	}
	if pl, ok := stats["paceline"]; ok {
		runs := len(rs[0].took)
		if lr := slices.Clone(rs[0].leaderRuns); len(lr) > 0 {
			slices.Sort(lr)
			fmt.Printf("  paceline: %d of %d runs killed the raft leader with the holder (a new leader is elected and waits out every lease): median %.3f s, max %.3f s\n",
				len(lr), runs, benchutil.Percentile(lr, 50).Seconds(), lr[len(lr)-1].Seconds())
		}
		fmt.Printf("  paceline targets: p50 ≤ 0.6 s %s, p99 ≤ 1 s %s (p99 by nearest rank: with %d runs, the %s value)\n",
			benchutil.Verdict(pl[0] <= 600*time.Millisecond), benchutil.Verdict(pl[1] <= time.Second), runs, benchutil.Ordinal(benchutil.Rank(runs, 99), runs))
		for _, r := range rs {
			if k, ok := stats[r.sys]; ok && r.sys != "paceline" {
				fmt.Printf("  ratio paceline / %s: p50 %.2f, p99 %.2f, min %.2f, max %.2f\n", r.sys,
					ratio(pl[0], k[0]), ratio(pl[1], k[1]), ratio(pl[2], k[2]), ratio(pl[3], k[3]))
			}
		}
	}
	fmt.Printf("\n== partition: the holder cut off from every other host and the client for %v, then healed and watched 4 s;\n   every host's addresses sampled every %v: time the VIP was on two hosts at once\n", partFor, every)
	for _, r := range rs {
		if !r.partDone {
			fmt.Printf("  %-28s not measured\n", r.sys)
			continue
		}
		moved := "never during the cut"
		if r.partMoved > 0 {
			moved = fmt.Sprintf("%.3f s after the cut", r.partMoved.Seconds())
		}
		gone := "never during the cut"
		if r.partGone > 0 {
			gone = fmt.Sprintf("%.3f s", r.partGone.Seconds())
		}
		fmt.Printf("  %-28s double holding %.3f s during the cut, %.3f s after healing; gone from the cut-off holder %s, on another host %s\n",
			r.sys, r.partDouble.Seconds(), r.healDouble.Seconds(), gone, moved)
	}
}

// env is one system's lab.
type env struct {
	ctx    context.Context
	l      *lab.Lab
	hosts  []*lab.Host // the 3 cluster hosts
	client *lab.Host
	vip    netip.Addr
	bits   int
	exe    string // paceline
	nl     map[string]*nlSock
	pr     *prober
	leader string // paceline: the raft leader seen when steady state was declared
}

func bench(ctx context.Context, s system, self, exe string, runs int, partFor time.Duration) (res result) {
	res.sys = s.name
	name := fmt.Sprintf("plvf%c%d", s.tag, os.Getpid()%10000)
	fmt.Printf("== %s: lab %s (3 hosts + client), %d crashes, then a %v partition\n", s.name, name, runs, partFor)
	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	l, err := lab.Up(uctx, lab.Options{Name: name, Hosts: 4})
	cancel()
	if err != nil {
		res.err = fmt.Errorf("lab up: %w", err)
		return
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
		}
	}()
	all := l.Hosts()
	e := &env{ctx: ctx, l: l, hosts: all[:3], client: all[3], exe: exe, nl: map[string]*nlSock{}}
	sub := l.Subnet()
	e.vip, e.bits = sub.Addr(), sub.Bits()
	for i := 0; i < 200; i++ {
		e.vip = e.vip.Next()
	}
	for _, h := range e.hosts {
		if _, err := l.Start(h, "plresp", []string{self, "respond", "--port", strconv.Itoa(probePort), "--name", h.Name}, nil); err != nil {
			res.err = err
			return
		}
		s, err := openNL(h.NS)
		if err != nil {
			res.err = err
			return
		}
		defer s.close()
		e.nl[h.Name] = s
	}
	if e.pr, err = newProber(e.client.NS, e.vip); err != nil {
		res.err = err
		return
	}
	defer e.pr.close()
	if err := s.setup(e); err != nil {
		res.err = err
		e.logTails()
		return
	}
	for i := 1; i <= runs && ctx.Err() == nil; i++ {
		holder, err := s.steady(e, 90*time.Second)
		if err != nil {
			res.err = fmt.Errorf("run %d: %w", i, err)
			e.logTails()
			return
		}
		hh, _ := l.Host(holder)
		tKill := time.Now()
		if err := labcluster.Kill(l, hh); err != nil {
			res.err = fmt.Errorf("run %d: %w", i, err)
			return
		}
		rp, ok := e.pr.waitOther(ctx, tKill, holder, 30*time.Second)
		if !ok && ctx.Err() != nil {
			res.err = fmt.Errorf("run %d: interrupted", i)
			return
		}
		if !ok {
			res.err = fmt.Errorf("run %d: killed %s: no answer from another host within 30 s", i, holder)
			e.logTails()
			return
		}
		d := rp.at.Sub(tKill)
		res.took = append(res.took, d)
		note := ""
		if e.leader != "" && e.leader == holder {
			note = " (the holder was the raft leader)"
			res.leaderRuns = append(res.leaderRuns, d)
		}
		if s.tag == 'p' {
			note += e.phases(rp.host, holder, tKill)
		}
		fmt.Printf("  run %2d/%d: killed %s -> first answer from %s after %.3f s%s\n", i, runs, holder, rp.host, d.Seconds(), note)
		// A power loss loses the kernel's state too: the dead host comes
		// back without the address.
		e.delVIP(hh)
		// /run is a tmpfs: stale pid files would make keepalived refuse to
		// start ("daemon is already running") when a PID has been reused.
		if old, _ := filepath.Glob(filepath.Join(l.StateDir(), hh.Name, "pl-ka*.pid")); len(old) > 0 {
			for _, f := range old {
				_ = os.Remove(f)
			}
		}
		if err := l.PowerOn(hh); err != nil {
			res.err = fmt.Errorf("run %d: poweron: %w", i, err)
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	holder, err := s.steady(e, 90*time.Second)
	if err != nil {
		res.err = fmt.Errorf("before the partition: %w", err)
		e.logTails()
		return
	}
	hh, _ := l.Host(holder)
	samples := make(chan []sample, 1)
	sctx, scancel := context.WithCancel(ctx)
	go func() { samples <- e.sampleHolders(sctx) }()
	tCut := time.Now()
	if err := l.Partition([]*lab.Host{hh}); err != nil {
		scancel()
		res.err = err
		return
	}
	benchutil.Sleep(ctx, partFor)
	tHeal := time.Now()
	herr := l.Heal()
	benchutil.Sleep(ctx, 4*time.Second)
	scancel()
	ss := <-samples
	if herr != nil {
		res.err = herr
		return
	}
	for i, x := range ss {
		if x.at.After(tCut) && x.at.Before(tHeal) {
			if res.partGone == 0 && !slices.Contains(x.holders, holder) {
				res.partGone = x.at.Sub(tCut)
			}
			if res.partMoved == 0 && slices.ContainsFunc(x.holders, func(h string) bool { return h != holder }) {
				res.partMoved = x.at.Sub(tCut)
			}
		}
		if len(x.holders) < 2 || i+1 >= len(ss) {
			continue
		}
		dt := ss[i+1].at.Sub(x.at)
		if x.at.Before(tHeal) {
			res.partDouble += dt
		} else {
			res.healDouble += dt
		}
	}
	res.partDone = true
	fmt.Printf("  partition: %s cut off %v; %d samples; double holding %.3f s during the cut, %.3f s after healing\n",
		holder, partFor, len(ss), res.partDouble.Seconds(), res.healDouble.Seconds())
	return res
}

// phases reads the cluster's events (from host on) and returns when,
// after tKill, the leader declared the dead holder offline and planned
// the recovery: where a run's time went (the rest is the commit, the
// assignment reaching the new holder, its start and the client's next
// poll). Event times are the leader's wall clock (same machine).
func (e *env) phases(on, dead string, tKill time.Time) string {
	h, err := e.l.Host(on)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	out, err := labcluster.CLI(ctx, e.l, e.exe, h, "events", "--json")
	if err != nil {
		return ""
	}
	var offline, recover time.Duration
	for _, line := range strings.Split(string(out), "\n") {
		var ev api.Event
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Time.Before(tKill) {
			continue
		}
		at := ev.Time.Sub(tKill)
		switch {
		case offline == 0 && ev.Node == dead && strings.Contains(ev.Type, "offline"):
			offline = at
		case recover == 0 && ev.Type == "resource-recover":
			recover = at
		}
	}
	ms := func(d time.Duration) string {
		if d == 0 {
			return "?"
		}
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	return fmt.Sprintf(" [events: offline %s, recover %s ms]", ms(offline), ms(recover))
}

type sample struct {
	at      time.Time
	holders []string
}

// sampleHolders samples every host's addresses every 10 ms until ctx ends
// (bounded: at most 10 minutes).
func (e *env) sampleHolders(ctx context.Context) []sample {
	var out []sample
	t := time.NewTicker(every)
	defer t.Stop()
	end := time.Now().Add(10 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(end) {
		at := time.Now()
		out = append(out, sample{at: at, holders: e.addrHolders()})
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return out
}

// addrHolders lists the hosts whose interfaces carry the VIP.
func (e *env) addrHolders() []string {
	var hs []string
	for _, h := range e.hosts {
		if ok, err := e.nl[h.Name].has(e.vip); err == nil && ok {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

func (e *env) delVIP(h *lab.Host) {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	_, _ = e.l.Exec(ctx, h, "ip", "addr", "del", fmt.Sprintf("%s/%d", e.vip, e.bits), "dev", h.Iface)
}

// stable reports whether exactly one host holds the VIP and the client's
// answers of the last 200 ms all came from it.
func (e *env) stable() (string, bool) {
	hs := e.addrHolders()
	if len(hs) != 1 {
		return "", false
	}
	if !e.pr.onlyFrom(hs[0], 200*time.Millisecond) {
		return "", false
	}
	return hs[0], true
}

func (e *env) logTails() {
	for _, h := range e.hosts {
		for _, n := range []string{"agent", "keepalived"} {
			data, err := os.ReadFile(e.l.LogPath(h, n))
			if err != nil {
				continue
			}
			if len(data) > 2500 {
				data = data[len(data)-2500:]
			}
			fmt.Fprintf(os.Stderr, "---- %s %s log (tail) ----\n%s\n", h.Name, n, data)
		}
	}
}

// paceline: 3 agents with the default lease, one vip resource.
func paceline(exe string) system {
	return system{
		name: "paceline",
		tag:  'p',
		setup: func(e *env) error {
			for _, h := range e.hosts {
				if err := labcluster.StartAgent(e.l, h, labcluster.Options{Exe: exe}); err != nil {
					return err
				}
			}
			rctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
			err := labcluster.WaitReady(rctx, e.l, exe)
			cancel()
			if err != nil {
				return err
			}
			doc := fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: %s}
resources:
  - name: %s
    class: vip
    params: {address: "%s/%d", interface: %s}
    operations: [{name: monitor, interval: 1s}]
`, labcluster.ClusterName, resource, e.vip, e.bits, e.hosts[0].Iface)
			path := filepath.Join(e.l.StateDir(), "pl-vip-spec.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				return err
			}
			var aerr error
			for i := 0; i < 40 && e.ctx.Err() == nil; i++ {
				actx, c := context.WithTimeout(e.ctx, 20*time.Second)
				var out []byte
				out, aerr = labcluster.CLI(actx, e.l, exe, e.hosts[0], "apply", "-f", path)
				c()
				if aerr == nil {
					return nil
				}
				aerr = fmt.Errorf("apply: %w: %s", aerr, out)
				time.Sleep(250 * time.Millisecond)
			}
			return aerr
		},
		steady: func(e *env, timeout time.Duration) (string, error) {
			start := time.Now()
			deadline := start.Add(timeout)
			last := "no answer"
			for time.Now().Before(deadline) && e.ctx.Err() == nil {
				holder, ok := e.stable()
				if ok {
					h, _ := e.l.Host(holder)
					sctx, c := context.WithTimeout(e.ctx, 10*time.Second)
					st, err := labcluster.Status(sctx, e.l, e.exe, h)
					c()
					if err == nil {
						n, q := labcluster.Online(st)
						hs := labcluster.Holders(st, resource)
						e.leader = st.Leader
						// A steady cluster has moved raft leadership off
						// the holder (leader placement, within 2–5 s of a
						// change); crashing sooner measures the slower
						// "holder was the leader" case, marked in the
						// output. Wait for it at most leaderWait.
						leaderOK := st.Leader != holder || time.Since(start) > leaderWait
						if n == len(e.hosts) && q && len(hs) == 1 && hs[0] == holder && leaderOK {
							benchutil.Sleep(e.ctx, time.Second) // let the rejoined node settle
							if h2, ok := e.stable(); ok && h2 == holder {
								return holder, nil
							}
						}
						last = fmt.Sprintf("%d online, quorum %v, holders %v", n, q, hs)
					} else {
						last = err.Error()
					}
				} else {
					last = fmt.Sprintf("address on %v", e.addrHolders())
				}
				time.Sleep(100 * time.Millisecond)
			}
			return "", fmt.Errorf("paceline not steady within %v (last: %s)", timeout, last)
		},
	}
}

// leaderWait bounds how long a paceline run waits, before the crash, for
// raft leadership to leave the VIP holder.
const leaderWait = 15 * time.Second

// keepalived: one keepalived per host, VRRP unicast between the three,
// priorities 150/100/50 (h1 is master and preempts when it comes back).
func keepalived(path string, tag byte, advert string, version int) system {
	return system{
		name: fmt.Sprintf("keepalived advert_int %s", advert),
		tag:  tag,
		setup: func(e *env) error {
			for i, h := range e.hosts {
				var peers []string
				for _, o := range e.hosts {
					if o != h {
						peers = append(peers, "    "+o.Addr.String())
					}
				}
				conf := fmt.Sprintf(`global_defs {
  router_id pl%s
  vrrp_version %d
}
vrrp_instance plvi {
  state BACKUP
  interface %s
  virtual_router_id 51
  priority %d
  advert_int %s
  unicast_src_ip %s
  unicast_peer {
%s
  }
  virtual_ipaddress {
    %s/%d dev %s
  }
}
`, h.Name, version, h.Iface, 150-50*i, advert, h.Addr, strings.Join(peers, "\n"), e.vip, e.bits, h.Iface)
				dir := filepath.Join(e.l.StateDir(), h.Name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				cf := filepath.Join(dir, "pl-keepalived.conf")
				if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
					return err
				}
				argv := []string{path, "--dont-fork", "--log-console", "--log-detail", "--vrrp", "-f", cf,
					"-p", filepath.Join(dir, "pl-ka.pid"), "-r", filepath.Join(dir, "pl-ka-vrrp.pid"), "-c", filepath.Join(dir, "pl-ka-check.pid")}
				if _, err := e.l.Start(h, "keepalived", argv, nil); err != nil {
					return err
				}
			}
			return nil
		},
		steady: func(e *env, timeout time.Duration) (string, error) {
			start := time.Now()
			deadline := start.Add(timeout)
			for time.Now().Before(deadline) && e.ctx.Err() == nil {
				if holder, ok := e.stable(); ok && holder == e.hosts[0].Name {
					benchutil.Sleep(e.ctx, time.Second)
					if h2, ok := e.stable(); ok && h2 == holder {
						return holder, nil
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			return "", fmt.Errorf("keepalived not steady within %v (address on %v)", timeout, e.addrHolders())
		},
	}
}

// nlSock is an rtnetlink socket in one host's namespace.
type nlSock struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func openNL(ns string) (*nlSock, error) {
	s := &nlSock{fd: -1, buf: make([]byte, 1<<16)}
	err := labcluster.InNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		s.fd = fd
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err == nil {
		err = unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	}
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, fmt.Errorf("rtnetlink in %s: %w", ns, err)
	}
	return s, nil
}

func (s *nlSock) close() { unix.Close(s.fd) }

// has reports whether any interface of the namespace carries addr (an
// RTM_GETADDR dump).
func (s *nlSock) has(addr netip.Addr) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfAddrmsg)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETADDR)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], s.seq)
	req[unix.NLMSG_HDRLEN] = unix.AF_INET
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, err
	}
	want := addr.As4()
	found := false
	for range 1000 {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			return false, err
		}
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		if err != nil {
			return false, err
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != s.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return found, nil
			case unix.NLMSG_ERROR:
				return false, fmt.Errorf("rtnetlink error")
			case unix.RTM_NEWADDR:
				attrs, err := syscall.ParseNetlinkRouteAttr(m)
				if err != nil {
					continue
				}
				for _, a := range attrs {
					if (a.Attr.Type == unix.IFA_LOCAL || a.Attr.Type == unix.IFA_ADDRESS) && len(a.Value) == 4 && [4]byte(a.Value) == want {
						found = true
					}
				}
			}
		}
	}
	return false, fmt.Errorf("rtnetlink dump did not end")
}

// prober sends a datagram to VIP:probePort every 10 ms from the client
// host's namespace and records who answers.
type prober struct {
	pc      net.PacketConn
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	replies []reply
}

type reply struct {
	at   time.Time
	host string
}

func newProber(ns string, vip netip.Addr) (*prober, error) {
	p := &prober{stop: make(chan struct{})}
	err := labcluster.InNetns(ns, func() error {
		var err error
		p.pc, err = net.ListenPacket("udp4", ":0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	dst := &net.UDPAddr{IP: vip.AsSlice(), Port: probePort}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				_, _ = p.pc.WriteTo([]byte("?"), dst)
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, _, err := p.pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			at := time.Now()
			p.mu.Lock()
			p.replies = append(p.replies, reply{at: at, host: string(buf[:n])})
			if len(p.replies) > 200000 {
				p.replies = slices.Clone(p.replies[100000:])
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

func (p *prober) close() {
	close(p.stop)
	p.pc.Close()
	p.wg.Wait()
}

// waitOther waits for the first answer at or after t from a host other
// than not.
func (p *prober) waitOther(ctx context.Context, t time.Time, not string, timeout time.Duration) (reply, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p.mu.Lock()
		i, _ := slices.BinarySearchFunc(p.replies, t, func(r reply, t time.Time) int { return r.at.Compare(t) })
		for ; i < len(p.replies); i++ {
			if r := p.replies[i]; r.host != not {
				p.mu.Unlock()
				return r, true
			}
		}
		p.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	return reply{}, false
}

// onlyFrom reports whether there were answers in the last d and all came
// from host.
func (p *prober) onlyFrom(host string, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	since := time.Now().Add(-d)
	n := 0
	for i := len(p.replies) - 1; i >= 0 && p.replies[i].at.After(since); i-- {
		if p.replies[i].host != host {
			return false
		}
		n++
	}
	return n >= int(d/every)/2
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return float64(a) / float64(b)
}
