package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/fencing"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Fencing in recovery (docs/fencing.md):
//
//   - a node lost uncleanly (its hold lease expired) is fenced with the
//     spec's fencing.action when fencing is active;
//   - its exclusive resources start elsewhere at the first of: the fence
//     confirmed (a fence record newer than the node's last acknowledged
//     renewal), or — unless fencing.mode is required or the node does
//     not self-fence (noQuorumPolicy freeze/ignore) — the lease rule;
//   - a failed fence is retried with a growing pause and reported loudly
//     (a node-fence-failed event each time, a health warning in status);
//   - a fenced node that comes back is unfenced ("on" through its
//     topology when a device asks for it) before it gets resources again.

// fenceRetry bounds the pause between failed fence operations of a node.
const (
	fenceRetryFirst = 2 * time.Second
	fenceRetryMax   = 60 * time.Second
)

// fenceOps is the leader's fencing state: the fencer built from the
// current spec, the operations in flight and the retry schedule.
type fenceOps struct {
	mu       sync.Mutex
	key      string // JSON of the fencing section f was built from
	f        *fencing.Fencer
	buildErr error
	running  map[string]bool      // node → an operation in flight
	retryAt  map[string]time.Time // node → no new attempt before
	failures map[string]int       // node → consecutive failures
	noDevice map[string]bool      // node → "no device" already reported
	wg       sync.WaitGroup
}

func newFenceOps() *fenceOps {
	return &fenceOps{running: map[string]bool{}, retryAt: map[string]time.Time{}, failures: map[string]int{}, noDevice: map[string]bool{}}
}

// fencer returns the fencer for the spec's fencing section, building it
// again when the section changed.
func (c *Coordinator) fencer(f *spec.Fencing) (*fencing.Fencer, error) {
	fo := c.fence
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if f == nil || len(f.Devices) == 0 {
		return nil, fmt.Errorf("no fence devices are configured: add a fencing section with devices to the spec (docs/fencing.md): %w", errs.ErrBadRequest)
	}
	b, _ := json.Marshal(f)
	if string(b) == fo.key {
		return fo.f, fo.buildErr
	}
	if fo.f != nil {
		fo.f.Close()
	}
	fo.key = string(b)
	fo.f, fo.buildErr = fencing.New(f.Config(), fencing.Options{Logger: c.log.With("sub", "fencing")})
	if fo.buildErr != nil {
		fo.buildErr = fmt.Errorf("fencing configuration: %w", fo.buildErr)
	}
	return fo.f, fo.buildErr
}

// closeFencing waits for the operations in flight (they end with the
// leadership context) and releases the fencer.
func (c *Coordinator) closeFencing() {
	c.fence.wg.Wait()
	c.fence.mu.Lock()
	defer c.fence.mu.Unlock()
	if c.fence.f != nil {
		c.fence.f.Close()
		c.fence.f, c.fence.key = nil, ""
	}
}

// fencedAfterAck reports whether node n was fenced (or confirmed down)
// after the last renewal this leader acknowledged from it: then it runs
// nothing. Called with c.mu held, after reconcile read the state.
func (c *Coordinator) fencedAfterAck(n string) bool {
	at, ok := c.fenced[n]
	return ok && at.After(c.cfg.Table.LastAck(n))
}

// mustFence reports whether recovering an exclusive instance of r from a
// lost node waits for a confirmed fence: fencing.mode required, or a
// noQuorumPolicy under which a node that lost its lease keeps running.
func mustFence(sp *spec.Spec, r *spec.Resource) bool {
	if sp == nil {
		return false
	}
	switch sp.Cluster.NoQuorumPolicy {
	case spec.NoQuorumFreeze, spec.NoQuorumIgnore:
		return true
	}
	return sp.Fencing.Required()
}

// fenceLost starts fencing the nodes lost uncleanly that are not fenced
// yet, and unfences fenced nodes that came back. Called by reconcile with
// c.mu held; operations run in goroutines and propose their records.
func (c *Coordinator) fenceLost(ctx context.Context, sp *spec.Spec, nodes []state.Node, gone func(string) bool, now time.Time,
	propose func(*state.Command) (state.Result, bool), soon func(time.Time)) {
	if sp == nil {
		return
	}
	f := sp.Fencing
	var unfence []state.Command
	for _, n := range nodes {
		name := n.Name
		fencedAt, fenced := c.fenced[name]
		if !gone(name) {
			// Back after a fence: unfence before it gets resources.
			if fenced && c.cfg.Table.LastAck(name).After(fencedAt) {
				if f.Unfences(name) {
					c.startUnfence(ctx, f, name)
				} else {
					unfence = append(unfence, state.Command{Type: state.CmdUnfence, NodeName: name, Reason: "it renewed its lease after the fence"})
				}
			}
			c.fence.mu.Lock()
			delete(c.fence.failures, name)
			delete(c.fence.retryAt, name)
			delete(c.fence.noDevice, name)
			c.fence.mu.Unlock()
			continue
		}
		if c.released[name] || !f.Active() || c.fencedAfterAck(name) {
			continue
		}
		if !f.CanFence(name) {
			c.fence.mu.Lock()
			first := !c.fence.noDevice[name]
			c.fence.noDevice[name] = true
			c.fence.mu.Unlock()
			if first {
				msg := fmt.Sprintf("FENCING IMPOSSIBLE: %s is lost but no fence device can fence it (add it to a device's hosts or hostMap)", name)
				if mustFence(sp, nil) {
					msg += fmt.Sprintf("; its exclusive resources wait: check that %s is off and run: paceline fence confirm %s", name, name)
				}
				propose(&state.Command{Type: state.CmdEvent, Events: []state.Event{{Type: "node-fence-failed", Node: name, Message: msg}}})
			}
			continue
		}
		c.fence.mu.Lock()
		busy := c.fence.running[name]
		wait := c.fence.retryAt[name]
		c.fence.mu.Unlock()
		if busy {
			continue
		}
		if now.Before(wait) {
			soon(wait)
			continue
		}
		c.startFence(ctx, f, name, f.RecoveryAction(), "lost: lease expired", "")
	}
	if len(unfence) > 0 {
		cmd := &unfence[0]
		if len(unfence) > 1 {
			cmd = &state.Command{Type: state.CmdBatch, Batch: unfence}
		}
		propose(cmd)
	}
}

// startFence runs one fence operation in the background and records its
// outcome; it returns at once. A node with an operation in flight is
// left alone.
func (c *Coordinator) startFence(ctx context.Context, f *spec.Fencing, node string, action fencing.Action, reason, operator string) {
	c.fence.mu.Lock()
	if c.fence.running[node] {
		c.fence.mu.Unlock()
		return
	}
	c.fence.running[node] = true
	c.fence.wg.Add(1)
	c.fence.mu.Unlock()
	go func() {
		defer c.fence.wg.Done()
		c.runFence(ctx, f, node, action, reason, operator)
	}()
}

// runFence fences node, records the outcome in the replicated history
// and schedules a retry after a failure.
func (c *Coordinator) runFence(ctx context.Context, f *spec.Fencing, node string, action fencing.Action, reason, operator string) (state.FenceRecord, error) {
	defer func() {
		c.fence.mu.Lock()
		delete(c.fence.running, node)
		c.fence.mu.Unlock()
		c.poke()
	}()
	fz, err := c.fencer(f)
	if err != nil {
		rec := state.FenceRecord{Time: c.now(), Node: node, Action: string(action), Reason: reason, Operator: operator, Error: err.Error()}
		c.recordFence(ctx, rec)
		c.fenceFailed(node)
		return rec, err
	}
	c.log.Warn("fencing node", "node", node, "action", string(action), "reason", reason)
	// A reboot is recorded once its off half is confirmed (the node is
	// fenced then: recovery need not wait for it to power on again); the
	// on half follows and gets its own record.
	first := action
	if action == fencing.Reboot {
		first = fencing.Off
	}
	res := fz.Fence(ctx, node, first)
	rec := state.FenceRecord{Time: res.Finished, Node: node, Action: string(action), OK: res.OK, Reason: reason, Level: res.Level,
		Devices: res.Devices, Attempts: len(res.Attempts), DurationMS: res.Finished.Sub(res.Started).Milliseconds(),
		Operator: operator, Error: res.Error, Warning: res.Warning}
	if action == fencing.Reboot && res.OK {
		if err := c.recordFence(ctx, rec); err != nil {
			return rec, err
		}
		c.poke()
		on := fz.Fence(ctx, node, fencing.On)
		onRec := state.FenceRecord{Time: on.Finished, Node: node, Action: string(fencing.On), OK: on.OK, Reason: "reboot: powering " + node + " on again",
			Level: on.Level, Devices: on.Devices, Attempts: len(on.Attempts), DurationMS: on.Finished.Sub(on.Started).Milliseconds(),
			Operator: operator, Error: on.Error}
		c.recordFence(ctx, onRec)
		if !on.OK {
			rec.Warning = node + " is off but did not power on again: " + on.Error
		}
		c.fence.mu.Lock()
		delete(c.fence.failures, node)
		delete(c.fence.retryAt, node)
		c.fence.mu.Unlock()
		return rec, nil
	}
	if ctx.Err() != nil && !res.OK {
		return rec, fmt.Errorf("fence %s: leadership lost during the operation; the new leader fences again if needed: %w", node, errs.ErrUnavailable)
	}
	if err := c.recordFence(ctx, rec); err != nil {
		return rec, err
	}
	if !res.OK {
		c.fenceFailed(node)
		return rec, fmt.Errorf("%s: %w", res.Error, errs.ErrUnavailable)
	}
	c.fence.mu.Lock()
	delete(c.fence.failures, node)
	delete(c.fence.retryAt, node)
	c.fence.mu.Unlock()
	return rec, nil
}

func (c *Coordinator) recordFence(ctx context.Context, rec state.FenceRecord) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.cfg.Raft.Propose(pctx, &state.Command{Type: state.CmdFence, Time: rec.Time, Fence: &rec, Author: rec.Operator})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		c.log.Error("fence outcome not recorded", "node", rec.Node, "ok", rec.OK, "err", err)
		return fmt.Errorf("recording the fence of %s: %w", rec.Node, err)
	}
	return nil
}

func (c *Coordinator) fenceFailed(node string) {
	c.fence.mu.Lock()
	defer c.fence.mu.Unlock()
	c.fence.failures[node]++
	d := fenceRetryFirst << min(c.fence.failures[node]-1, 5)
	c.fence.retryAt[node] = c.now().Add(min(d, fenceRetryMax))
}

// startUnfence runs "on" through the node's topology, then clears its
// fenced mark; a failure is recorded and retried like a fence.
func (c *Coordinator) startUnfence(ctx context.Context, f *spec.Fencing, node string) {
	c.fence.mu.Lock()
	if c.fence.running[node] || c.now().Before(c.fence.retryAt[node]) {
		c.fence.mu.Unlock()
		return
	}
	c.fence.running[node] = true
	c.fence.wg.Add(1)
	c.fence.mu.Unlock()
	go func() {
		defer c.fence.wg.Done()
		rec, err := c.runFence(ctx, f, node, fencing.On, "unfencing: the node is back", "")
		if err != nil || !rec.OK {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c.cfg.Raft.Propose(pctx, &state.Command{Type: state.CmdUnfence, Time: c.now(), NodeName: node, Reason: "unfenced through " + fmt.Sprint(rec.Devices)})
	}()
}

// Fence fences node now on an operator's request and waits for the
// outcome (also recorded in the history).
func (c *Coordinator) Fence(ctx context.Context, node string, action fencing.Action, operator string) (state.FenceRecord, error) {
	var sp *spec.Spec
	known := false
	c.cfg.FSM.Read(func(s *state.State) {
		sp = s.Spec
		_, known = s.Nodes[node]
	})
	if !known {
		return state.FenceRecord{}, fmt.Errorf("no node %q in the cluster: %w", node, errs.ErrNotFound)
	}
	var f *spec.Fencing
	if sp != nil {
		f = sp.Fencing
	}
	if f == nil || len(f.Devices) == 0 {
		return state.FenceRecord{}, fmt.Errorf("no fence devices are configured: add a fencing section to the spec (docs/fencing.md): %w", errs.ErrBadRequest)
	}
	if !f.CanFence(node) {
		return state.FenceRecord{}, fmt.Errorf("no fence device can fence %s: add it to a device's hosts or hostMap: %w", node, errs.ErrBadRequest)
	}
	c.fence.mu.Lock()
	if c.fence.running[node] {
		c.fence.mu.Unlock()
		return state.FenceRecord{}, fmt.Errorf("a fence operation on %s is already running; see paceline fence history: %w", node, errs.ErrConflict)
	}
	c.fence.running[node] = true
	c.fence.wg.Add(1)
	c.fence.mu.Unlock()
	defer c.fence.wg.Done()
	return c.runFence(ctx, f, node, action, "requested by "+orSomeone(operator), operator)
}

// Confirm records the operator's acknowledgement that node is down. It is
// refused for a node that still renews its lease.
func (c *Coordinator) Confirm(ctx context.Context, node, operator string) (state.FenceRecord, error) {
	known := false
	c.cfg.FSM.Read(func(s *state.State) { _, known = s.Nodes[node] })
	if !known {
		return state.FenceRecord{}, fmt.Errorf("no node %q in the cluster: %w", node, errs.ErrNotFound)
	}
	if c.cfg.Table.Alive(node, c.now()) {
		return state.FenceRecord{}, fmt.Errorf("%s is alive (it renewed its lease %s ago): confirm is only for a node that is down; use paceline fence %s to fence it: %w",
			node, c.now().Sub(c.cfg.Table.LastAck(node)).Round(time.Millisecond), node, errs.ErrConflict)
	}
	rec := state.FenceRecord{Time: c.now(), Node: node, Action: state.FenceConfirm, OK: true, Operator: orSomeone(operator), Reason: "manual acknowledgement"}
	if err := c.recordFence(ctx, rec); err != nil {
		return rec, err
	}
	c.poke()
	return rec, nil
}

func orSomeone(s string) string {
	if s == "" {
		return "an operator"
	}
	return s
}

// FenceWarnings lists what an operator must know about fencing now:
// lost nodes whose fence failed, and recoveries that wait for a fence.
// Pure over the state, so any node can answer it.
func FenceWarnings(s *state.State) []string {
	if s.Spec == nil {
		return nil
	}
	f := s.Spec.Fencing
	var out []string
	names := s.NodeNames()
	sort.Strings(names)
	for _, n := range names {
		node := s.Nodes[n]
		if node.Online {
			continue
		}
		if _, fenced := s.Fenced[n]; fenced {
			continue
		}
		held := 0
		for _, a := range s.Assignments {
			if a.Node == n {
				held++
			}
		}
		if rec, failed := s.LastFenceFailure(n); failed {
			w := fmt.Sprintf("fencing of %s failed at %s: %s", n, rec.Time.UTC().Format(time.RFC3339), rec.Error)
			if held > 0 {
				w += fmt.Sprintf("; %d instance(s) assigned to it wait", held)
			}
			w += fmt.Sprintf(". Fix the device, or check %s is off and run: paceline fence confirm %s", n, n)
			out = append(out, w)
			continue
		}
		if f.Active() && !f.CanFence(n) && held > 0 && mustFence(s.Spec, nil) {
			out = append(out, fmt.Sprintf("%s is lost and no fence device can fence it; %d instance(s) wait. Check %s is off and run: paceline fence confirm %s", n, held, n, n))
		}
	}
	return out
}

// DeviceCheck is the outcome of checking one fence device.
type DeviceCheck struct {
	Device string
	Err    string // "" when the device works
}

// CheckFencing runs the monitor action of every device (or the named
// one): is the device reachable, are the credentials right?
func (c *Coordinator) CheckFencing(ctx context.Context, device string) ([]DeviceCheck, error) {
	var f *spec.Fencing
	c.cfg.FSM.Read(func(s *state.State) {
		if s.Spec != nil {
			f = s.Spec.Fencing
		}
	})
	fz, err := c.fencer(f)
	if err != nil {
		return nil, err
	}
	var out []DeviceCheck
	found := false
	for _, d := range f.Devices {
		if device != "" && d.Name != device {
			continue
		}
		found = true
		dc := DeviceCheck{Device: d.Name}
		if err := fz.Monitor(ctx, d.Name); err != nil {
			dc.Err = err.Error()
		}
		out = append(out, dc)
	}
	if !found {
		return nil, fmt.Errorf("no fence device %q: %w", device, errs.ErrNotFound)
	}
	return out, nil
}
