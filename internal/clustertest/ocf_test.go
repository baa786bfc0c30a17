package clustertest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ocfSpec runs real Debian OCF agents through the whole stack: an exclusive
// ocf:heartbeat:Dummy in a group with an exclusive process, a Dummy clone
// the group is ordered after, and a promotable ocf:pacemaker:Stateful.
func ocfSpec(c *Cluster) string {
	return c.Spec(`  - name: db
    class: ocf:heartbeat:Dummy
    # A crashed node's stop script may run this long after its lease ends:
    # the leader waits that much before recovering it elsewhere.
    operations: [{name: monitor, interval: 1s}, {name: stop, timeout: 2s}]
  - name: db-helper
    class: process
    params: {command: [sleep, "3600"]}
  - name: base
    class: ocf:heartbeat:Dummy
    mode: clone
    operations: [{name: monitor, interval: 1s}]
  - name: st
    class: ocf:pacemaker:Stateful
    mode: promotable
    replicas: 3
    operations: [{name: monitor, interval: 1s, role: promoted}, {name: monitor, interval: 2s, role: unpromoted},
      {name: stop, timeout: 2s}, {name: demote, timeout: 2s}]
groups:
  - {name: db-stack, members: [db, db-helper]}
constraints:
  order:
    - {first: base, then: db-stack}
`)
}

func needOCF(t *testing.T) {
	for _, a := range []string{"/usr/lib/ocf/resource.d/heartbeat/Dummy", "/usr/lib/ocf/resource.d/pacemaker/Stateful"} {
		if _, err := os.Stat(a); err != nil {
			t.Skipf("%s not installed (apt-get install resource-agents pacemaker-resource-agents)", a)
		}
	}
}

func promotedOn(c *Cluster, res string) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		a := n.Agent()
		if a == nil {
			continue
		}
		for _, ai := range a.Executor().Active() {
			if ai.Resource == res && ai.State == "running" && ai.Role == "promoted" {
				out = append(out, n)
			}
		}
	}
	return out
}

// TestOCFResources: probes adopt what already runs, groups stay together,
// promotion happens exactly once, and a crashed holder's OCF resources
// recover elsewhere.
func TestOCFResources(t *testing.T) {
	needOCF(t)
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	// This test is about the OCF mechanics, not lease timing: a longer
	// lease keeps a loaded machine (the race detector, other test
	// binaries) from self-fencing what a probe just found.
	c := New(t, Options{N: 3, Lease: 3 * time.Second})
	t.Cleanup(c.CheckNoOverlap)
	// db already runs on n3 before paceline manages it: its probe finds it.
	n3 := c.Nodes[2]
	if err := os.MkdirAll(n3.Cfg.Agents.RscTmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n3.Cfg.Agents.RscTmp, "Dummy-db.state"), []byte("already running\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Apply(ocfSpec(c), "ocf")
	c.WaitPlaced(3)
	c.Wait("db adopted on n3 with its group member, base on every node, st promoted once", func() bool {
		db, helper := c.Running("db"), c.Running("db-helper")
		return len(db) == 1 && db[0] == n3 && len(helper) == 1 && helper[0] == n3 &&
			len(c.Running("base")) == 3 && len(c.Running("st")) == 3 && len(promotedOn(c, "st")) == 1
	})
	adopted := false
	for _, e := range c.Nodes[0].Events() {
		if e.Type == "resource-start" && e.Resource == "db" {
			t.Fatalf("db was started although a probe found it running: %s", e.Message)
		}
		adopted = adopted || (e.Type == "resource-adopt" && e.Resource == "db" && e.Node == n3.Name)
	}
	if !adopted {
		t.Fatal("no resource-adopt event for db on n3")
	}
	// Crash the node holding the promoted st instance (and maybe db).
	victim := promotedOn(c, "st")[0]
	dbWas := c.Running("db")[0]
	c.Logf("crashing %s (promoted st; db on %s)", victim.Name, dbWas.Name)
	victim.Crash()
	c.Wait("st promoted on a surviving node, db and its group running once", func() bool {
		p := promotedOn(c, "st")
		db, helper := c.Running("db"), c.Running("db-helper")
		return len(p) == 1 && p[0] != victim && len(db) == 1 && len(helper) == 1 && db[0] == helper[0] && db[0] != victim
	})
}
