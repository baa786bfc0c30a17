package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/consensus"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/state"
)

// This file holds the quorum rules of control nodes that involve witnesses
// (docs/quorum.md): the two-voters-without-witness warning, wait-for-all
// and the leadership transfer that skips witnesses.

// NoWitnessWarning is the warning shown while the raft configuration has
// exactly two voters and no witness.
const NoWitnessWarning = "2 voters without a witness: losing either stops the cluster; add `paceline witness` (docs/quorum.md)"

// quorumState is what quorumLoop found (under mu).
type quorumState struct {
	mu sync.Mutex
	// seenAll: every control voter was alive in gossip at the same moment
	// since this process started (wait-for-all is then satisfied for good,
	// as corosync's wait_for_all is once the cluster was quorate).
	seenAll bool
	// missing lists the control voters not seen while !seenAll.
	missing []string
	// confirmed holds control nodes the operator declared down
	// (`paceline node confirm-down`): wait-for-all does not wait for them.
	confirmed map[string]bool
	// controls and witnesses are the voters by kind, at the last check.
	controls, witnesses []string
	// known: the voters were read at least once.
	known   bool
	warned  bool // the no-witness warning was logged
	evented bool // ... and recorded as an event by this process as leader
	changed chan struct{}
}

// quorumChanged returns a channel closed at the next quorum check that
// changes something.
func (a *Agent) quorumChanged() <-chan struct{} {
	q := &a.quorum
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.changed == nil {
		q.changed = make(chan struct{})
	}
	return q.changed
}

// quorumLoop checks the voters and the gossip pool every 100 ms (control
// nodes only).
func (a *Agent) quorumLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		a.checkQuorum(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkQuorum is one round of quorumLoop.
func (a *Agent) checkQuorum(ctx context.Context) {
	servers, err := a.cons.Voters()
	if err != nil {
		return
	}
	var controls, witnesses []string
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if id := string(s.ID); consensus.IsWitness(id) {
			witnesses = append(witnesses, consensus.WitnessName(id))
		} else {
			controls = append(controls, id)
		}
	}
	sort.Strings(controls)
	sort.Strings(witnesses)
	alive := map[string]bool{a.cfg.NodeName: true}
	for _, m := range a.cons.Members() {
		if m.Alive && m.Meta.Role == "control" {
			alive[m.Name] = true
		}
	}
	q := &a.quorum
	q.mu.Lock()
	var missing []string
	for _, c := range controls {
		if !alive[c] && !q.confirmed[c] {
			missing = append(missing, c)
		}
	}
	changed := !q.known || !slices.Equal(q.controls, controls) || !slices.Equal(q.witnesses, witnesses) || !slices.Equal(q.missing, missing)
	q.known, q.controls, q.witnesses = true, controls, witnesses
	if !q.seenAll {
		q.missing = missing
		if len(controls) > 0 && len(missing) == 0 {
			q.seenAll, q.missing, changed = true, nil, true
			level := slog.LevelDebug
			if w := a.cfg.Quorum.WaitForAll; (w != nil && *w) || (w == nil && len(controls) == 2) {
				level = slog.LevelInfo // wait-for-all applies: say when it is satisfied
			}
			a.log.Log(ctx, level, "wait-for-all: every control node seen", "controls", controls)
		}
	}
	warn := len(controls) == 2 && len(witnesses) == 0
	logWarn := warn && !q.warned
	q.warned = q.warned || warn
	event := warn && !q.evented && a.cons.IsLeader()
	q.evented = q.evented || event
	if changed && q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
	q.mu.Unlock()
	if logWarn {
		a.log.Warn(NoWitnessWarning, "voters", controls)
	}
	if event {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := a.Propose(cctx, &state.Command{Type: state.CmdEvent, Time: time.Now(),
			Events: []state.Event{{Type: "quorum-warning", Message: NoWitnessWarning}}}); err != nil {
			q.mu.Lock()
			q.evented = false // try again next round
			q.mu.Unlock()
		}
	}
}

// waitForAllOn reports whether wait-for-all applies (config
// quorum.waitForAll, else: exactly two control voters).
func (a *Agent) waitForAllOn() bool {
	if w := a.cfg.Quorum.WaitForAll; w != nil {
		return *w
	}
	q := &a.quorum
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.controls) == 2
}

// waitingFor returns the control nodes wait-for-all still waits for (nil:
// it waits for nothing).
func (a *Agent) waitingFor() []string {
	if !a.waitForAllOn() {
		return nil
	}
	q := &a.quorum
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.seenAll || !q.known {
		if !q.known {
			return []string{"(reading the raft configuration)"}
		}
		return nil
	}
	return append([]string(nil), q.missing...)
}

// waitForAll blocks until wait-for-all is satisfied (or does not apply)
// and reports true, or false when ctx ends first. The leader calls it
// before it starts its coordinator: until then no renewal is granted and
// no assignment is served, so nothing starts anywhere.
func (a *Agent) waitForAll(ctx context.Context) bool {
	logged := false
	for {
		ch := a.quorumChanged()
		w := a.waitingFor()
		if len(w) == 0 {
			if logged {
				a.log.Info("wait-for-all satisfied: starting resources")
			}
			return true
		}
		if !logged {
			a.log.Warn("wait-for-all: starting no resource until every control node has been seen at once (override: `paceline node confirm-down NODE`)", "waiting for", w)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// confirmDown is `paceline node confirm-down NODE` on the leader: the
// operator vouches that NODE is down (powered off), so wait-for-all stops
// waiting for it. It is kept by this agent process only.
func (a *Agent) confirmDown(node string) error {
	if err := a.leaderOnly(); err != nil {
		return err
	}
	q := &a.quorum
	q.mu.Lock()
	isControl := slices.Contains(q.controls, node)
	controls := append([]string(nil), q.controls...)
	if isControl {
		if q.confirmed == nil {
			q.confirmed = map[string]bool{}
		}
		q.confirmed[node] = true
	}
	q.mu.Unlock()
	if !isControl {
		return fmt.Errorf("%w: %q is not a control voter (control voters: %v)", errs.ErrNotFound, node, controls)
	}
	a.log.Warn("wait-for-all: operator confirmed a node down; not waiting for it", "node", node)
	a.checkQuorum(context.Background())
	return nil
}

// quorumStatus fills the quorum fields of a status answer and adds the
// witnesses (raft voters that are no nodes of the state) to its nodes.
func (a *Agent) quorumStatus(st *api.Status, gossip map[string]string) {
	q := &a.quorum
	q.mu.Lock()
	witnesses := append([]string(nil), q.witnesses...)
	controls := len(q.controls)
	q.mu.Unlock()
	for _, w := range witnesses {
		g := gossip[consensus.WitnessID(w)]
		st.Nodes = append(st.Nodes, api.Node{Name: w, Role: consensus.RoleWitness, Voter: true, Online: g == "alive", Gossip: g})
	}
	if controls == 2 && len(witnesses) == 0 {
		st.Warnings = append(st.Warnings, NoWitnessWarning)
	}
	st.WaitingFor = a.waitingFor()
}

// transferLeadership hands raft leadership to a control voter that is
// alive in gossip (never to a witness, which refuses it).
func (a *Agent) transferLeadership() error {
	servers, err := a.cons.Voters()
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, m := range a.cons.Members() {
		alive[m.Name] = m.Alive && m.Meta.Role == "control"
	}
	var errs []error
	for _, s := range servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == a.cfg.NodeName || consensus.IsWitness(id) || !alive[id] {
			continue
		}
		err := a.cons.Raft.LeadershipTransferToServer(s.ID, s.Address).Error()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("to %s: %w", id, err))
	}
	if len(errs) == 0 {
		return errors.New("no other control node is alive")
	}
	return errors.Join(errs...)
}

// removeWitness is `paceline node remove NAME` for a witness: it leaves the
// raft configuration (ok false: NAME is no witness). A witness that is
// still alive is refused, as a running node is.
func (a *Agent) removeWitness(name string) (ok bool, err error) {
	id := consensus.WitnessID(name)
	servers, err := a.cons.Voters()
	if err != nil {
		return false, nil
	}
	for _, s := range servers {
		if string(s.ID) != id {
			continue
		}
		for _, m := range a.cons.Members() {
			if m.Name == id && m.Alive {
				return true, fmt.Errorf("%w: witness %s is alive; stop its `paceline witness` first", errs.ErrConflict, name)
			}
		}
		if err := a.cons.Raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
			return true, fmt.Errorf("%w: remove witness %s from the raft configuration: %v", errs.ErrNoQuorum, name, err)
		}
		a.log.Info("witness removed from the raft configuration", "witness", name)
		return true, nil
	}
	return false, nil
}
