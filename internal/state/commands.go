package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/spec"
)

// Command types.
const (
	CmdInit       = "init"        // cluster name and token hashes, once
	CmdSetSpec    = "set-spec"    // a new spec version
	CmdNodeUpsert = "node-upsert" // register or update a node's addresses, role, labels
	CmdNodeOnline = "node-online" // liveness change seen by the leader
	CmdNodeAdmin  = "node-admin"  // standby / maintenance
	CmdNodeRemove = "node-remove" // forget a node
	CmdPlan       = "plan"        // assignment changes computed by the leader
	CmdFailure    = "failure"     // a resource instance failed on a node
	CmdCleanup    = "cleanup"     // forget fail counts (and unblock)
	CmdEvent      = "event"       // free-form event
	CmdBatch      = "batch"       // several commands in one entry, applied in order
	// CmdProbeRelease tells a node to stop an instance its probe found
	// that the leader did not adopt (the resource leaves its probe list
	// for that definition); ProbeKey names the definition.
	CmdProbeRelease = "probe-release"
)

// wakeNotifyPeers bumps the node version of every node running an
// instance of a notify clone whose instances changed, so that their
// executors see the new peer list (OCF notify) without waiting.
func (s *State) wakeNotifyPeers(idx uint64, c *Command) {
	if s.Spec == nil {
		return
	}
	changed := map[string]bool{}
	for _, a := range c.Set {
		changed[a.Resource] = true
	}
	for _, k := range c.Unset {
		if i := strings.LastIndexByte(k, ':'); i >= 0 {
			changed[k[:i]] = true
		}
	}
	for _, r := range s.Spec.Resources {
		if !r.Notify || !changed[r.Name] {
			continue
		}
		for _, a := range s.Assignments {
			if a.Resource == r.Name {
				s.NodeVersion[a.Node] = idx
			}
		}
	}
}

// Command is one raft log entry. Time and any random values are chosen by
// the proposer; Apply never reads a clock.
type Command struct {
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	Author string    `json:"author,omitempty"`

	ClusterName string            `json:"clusterName,omitempty"`
	TokenHashes map[string]string `json:"tokenHashes,omitempty"`

	Spec    *spec.Spec `json:"spec,omitempty"`
	Comment string     `json:"comment,omitempty"`

	Node        *Node  `json:"node,omitempty"`
	NodeName    string `json:"nodeName,omitempty"`
	Online      *bool  `json:"online,omitempty"`
	Standby     *bool  `json:"standby,omitempty"`
	Maintenance *bool  `json:"maintenance,omitempty"`

	// Plan: SpecVersion the plan was computed against (0 = any).
	SpecVersion int `json:"specVersion,omitempty"`
	// Set are assignments to create or move (Epoch is filled by Apply).
	Set []Assignment `json:"set,omitempty"`
	// Unset are slot keys to remove.
	Unset []string `json:"unset,omitempty"`
	// Events accompany the command.
	Events []Event `json:"events,omitempty"`

	Resource string `json:"resource,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Block marks the resource blocked (onFail: stop) with the failure.
	Block bool `json:"block,omitempty"`
	// NoCount records a failure without counting it (onFail: ignore).
	NoCount bool `json:"noCount,omitempty"`
	// ProbeKey is the probed definition of a probe-release.
	ProbeKey string `json:"probeKey,omitempty"`
	// Freeze leaves the resource exactly as it is until cleanup (onFail: block).
	Freeze bool `json:"freeze,omitempty"`
	// Fatal sets the fail count to FailInfinity: the resource may not run
	// on that node again until cleanup (a failed start with
	// startFailureIsFatal, or an agent not installed there).
	Fatal bool `json:"fatal,omitempty"`

	// Batch holds the sub-commands of a batch.
	Batch []Command `json:"batch,omitempty"`

	// Operator holds the arguments of the operator commands (operator.go).
	Operator *OperatorArgs `json:"operator,omitempty"`

	// Fence is the record of a fence command (fence.go).
	Fence *FenceRecord `json:"fence,omitempty"`
}

// Encode serialises a command for the log.
func (c *Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("state: encode command: %v", err))
	}
	return b
}

// ErrRejected wraps reasons why Apply refused a command. A refused command
// changes nothing.
var ErrRejected = errors.New("command rejected")

// Result is what Apply returns for one command.
type Result struct {
	Index uint64
	// Version is the spec version after a set-spec.
	Version int
	Err     error
}

// Apply applies one command at log index idx and returns its result. It is
// deterministic.
func (s *State) Apply(idx uint64, data []byte) Result {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Result{Index: idx, Err: fmt.Errorf("%w: undecodable entry: %v", ErrRejected, err)}
	}
	if idx <= s.Index {
		// Replays of already applied entries (after a snapshot restore) are no-ops.
		return Result{Index: idx}
	}
	s.Index = idx
	return s.apply(idx, &c)
}

// apply applies one decoded command at idx (the index check is done).
func (s *State) apply(idx uint64, c *Command) Result {
	res := Result{Index: idx}
	switch c.Type {
	case CmdBatch:
		// Sub-commands apply in order at the same index; one that is
		// refused changes nothing and does not stop the others.
		for i := range c.Batch {
			sub := &c.Batch[i]
			if sub.Type == CmdBatch {
				res.Err = errors.Join(res.Err, fmt.Errorf("%w: nested batch", ErrRejected))
				continue
			}
			if sub.Time.IsZero() {
				sub.Time = c.Time
			}
			if r := s.apply(idx, sub); r.Err != nil {
				res.Err = errors.Join(res.Err, r.Err)
			}
		}
		return res
	case CmdInit:
		if s.ClusterName != "" && s.ClusterName != c.ClusterName {
			res.Err = fmt.Errorf("%w: cluster is already named %q", ErrRejected, s.ClusterName)
			break
		}
		s.ClusterName = c.ClusterName
		if len(s.TokenHashes) == 0 {
			for h, r := range c.TokenHashes {
				s.TokenHashes[h] = r
			}
		}
		s.addEvent(idx, c.Time, "cluster", "", "", fmt.Sprintf("cluster %q initialised", c.ClusterName), 0)
	case CmdSetSpec:
		if c.Spec == nil {
			res.Err = fmt.Errorf("%w: set-spec without a spec", ErrRejected)
			break
		}
		if err := c.Spec.Validate(); err != nil {
			res.Err = fmt.Errorf("%w: %w", ErrRejected, err)
			break
		}
		s.SpecVersion++
		s.Spec = c.Spec.Clone()
		s.History = append(s.History, SpecVersion{Version: s.SpecVersion, Index: idx, Time: c.Time, Author: c.Author, Comment: c.Comment, Spec: c.Spec.JSON()})
		if len(s.History) > MaxHistory {
			s.History = append([]SpecVersion(nil), s.History[len(s.History)-MaxHistory:]...)
		}
		// Resources removed from the spec lose their fail counts and blocks.
		names := map[string]bool{}
		for _, r := range c.Spec.Resources {
			names[r.Name] = true
		}
		for r := range s.Fails {
			if !names[r] {
				delete(s.Fails, r)
			}
		}
		for r := range s.Blocked {
			if !names[r] {
				delete(s.Blocked, r)
			}
		}
		for r := range s.Frozen {
			if !names[r] {
				delete(s.Frozen, r)
			}
		}
		s.NodeVersion[""] = idx
		s.dropOrphanConstraints(idx, c.Time)
		msg := fmt.Sprintf("spec version %d applied", s.SpecVersion)
		if c.Comment != "" {
			msg += ": " + c.Comment
		}
		s.addEvent(idx, c.Time, "spec", "", "", msg, 0)
		res.Version = s.SpecVersion
	case CmdNodeUpsert:
		if c.Node == nil || c.Node.Name == "" {
			res.Err = fmt.Errorf("%w: node-upsert without a node", ErrRejected)
			break
		}
		n, ok := s.Nodes[c.Node.Name]
		if !ok {
			n = &Node{Name: c.Node.Name, Since: c.Time}
			s.Nodes[n.Name] = n
			s.addEvent(idx, c.Time, "node-joined", n.Name, "", fmt.Sprintf("node %s joined as %s", n.Name, c.Node.Role), 0)
		}
		n.Role, n.APIAddr, n.RaftAddr = c.Node.Role, c.Node.APIAddr, c.Node.RaftAddr
		n.LeaseMS, n.MarginMS = c.Node.LeaseMS, c.Node.MarginMS
		n.Labels = copyMap(c.Node.Labels)
	case CmdNodeOnline:
		n := s.Nodes[c.NodeName]
		if n == nil || c.Online == nil {
			res.Err = fmt.Errorf("%w: unknown node %q", ErrRejected, c.NodeName)
			break
		}
		if n.Online != *c.Online {
			n.Online = *c.Online
			n.Since = c.Time
			if n.Online {
				// Back online (perhaps rebooted): it probes everything again.
				delete(s.ProbeRelease, n.Name)
			}
			typ, msg := "node-online", "node "+n.Name+" is online"
			if !n.Online {
				typ, msg = "node-offline", "node "+n.Name+" is offline"
				if c.Reason != "" {
					msg += ": " + c.Reason
				}
			}
			s.addEvent(idx, c.Time, typ, n.Name, "", msg, 0)
		}
	case CmdNodeAdmin:
		n := s.Nodes[c.NodeName]
		if n == nil {
			res.Err = fmt.Errorf("%w: unknown node %q", ErrRejected, c.NodeName)
			break
		}
		if c.Standby != nil && n.Standby != *c.Standby {
			n.Standby = *c.Standby
			s.addEvent(idx, c.Time, "node-standby", n.Name, "", fmt.Sprintf("node %s standby=%v (by %s)", n.Name, n.Standby, orUnknown(c.Author)), 0)
		}
		if c.Maintenance != nil && n.Maintenance != *c.Maintenance {
			n.Maintenance = *c.Maintenance
			s.addEvent(idx, c.Time, "node-maintenance", n.Name, "", fmt.Sprintf("node %s maintenance=%v (by %s)", n.Name, n.Maintenance, orUnknown(c.Author)), 0)
		}
	case CmdProbeRelease:
		if _, ok := s.Nodes[c.NodeName]; !ok || c.Resource == "" || c.ProbeKey == "" {
			res.Err = fmt.Errorf("%w: probe-release needs a known node, a resource and a key", ErrRejected)
			break
		}
		if s.ProbeRelease[c.NodeName] == nil {
			s.ProbeRelease[c.NodeName] = map[string]string{}
		}
		s.ProbeRelease[c.NodeName][c.Resource] = c.ProbeKey
		s.NodeVersion[c.NodeName] = idx
		s.addEvent(idx, c.Time, "resource-stop", c.NodeName, c.Resource, fmt.Sprintf("%s found running on %s by a probe, not wanted there: stopping it (%s)", c.Resource, c.NodeName, orUnknown(c.Reason)), 0)
	case CmdNodeRemove:
		if _, ok := s.Nodes[c.NodeName]; !ok {
			res.Err = fmt.Errorf("%w: unknown node %q", ErrRejected, c.NodeName)
			break
		}
		delete(s.Nodes, c.NodeName)
		delete(s.ProbeRelease, c.NodeName)
		for k, a := range s.Assignments {
			if a.Node == c.NodeName {
				delete(s.Assignments, k)
			}
		}
		delete(s.NodeVersion, c.NodeName)
		s.dropNodeConstraints(idx, c.NodeName, c.Time)
		for _, m := range s.Fails {
			delete(m, c.NodeName)
		}
		s.addEvent(idx, c.Time, "node-removed", c.NodeName, "", fmt.Sprintf("node %s removed (by %s)", c.NodeName, orUnknown(c.Author)), 0)
	case CmdPlan:
		if c.SpecVersion != 0 && c.SpecVersion != s.SpecVersion {
			res.Err = fmt.Errorf("%w: plan computed for spec version %d, current is %d", ErrRejected, c.SpecVersion, s.SpecVersion)
			break
		}
		for _, a := range c.Set {
			if _, ok := s.Nodes[a.Node]; !ok {
				res.Err = fmt.Errorf("%w: plan places %s on unknown node %q", ErrRejected, a.Key(), a.Node)
				break
			}
		}
		if res.Err != nil {
			break
		}
		for _, k := range c.Unset {
			if old := s.Assignments[k]; old != nil {
				s.NodeVersion[old.Node] = idx
			}
			delete(s.Assignments, k)
		}
		for _, a := range c.Set {
			if old := s.Assignments[a.Key()]; old != nil {
				s.NodeVersion[old.Node] = idx
			}
			a.Epoch = idx
			s.Assignments[a.Key()] = &a
			s.NodeVersion[a.Node] = idx
		}
		s.wakeNotifyPeers(idx, c)
	case CmdFailure:
		if c.Resource == "" || c.NodeName == "" {
			res.Err = fmt.Errorf("%w: failure without resource or node", ErrRejected)
			break
		}
		if !c.NoCount {
			m := s.Fails[c.Resource]
			if m == nil {
				m = map[string]*Fail{}
				s.Fails[c.Resource] = m
			}
			f := m[c.NodeName]
			if f == nil {
				f = &Fail{}
				m[c.NodeName] = f
			}
			f.Count++
			if c.Fatal {
				f.Count = FailInfinity
			}
			f.Last = c.Time
			f.Reason = c.Reason
		}
		if c.Block {
			s.Blocked[c.Resource] = c.Reason
		}
		if c.Freeze {
			s.Frozen[c.Resource] = c.Reason
		}
		s.addEvent(idx, c.Time, "resource-failed", c.NodeName, c.Resource, fmt.Sprintf("%s failed on %s: %s", c.Resource, c.NodeName, c.Reason), 0)
	case CmdCleanup:
		if c.NodeName == "" {
			delete(s.Fails, c.Resource)
		} else if m := s.Fails[c.Resource]; m != nil {
			delete(m, c.NodeName)
			if len(m) == 0 {
				delete(s.Fails, c.Resource)
			}
		}
		delete(s.Blocked, c.Resource)
		delete(s.Frozen, c.Resource)
		where := "all nodes"
		if c.NodeName != "" {
			where = c.NodeName
		}
		s.addEvent(idx, c.Time, "cleanup", c.NodeName, c.Resource, fmt.Sprintf("fail counts of %s on %s cleared (by %s)", c.Resource, where, orUnknown(c.Author)), 0)
	case CmdEvent:
	case CmdConstraintAdd, CmdConstraintRemove, CmdConstraintExpire, CmdRestart, CmdResourceSet:
		res = s.applyOperator(idx, c)
	case CmdFence, CmdUnfence:
		res = s.applyFence(idx, c)
	default:
		res.Err = fmt.Errorf("%w: unknown command type %q", ErrRejected, c.Type)
	}
	if res.Err == nil {
		for _, e := range c.Events {
			t := e.Time
			if t.IsZero() {
				t = c.Time
			}
			s.addEvent(idx, t, e.Type, e.Node, e.Resource, e.Message, time.Duration(e.DowntimeMS)*time.Millisecond)
		}
	}
	return res
}

// ExpireFailures returns the (resource, node) pairs whose last failure is
// older than the resource's failureTimeout at now. The leader proposes a
// cleanup for each.
func (s *State) ExpireFailures(now time.Time) [][2]string {
	if s.Spec == nil {
		return nil
	}
	var out [][2]string
	for _, r := range s.Spec.Resources {
		if r.FailureTimeout <= 0 {
			continue
		}
		for node, f := range s.Fails[r.Name] {
			if now.Sub(f.Last) > r.FailureTimeout.D() {
				out = append(out, [2]string{r.Name, node})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Join(out[i][:], "/") < strings.Join(out[j][:], "/") })
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
