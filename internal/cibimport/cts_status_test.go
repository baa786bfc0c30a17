package cibimport

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/scheduler"
	"github.com/paceline/paceline/internal/spec"
)

// rscState is what a node's operation history says about one resource.
type rscState struct {
	running  bool
	promoted bool
	failed   bool
	instance int // clone instance number from "rsc:N", -1 when absent
	// hard: an operation failed with a hard error (rc 2 invalid
	// parameters, 3 unimplemented, 5 not installed): Pacemaker bans the
	// resource from the node; fatal: rc 6 (not configured) stops it
	// everywhere.
	hard, fatal bool
	// stopFailed: the last stop failed; without fencing Pacemaker blocks
	// the resource where it is (on-fail=block).
	stopFailed bool
}

// baseID strips a clone instance suffix: "rsc:2" → "rsc", 2.
func baseID(id string) (string, int) {
	if i := strings.LastIndexByte(id, ':'); i > 0 {
		if n, err := strconv.Atoi(id[i+1:]); err == nil && n >= 0 {
			return id[:i], n
		}
	}
	return id, -1
}

func callID(o cib.LRMOp) int {
	n, err := strconv.Atoi(o.CallID)
	if err != nil {
		return -1
	}
	return n
}

// historyState replays an lrm_resource's operations in call order, as
// Pacemaker's unpacking does in essence: the last start/stop/promote/
// demote/monitor result decides whether it runs and in which role.
func historyState(lr cib.LRMResource, ignoreMonitorFailures bool, failureTimeout time.Duration, now time.Time) rscState {
	ops := append([]cib.LRMOp(nil), lr.Ops...)
	sort.SliceStable(ops, func(i, j int) bool {
		ci, cj := callID(ops[i]), callID(ops[j])
		// Pending operations (call-id -1) come last.
		if ci < 0 {
			ci = int(^uint(0) >> 1)
		}
		if cj < 0 {
			cj = int(^uint(0) >> 1)
		}
		return ci < cj
	})
	_, inst := baseID(lr.ID)
	st := rscState{instance: inst}
	hard, fatal := false, false
	for _, o := range ops {
		rc, _ := strconv.Atoi(o.RCCode)
		pending := o.OpStatus == "-1" || o.CallID == "-1"
		// Execution status: 1 cancelled, 2 timed out, 5 hard error,
		// 6 fatal error, 7 agent not installed (Pacemaker's enum).
		switch o.OpStatus {
		case "1":
			continue
		case "2":
			rc = 1
		case "5", "7":
			rc = 5
		case "6":
			rc = 6
		}
		forced := o.OpStatus == "5" || o.OpStatus == "6" || o.OpStatus == "7"
		if expired(o.Attrs["last-rc-change"], failureTimeout, now) && rc != 0 && rc != 7 && rc != 8 && !pending {
			continue // failure-timeout has passed: Pacemaker forgets the failure
		}
		if o.Operation == "monitor" && o.Interval != "" && o.Interval != "0" && ignoreMonitorFailures && rc != 0 && rc != 8 && !pending && !forced {
			continue // on-fail=ignore: the failure changes nothing
		}
		if o.Operation != "stop" {
			switch rc {
			case 2, 3, 4, 5:
				hard = true
			case 6:
				fatal = true
			}
		}
		switch o.Operation {
		case "start", "migrate_from":
			switch {
			case pending || rc == 0:
				st = rscState{running: true, instance: inst}
			case rc == 7:
				st = rscState{instance: inst}
			default:
				st = rscState{running: true, failed: true, instance: inst}
			}
		case "stop":
			if pending || rc != 0 {
				st.running, st.failed = true, !pending
				st.stopFailed = !pending
			} else {
				st = rscState{instance: inst}
			}
		case "promote":
			if pending || rc == 0 {
				st.running, st.promoted = true, true
			} else {
				st.running, st.failed, st.promoted = true, true, true
			}
		case "demote":
			if pending || rc == 0 {
				st.promoted = false
			} else {
				// A failed demote leaves it promoted and, without
				// fencing, blocked where it is (like a failed stop).
				st.failed, st.stopFailed = true, true
			}
		case "migrate_to":
			// The resource still runs here until its stop is recorded.
		case "monitor":
			if pending {
				continue
			}
			recurring := o.Interval != "" && o.Interval != "0"
			if recurring && ignoreMonitorFailures && rc != 0 && rc != 8 {
				continue // on-fail=ignore: the failure changes nothing
			}
			if recurring && rc == 5 {
				st.running, st.failed = true, true // must be stopped here
				continue
			}
			switch rc {
			case 0:
				st.running, st.promoted = true, false
				st.failed = false
			case 7:
				st = rscState{instance: inst}
			case 8:
				st.running, st.promoted = true, true
			case 9:
				st.running, st.promoted, st.failed = true, true, true
			case 5: // not installed: stopped
				st = rscState{instance: inst}
			default:
				st.running, st.failed = true, true
			}
		}
	}
	st.hard, st.fatal = hard, fatal
	return st
}

// statusInput builds the scheduler input from the CIB status section.
type statusInput struct {
	in scheduler.Input
	// current maps spec resource → node → role, for logging.
	current map[string]map[string]string
}

func buildInput(m *cib.Model, s *spec.Spec, rep *Report) statusInput {
	now := simulationTime(m)
	sp := s.WithDefaults()
	in := scheduler.Input{Spec: sp, Current: map[string]string{}, Roles: map[string]string{}}
	res := map[string]*spec.Resource{}
	for i := range sp.Resources {
		res[sp.Resources[i].Name] = &sp.Resources[i]
	}
	caps := map[string]map[string]int{}
	attrs := map[string]map[string]string{}
	for _, n := range sp.Nodes {
		caps[n.Name] = n.Capacity
		attrs[n.Name] = n.Attributes
	}
	states := map[string]*cib.NodeState{}
	for i := range m.NodeStates {
		states[m.NodeStates[i].Uname] = &m.NodeStates[i]
	}
	var unames []string
	seen := map[string]bool{}
	for _, n := range m.Nodes {
		u := nodeUname(n)
		if u != "" && !seen[u] && !strings.EqualFold(n.Type, "remote") && !strings.EqualFold(n.Type, "ping") {
			seen[u] = true
			unames = append(unames, u)
		}
	}
	for _, st := range m.NodeStates {
		if st.Uname != "" && !seen[st.Uname] {
			if _, remote := st.Attrs["remote_node"]; remote {
				continue
			}
			seen[st.Uname] = true
			unames = append(unames, st.Uname)
		}
	}
	fails := map[[2]string]int{}
	promo := map[[2]string]int{}
	for _, u := range unames {
		name := rep.Nodes[u]
		if name == "" {
			name = sanitizeNode(u)
		}
		node := scheduler.Node{Name: name, Standby: m.Standby(u), Capacity: caps[name], Labels: map[string]string{}}
		for k, v := range attrs[name] {
			node.Labels[k] = v
		}
		for _, cn := range m.Nodes {
			if nodeUname(cn) == u {
				if v, ok := cn.Instance.Get("maintenance"); ok && cib.IsTrue(v) {
					node.Maintenance = true
				}
			}
		}
		if st := states[u]; st != nil {
			// A node whose controller has not joined yet (join=pending,
			// down, banned) is not a member Pacemaker places on.
			node.Online = st.Online() && (st.Join == "" || st.Join == "member")
			if v := st.Attrs["shutdown"]; v != "" && v != "0" {
				node.Standby = true // shutdown requested (older CIBs)
			}
			for _, set := range st.Transient {
				for _, p := range set.Pairs {
					switch {
					case p.Name == "maintenance":
						if cib.IsTrue(p.Value) {
							node.Maintenance = true
						}
					case p.Name == "shutdown":
						if p.Value != "0" && p.Value != "" {
							node.Standby = true // a node shutting down gives its resources up
						}
					case strings.HasPrefix(p.Name, "fail-count-"):
						id := strings.TrimPrefix(p.Name, "fail-count-")
						opKey := ""
						if i := strings.IndexByte(id, '#'); i >= 0 {
							id, opKey = id[:i], id[i+1:]
						}
						id, _ = baseID(id)
						if sn, ok := rep.Resources[id]; ok && !ignoredFailure(res[sn], opKey) && !expiredCount(st.Transient, res[sn], p.Name, now) {
							v, err := scoreInt(p.Value)
							if err == nil {
								k := [2]string{sn, name}
								fails[k] = min(int(spec.Infinity), fails[k]+v)
							}
						}
					case strings.HasPrefix(p.Name, "last-failure-"), p.Name == "probe_complete", p.Name == "terminate":
					default:
						node.Labels[p.Name] = p.Value // status values win over configured ones
					}
				}
			}
		}
		// Promotion scores are node attributes (permanent or transient).
		for k, v := range node.Labels {
			if !strings.HasPrefix(k, "master-") {
				continue
			}
			id, _ := baseID(strings.TrimPrefix(k, "master-"))
			if sn, ok := rep.Resources[id]; ok {
				if n, err := scoreInt(v); err == nil {
					pk := [2]string{sn, name}
					if old, seen := promo[pk]; !seen || n > old {
						promo[pk] = n // instance scores: the best one on the node
					}
				}
			}
		}
		in.Nodes = append(in.Nodes, node)
	}
	in.FailCount = func(r, n string) int { return fails[[2]string{r, n}] }
	in.PromotionScore = func(r, n string) (int, bool) {
		v, ok := promo[[2]string{r, n}]
		return v, ok
	}
	// Where each resource runs now.
	type inst struct {
		node     string
		num      int
		promoted bool
	}
	running := map[string][]inst{}
	for _, st := range m.NodeStates {
		node := rep.Nodes[st.Uname]
		inMaint := false
		for _, n := range in.Nodes {
			if n.Name == node && n.Maintenance {
				inMaint = true
			}
		}
		if node == "" || (!st.Online() && !inMaint) {
			// A node that left cleanly runs nothing (one that did not is
			// fenced first: such cases are not compared).
			continue
		}
		for _, lr := range st.LRM {
			id, _ := baseID(lr.ID)
			sn, ok := rep.Resources[id]
			if !ok {
				continue
			}
			if agentChanged(m, id, lr) {
				// Pacemaker discards the history (and fail counts) of a
				// resource whose agent changed since.
				delete(fails, [2]string{sn, node})
				continue
			}
			ignore := false
			if r := res[sn]; r != nil {
				for _, o := range r.Operations {
					if o.Name == "monitor" && o.OnFail == spec.OnFailIgnore {
						ignore = true
					}
				}
			}
			var ft time.Duration
			if r := res[sn]; r != nil {
				ft = r.FailureTimeout.D()
			}
			hs := historyState(lr, ignore, ft, now)
			if hs.hard {
				fails[[2]string{sn, node}] = int(spec.Infinity)
			}
			if hs.fatal {
				if in.Blocked == nil {
					in.Blocked = map[string]bool{}
				}
				in.Blocked[sn] = true
			}
			if hs.running && hs.stopFailed {
				// Emulate on-fail=block: the resource is left alone
				// (unmanaged) until cleanup.
				if r := res[sn]; r != nil {
					r.Managed = ptr(false)
				}
			}
			if !hs.running {
				continue
			}
			running[sn] = append(running[sn], inst{node, hs.instance, hs.promoted})
		}
	}
	cur := map[string]map[string]string{}
	var names []string
	for n := range running {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, sn := range names {
		r := res[sn]
		list := running[sn]
		sort.SliceStable(list, func(i, j int) bool { return list[i].node < list[j].node })
		cur[sn] = map[string]string{}
		if r == nil {
			continue
		}
		for _, x := range list {
			role := roleStarted
			if x.promoted {
				role = rolePromoted
			}
			cur[sn][x.node] = role
		}
		if r.Exclusive() {
			for i, x := range list {
				if i == 0 {
					k := scheduler.SlotKey(sn, 0)
					in.Current[k] = x.node
					if x.promoted {
						in.Roles[k] = spec.RolePromoted
					}
					continue
				}
				in.Active = append(in.Active, scheduler.Instance{Resource: sn, Slot: -1, Node: x.node})
			}
			continue
		}
		used := map[int]bool{}
		limit := r.Replicas
		slotOf := make([]int, len(list))
		for i := range list {
			slotOf[i] = -1
		}
		for i, x := range list {
			if x.num >= 0 && !used[x.num] && (limit == 0 || x.num < limit) {
				used[x.num] = true
				slotOf[i] = x.num
			}
		}
		next := 0
		for i := range list {
			if slotOf[i] >= 0 {
				continue
			}
			for used[next] {
				next++
			}
			if limit > 0 && next >= limit {
				break
			}
			used[next] = true
			slotOf[i] = next
		}
		for i, x := range list {
			if slotOf[i] < 0 {
				role := ""
				if x.promoted {
					role = spec.RolePromoted
				}
				in.Active = append(in.Active, scheduler.Instance{Resource: sn, Slot: -1, Node: x.node, Role: role})
				continue
			}
			k := scheduler.SlotKey(sn, slotOf[i])
			in.Current[k] = x.node
			if x.promoted {
				in.Roles[k] = spec.RolePromoted
			}
		}
	}
	return statusInput{in: in, current: cur}
}

// ignoredFailure reports a fail count of an operation configured with
// on-fail=ignore ("monitor_10000"), which Pacemaker does not count.
func ignoredFailure(r *spec.Resource, opKey string) bool {
	if r == nil || opKey == "" {
		return false
	}
	i := strings.LastIndexByte(opKey, '_')
	if i < 0 {
		return false
	}
	name := opKey[:i]
	ms, err := strconv.Atoi(opKey[i+1:])
	if err != nil {
		return false
	}
	for _, o := range r.Operations {
		if o.Name == name && o.Interval.D().Milliseconds() == int64(ms) && o.OnFail == spec.OnFailIgnore {
			return true
		}
	}
	return false
}

// expired reports a failure older than failureTimeout (0: never expires)
// at now.
func expired(lastChange string, failureTimeout time.Duration, now time.Time) bool {
	if failureTimeout <= 0 || lastChange == "" {
		return false
	}
	t, err := strconv.ParseInt(lastChange, 10, 64)
	if err != nil {
		return false
	}
	return time.Unix(t, 0).Add(failureTimeout).Before(now)
}

// expiredCount reports a fail-count attribute whose last-failure time is
// older than the resource's failure-timeout.
func expiredCount(sets cib.NVSets, r *spec.Resource, failCountName string, now time.Time) bool {
	if r == nil || r.FailureTimeout <= 0 {
		return false
	}
	last, ok := sets.Get("last-failure-" + strings.TrimPrefix(failCountName, "fail-count-"))
	return ok && expired(last, r.FailureTimeout.D(), now)
}

// agentChanged reports an lrm_resource recorded with another agent than
// the configured primitive.
func agentChanged(m *cib.Model, id string, lr cib.LRMResource) bool {
	r := m.Resource(id)
	if r == nil {
		return false
	}
	if r.Kind != cib.KindPrimitive && len(r.Children) > 0 {
		r = r.Children[0]
	}
	if r.Kind != cib.KindPrimitive || lr.Type == "" {
		return false
	}
	return !strings.EqualFold(r.Class, lr.Class) || r.Type != lr.Type || !strings.EqualFold(r.Provider, lr.Provider)
}

// simulationTime is the time crm_simulate judged the case at: the CIB's
// execution-date when it has one ("Using the original execution date"),
// otherwise the current time (the corpus' failures are years old, so
// the result is stable).
func simulationTime(m *cib.Model) time.Time {
	if v, err := strconv.ParseInt(m.CIB["execution-date"], 10, 64); err == nil && v > 0 {
		return time.Unix(v, 0)
	}
	return time.Now()
}
