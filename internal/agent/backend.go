package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/coordinator"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/httpapi"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// The agent is the API's backend.
var _ httpapi.Backend = (*Agent)(nil)

// readLocal reports whether this node may answer reads from its own state:
// control nodes that are the leader, or that know no leader (then the
// answer says there is no quorum).
func (a *Agent) readLocal() error {
	if a.cfg.Role != "control" {
		return a.notLeader()
	}
	if a.cons.IsLeader() {
		return nil
	}
	if _, l := a.leader(); l != "" {
		return a.notLeader()
	}
	return nil
}

// Status implements httpapi.Backend.
func (a *Agent) Status(ctx context.Context) (*api.Status, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	st := &api.Status{Answerer: a.cfg.NodeName}
	leaderName, _ := a.leader()
	st.Leader = leaderName
	st.Quorum = leaderName != ""
	voters := map[string]bool{}
	if vs, err := a.cons.Voters(); err == nil {
		for _, v := range vs {
			voters[string(v.ID)] = true
		}
	}
	gossip := map[string]string{}
	for _, m := range a.cons.Members() {
		gossip[m.Name] = map[bool]string{true: "alive", false: "dead"}[m.Alive]
	}
	c := a.coordinator()
	var unplaced []string
	var states map[string]map[string]string
	if c != nil {
		unplaced = c.Unplaced()
		states = c.InstanceStates()
	}
	a.fsm.Read(func(s *state.State) {
		st.Cluster = s.ClusterName
		st.Index = s.Index
		st.SpecVersion = s.SpecVersion
		for _, name := range s.NodeNames() {
			n := s.Nodes[name]
			st.Nodes = append(st.Nodes, api.Node{Name: n.Name, Role: n.Role, APIAddr: n.APIAddr, Online: n.Online, Standby: n.Standby,
				Maintenance: n.Maintenance, Leader: n.Name == leaderName, Voter: voters[n.Name], Labels: n.Labels, Since: n.Since, Gossip: gossip[n.Name]})
		}
		if s.Spec != nil {
			st.Maintenance = s.Spec.Cluster.Maintenance
			// One sorted pass over the assignments, grouped by resource.
			byResource := map[string][]state.Assignment{}
			for _, as := range s.SortedAssignments() {
				byResource[as.Resource] = append(byResource[as.Resource], as)
			}
			d := s.Spec.WithDefaults()
			for _, r := range d.Resources {
				rs := api.Resource{Name: r.Name, Class: r.Class, Mode: r.Mode, Target: r.TargetRole, Blocked: s.Blocked[r.Name],
					Frozen: s.Frozen[r.Name], Unmanaged: !r.IsManaged()}
				for node, f := range s.Fails[r.Name] {
					if rs.FailCount == nil {
						rs.FailCount = map[string]int{}
					}
					rs.FailCount[node] = f.Count
				}
				for _, as := range byResource[r.Name] {
					phase := "unknown"
					if c != nil {
						if x := states[as.Node][as.Key()]; x != "" {
							phase = x
						} else {
							phase = "pending"
						}
					}
					rs.Instances = append(rs.Instances, api.Instance{Slot: as.Slot, Node: as.Node, Epoch: as.Epoch, State: phase, Role: as.Role})
				}
				for _, u := range unplaced {
					if strings.HasPrefix(u, r.Name+":") {
						rs.Unplaced = append(rs.Unplaced, u)
					}
				}
				st.Resources = append(st.Resources, rs)
			}
		}
		for _, e := range s.EventsAfter(0, 15) {
			st.Events = append(st.Events, toAPIEvent(e))
		}
		now := time.Now()
		if cs := s.OperatorConstraints(now); len(cs) > 0 {
			st.Constraints = toAPIConstraints(cs, now)
		}
		st.Warnings = append(st.Warnings, coordinator.FenceWarnings(s)...)
	})
	a.quorumStatus(st, gossip) // quorum.go: witnesses, warnings, wait-for-all
	return st, nil
}

func toAPIEvent(e state.Event) api.Event {
	return api.Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Node: e.Node, Resource: e.Resource, Message: e.Message, DowntimeMS: e.DowntimeMS}
}

func (a *Agent) leaderOnly() error {
	if a.cons == nil || !a.cons.IsLeader() {
		return a.notLeader()
	}
	return nil
}

// ApplySpec implements httpapi.Backend.
func (a *Agent) ApplySpec(ctx context.Context, doc []byte, dryRun bool, comment, author string) (*api.ApplyResult, error) {
	sp, err := spec.Parse(doc)
	if err != nil {
		return nil, err
	}
	if sp.Cluster.Name != a.cfg.ClusterName {
		return nil, &spec.Error{Errors: []spec.FieldError{{Path: "cluster.name", Msg: fmt.Sprintf("%q does not match this cluster's name %q (set cluster.name: %s)", sp.Cluster.Name, a.cfg.ClusterName, a.cfg.ClusterName)}}}
	}
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	res := &api.ApplyResult{DryRun: dryRun}
	var cur *spec.Spec
	a.fsm.Read(func(s *state.State) {
		cur = s.Spec
		res.Version = s.SpecVersion
	})
	p, _, err := a.preview(sp, time.Now())
	if err != nil {
		return nil, err
	}
	res.Plan, res.Transition = planLines(p.in, p.out), toAPIActions(p.tr)
	for _, c := range spec.Diff(orEmpty(cur), sp) {
		res.Changes = append(res.Changes, c.String())
	}
	if dryRun {
		return res, nil
	}
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	r, err := a.Propose(ctx, &state.Command{Type: state.CmdSetSpec, Time: time.Now(), Author: author, Comment: comment, Spec: sp})
	if err != nil {
		return nil, err
	}
	res.Version = r.Version
	return res, nil
}

func orEmpty(s *spec.Spec) *spec.Spec {
	if s == nil {
		return &spec.Spec{}
	}
	return s
}

// GetSpec implements httpapi.Backend.
func (a *Agent) GetSpec(ctx context.Context, version int) (*api.SpecDocument, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	var doc *api.SpecDocument
	var err error
	a.fsm.Read(func(s *state.State) {
		if version == 0 || version == s.SpecVersion {
			if s.Spec == nil {
				err = fmt.Errorf("%w: no spec applied yet; run `paceline apply -f spec.yaml`", errs.ErrNotFound)
				return
			}
			doc = &api.SpecDocument{Version: s.SpecVersion, YAML: string(s.Spec.YAML())}
			return
		}
		for _, h := range s.History {
			if h.Version == version {
				var sp spec.Spec
				if e := json.Unmarshal(h.Spec, &sp); e != nil {
					err = e
					return
				}
				doc = &api.SpecDocument{Version: h.Version, YAML: string(sp.YAML())}
				return
			}
		}
		err = fmt.Errorf("%w: spec version %d is not in the history (see `paceline spec history`)", errs.ErrNotFound, version)
	})
	return doc, err
}

// DiffSpec implements httpapi.Backend.
func (a *Agent) DiffSpec(ctx context.Context, doc []byte) (*api.Diff, error) {
	sp, err := spec.Parse(doc)
	if err != nil {
		return nil, err
	}
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	d := &api.Diff{Changes: []string{}}
	a.fsm.Read(func(s *state.State) {
		d.Version = s.SpecVersion
		for _, c := range spec.Diff(orEmpty(s.Spec), sp) {
			d.Changes = append(d.Changes, c.String())
		}
	})
	return d, nil
}

// History implements httpapi.Backend.
func (a *Agent) History(ctx context.Context) ([]api.SpecVersion, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	out := []api.SpecVersion{}
	a.fsm.Read(func(s *state.State) {
		for _, h := range s.History {
			out = append(out, api.SpecVersion{Version: h.Version, Time: h.Time, Author: h.Author, Comment: h.Comment, Current: h.Version == s.SpecVersion})
		}
	})
	return out, nil
}

// Rollback implements httpapi.Backend.
func (a *Agent) Rollback(ctx context.Context, version int, author string) (*api.ApplyResult, error) {
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	var old *spec.Spec
	var cur *spec.Spec
	a.fsm.Read(func(s *state.State) {
		cur = s.Spec
		for _, h := range s.History {
			if h.Version == version {
				var sp spec.Spec
				if json.Unmarshal(h.Spec, &sp) == nil {
					old = &sp
				}
			}
		}
	})
	if old == nil {
		return nil, fmt.Errorf("%w: spec version %d is not in the history (see `paceline spec history`)", errs.ErrNotFound, version)
	}
	res := &api.ApplyResult{}
	for _, c := range spec.Diff(orEmpty(cur), old) {
		res.Changes = append(res.Changes, c.String())
	}
	r, err := a.Propose(ctx, &state.Command{Type: state.CmdSetSpec, Time: time.Now(), Author: author, Comment: fmt.Sprintf("rollback to version %d", version), Spec: old})
	if err != nil {
		return nil, err
	}
	res.Version = r.Version
	return res, nil
}

// Nodes implements httpapi.Backend.
func (a *Agent) Nodes(ctx context.Context) ([]api.Node, error) {
	st, err := a.Status(ctx)
	if err != nil {
		return nil, err
	}
	return st.Nodes, nil
}

// NodeAction implements httpapi.Backend.
func (a *Agent) NodeAction(ctx context.Context, node, action, author string) error {
	if action == "confirm-down" {
		return a.confirmDown(node) // quorum.go
	}
	t, f := true, false
	cmd := &state.Command{Type: state.CmdNodeAdmin, Time: time.Now(), NodeName: node, Author: author}
	switch action {
	case "standby":
		cmd.Standby = &t
	case "unstandby":
		cmd.Standby = &f
	case "maintenance":
		cmd.Maintenance = &t
	case "unmaintenance":
		cmd.Maintenance = &f
	default:
		return fmt.Errorf("%w: unknown node action %q (standby | unstandby | maintenance | unmaintenance | confirm-down)", errs.ErrBadRequest, action)
	}
	if err := a.leaderOnly(); err != nil {
		return err
	}
	if err := a.nodeExists(node); err != nil {
		return err
	}
	_, err := a.Propose(ctx, cmd)
	return err
}

func (a *Agent) nodeExists(node string) error {
	var ok bool
	var names []string
	a.fsm.Read(func(s *state.State) {
		_, ok = s.Nodes[node]
		names = s.NodeNames()
	})
	if !ok {
		return fmt.Errorf("%w: no node %q (nodes: %s)", errs.ErrNotFound, node, strings.Join(names, ", "))
	}
	return nil
}

// RemoveNode implements httpapi.Backend.
func (a *Agent) RemoveNode(ctx context.Context, node, author string) error {
	if err := a.leaderOnly(); err != nil {
		return err
	}
	if ok, err := a.removeWitness(node); ok { // quorum.go
		return err
	}
	if err := a.nodeExists(node); err != nil {
		return err
	}
	var online bool
	a.fsm.Read(func(s *state.State) { online = s.Nodes[node].Online })
	if online {
		return fmt.Errorf("%w: node %s is online; stop its agent first (a running node cannot be removed)", errs.ErrConflict, node)
	}
	if node == a.cfg.NodeName {
		return fmt.Errorf("%w: a node cannot remove itself", errs.ErrConflict)
	}
	if vs, err := a.cons.Voters(); err == nil {
		for _, v := range vs {
			if string(v.ID) == node {
				if err := a.cons.Raft.RemoveServer(v.ID, 0, 5*time.Second).Error(); err != nil {
					return fmt.Errorf("%w: remove %s from the raft configuration: %v", errs.ErrNoQuorum, node, err)
				}
			}
		}
	}
	a.table.Forget(node)
	_, err := a.Propose(ctx, &state.Command{Type: state.CmdNodeRemove, Time: time.Now(), NodeName: node, Author: author})
	return err
}

// Events implements httpapi.Backend: events after seq, waiting up to wait
// for the first one.
func (a *Agent) Events(ctx context.Context, after uint64, wait time.Duration) ([]api.Event, error) {
	if a.cfg.Role != "control" {
		return nil, a.notLeader()
	}
	deadline := time.Now().Add(wait)
	for {
		ch := a.fsm.Changed()
		out := []api.Event{}
		a.fsm.Read(func(s *state.State) {
			for _, e := range s.EventsAfter(after, 500) {
				out = append(out, toAPIEvent(e))
			}
		})
		if len(out) > 0 || wait <= 0 || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, nil
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// Cleanup implements httpapi.Backend.
func (a *Agent) Cleanup(ctx context.Context, resource, node, author string) error {
	if err := a.leaderOnly(); err != nil {
		return err
	}
	var found bool
	a.fsm.Read(func(s *state.State) {
		if s.Spec != nil {
			for _, r := range s.Spec.Resources {
				found = found || r.Name == resource
			}
		}
	})
	if !found {
		return fmt.Errorf("%w: no resource %q in the spec", errs.ErrNotFound, resource)
	}
	_, err := a.Propose(ctx, &state.Command{Type: state.CmdCleanup, Time: time.Now(), Resource: resource, NodeName: node, Author: author})
	return err
}

// TokenRole implements httpapi.Backend.
func (a *Agent) TokenRole(tok string) string {
	if a.cfg.Role != "control" {
		// Remote nodes forward every public call to the leader, which checks the token.
		return httpapi.RoleOperator
	}
	var role string
	a.fsm.Read(func(s *state.State) {
		role = s.TokenHashes[HashToken(tok)]
		if role == "" && len(s.TokenHashes) == 0 {
			// Just started: the log that holds the token hashes is not
			// replayed yet. Not "unknown token": ask to retry.
			role = httpapi.RoleNotReady
		}
	})
	return role
}

// Renew implements httpapi.Backend.
func (a *Agent) Renew(ctx context.Context, r api.Renew) (api.RenewAck, error) {
	c := a.coordinator()
	if c == nil {
		l, lapi := a.leader()
		return api.RenewAck{OK: false, Leader: l, LeaderAPI: lapi, Reason: "not leading"}, nil
	}
	ack := c.Renew(r)
	ack.Leader = a.cfg.NodeName
	return ack, nil
}

// Assignments implements httpapi.Backend (leader only): it answers at once
// when anything this node runs changed after index after (or wait is 0),
// else when it changes or wait passes. The answer's index is the leader's
// applied index.
func (a *Agent) Assignments(ctx context.Context, node string, after uint64, wait time.Duration) (api.Assignments, error) {
	if a.coordinator() == nil {
		return api.Assignments{}, a.notLeader()
	}
	deadline := time.Now().Add(wait)
	for {
		ch := a.fsm.Changed()
		var changed uint64
		a.fsm.Read(func(s *state.State) { changed = s.NodeChanged(node) })
		if changed > after || wait <= 0 || time.Now().After(deadline) {
			return a.heldAssignments(node), nil
		}
		select {
		case <-ctx.Done():
			return a.heldAssignments(node), nil
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// Failure implements httpapi.Backend.
func (a *Agent) Failure(ctx context.Context, f api.Failure) error {
	c := a.coordinator()
	if c == nil {
		return a.notLeader()
	}
	return c.Failure(ctx, f)
}

// Hello implements httpapi.Backend.
func (a *Agent) Hello(ctx context.Context, h api.Hello) (api.Welcome, error) {
	if h.Cluster != a.cfg.ClusterName {
		return api.Welcome{}, fmt.Errorf("%w: this node belongs to cluster %q but you configured clusterName %q; fix clusterName in %s's config", errs.ErrConflict, a.cfg.ClusterName, h.Cluster, h.Node)
	}
	w := api.Welcome{Cluster: a.cfg.ClusterName}
	w.Leader, _ = a.leader()
	for _, m := range a.cons.Members() {
		if !m.Alive || m.Meta.Role != "control" {
			continue
		}
		w.Fast = append(w.Fast, m.Addr)
	}
	// Coarse pool addresses: control nodes listen on ports.coarse.
	for _, m := range a.cons.Members() {
		if m.Alive && m.Meta.Role == "control" && m.Meta.Coarse > 0 {
			host, _, _ := net.SplitHostPort(m.Addr)
			w.Coarse = append(w.Coarse, net.JoinHostPort(host, strconv.Itoa(m.Meta.Coarse)))
		}
	}
	if len(w.Fast) == 0 && a.cfg.Role == "control" {
		w.Fast = []string{fmt.Sprintf("%s:%d", a.adv, a.cfg.Ports.Gossip)}
		w.Coarse = []string{fmt.Sprintf("%s:%d", a.adv, a.cfg.Ports.Coarse)}
	}
	return w, nil
}
