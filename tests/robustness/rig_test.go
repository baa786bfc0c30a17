package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
	"github.com/paceline/paceline/internal/witness"
)

// Resource names of the test spec.
const (
	resVIP  = "plvip"   // vip: the client host watches it over ARP
	resDB   = "pldb"    // process, single: writes "host epoch" to the witness every 10 ms
	resMark = "plmark"  // process: the writer bumps its argument (the spec write marker)
	resXtra = "plextra" // process: added and removed by the writer
)

// maxGap joins a host's witness writes (every 10 ms) into one interval.
const maxGap = 100 * time.Millisecond

// rig is a lab of three control hosts running paceline agents and a client
// host (no agent), a witness in the bridge namespace and an ARP watcher on
// the client.
type rig struct {
	t      *testing.T
	l      *lab.Lab
	w      *witness.Server
	ctrl   []*lab.Host
	client *lab.Host
	vip    netip.Addr
	arp    *arpWatcher
	t0     time.Time
	oldest int // oldest version in the final history (set by checkWrites)

	mu     sync.Mutex
	events []string // timeline, printed on failure and with -v
}

// newRig builds the lab "plrb<tag><pid>", starts the agents, applies the
// first spec and waits until both exclusive resources run.
func newRig(t *testing.T, tag string) *rig {
	t.Helper()
	requireLab(t)
	name := fmt.Sprintf("plrb%s%d", tag, os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Name: name, Hosts: 4})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	all := l.Hosts()
	r := &rig{t: t, l: l, ctrl: all[:3], client: all[3], t0: time.Now()}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PL_ROBUSTNESS_LOGS") != "" {
			r.dumpLogs()
		}
		if r.arp != nil {
			r.arp.Close()
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if r.w, err = labcluster.Witness(l, 0); err != nil {
		t.Fatalf("witness: %v", err)
	}
	t.Cleanup(func() { _ = r.w.Close() })
	for _, h := range r.ctrl {
		if err := labcluster.StartAgent(l, h, labcluster.Options{Exe: exe}); err != nil {
			t.Fatalf("start agent on %s: %v", h.Name, err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer rcancel()
	if err := labcluster.WaitReady(rctx, l, exe); err != nil {
		t.Fatal(err)
	}
	sub := l.Subnet()
	r.vip = sub.Addr()
	for i := 0; i < 200; i++ {
		r.vip = r.vip.Next()
	}
	if r.arp, err = newARPWatcher(r.client, r.vip, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, _, err := r.apply(0); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("first apply: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := r.waitWhole(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) logf(format string, a ...any) {
	s := fmt.Sprintf("%7.3fs ", time.Since(r.t0).Seconds()) + fmt.Sprintf(format, a...)
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
	r.t.Log(s)
}

// spec returns the spec document of write n (0: the first).
func (r *rig) spec(n int) string {
	sub := r.l.Subnet()
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: paceline/v1
cluster: {name: %s, noQuorumPolicy: stop}
resources:
  - name: %s
    class: vip
    params: {address: "%s/%d", interface: %s}
    operations: [{name: monitor, interval: 1s}]
  - name: %s
    class: process
    mode: single
    params:
      command: [%q, sample-service, --witness, %q, --every, 10ms]
  - name: %s
    class: process
    params:
      command: [/bin/sh, -c, "exec sleep 86400", "rb-mark-%d"]
`, labcluster.ClusterName, resVIP, r.vip, sub.Bits(), r.ctrl[0].Iface, resDB, exe, r.w.Addr(), resMark, n)
	if n%4 >= 2 {
		fmt.Fprintf(&b, `  - name: %s
    class: process
    params:
      command: [/bin/sh, -c, "exec sleep 86400", "rb-extra-%d"]
`, resXtra, n)
	}
	return b.String()
}

var appliedRE = regexp.MustCompile(`applied as version (\d+)`)

// apply applies write n from the client host and returns the version the
// cluster acknowledged.
func (r *rig) apply(n int) (int, string, error) {
	path := filepath.Join(r.l.StateDir(), fmt.Sprintf("spec-%d.yaml", n))
	if err := os.WriteFile(path, []byte(r.spec(n)), 0o644); err != nil {
		return 0, "", err
	}
	defer os.Remove(path)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := labcluster.CLI(ctx, r.l, exe, r.client, "apply", "-f", path, "--comment", fmt.Sprintf("rb-write-%d", n), "--timeout", "10s")
	if err != nil {
		return 0, strings.Join(strings.Fields(string(out)), " "), err
	}
	m := appliedRE.FindStringSubmatch(string(out))
	if m == nil {
		return 0, string(out), fmt.Errorf("apply: no version in %q", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v, "", nil
}

// status asks the cluster from the client host.
func (r *rig) status() (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return labcluster.Status(ctx, r.l, exe, r.client)
}

// waitWhole waits until all three nodes are online under a leader with
// quorum and each exclusive resource runs exactly once.
func (r *rig) waitWhole(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		st, err := r.status()
		if err == nil {
			n, q := labcluster.Online(st)
			db, vip := labcluster.Holders(st, resDB), labcluster.Holders(st, resVIP)
			if n == 3 && q && len(db) == 1 && len(vip) == 1 {
				return nil
			}
			last = fmt.Sprintf("%d online, quorum %v, leader %q, %s on %v, %s on %v; %s; %s; warnings %q", n, q, st.Leader, resDB, db, resVIP, vip,
				describeResource(st, resDB), describeResource(st, resVIP), st.Warnings)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not whole within %v (last: %s)", timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// history returns the spec history as the cluster has it now.
func (r *rig) history() ([]api.SpecVersion, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := labcluster.CLI(ctx, r.l, exe, r.client, "spec", "history", "--json")
	if err != nil {
		return nil, fmt.Errorf("spec history: %w: %s", err, out)
	}
	var h []api.SpecVersion
	if err := json.Unmarshal(out, &h); err != nil {
		return nil, fmt.Errorf("spec history: %w: %.300s", err, out)
	}
	return h, nil
}

// specVersion returns the YAML of spec version v.
func (r *rig) specVersion(v int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := labcluster.CLI(ctx, r.l, exe, r.client, "spec", "get", "--version", strconv.Itoa(v), "--json")
	if err != nil {
		return "", fmt.Errorf("spec get --version %d: %w: %s", v, err, out)
	}
	var d api.SpecDocument
	if err := json.Unmarshal(out, &d); err != nil {
		return "", fmt.Errorf("spec get --version %d: %w: %.300s", v, err, out)
	}
	if d.Version != v {
		return "", fmt.Errorf("spec get --version %d answered version %d", v, d.Version)
	}
	return d.YAML, nil
}

// describeResource summarises one resource of st for a failure message:
// every instance with its node, state and epoch, and why it is not placed.
func describeResource(st *api.Status, name string) string {
	for _, res := range st.Resources {
		if res.Name != name {
			continue
		}
		var is []string
		for _, i := range res.Instances {
			is = append(is, fmt.Sprintf("%d@%s:%s(e%d)", i.Slot, i.Node, i.State, i.Epoch))
		}
		return fmt.Sprintf("%s target %s instances [%s] failcount %v blocked %q unplaced %q frozen %q",
			name, res.Target, strings.Join(is, " "), res.FailCount, res.Blocked, res.Unplaced, res.Frozen)
	}
	return name + " not in status"
}

// dumpLogs prints the timeline, every agent log's lines about the
// exclusive resources and its warnings and errors (the last 150 of
// them), and the end of every agent log. With PL_ROBUSTNESS_LOGS=DIR the
// whole logs are copied to DIR as well.
func (r *rig) dumpLogs() {
	r.mu.Lock()
	r.t.Logf("---- timeline ----\n%s", strings.Join(r.events, "\n"))
	r.mu.Unlock()
	dir := os.Getenv("PL_ROBUSTNESS_LOGS")
	if dir != "" && dir != "1" {
		_ = os.MkdirAll(dir, 0o755)
	}
	for _, h := range r.ctrl {
		b, _ := os.ReadFile(r.l.LogPath(h, "agent"))
		if dir != "" && dir != "1" {
			_ = os.WriteFile(filepath.Join(dir, h.Name+"-agent.log"), b, 0o644)
		}
		var sel []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, resDB) || strings.Contains(line, resVIP) || strings.Contains(line, "level=WARN") ||
				strings.Contains(line, "level=ERROR") || strings.Contains(line, "=== paceline lab") {
				sel = append(sel, line)
			}
		}
		if len(sel) > 150 {
			sel = sel[len(sel)-150:]
		}
		r.t.Logf("---- %s agent log: %s, %s, warnings and errors (last %d lines) ----\n%s", h.Name, resDB, resVIP, len(sel), strings.Join(sel, "\n"))
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		r.t.Logf("---- %s agent log (tail) ----\n%s", h.Name, b)
	}
}

// agentLines returns the agent log lines of every control host that
// mention s, between from and to (by the lab's start markers and the
// agents' own timestamps when present; all lines when none parse).
func (r *rig) agentLines(s string, max int) []string {
	var out []string
	for _, h := range r.ctrl {
		b, _ := os.ReadFile(r.l.LogPath(h, "agent"))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, s) || strings.Contains(line, "=== paceline lab") {
				out = append(out, h.Name+": "+line)
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}
