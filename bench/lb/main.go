// Command lb benchmarks paceline's load balancer (internal/lb) against
// HAProxy with wrk on loopback, in one invocation: direct to the backend,
// through HAProxy (nbthread 1) and through paceline (a child process with
// GOMAXPROCS=1), in tcp and http modes. See bench/lb/README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/internal/lb"
)

var (
	duration = flag.Duration("duration", 5*time.Second, "wrk duration per run (1s..60s)")
	conns    = flag.Int("conns", 50, "wrk connections")
	threads  = flag.Int("threads", 1, "wrk threads")
	rounds   = flag.Int("rounds", 3, "rounds; each runs every target once, HAProxy and paceline interleaved; the median is kept (1..9)")
	body     = flag.Int("body", 64, "response body size in bytes")
	backends = flag.Int("backends", 2, "number of backend HTTP servers")
	childCfg = flag.String("child-lb", "", "internal: run the load balancer with this JSON config")
	haproxy  = flag.String("haproxy", "haproxy", "haproxy binary")
	tcpGor   = flag.Bool("tcp-goroutine", true, "also run tcp mode in a second child with -alt-env (by default the goroutine path), as an A/B against the event loop")
	altEnv   = flag.String("alt-env", "PACELINE_LB_TCP=goroutine", "environment of the second tcp child (paceline tcp-g)")
)

func main() {
	flag.Parse()
	if *childCfg != "" {
		child(*childCfg)
		return
	}
	if *duration < time.Second || *duration > time.Minute {
		fatal("-duration must be within 1s..60s")
	}
	if *rounds < 1 || *rounds > 9 {
		fatal("-rounds must be within 1..9")
	}
	if err := run(); err != nil {
		fatal(err.Error())
	}
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "bench/lb:", msg)
	os.Exit(1)
}

// child runs the load balancer until SIGTERM.
func child(file string) {
	runtime.GOMAXPROCS(1)
	b, err := os.ReadFile(file)
	if err != nil {
		fatal(err.Error())
	}
	var cfg lb.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		fatal(err.Error())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := lb.New(cfg, log, nil)
	if err != nil {
		fatal(err.Error())
	}
	if f := os.Getenv("BENCH_LB_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			fatal(err.Error())
		}
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	l.Close()
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err.Error())
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListen(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s", addr, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type result struct {
	name      string
	rps       float64
	p99       time.Duration
	errs      string
	requests  int
	cpuPerReq time.Duration // CPU time of the proxy process per request; 0: not measured
	restCPU   time.Duration // CPU time of wrk and the backends per request
}

// procCPU is the CPU time used so far by every thread of process pid (the
// scheduler's nanosecond figure from /proc/PID/task/*/schedstat), 0 when
// unreadable.
func procCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

var (
	reRPS  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP99  = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	reErrs = regexp.MustCompile(`(Socket errors:.*|Non-2xx or 3xx responses: \d+)`)
	reReqs = regexp.MustCompile(`(\d+) requests in`)
)

// wrk runs wrk against url; pid (when not 0) is the proxy whose CPU time
// per request is measured.
func wrk(name, url string, pid int) (result, error) {
	r := result{name: name}
	var cpu0 time.Duration
	if pid != 0 {
		cpu0 = procCPU(pid)
	}
	self0 := procCPU(os.Getpid()) // the backends
	ctx, cancel := context.WithTimeout(context.Background(), *duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(*threads), "-c", strconv.Itoa(*conns),
		"-d", fmt.Sprintf("%ds", int(duration.Seconds())), "--latency", url)
	out, err := cmd.CombinedOutput()
	if err == nil && r.requests == 0 {
		self := procCPU(os.Getpid()) - self0
		if m := reReqs.FindSubmatch(out); m != nil {
			if n, _ := strconv.Atoi(string(m[1])); n > 0 {
				r.restCPU = (self + cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) / time.Duration(n)
			}
		}
	}
	if err != nil {
		return r, fmt.Errorf("wrk %s: %v\n%s", name, err, out)
	}
	if m := reRPS.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := reP99.FindSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[2])]
		r.p99 = time.Duration(v * float64(unit))
	}
	if m := reReqs.FindSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(string(m[1]))
	}
	if pid != 0 && r.requests > 0 {
		if cpu := procCPU(pid) - cpu0; cpu > 0 {
			r.cpuPerReq = cpu / time.Duration(r.requests)
		}
	}
	var errs []string
	for _, m := range reErrs.FindAll(out, -1) {
		errs = append(errs, string(m))
	}
	r.errs = strings.Join(errs, "; ")
	return r, nil
}

// pids of the proxies by startChild name.
var pids = map[string]int{}

// median keeps the run with the median requests/s.
func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].rps < rs[j].rps })
	return rs[len(rs)/2]
}

func startChild(name string, cmd *exec.Cmd, addrs ...string) (func(), error) {
	defer func() {
		if cmd.Process != nil {
			pids[name] = cmd.Process.Pid
		}
	}()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	for _, a := range addrs {
		if err := waitListen(a, 10*time.Second); err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return stop, nil
}

func run() error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "bench-lb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Backends: tiny Go HTTP servers in this process.
	payload := strings.Repeat("x", *body)
	var servers []lb.Server
	for i := range *backends {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, payload)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		servers = append(servers, lb.Server{Name: fmt.Sprintf("s%d", i+1), Address: ln.Addr().String()})
	}

	// HAProxy.
	haTCP, haHTTP := freeAddr(), freeAddr()
	var srvLines strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&srvLines, "    server %s %s\n", s.Name, s.Address)
	}
	haCfg := fmt.Sprintf(`global
    nbthread 1
    maxconn 4000
defaults
    timeout connect 10s
    timeout client 1m
    timeout server 1m
    balance roundrobin
frontend ft_tcp
    mode tcp
    bind %s
    default_backend bk_tcp
backend bk_tcp
    mode tcp
%sfrontend ft_http
    mode http
    bind %s
    option forwardfor
    default_backend bk_http
backend bk_http
    mode http
%s`, haTCP, srvLines.String(), haHTTP, srvLines.String())
	haFile := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(haFile, []byte(haCfg), 0o644)
	haVersion := "not run"
	targets := [][2]string{{"direct", "http://" + servers[0].Address + "/"}}
	if _, err := exec.LookPath(*haproxy); err != nil {
		fmt.Fprintln(os.Stderr, "haproxy not found (apt-get install haproxy); skipping it")
	} else {
		if out, err := exec.Command(*haproxy, "-v").Output(); err == nil {
			haVersion = strings.SplitN(string(out), "\n", 2)[0]
		}
		stop, err := startChild("haproxy", exec.Command(*haproxy, "-db", "-f", haFile), haTCP, haHTTP)
		if err != nil {
			return err
		}
		defer stop()
	}

	// paceline, in a child process with GOMAXPROCS=1.
	plTCP, plHTTP := freeAddr(), freeAddr()
	cfg := lb.Config{
		Frontends: []lb.Frontend{
			{Name: "tcp", Bind: plTCP, Mode: "tcp", Backend: "be"},
			{Name: "http", Bind: plHTTP, Mode: "http", Backend: "be"},
		},
		Backends: []lb.Backend{{Name: "be", Balance: "roundrobin", Servers: servers}},
	}
	cfgFile := filepath.Join(dir, "lb.json")
	b, _ := json.Marshal(cfg)
	os.WriteFile(cfgFile, b, 0o644)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-child-lb", cfgFile)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	stop, err := startChild("paceline lb", cmd, plTCP, plHTTP)
	if err != nil {
		return err
	}
	defer stop()
	if haVersion != "not run" {
		targets = append(targets, [2]string{"haproxy tcp", "http://" + haTCP + "/"})
	}
	targets = append(targets, [2]string{"paceline tcp", "http://" + plTCP + "/"})
	if *tcpGor {
		// The same load balancer with the tcp event loop switched off.
		gorTCP := freeAddr()
		gcfg := lb.Config{
			Frontends: []lb.Frontend{{Name: "tcp", Bind: gorTCP, Mode: "tcp", Backend: "be"}},
			Backends:  cfg.Backends,
		}
		gfile := filepath.Join(dir, "lb-goroutine.json")
		b, _ := json.Marshal(gcfg)
		os.WriteFile(gfile, b, 0o644)
		cmd := exec.Command(self, "-child-lb", gfile)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1", *altEnv, "BENCH_LB_CPUPROFILE=")
		stop, err := startChild("paceline lb (goroutine tcp)", cmd, gorTCP)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, [2]string{"paceline tcp-g", "http://" + gorTCP + "/"})
	}
	if haVersion != "not run" {
		targets = append(targets, [2]string{"haproxy http", "http://" + haHTTP + "/"})
	}
	targets = append(targets, [2]string{"paceline http", "http://" + plHTTP + "/"})

	// The proxy process behind each target, for its CPU time per request.
	proc := map[string]string{"haproxy tcp": "haproxy", "haproxy http": "haproxy",
		"paceline tcp": "paceline lb", "paceline http": "paceline lb", "paceline tcp-g": "paceline lb (goroutine tcp)"}
	runs := map[string][]result{}
	for round := range *rounds {
		// Odd rounds run the targets in reverse order, so load that grows
		// or shrinks during a round does not always favour the same one.
		order := slices.Clone(targets)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range order {
			r, err := wrk(t[0], t[1], pids[proc[t[0]]])
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "round %d %-14s %8.0f req/s p99 %-9s proxy CPU/request %-9s wrk+backends CPU/request %s\n", round+1, t[0], r.rps, r.p99, r.cpuPerReq, r.restCPU)
			runs[t[0]] = append(runs[t[0]], r)
		}
	}
	var results []result
	for _, t := range targets {
		results = append(results, median(runs[t[0]]))
	}

	// Report.
	fmt.Printf("bench/lb: wrk -t%d -c%d -d%s --latency, %d-byte responses, %d Go backend(s), %d round(s) (median kept), %d CPUs\n",
		*threads, *conns, *duration, *body, *backends, *rounds, runtime.NumCPU())
	fmt.Printf("haproxy: %s (nbthread 1); paceline lb: GOMAXPROCS=1\n\n", haVersion)
	fmt.Printf("%-14s %12s %10s %12s %12s  %s\n", "target", "requests/s", "p99", "CPU/request", "rest CPU/req", "errors")
	by := map[string]result{}
	for _, r := range results {
		by[r.name] = r
		cpu := "-"
		if r.cpuPerReq > 0 {
			cpu = r.cpuPerReq.Round(10 * time.Nanosecond).String()
		}
		fmt.Printf("%-14s %12.0f %10s %12s %12s  %s\n", r.name, r.rps, r.p99.Round(time.Microsecond), cpu, r.restCPU.Round(10*time.Nanosecond), r.errs)
	}
	fmt.Println()
	// Rounds pair runs made seconds apart, so the per-round ratio cancels
	// most of the drift of a shared host; report its median.
	ratios := func(a, b []result, f func(result) float64) (float64, string) {
		var rs []float64
		var each []string
		for i := range min(len(a), len(b)) {
			if f(b[i]) == 0 {
				continue
			}
			rs = append(rs, f(a[i])/f(b[i]))
			each = append(each, fmt.Sprintf("%.2f", f(a[i])/f(b[i])))
		}
		if len(rs) == 0 {
			return 0, ""
		}
		sort.Float64s(rs)
		return rs[len(rs)/2], strings.Join(each, " ")
	}
	rps := func(r result) float64 { return r.rps }
	cpu := func(r result) float64 { return float64(r.cpuPerReq) }
	for _, m := range []struct {
		name, a, b string
		target     float64
	}{
		{"tcp   paceline/haproxy", "paceline tcp", "haproxy tcp", 1.0},
		{"tcp-g paceline/haproxy", "paceline tcp-g", "haproxy tcp", 1.0},
		{"http  paceline/haproxy", "paceline http", "haproxy http", 0.8},
		{"tcp   event loop/tcp-g (" + *altEnv + ")", "paceline tcp", "paceline tcp-g", 0},
	} {
		as, bs := runs[m.a], runs[m.b]
		if len(as) == 0 || len(bs) == 0 {
			continue
		}
		ratio, each := ratios(as, bs, rps)
		verdict := ""
		if m.target > 0 {
			verdict = fmt.Sprintf("; target ≥ %.1f: meets", m.target)
			if ratio < m.target {
				verdict = fmt.Sprintf("; target ≥ %.1f: MISSES", m.target)
			}
		}
		fmt.Printf("%s requests/s: median of per-round ratios %.2f (rounds: %s%s); p99 %s vs %s\n",
			m.name, ratio, each, verdict, by[m.a].p99.Round(time.Microsecond), by[m.b].p99.Round(time.Microsecond))
		if c, each := ratios(as, bs, cpu); c > 0 {
			fmt.Printf("%s CPU/request: median of per-round ratios %.2f (rounds: %s)\n", strings.Repeat(" ", len(m.name)), c, each)
		}
	}
	return nil
}
