package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/cli"
	"github.com/paceline/paceline/internal/clustertest"
)

// opCluster is an in-process 3-node cluster with a spec applied, and a way
// to run the paceline command line against it.
type opCluster struct {
	t      *testing.T
	c      *clustertest.Cluster
	addr   string
	tok    string
	spec   string
	starts string // web's start log
}

// opSpec is the test spec; web appends a line to STARTS each time it starts.
const opSpec = `apiVersion: paceline/v1
cluster:
  name: ct
resources:
  - name: web
    class: process
    params:
      command: [sh, -c, 'echo "$PACELINE_NODE" >> STARTS; exec sleep 3600']
  - name: db
    class: process
    nodes: [n1, n2]
    params:
      command: [sleep, "3600"]
  - name: worker
    class: process
    mode: clone
    params:
      command: [sleep, "3600"]
  - name: ga
    class: process
    params:
      command: [sleep, "3600"]
  - name: gb
    class: process
    params:
      command: [sleep, "3600"]
groups:
  - name: grp
    members: [ga, gb]
`

func newOpCluster(t *testing.T) *opCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-node in-process cluster (-short)")
	}
	c := clustertest.New(t, clustertest.Options{N: 3})
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.APIAddr())
	}
	oc := &opCluster{t: t, c: c, addr: strings.Join(addrs, ","), tok: c.OperatorToken(), starts: filepath.Join(t.TempDir(), "web-starts")}
	oc.spec = strings.ReplaceAll(opSpec, "STARTS", oc.starts)
	c.Apply(oc.spec, "initial")
	oc.waitRunning("web", "", true)
	oc.waitRunning("db", "", true)
	return oc
}

// run runs `paceline ARGS --addr ... --token ...` in-process.
func (o *opCluster) run(args ...string) (code int, stdout, stderr string) {
	o.t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--addr", o.addr, "--token", o.tok, "--timeout", "20s")
	code = cli.Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its standard output.
func (o *opCluster) ok(args ...string) string {
	o.t.Helper()
	code, out, errs := o.run(args...)
	if code != 0 {
		o.t.Fatalf("paceline %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// refused runs a command that must fail with exit code want and returns
// its standard error.
func (o *opCluster) refused(want int, args ...string) string {
	o.t.Helper()
	code, out, errs := o.run(args...)
	if code != want {
		o.t.Fatalf("paceline %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return errs
}

func (o *opCluster) show(name string) api.ResourceDetail {
	o.t.Helper()
	var d api.ResourceDetail
	if err := json.Unmarshal([]byte(o.ok("resource", "show", name, "--json")), &d); err != nil {
		o.t.Fatal(err)
	}
	return d
}

func (o *opCluster) status() api.Status {
	o.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(o.ok("status", "--json")), &st); err != nil {
		o.t.Fatal(err)
	}
	return st
}

// waitRunning waits until resource runs (on node, when set) or, with
// want false, runs nowhere.
func (o *opCluster) waitRunning(res, node string, want bool) string {
	o.t.Helper()
	var where string
	o.c.Wait(res+" running="+map[bool]string{true: "yes", false: "no"}[want]+" "+node, func() bool {
		where = ""
		for _, n := range o.c.Running(res) {
			where = n.Name
			if node == "" || n.Name == node {
				return want
			}
		}
		return !want && where == ""
	})
	return where
}

// webStarts counts web's starts so far.
func (o *opCluster) webStarts() int {
	b, _ := os.ReadFile(o.starts)
	return strings.Count(string(b), "\n")
}

// sub returns the helper bound to a subtest.
func (o *opCluster) sub(t *testing.T) *opCluster {
	c := *o
	c.t = t
	return &c
}

func contains(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Fatalf("%s does not mention %q:\n%s", what, w, text)
		}
	}
}

func TestResourceCommands(t *testing.T) {
	o := newOpCluster(t)
	holder := o.waitRunning("web", "", true)
	other := "n1"
	if holder == "n1" {
		other = "n2"
	}

	t.Run("list", func(t *testing.T) {
		o := o.sub(t)
		out := o.ok("resource", "list")
		contains(t, "resource list", out, "NAME", "web", "db", "worker", "clone", "process", holder)
		var l api.ResourceList
		if err := json.Unmarshal([]byte(o.ok("resource", "list", "--json")), &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Resources) != 5 || l.Resources[0].Name != "web" || !l.Resources[0].Managed || l.Resources[0].TargetRole != "started" {
			t.Fatalf("list %+v", l.Resources)
		}
	})

	t.Run("show", func(t *testing.T) {
		o := o.sub(t)
		out := o.ok("resource", "show", "web")
		contains(t, "resource show web", out, "Resource web (process, single)", "Instances:", holder, "Definition:", "command:", "Operator constraints", "none")
		errs := o.refused(cli.ExitFailure, "resource", "show", "wbe")
		contains(t, "show of a typo", errs, `no resource or group "wbe"`, "did you mean web?", "paceline resource list")
	})

	t.Run("move with lifetime shows in status and show", func(t *testing.T) {
		o := o.sub(t)
		out := o.ok("resource", "move", "web", other, "--lifetime", "1h")
		contains(t, "move", out, "added cli-prefer-web: web +INFINITY on "+other, "expires in", "paceline resource clear web")
		d := o.show("web")
		if len(d.Constraints) != 1 || d.Constraints[0].ID != "cli-prefer-web" || d.Constraints[0].Expires == nil || d.Constraints[0].RemainingMS <= 0 ||
			d.Constraints[0].RemainingMS > time.Hour.Milliseconds() {
			t.Fatalf("show web constraints %+v", d.Constraints)
		}
		st := o.status()
		if len(st.Constraints) != 1 || st.Constraints[0].Node != other {
			t.Fatalf("status constraints %+v", st.Constraints)
		}
		contains(t, "status", o.ok("status"), "Operator constraints (1", "cli-prefer-web", "expires in")
		contains(t, "show", o.ok("resource", "show", "web"), "cli-prefer-web: web +INFINITY on "+other, "expires in")
		contains(t, "list", o.ok("resource", "list"), "prefer "+other+" (")
		o.ok("resource", "clear", "web")
		if d := o.show("web"); len(d.Constraints) != 0 {
			t.Fatalf("after clear: %+v", d.Constraints)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		o := o.sub(t)
		errs := o.refused(cli.ExitUsage, "resource", "move", "web", other, "--lifetime", "10x")
		contains(t, "bad lifetime", errs, `lifetime "10x" is not a duration`, "10m")
		errs = o.refused(cli.ExitUsage, "resource", "ban", "web", other, "--lifetime", "P1M")
		contains(t, "ISO months", errs, "years and months")
		errs = o.refused(cli.ExitFailure, "resource", "move", "web", "n9")
		contains(t, "unknown node", errs, `no node "n9"`, "did you mean n1?", "n1, n2, n3")
		errs = o.refused(cli.ExitFailure, "resource", "ban", "wbe", "n1")
		contains(t, "unknown resource", errs, "did you mean web?")
		errs = o.refused(cli.ExitFailure, "resource", "move", "worker")
		contains(t, "clone without node", errs, "worker is a clone", "does not say which instance", "paceline resource ban worker NODE")
		errs = o.refused(cli.ExitFailure, "resource", "move", "web", "--promoted", other)
		contains(t, "promoted on single", errs, "promotable resources only")
		errs = o.refused(cli.ExitUsage, "resource", "mvoe", "web")
		contains(t, "typo subcommand", errs, "did you mean move?")
		o.refused(cli.ExitUsage, "resource", "move")
		o.refused(cli.ExitUsage, "resource", "move", "web", "n1", "n2")
		errs = o.refused(cli.ExitUsage, "resource", "move", "web", "n1", "--node", "n2")
		contains(t, "two nodes", errs, "two nodes")
		if d := o.show("web"); len(d.Constraints) != 0 {
			t.Fatalf("refused commands left constraints: %+v", d.Constraints)
		}
	})

	t.Run("ban everywhere warns", func(t *testing.T) {
		o := o.sub(t)
		o.ok("resource", "ban", "db", "n1")
		o.ok("resource", "ban", "db", "n2")
		code, out, errs := o.run("resource", "ban", "db", "n3", "--lifetime", "30m")
		if code != 0 {
			t.Fatalf("ban: %d %s %s", code, out, errs)
		}
		contains(t, "third ban", errs, "warning: db is now banned from every node (n1, n2, n3)", "cannot run anywhere", "paceline resource clear db")
		if d := o.show("db"); len(d.Constraints) != 3 {
			t.Fatalf("db constraints %+v", d.Constraints)
		}
		out = o.ok("resource", "clear", "db", "--node", "n3")
		contains(t, "clear one node", out, "removed cli-ban-db-on-n3", "cli-ban-db-on-n1", "cli-ban-db-on-n2")
		out = o.ok("resource", "clear", "db")
		contains(t, "clear", out, "removed cli-ban-db-on-n1", "removed cli-ban-db-on-n2")
		contains(t, "clear again", o.ok("resource", "clear", "db"), "db has no operator constraints: nothing to clear")
		if st := o.status(); len(st.Constraints) != 0 {
			t.Fatalf("left behind: %+v", st.Constraints)
		}
	})

	t.Run("a move the spec rules out warns", func(t *testing.T) {
		o := o.sub(t)
		code, out, errs := o.run("resource", "move", "db", "n3")
		if code != 0 {
			t.Fatalf("move db n3: %d %s %s", code, out, errs)
		}
		contains(t, "move db n3", out, "added cli-prefer-db: db +INFINITY on n3")
		contains(t, "move db n3", errs, "warning: even so, the scheduler places db on n", "not on n3", "nodes/nodeLabels")
		o.ok("resource", "clear", "db")
	})

	t.Run("move without node bans the current node", func(t *testing.T) {
		o := o.sub(t)
		// Earlier moves take effect: wait until web has settled.
		o.c.Wait("web placed and running", func() bool {
			d := o.show("web")
			return len(d.Instances) == 1 && d.Instances[0].State == "running"
		})
		d := o.show("web")
		if len(d.Instances) != 1 {
			t.Fatalf("web instances %+v", d.Instances)
		}
		cur := d.Instances[0].Node
		code, out, errs := o.run("resource", "move", "web")
		if code != 0 {
			t.Fatalf("move web: %d %s %s", code, out, errs)
		}
		contains(t, "move without node", errs, "banning web from "+cur)
		contains(t, "move without node", out, "added cli-ban-web-on-"+cur)
		o.ok("resource", "clear", "web")
	})

	t.Run("disable and enable are spec versions", func(t *testing.T) {
		o := o.sub(t)
		out := o.ok("resource", "disable", "web")
		contains(t, "disable", out, "web disabled (spec version", "paceline resource disable web", "targetRole")
		contains(t, "history", o.ok("spec", "history"), "paceline resource disable web", "operator@")
		contains(t, "show events", o.ok("resource", "show", "web"), "resource-disable", "web disabled (by operator@")
		o.waitRunning("web", "", false)
		contains(t, "disable again", o.ok("resource", "disable", "web"), "web is already disabled; nothing changed")
		contains(t, "list", o.ok("resource", "list"), "stopped")
		errs := o.refused(cli.ExitFailure, "resource", "disable", "wbe")
		contains(t, "disable typo", errs, "did you mean web?")
		contains(t, "enable", o.ok("resource", "enable", "web"), "web enabled (spec version")
		o.waitRunning("web", "", true)
		if got := o.show("web").TargetRole; got != "started" {
			t.Fatalf("target role after enable %q", got)
		}
	})

	t.Run("unmanage and manage", func(t *testing.T) {
		o := o.sub(t)
		code, out, errs := o.run("resource", "unmanage", "db")
		if code != 0 {
			t.Fatalf("unmanage: %d %s %s", code, out, errs)
		}
		contains(t, "unmanage", out, "db unmanaged")
		contains(t, "unmanage warning", errs, "paceline resource manage db")
		if o.show("db").Managed {
			t.Fatal("db still managed")
		}
		errs = o.refused(cli.ExitFailure, "resource", "restart", "db")
		contains(t, "restart unmanaged", errs, "unmanaged", "paceline resource manage db")
		contains(t, "manage", o.ok("resource", "manage", "db"), "db managed")
		if !o.show("db").Managed {
			t.Fatal("db not managed again")
		}
	})

	t.Run("restart", func(t *testing.T) {
		o := o.sub(t)
		o.waitRunning("web", "", true)
		o.c.Wait("web's start logged", func() bool { return o.webStarts() > 0 })
		before := o.webStarts()
		out := o.ok("resource", "restart", "web")
		contains(t, "restart", out, "restart of web requested", "restart generation 1")
		o.c.Wait("web to start again after the restart", func() bool { return o.webStarts() > before })
		o.waitRunning("web", "", true)
		if g := o.show("web").Generation; g != 1 {
			t.Fatalf("generation %d", g)
		}
		errs := o.refused(cli.ExitFailure, "resource", "restart", "nope")
		contains(t, "restart unknown", errs, `no resource or group "nope"`)
	})

	t.Run("failcount", func(t *testing.T) {
		o := o.sub(t)
		contains(t, "failcount", o.ok("resource", "failcount", "web"), "web has no failures recorded")
		contains(t, "failcount show", o.ok("resource", "failcount", "show", "web", "--node", "n1"), "no failures")
		errs := o.refused(cli.ExitFailure, "resource", "failcount", "web", "--node", "n7")
		contains(t, "failcount bad node", errs, `no node "n7"`)
		contains(t, "failcount reset", o.ok("resource", "failcount", "reset", "web"), "fail counts of web on every node cleared")
		contains(t, "cleanup", o.ok("resource", "cleanup", "web", "--node", "n1"), "fail counts of web on n1 cleared")
	})

	t.Run("simulate", func(t *testing.T) {
		o := o.sub(t)
		o.c.Wait("web placed and running", func() bool {
			d := o.show("web")
			return len(d.Instances) == 1 && d.Instances[0].State == "running"
		})
		out := o.ok("simulate")
		contains(t, "simulate", out, "Simulation from the cluster state", "Placement:", "web", "worker:0")
		where := o.show("web").Instances[0].Node
		out = o.ok("simulate", "--node-down", where)
		contains(t, "simulate node down", out, "nodes down: "+where, where+" ", "OFFLINE (simulated)", "Transition (")
		var sim api.Simulation
		if err := json.Unmarshal([]byte(o.ok("simulate", "--node-down", where, "--json")), &sim); err != nil {
			t.Fatal(err)
		}
		moved := false
		for _, r := range sim.Resources {
			for _, s := range r.Slots {
				if r.Name == "web" && s.Current == where && s.Planned != "" && s.Planned != where {
					moved = true
				}
			}
		}
		if !moved {
			t.Fatalf("losing %s does not move web: %+v", where, sim.Resources)
		}
		starts := false
		for _, a := range sim.Transition {
			if a.Op == "start" && a.Resource == "web" && a.Node != where {
				starts = true
			}
		}
		if !starts {
			t.Fatalf("no start of web elsewhere in the transition %+v", sim.Transition)
		}
		errs := o.refused(cli.ExitFailure, "simulate", "--node-down", "n33")
		contains(t, "simulate unknown node", errs, `no node "n33"`, "did you mean n3?")
		// A spec without worker: the simulation stops its instances, the
		// cluster keeps running them.
		f := filepath.Join(t.TempDir(), "spec.yaml")
		if err := os.WriteFile(f, []byte(strings.Split(o.spec, "  - name: worker")[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		out = o.ok("simulate", "--spec", f)
		contains(t, "simulate spec", out, "Spec changes:", "worker", "stop")
		if len(o.c.Running("worker")) == 0 {
			t.Fatal("simulate changed the cluster")
		}
		out = o.ok("apply", "--dry-run", "-f", f)
		contains(t, "apply --dry-run", out, "dry run: nothing changed", "Transition (", "stop")
	})
}

func TestResourceGroupCommands(t *testing.T) {
	o := newOpCluster(t)
	o.waitRunning("gb", "", true)
	out := o.ok("resource", "show", "grp")
	contains(t, "show grp", out, "Group grp: ga → gb", "groups:", "- name: grp", "name: ga", "name: gb")
	contains(t, "list", o.ok("resource", "list"), "ga (grp)", "gb (grp)")
	out = o.ok("resource", "ban", "grp", "n1", "--lifetime", "PT30M")
	// The time left is computed when the answer is made, after the commit:
	// under load it may already read 29m59s.
	contains(t, "ban grp", out, "added cli-ban-grp-on-n1: grp -INFINITY on n1, expires in ")
	if !strings.Contains(out, "expires in 30m0s") && !strings.Contains(out, "expires in 29m5") {
		t.Errorf("ban grp: want about 30m left: %s", out)
	}
	// The group's constraint shows on its members too.
	if d := o.show("ga"); len(d.Constraints) != 1 || d.Constraints[0].ID != "cli-ban-grp-on-n1" {
		t.Fatalf("ga constraints %+v", d.Constraints)
	}
	contains(t, "restart grp", o.ok("resource", "restart", "grp"), "restart of grp requested")
	if o.show("ga").Generation != 1 || o.show("gb").Generation != 1 {
		t.Fatal("group restart did not bump every member")
	}
	contains(t, "disable grp", o.ok("resource", "disable", "grp"), "grp disabled", "~ resource ga: targetRole", "~ resource gb: targetRole")
	// The restart above may still be under way (its members momentarily
	// stopped), so wait for the state the disable leads to rather than
	// for a first moment when nothing runs.
	o.c.Wait("grp disabled and stopped everywhere", func() bool {
		d := o.show("grp")
		return d.TargetRole == "stopped" && len(d.Instances) == 0 &&
			len(o.c.Running("ga")) == 0 && len(o.c.Running("gb")) == 0
	})
	contains(t, "enable grp", o.ok("resource", "enable", "grp"), "grp enabled")
	o.waitRunning("gb", "", true)
	contains(t, "clear grp", o.ok("resource", "clear", "grp"), "removed cli-ban-grp-on-n1")
	if st := o.status(); len(st.Constraints) != 0 {
		t.Fatalf("left behind: %+v", st.Constraints)
	}
}

// TestMoveLifetimeExpires: a move with a lifetime takes effect and its
// constraint then disappears by itself (nothing left behind): the leader's
// coordinator plans with the operator constraints in force and proposes
// the removal of expired ones.
func TestMoveLifetimeExpires(t *testing.T) {
	o := newOpCluster(t)
	holder := o.waitRunning("web", "", true)
	dest := "n1"
	if holder == "n1" {
		dest = "n3"
	}
	// First a move without lifetime, so that how long the move takes
	// does not matter; then the same move (same constraint ID) with a
	// short lifetime replaces it.
	o.ok("resource", "move", "web", dest)
	o.waitRunning("web", dest, true)
	out := o.ok("resource", "move", "web", dest, "--lifetime", "3s")
	contains(t, "move with lifetime", out, "added cli-prefer-web: web +INFINITY on "+dest, "expires in")
	// Status hides an expired constraint at once (by its time); the
	// leader's removal (the constraint-expired event) follows, later if
	// leadership changes meanwhile: wait for both.
	o.c.Wait("the move's constraint to expire and be removed by the leader", func() bool {
		if len(o.status().Constraints) != 0 || len(o.show("web").Constraints) != 0 {
			return false
		}
		for _, ev := range o.show("web").Events {
			if ev.Type == "constraint-expired" {
				return true
			}
		}
		return false
	})
	// Stickiness keeps web where it is: an expiry is no cause to move.
	if d := o.show("web"); len(d.Instances) != 1 || d.Instances[0].Node != dest {
		t.Fatalf("web after expiry: %+v", d.Instances)
	}
}
