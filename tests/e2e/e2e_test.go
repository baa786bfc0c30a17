package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
)

// TestFormApplyAndCLI forms a cluster, applies a spec with an exclusive
// resource and a clone, and drives the day-two CLI from inside a host.
func TestFormApplyAndCLI(t *testing.T) {
	c := newCluster(t, "a")
	h := c.hosts[1] // a follower or the leader: the CLI must not care
	path := c.writeSpec("spec", c.spec(3))

	// apply --dry-run shows the plan and changes nothing.
	out := c.mustCLI(h, "apply", "-f", path, "--dry-run")
	for _, want := range []string{"+ resource " + exclusive, "+ resource " + clone, "start " + exclusive + ":0 on", "dry run: nothing changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --dry-run: want %q in:\n%s", want, out)
		}
	}
	st, err := c.status(h)
	if err != nil {
		t.Fatal(err)
	}
	if st.SpecVersion != 0 || len(st.Resources) != 0 {
		t.Fatalf("dry run changed the cluster: %s", describe(st))
	}

	// apply; status --json shows one holder and three clones.
	out = c.mustCLI(h, "apply", "-f", path, "--comment", "first")
	if !strings.Contains(out, "applied as version 1") {
		t.Fatalf("apply: %s", out)
	}
	st = c.waitWhole(60*time.Second, h.Name, 1)
	holder := labcluster.Holders(st, exclusive)[0]
	c.waitWrite(time.Time{}, holder, 30*time.Second)
	raw := c.mustCLI(h, "status", "--json")
	var js api.Status
	if err := json.Unmarshal([]byte(raw), &js); err != nil || js.Cluster != labcluster.ClusterName || len(js.Nodes) != 3 {
		t.Fatalf("status --json: err %v, cluster %q, %d nodes:\n%.500s", err, js.Cluster, len(js.Nodes), raw)
	}
	if out := c.mustCLI(h, "status"); !strings.Contains(out, "Cluster "+labcluster.ClusterName) || !strings.Contains(out, exclusive+" (process, single)") {
		t.Errorf("status (text): want the cluster name and %s in:\n%s", exclusive, out)
	}

	// spec get / diff / history / rollback.
	if out := c.mustCLI(h, "spec", "get"); !strings.Contains(out, "# version 1") || !strings.Contains(out, "name: "+exclusive) {
		t.Errorf("spec get:\n%s", out)
	}
	if out := c.mustCLI(h, "spec", "diff", "-f", path); !strings.Contains(out, "no differences from version 1") {
		t.Errorf("spec diff (same file):\n%s", out)
	}
	path2 := c.writeSpec("spec2", c.spec(2))
	if out := c.mustCLI(h, "spec", "diff", "-f", path2); !strings.Contains(out, clone) || strings.Contains(out, "no differences") {
		t.Errorf("spec diff (replicas 3 -> 2) should name %s:\n%s", clone, out)
	}
	if out := c.mustCLI(h, "apply", "-f", path2, "--comment", "two clones"); !strings.Contains(out, "applied as version 2") {
		t.Fatalf("apply v2: %s", out)
	}
	c.waitStatus(h, 30*time.Second, "two clone instances", func(st *api.Status) bool {
		return st.SpecVersion == 2 && len(labcluster.Holders(st, clone)) == 2
	})
	out = c.mustCLI(h, "spec", "history")
	for _, want := range []string{"first", "two clones", "(current)"} {
		if !strings.Contains(out, want) {
			t.Errorf("spec history: want %q in:\n%s", want, out)
		}
	}
	if out := c.mustCLI(h, "spec", "rollback", "1"); !strings.Contains(out, "rolled back to version 1's content as version 3") {
		t.Errorf("spec rollback 1:\n%s", out)
	}
	c.waitWhole(30*time.Second, h.Name, 3)
	if out, err := c.cli(h, "spec", "rollback", "99"); err == nil {
		t.Errorf("spec rollback 99 (no such version) succeeded:\n%s", out)
	}

	// node standby moves the exclusive resource away, without overlap;
	// unstandby does not bring it back (stickiness).
	if out := c.mustCLI(h, "node", "standby", holder); !strings.Contains(out, "standby done") {
		t.Errorf("node standby: %s", out)
	}
	t0 := time.Now()
	moved := c.waitWrite(t0, "!"+holder, 30*time.Second)
	st = c.waitStatus(h, 30*time.Second, "resource off the standby node", func(st *api.Status) bool {
		hs := labcluster.Holders(st, exclusive)
		standby := false
		for _, n := range st.Nodes {
			standby = standby || (n.Name == holder && n.Standby)
		}
		return standby && len(hs) == 1 && hs[0] == moved.Host && len(labcluster.Holders(st, clone)) == 2
	})
	if out := c.mustCLI(h, "node", "unstandby", holder); !strings.Contains(out, "unstandby done") {
		t.Errorf("node unstandby: %s", out)
	}
	c.waitStatus(h, 30*time.Second, holder+" out of standby", func(st *api.Status) bool {
		for _, n := range st.Nodes {
			if n.Name == holder {
				return !n.Standby && len(labcluster.Holders(st, clone)) == 3
			}
		}
		return false
	})
	c.holdSteady(h, moved.Host, 2*time.Second)

	// events lists what happened.
	out = c.mustCLI(h, "events")
	for _, want := range []string{"node-online", "spec", "node-standby"} {
		if !strings.Contains(out, want) {
			t.Errorf("events: want %q in:\n%s", want, out)
		}
	}
	if out := c.mustCLI(h, "events", "--json"); !strings.Contains(out, `"type":"node-standby"`) {
		t.Errorf("events --json: no node-standby event:\n%s", out)
	}
	r := c.noOverlap()
	t.Logf("witness: %d writes, %d activity intervals, moved %s -> %s", r.Writes, len(r.Intervals), holder, moved.Host)
}

// TestCrashHolder powers off the holder's host: the resource runs
// elsewhere with no overlap, and the host comes back without taking the
// resource back.
func TestCrashHolder(t *testing.T) {
	c := newCluster(t, "b")
	holder := c.applySpec()
	hh := c.host(holder)
	watcher := c.other(holder)

	tKill := time.Now()
	if err := labcluster.Kill(c.l, hh); err != nil {
		t.Fatal(err)
	}
	next := c.waitWrite(tKill, "!"+holder, 30*time.Second)
	if next.At.Sub(tKill) <= 0 {
		t.Fatalf("impossible: takeover write before the kill")
	}
	t.Logf("%s killed; %s took over %v later (epoch %d)", holder, next.Host, next.At.Sub(tKill).Round(time.Millisecond), next.Epoch)
	c.waitStatus(watcher, 30*time.Second, fmt.Sprintf("%s running on %s and %s offline", exclusive, next.Host, holder), func(st *api.Status) bool {
		hs := labcluster.Holders(st, exclusive)
		for _, n := range st.Nodes {
			if n.Name == holder && n.Online {
				return false
			}
		}
		return len(hs) == 1 && hs[0] == next.Host
	})
	if last, ok := c.lastWrite(holder); ok && !last.At.Before(next.At) {
		t.Errorf("killed host %s wrote at %s, after %s took over", holder, last.At.Format("15:04:05.000"), next.Host)
	}
	c.noOverlap()

	tOn := time.Now()
	if err := c.l.PowerOn(hh); err != nil {
		t.Fatal(err)
	}
	st := c.waitWhole(60*time.Second, watcher.Name, 1)
	if hs := labcluster.Holders(st, exclusive); hs[0] != next.Host {
		t.Fatalf("after %s rejoined, %s runs on %s, want %s", holder, exclusive, hs[0], next.Host)
	}
	c.holdSteady(watcher, next.Host, 2*time.Second)
	for _, w := range c.w.Writes() {
		if w.Host == holder && !w.At.Before(tOn) {
			t.Fatalf("%s took %s back after power-on (write at %s, epoch %d)", holder, exclusive, w.At.Format("15:04:05.000"), w.Epoch)
		}
	}
	c.noOverlap()
}

// TestPartitionHolder cuts the holder off from the two other hosts: it
// stops the resource by itself before the majority starts it elsewhere.
func TestPartitionHolder(t *testing.T) {
	c := newCluster(t, "c")
	holder := c.applySpec()
	hh := c.host(holder)
	watcher := c.other(holder)

	tCut := time.Now()
	if err := c.l.Partition([]*lab.Host{hh}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.l.Heal() })
	next := c.waitWrite(tCut, "!"+holder, 30*time.Second)
	// The minority side can still reach the witness (it sits on the
	// bridge): its writes must have stopped before the takeover.
	last, ok := c.lastWrite(holder)
	if !ok {
		t.Fatal("no write by the holder at all")
	}
	if !last.At.Before(next.At) {
		t.Fatalf("I1: %s still wrote at %s after %s took over at %s", holder, last.At.Format("15:04:05.000"), next.Host, next.At.Format("15:04:05.000"))
	}
	t.Logf("partitioned %s: its last write %v after the cut, %s's first %v after the cut (gap %v)", holder,
		last.At.Sub(tCut).Round(time.Millisecond), next.Host, next.At.Sub(tCut).Round(time.Millisecond), next.At.Sub(last.At).Round(time.Millisecond))
	c.waitStatus(watcher, 30*time.Second, fmt.Sprintf("%s on %s in the majority", exclusive, next.Host), func(st *api.Status) bool {
		hs := labcluster.Holders(st, exclusive)
		return len(hs) == 1 && hs[0] == next.Host
	})
	// Still fenced: nothing more from the minority while cut off.
	time.Sleep(time.Second)
	if l2, _ := c.lastWrite(holder); l2.At.After(last.At) {
		t.Fatalf("%s (minority) wrote again at %s", holder, l2.At.Format("15:04:05.000"))
	}
	c.noOverlap()

	if err := c.l.Heal(); err != nil {
		t.Fatal(err)
	}
	tHeal := time.Now()
	st := c.waitWhole(60*time.Second, watcher.Name, 1)
	if hs := labcluster.Holders(st, exclusive); hs[0] != next.Host {
		t.Fatalf("after healing, %s runs on %s, want %s", exclusive, hs[0], next.Host)
	}
	c.holdSteady(watcher, next.Host, 2*time.Second)
	for _, w := range c.w.Writes() {
		if w.Host == holder && !w.At.Before(tHeal) {
			t.Fatalf("%s resumed %s after healing (write at %s, epoch %d)", holder, exclusive, w.At.Format("15:04:05.000"), w.Epoch)
		}
	}
	c.noOverlap()
}
