package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/state"
)

// fenceAgent is a fence agent speaking the fence-agents stdin protocol
// for in-process clusters: off and on write a request that the test's
// BMC (bmc below) carries out by crashing or starting the node, and wait
// until the node's power state file says it is done; status reads that
// file (exit 0 on, 2 off). The file "broken" in the directory makes every
// action fail as a wrong password would.
const fenceAgent = `#!/bin/sh
action= ; port= ; dir=
while IFS='=' read -r k v; do
  case "$k" in action) action=$v;; port|plug) port=$v;; dir) dir=$v;; esac
done
if [ -e "$dir/broken" ] && [ "$action" != metadata ]; then
  echo "Failed: Unable to obtain correct plug status or plug is not available" >&2; exit 1
fi
case "$action" in
metadata) echo '<?xml version="1.0" ?><resource-agent name="fence_ct" shortdesc="test"><parameters><parameter name="dir"><content type="string"/></parameter><parameter name="port"><content type="string"/></parameter></parameters><actions><action name="on"/><action name="off"/><action name="reboot"/><action name="status"/><action name="monitor"/><action name="metadata"/></actions></resource-agent>'; exit 0;;
monitor|list) exit 0;;
status) [ "$(cat "$dir/$port.state" 2>/dev/null)" = off ] && exit 2; exit 0;;
off|on)
  echo "$action" > "$dir/$port.request.tmp" && mv "$dir/$port.request.tmp" "$dir/$port.request"
  i=0; while [ $i -lt 600 ]; do [ "$(cat "$dir/$port.state" 2>/dev/null)" = "$action" ] && exit 0; sleep 0.05; i=$((i+1)); done
  echo "Failed: timed out" >&2; exit 1;;
*) echo "unsupported action $action" >&2; exit 1;;
esac
`

// bmc powers the cluster's nodes off (Crash: all its processes die, as in
// a power loss) and on (Start) when the fence agent asks.
type bmc struct {
	c    *Cluster
	dir  string
	stop chan struct{}
	wg   sync.WaitGroup
}

func newBMC(t *testing.T, c *Cluster) (*bmc, string) {
	dir := filepath.Join(c.Dir, "bmc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	agentPath := filepath.Join(c.Dir, "fence_ct")
	if err := os.WriteFile(agentPath, []byte(fenceAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	b := &bmc{c: c, dir: dir, stop: make(chan struct{})}
	for _, n := range c.Nodes {
		b.setState(n.Name, "on")
	}
	b.wg.Add(1)
	go b.loop()
	t.Cleanup(func() { close(b.stop); b.wg.Wait() })
	return b, agentPath
}

func (b *bmc) setState(node, s string) {
	tmp := filepath.Join(b.dir, node+".state.tmp")
	os.WriteFile(tmp, []byte(s+"\n"), 0o644)
	os.Rename(tmp, filepath.Join(b.dir, node+".state"))
}

func (b *bmc) state(node string) string {
	s, _ := os.ReadFile(filepath.Join(b.dir, node+".state"))
	return strings.TrimSpace(string(s))
}

func (b *bmc) broken(yes bool) {
	p := filepath.Join(b.dir, "broken")
	if yes {
		os.WriteFile(p, nil, 0o644)
	} else {
		os.Remove(p)
	}
}

func (b *bmc) loop() {
	defer b.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		for _, n := range b.c.Nodes {
			p := filepath.Join(b.dir, n.Name+".request")
			req, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			os.Remove(p)
			switch strings.TrimSpace(string(req)) {
			case "off":
				b.c.Logf("BMC: power off %s", n.Name)
				n.Crash()
				b.setState(n.Name, "off")
			case "on":
				b.c.Logf("BMC: power on %s", n.Name)
				b.setState(n.Name, "on")
				if !n.Running() {
					n.Start()
				}
			}
		}
	}
}

func fencingSection(agentPath, dir, mode string) string {
	return fmt.Sprintf(`fencing:
  mode: %s
  action: off
  timeout: 20s
  retries: 0
  retryDelay: 100ms
  pollInterval: 50ms
  devices:
    - name: bmc
      agent: %s
      params: {dir: %q}
      hosts: [n1, n2, n3]
`, mode, agentPath, dir)
}

func fenceHistory(n *Node) []state.FenceRecord {
	a := n.Agent()
	if a == nil {
		return nil
	}
	var out []state.FenceRecord
	a.FSM().Read(func(s *state.State) { out = append(out, s.FenceHistory...) })
	return out
}

func eventIndex(evs []state.Event, match func(state.Event) bool) int {
	for i, e := range evs {
		if match(e) {
			return i
		}
	}
	return -1
}

// TestFenceRequiredRecovery: with fencing.mode required, the exclusive
// resource of a crashed holder stays down while the fence device fails
// (retried, reported as a health warning), recovers only after a
// confirmed fence, and the fenced node gets resources again once it is
// powered on, back and unfenced.
func TestFenceRequiredRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	t.Cleanup(c.CheckNoOverlap)
	b, agentPath := newBMC(t, c)
	c.Apply(c.Spec(fencingSection(agentPath, b.dir, "required")), "with fencing")
	h := c.WaitPlaced(3)
	others := c.Others(h)

	b.broken(true)
	c.Logf("crashing the holder %s with a broken fence device", h.Name)
	h.Crash()
	waitFenceFailures(c, h, 2, others...)
	if r := c.Running(Exclusive); len(r) != 0 {
		t.Fatalf("%s started on %s although %s was never fenced (fencing required)", Exclusive, r[0].Name, h.Name)
	}
	cl := c.Client(others...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*Patience)
	defer cancel()
	var st *api.Status
	err := settle(c, func() (err error) { st, err = cl.Status(ctx); return err })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "fencing of "+h.Name+" failed") {
		t.Fatalf("no health warning about the failed fence: %q", st.Warnings)
	}

	c.Logf("repairing the fence device")
	b.broken(false)
	nh := c.WaitPlaced(2)
	if nh == h {
		t.Fatal("holder did not change")
	}
	evs := c.WaitLeader(others...).Events()
	fenced := eventIndex(evs, func(e state.Event) bool { return e.Type == "node-fenced" && e.Node == h.Name })
	recovered := eventIndex(evs, func(e state.Event) bool {
		return e.Type == "resource-recover" && e.Resource == Exclusive && strings.Contains(e.Message, h.Name)
	})
	if fenced < 0 || recovered < 0 || recovered < fenced {
		t.Fatalf("want node-fenced of %s before the recovery of %s; events: fenced at %d, recovered at %d", h.Name, Exclusive, fenced, recovered)
	}
	if b.state(h.Name) != "off" {
		t.Fatalf("BMC says %s is %q after the fence", h.Name, b.state(h.Name))
	}

	// Power on through the API: the node rejoins, is unfenced and runs
	// its clone instance again.
	var rec *api.FenceRecord
	err = settle(c, func() (err error) { rec, err = cl.Fence(ctx, h.Name, "on"); return err })
	if err != nil || !rec.OK {
		t.Fatalf("fence %s on: %+v %v", h.Name, rec, err)
	}
	c.WaitReady(h)
	c.Wait(h.Name+" unfenced", func() bool {
		return eventIndex(c.WaitLeader().Events(), func(e state.Event) bool { return e.Type == "node-unfenced" && e.Node == h.Name }) >= 0
	})
	c.WaitPlaced(3)
	var hist []api.FenceRecord
	err = settle(c, func() (err error) { hist, err = cl.FenceHistory(ctx, h.Name); return err })
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range hist {
		actions = append(actions, fmt.Sprintf("%s:%v", r.Action, r.OK))
	}
	got := strings.Join(actions, " ")
	if !strings.Contains(got, "off:false off:false") || !strings.Contains(got, "off:true") || !strings.HasSuffix(got, "on:true") {
		t.Fatalf("fence history of %s: %s", h.Name, got)
	}
}

// TestFenceConfirm: an operator's confirmation stands in for a fence that
// cannot succeed; it is refused for a node that is alive.
func TestFenceConfirm(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	t.Cleanup(c.CheckNoOverlap)
	b, agentPath := newBMC(t, c)
	b.broken(true)
	c.Apply(c.Spec(fencingSection(agentPath, b.dir, "required")), "with fencing")
	h := c.WaitPlaced(3)
	others := c.Others(h)
	cl := c.Client(others...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*Patience)
	defer cancel()

	err := settle(c, func() error { _, err := cl.FenceConfirm(ctx, others[0].Name); return err })
	var ae *api.Error
	if !errorsAs(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Error(), "is alive") {
		t.Fatalf("confirming a live node: want 409 'is alive', got %v", err)
	}
	h.Crash()
	waitFenceFailures(c, h, 1, others...)
	var rec *api.FenceRecord
	err = settle(c, func() (err error) { rec, err = cl.FenceConfirm(ctx, h.Name); return err })
	if err != nil || rec.Action != "confirm" {
		t.Fatalf("confirm %s: %+v %v", h.Name, rec, err)
	}
	nh := c.WaitPlaced(2)
	if nh == h {
		t.Fatal("holder did not change")
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestNoQuorumFreeze: with noQuorumPolicy freeze, an isolated holder keeps
// its exclusive resource past its lease (no self-fence), and the majority
// starts it elsewhere only once that node is fenced — never both at once.
func TestNoQuorumFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	t.Cleanup(c.CheckNoOverlap)
	b, agentPath := newBMC(t, c)
	doc := strings.Replace(c.Spec(fencingSection(agentPath, b.dir, "enabled")), "noQuorumPolicy: stop", "noQuorumPolicy: freeze", 1)
	c.Apply(doc, "freeze with fencing")
	h := c.WaitPlaced(3)
	others := c.Others(h)

	b.broken(true)
	c.Logf("isolating the holder %s with a broken fence device", h.Name)
	c.Net.Partition(Addrs(h), Addrs(others...))
	waitFenceFailures(c, h, 2, others...)
	// Seconds past its lease: freeze kept it running there, and only there.
	if h.RunningHere(Exclusive) != 1 {
		t.Fatalf("%s no longer runs %s: noQuorumPolicy freeze must keep it", h.Name, Exclusive)
	}
	for _, n := range others {
		if n.RunningHere(Exclusive) != 0 {
			t.Fatalf("%s runs %s while the frozen %s still does", n.Name, Exclusive, h.Name)
		}
	}
	c.Logf("repairing the fence device")
	b.broken(false)
	var nh *Node
	c.Wait(Exclusive+" recovered on the majority", func() bool {
		r := c.Running(Exclusive)
		if len(r) == 1 && r[0] != h {
			nh = r[0]
			return true
		}
		return false
	})
	if b.state(h.Name) != "off" {
		t.Fatalf("%s moved to %s but the BMC says %s is %q", Exclusive, nh.Name, h.Name, b.state(h.Name))
	}
	c.Net.Heal()
}

// settle runs call until it succeeds or fails for a reason other than a
// leader election under way (no leader known, 503, unreachable), for at
// most Patience; it returns the last error.
func settle(c *Cluster, call func() error) error {
	deadline := time.Now().Add(Patience)
	for {
		err := call()
		var ae *api.Error
		transient := err != nil && (errors.Is(err, api.ErrUnreachable) ||
			(errors.As(err, &ae) && (ae.Status == 503 || ae.Status == 502)) ||
			strings.Contains(err.Error(), "no leader") || strings.Contains(err.Error(), "not the leader"))
		if !transient || time.Now().After(deadline) {
			return err
		}
		c.Logf("retrying after a transient error: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFenceFailures waits until the leader among nodes recorded k failed
// fence operations of h.
func waitFenceFailures(c *Cluster, h *Node, k int, nodes ...*Node) {
	c.T.Helper()
	c.Wait(fmt.Sprintf("%d failed fence attempt(s) on %s", k, h.Name), func() bool {
		l := c.Leader(nodes...)
		if l == nil {
			return false
		}
		n := 0
		for _, r := range fenceHistory(l) {
			if r.Node == h.Name && !r.OK {
				n++
			}
		}
		return n >= k
	})
}
