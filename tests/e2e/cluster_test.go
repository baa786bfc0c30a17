package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
	"github.com/paceline/paceline/internal/witness"
)

// Names of the resources of the test spec.
const (
	exclusive = "pldb"  // single: writes "node epoch" to the witness every 10 ms
	clone     = "plweb" // clone of 3
)

// maxGap joins a host's witness writes into one activity interval; the
// sender writes every 10 ms.
const maxGap = 100 * time.Millisecond

// cluster is a 3-host lab running one paceline agent per host, plus a
// witness server in the lab's bridge namespace.
type cluster struct {
	t     *testing.T
	l     *lab.Lab
	w     *witness.Server
	hosts []*lab.Host
}

// newCluster creates a lab called "pl<tag><pid>", starts the agents and
// waits until all three nodes are online under a leader. Everything is
// removed by t.Cleanup, also when the test fails.
func newCluster(t *testing.T, tag string) *cluster {
	t.Helper()
	requireLab(t)
	name := fmt.Sprintf("pl%s%d", tag, os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Name: name, Hosts: 3})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	c := &cluster{t: t, l: l, hosts: l.Hosts()}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PL_E2E_LOGS") != "" {
			c.dumpLogs()
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	w, err := labcluster.Witness(l, 0)
	if err != nil {
		t.Fatalf("witness: %v", err)
	}
	c.w = w
	t.Cleanup(func() { _ = w.Close() })
	for _, h := range c.hosts {
		if err := labcluster.StartAgent(l, h, labcluster.Options{Exe: exe}); err != nil {
			t.Fatalf("start agent on %s: %v", h.Name, err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := labcluster.WaitReady(rctx, l, exe); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.hosts {
		c.waitWhole(60*time.Second, h.Name, 0)
	}
	return c
}

// dumpLogs prints the end of every agent log (on failure).
func (c *cluster) dumpLogs() {
	for _, h := range c.hosts {
		b, _ := os.ReadFile(c.l.LogPath(h, "agent"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("---- %s agent log (tail) ----\n%s", h.Name, b)
	}
}

func (c *cluster) host(name string) *lab.Host {
	for _, h := range c.hosts {
		if h.Name == name {
			return h
		}
	}
	c.t.Fatalf("no host %q", name)
	return nil
}

// other returns a host whose name is not in not.
func (c *cluster) other(not ...string) *lab.Host {
	for _, h := range c.hosts {
		if !slices.Contains(not, h.Name) {
			return h
		}
	}
	c.t.Fatalf("no host other than %v", not)
	return nil
}

// cli runs a paceline client command inside h and returns its output.
func (c *cluster) cli(h *lab.Host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := labcluster.CLI(ctx, c.l, exe, h, args...)
	return string(out), err
}

// mustCLI is cli that fails the test on error. A command refused because
// the answering agent is not the leader and could not forward it (an
// election under way: nothing was committed) is retried for up to 20 s;
// the test logs each retry.
func (c *cluster) mustCLI(h *lab.Host, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := c.cli(h, args...)
		if err == nil {
			return out
		}
		if (strings.Contains(out, "no leader is known") || strings.Contains(out, "error: not the leader")) && time.Now().Before(deadline) {
			c.t.Logf("paceline %s on %s: %s; retrying", strings.Join(args, " "), h.Name, strings.TrimSpace(out))
			time.Sleep(250 * time.Millisecond)
			continue
		}
		c.t.Fatalf("paceline %s on %s: %v\n%s", strings.Join(args, " "), h.Name, err, out)
	}
}

func (c *cluster) status(h *lab.Host) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return labcluster.Status(ctx, c.l, exe, h)
}

// waitStatus polls `status --json` on h until ok accepts it; it fails the
// test after timeout with the last status it saw.
func (c *cluster) waitStatus(h *lab.Host, timeout time.Duration, what string, ok func(*api.Status) bool) *api.Status {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		st, err := c.status(h)
		if err == nil && ok(st) {
			return st
		}
		if err != nil {
			last = err.Error()
		} else {
			last = describe(st)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting on %s for %s: gave up after %v; last status: %s", h.Name, what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitWhole waits until h (or h1) sees all three nodes online under a
// leader with quorum and, when the spec has been applied (version > 0),
// exactly one running exclusive instance and three clone instances.
func (c *cluster) waitWhole(timeout time.Duration, from string, specVersion int) *api.Status {
	c.t.Helper()
	h := c.hosts[0]
	if from != "" {
		h = c.host(from)
	}
	return c.waitStatus(h, timeout, "the whole cluster", func(st *api.Status) bool {
		n, q := labcluster.Online(st)
		if n != 3 || !q || st.SpecVersion < specVersion {
			return false
		}
		if specVersion == 0 {
			return true
		}
		return len(labcluster.Holders(st, exclusive)) == 1 && len(labcluster.Holders(st, clone)) == 3
	})
}

func describe(st *api.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "answerer %s leader %q quorum %v spec v%d;", st.Answerer, st.Leader, st.Quorum, st.SpecVersion)
	for _, n := range st.Nodes {
		fmt.Fprintf(&b, " %s(online=%v standby=%v)", n.Name, n.Online, n.Standby)
	}
	for _, r := range st.Resources {
		fmt.Fprintf(&b, "; %s:", r.Name)
		for _, i := range r.Instances {
			fmt.Fprintf(&b, " [%d]%s/%s/e%d", i.Slot, i.Node, i.State, i.Epoch)
		}
		if len(r.Unplaced) > 0 {
			fmt.Fprintf(&b, " unplaced %v", r.Unplaced)
		}
	}
	return b.String()
}

// spec is the test spec; replicas is the clone count.
func (c *cluster) spec(replicas int) string {
	return fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: %s, noQuorumPolicy: stop}
resources:
  - name: %s
    class: process
    mode: single
    params:
      command: [%q, sample-service, --witness, %q, --every, 10ms]
  - name: %s
    class: process
    mode: clone
    replicas: %d
    params:
      command: [%q, sample-service, --ticker]
`, labcluster.ClusterName, exclusive, exe, c.w.Addr(), clone, replicas, exe)
}

// writeSpec writes a spec file where the hosts can read it.
func (c *cluster) writeSpec(name, doc string) string {
	c.t.Helper()
	p := filepath.Join(c.l.StateDir(), "pl-"+name+".yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// applySpec applies the test spec and waits until it runs everywhere and
// the holder writes to the witness; it returns the holder.
func (c *cluster) applySpec() string {
	c.t.Helper()
	out := c.mustCLI(c.hosts[0], "apply", "-f", c.writeSpec("spec", c.spec(3)), "--comment", "e2e")
	if !strings.Contains(out, "applied as version 1") {
		c.t.Fatalf("apply: unexpected output:\n%s", out)
	}
	st := c.waitWhole(60*time.Second, "", 1)
	holder := labcluster.Holders(st, exclusive)[0]
	c.waitWrite(time.Time{}, holder, 30*time.Second)
	return holder
}

// waitWrite waits until the witness has a write by host (or, if host
// starts with "!", by any host but that one) at or after t, and returns it.
func (c *cluster) waitWrite(t time.Time, host string, timeout time.Duration) witness.Write {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, w := range c.w.Writes() {
			if w.At.Before(t) {
				continue
			}
			if (strings.HasPrefix(host, "!") && w.Host != host[1:]) || w.Host == host {
				return w
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("witness: no write by %s after %s within %v (%d writes in total)", host, t.Format("15:04:05.000"), timeout, len(c.w.Writes()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastWrite returns host's last write.
func (c *cluster) lastWrite(host string) (witness.Write, bool) {
	ws := c.w.Writes()
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].Host == host {
			return ws[i], true
		}
	}
	return witness.Write{}, false
}

// noOverlap checks the whole witness record for two simultaneous holders.
func (c *cluster) noOverlap() witness.Report {
	c.t.Helper()
	r := witness.Analyze(c.w.Writes(), maxGap)
	if len(r.Overlaps) > 0 {
		c.t.Errorf("I1 violated: the exclusive resource ran on two hosts at once (%v in total):\n  %s", r.Overlap, strings.Join(r.Overlaps, "\n  "))
	}
	return r
}

// holdSteady watches h's status for d and fails if the exclusive resource
// leaves node or any other host writes to the witness.
func (c *cluster) holdSteady(h *lab.Host, node string, d time.Duration) {
	c.t.Helper()
	from := time.Now()
	end := from.Add(d)
	for time.Now().Before(end) {
		st, err := c.status(h)
		if err == nil {
			if hs := labcluster.Holders(st, exclusive); len(hs) > 1 || (len(hs) == 1 && hs[0] != node) {
				c.t.Fatalf("%s moved off %s without a reason: %s", exclusive, node, describe(st))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, w := range c.w.Writes() {
		if !w.At.Before(from) && w.Host != node {
			c.t.Fatalf("witness: %s wrote at %s while %s holds %s", w.Host, w.At.Format("15:04:05.000"), node, exclusive)
		}
	}
}
