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
	rounds   = flag.Int("rounds", 1, "runs per target; the best requests/s is kept (1..5)")
	body     = flag.Int("body", 64, "response body size in bytes")
	backends = flag.Int("backends", 2, "number of backend HTTP servers")
	childCfg = flag.String("child-lb", "", "internal: run the load balancer with this JSON config")
	haproxy  = flag.String("haproxy", "haproxy", "haproxy binary")
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
	if *rounds < 1 || *rounds > 5 {
		fatal("-rounds must be within 1..5")
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
	name     string
	rps      float64
	p99      time.Duration
	errs     string
	requests int
}

var (
	reRPS  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP99  = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	reErrs = regexp.MustCompile(`(Socket errors:.*|Non-2xx or 3xx responses: \d+)`)
	reReqs = regexp.MustCompile(`(\d+) requests in`)
)

func wrk(name, url string) (result, error) {
	best := result{name: name}
	for range *rounds {
		ctx, cancel := context.WithTimeout(context.Background(), *duration+30*time.Second)
		out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(*threads), "-c", strconv.Itoa(*conns),
			"-d", fmt.Sprintf("%ds", int(duration.Seconds())), "--latency", url).CombinedOutput()
		cancel()
		if err != nil {
			return best, fmt.Errorf("wrk %s: %v\n%s", name, err, out)
		}
		r := result{name: name}
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
		var errs []string
		for _, m := range reErrs.FindAll(out, -1) {
			errs = append(errs, string(m))
		}
		r.errs = strings.Join(errs, "; ")
		if r.rps > best.rps {
			best = r
		}
	}
	return best, nil
}

func startChild(name string, cmd *exec.Cmd, addrs ...string) (func(), error) {
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

	results := []result{}
	r, err := wrk("direct", "http://"+servers[0].Address+"/")
	if err != nil {
		return err
	}
	results = append(results, r)

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
		for _, t := range [][2]string{{"haproxy tcp", haTCP}, {"haproxy http", haHTTP}} {
			r, err := wrk(t[0], "http://"+t[1]+"/")
			if err != nil {
				stop()
				return err
			}
			results = append(results, r)
		}
		stop()
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
	for _, t := range [][2]string{{"paceline tcp", plTCP}, {"paceline http", plHTTP}} {
		r, err := wrk(t[0], "http://"+t[1]+"/")
		if err != nil {
			stop()
			return err
		}
		results = append(results, r)
	}
	stop()

	// Report.
	fmt.Printf("bench/lb: wrk -t%d -c%d -d%s --latency, %d-byte responses, %d Go backend(s), %d round(s) (best kept), %d CPUs\n",
		*threads, *conns, *duration, *body, *backends, *rounds, runtime.NumCPU())
	fmt.Printf("haproxy: %s (nbthread 1); paceline lb: GOMAXPROCS=1\n\n", haVersion)
	fmt.Printf("%-14s %12s %10s  %s\n", "target", "requests/s", "p99", "errors")
	by := map[string]result{}
	for _, r := range results {
		by[r.name] = r
		fmt.Printf("%-14s %12.0f %10s  %s\n", r.name, r.rps, r.p99.Round(time.Microsecond), r.errs)
	}
	fmt.Println()
	for _, m := range []struct {
		mode   string
		target float64
	}{{"tcp", 1.0}, {"http", 0.8}} {
		h, p := by["haproxy "+m.mode], by["paceline "+m.mode]
		if h.rps == 0 {
			fmt.Printf("%s: no HAProxy figure\n", m.mode)
			continue
		}
		ratio := p.rps / h.rps
		verdict := "meets"
		if ratio < m.target {
			verdict = "MISSES"
		}
		fmt.Printf("%-4s paceline/haproxy requests/s = %.2f (target ≥ %.1f: %s); p99 %s vs %s\n",
			m.mode, ratio, m.target, verdict, p.p99.Round(time.Microsecond), h.p99.Round(time.Microsecond))
	}
	return nil
}
