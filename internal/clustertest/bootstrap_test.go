package clustertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/state"
)

// TestOrderedBootstrap: a clone with a bootstrap hook starts cold (first
// start, then after every node crashed at once) on the node with the
// highest rank first, only once every node it wants reported a rank, and
// the other instances join once that one runs.
func TestOrderedBootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	dir := filepath.Join(c.Dir, "boot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rank := func(node, v string) {
		if err := os.WriteFile(filepath.Join(dir, "rank-"+node), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	starts := filepath.Join(dir, "starts")
	firstStarts := func() []string {
		b, _ := os.ReadFile(starts)
		return strings.Fields(string(b))
	}
	rank("n1", "5")
	rank("n2", "9") // n3 has no rank yet: its command fails
	extra := fmt.Sprintf(`  - name: db
    class: process
    mode: clone
    params:
      command: [sh, -c, 'echo "$PACELINE_NODE" >> %s; exec sleep 3600']
    bootstrap:
      rank: [sh, -c, 'cat %s/rank-$PACELINE_NODE']
      timeout: 5s
`, starts, dir)
	c.Apply(c.Spec(extra), "db with ordered bootstrap")
	l := c.WaitLeader()
	c.Wait("a bootstrap-wait event naming n3", func() bool {
		return eventIndex(l.Events(), func(e state.Event) bool {
			return e.Type == "bootstrap-wait" && e.Resource == "db" && strings.Contains(e.Message, "n3")
		}) >= 0
	})
	c.WaitPlaced(3) // the rest of the spec runs meanwhile
	if r := c.Running("db"); len(r) != 0 || len(firstStarts()) != 0 {
		t.Fatalf("db started (%v, starts %v) before n3 reported its rank", names(r), firstStarts())
	}
	rank("n3", "7")
	// (a start is written to the file by the instance itself, just after
	// the executor saw it start)
	c.Wait("db on every node", func() bool { return len(c.Running("db")) == 3 && len(firstStarts()) == 3 })
	if s := firstStarts(); len(s) != 3 || s[0] != "n2" {
		t.Fatalf("starts %v: want n2 (rank 9) first", s)
	}

	// Full-cluster power loss: everything restarts; the node with the
	// best data now is n1.
	rank("n1", "20")
	os.Remove(starts)
	c.Logf("crashing every node")
	for _, n := range c.Nodes {
		n.Crash()
	}
	for _, n := range c.Nodes {
		n.Start()
	}
	c.WaitReady(c.Nodes...)
	c.WaitLeader()
	c.Wait("db on every node after the full restart", func() bool { return len(c.Running("db")) == 3 && len(firstStarts()) >= 3 })
	if s := firstStarts(); len(s) != 3 || s[0] != "n1" {
		t.Fatalf("starts after the full restart %v: want n1 (rank 20) first", s)
	}
	c.CheckNoOverlap()
}
