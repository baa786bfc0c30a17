// Command restart measures how long paceline takes from the crash of a
// supervised process to its restart on the same node: the executor of one
// node runs a real process (class process), the benchmark SIGKILLs it and
// waits for the new process's first line. It prints p50/p99/max over the
// runs next to what Pacemaker takes by design: a crash is noticed only by
// the next monitor, so with a monitor every I seconds detection alone
// takes 0..I s (I/2 on average) before the restart begins.
//
//	go run ./bench/restart [--runs 50] [--monitor 10s]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/paceline/paceline/bench/internal/benchutil"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/executor"
	"github.com/paceline/paceline/internal/lease"
	"github.com/paceline/paceline/internal/spec"
)

func main() {
	runs := flag.Int("runs", 50, "crashes to measure")
	monitor := flag.Duration("monitor", 10*time.Second, "Pacemaker monitor interval to compare with (pcs uses the agent's advertised default, 10s for most)")
	flag.Parse()
	if err := run(*runs, *monitor); err != nil {
		fmt.Fprintln(os.Stderr, "restart:", err)
		os.Exit(1)
	}
}

func run(runs int, monitor time.Duration) error {
	dir, err := os.MkdirTemp("", "plrestart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp := lease.Params{L: time.Hour, Margin: time.Minute, LeaderLeaseTimeout: time.Second}
	holder := lease.NewHolder(lp)
	e := executor.New(executor.Config{Node: "n1", Cluster: "bench", Holder: holder, LogDir: filepath.Join(dir, "logs")})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		e.StopAll(ctx)
	}()
	holder.Acked(time.Now())
	e.LeaseRegained(1)
	// runs exclusive resources whose every start appends its PID to their
	// own file; each is crashed once, so every measurement is a first
	// failure (repeated crashes within 10 s back off, like any supervisor).
	var items []api.NodeAssignment
	files := make([]string, runs)
	for i := 0; i < runs; i++ {
		files[i] = filepath.Join(dir, fmt.Sprintf("starts-%d", i))
		res := spec.Resource{Name: fmt.Sprintf("svc%d", i), Class: spec.ClassProcess, MigrationThreshold: new(int),
			Params: spec.Params{Command: []string{"/bin/sh", "-c", `echo $$ >> "$OUT"; exec sleep 100000`}, Env: map[string]string{"OUT": files[i]}}}
		def, _ := json.Marshal((&spec.Spec{Resources: []spec.Resource{res}}).WithDefaults().Resources[0])
		items = append(items, api.NodeAssignment{Resource: res.Name, Slot: 0, Epoch: 1, Def: def})
	}
	e.Update(api.Assignments{Index: 1, Items: items})

	pids := func(file string) []int {
		f, err := os.Open(file)
		if err != nil {
			return nil
		}
		defer f.Close()
		var ps []int
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if p, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
				ps = append(ps, p)
			}
		}
		return ps
	}
	waitStarts := func(file string, n int, deadline time.Duration) ([]int, error) {
		end := time.Now().Add(deadline)
		for time.Now().Before(end) {
			if ps := pids(file); len(ps) >= n {
				return ps, nil
			}
			time.Sleep(200 * time.Microsecond)
		}
		return nil, fmt.Errorf("%s: no start #%d within %s", file, n, deadline)
	}
	for _, f := range files {
		if _, err := waitStarts(f, 1, 60*time.Second); err != nil {
			return err
		}
	}
	fmt.Printf("paceline: supervised process crash → restart, %d runs (load average %s)\n", runs, benchutil.LoadAvg())
	var ds []time.Duration
	for _, f := range files {
		time.Sleep(200 * time.Millisecond)
		ps := pids(f)
		t0 := time.Now()
		if err := syscall.Kill(ps[len(ps)-1], syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %d: %w", ps[len(ps)-1], err)
		}
		if _, err := waitStarts(f, len(ps)+1, 30*time.Second); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	p := func(q float64) time.Duration { return benchutil.Percentile(ds, q*100) } // nearest rank, like the other benchmarks
	fmt.Printf("  p50 %s  p99 %s  max %s  (from SIGKILL to the new process's first line; includes the shell's own start)\n",
		p(0.5).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
	fmt.Printf("  target: ≤ 100 ms plus the service's own start time\n")
	fmt.Printf("Pacemaker (not measured here; by design): a crash is seen at the next monitor, every %s:\n", monitor)
	fmt.Printf("  detection alone 0..%s (mean %s), then stop and start; ratio of means ≈ %.0fx\n",
		monitor, monitor/2, float64(monitor/2)/float64(p(0.5)))
	return nil
}
