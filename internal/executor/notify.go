package executor

import (
	"sort"
	"strconv"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/spec"
)

// Clone notifications (notify: true, ocf class). The leader lists every
// assigned instance of the clone in NodeAssignment.Peers; the executor can
// only notify its own instance, so (see docs/agents.md, "Notifications"):
//   - around its own operations it runs pre-stop, pre/post-promote,
//     pre/post-demote and post-start (pre-start and post-stop would go to
//     an instance that is not running: Pacemaker skips those too);
//   - when Peers changes, it runs post-start for instances added, post-stop
//     for instances removed, post-promote and post-demote for role changes,
//     on its running instance. These follow the assignment, not the remote
//     operation's completion, and there are no pre-notifications of remote
//     operations.

// notifyEnabled reports whether l's resource wants notifications.
func notifyEnabled(l *life) bool {
	return l.def.Notify && l.def.Clone() && l.kind == spec.KindOCF && l.d != nil
}

func peerName(res string, slot int) string { return res + ":" + strconv.Itoa(slot) }

// notification builds the notify environment from the peers.
func (e *Executor) notification(i *inst, l *life, typ, operation string, peers []api.Peer) *agents.Notification {
	n := &agents.Notification{Type: typ, Operation: operation}
	nodes := map[string]bool{}
	for _, p := range peers {
		ap := agents.Peer{Resource: peerName(i.name, p.Slot), Node: p.Node}
		n.Active = append(n.Active, ap)
		if p.Role == spec.RolePromoted {
			n.Promoted = append(n.Promoted, ap)
		} else {
			n.Unpromoted = append(n.Unpromoted, ap)
		}
		nodes[p.Node] = true
	}
	nodes[e.cfg.Node] = true
	for node := range nodes {
		n.All = append(n.All, node)
	}
	sort.Strings(n.All)
	n.Available = n.All
	return n
}

// runNotify runs one notification on the local instance; a failed
// notification is logged and reported (onFail ignore), never recovered.
func (e *Executor) runNotify(i *inst, l *life, n *agents.Notification) {
	op := driver.Resolve(&l.def, agents.Notify, "", 0, l.md)
	op.Notify = n
	r := e.act(i, l, op)
	if i.takeFenceCut() || r.Status == agents.StatusSuccess {
		return
	}
	e.log.Warn("notification failed", "slot", i.key, "type", n.Type, "operation", n.Operation, "reason", describe(r))
	e.report(api.Failure{Resource: i.name, Slot: i.slot, Epoch: e.epochOf(i), Op: string(agents.Notify), OnFail: spec.OnFailIgnore,
		Reason: n.Type + "-" + n.Operation + " notification: " + describe(r)})
}

// notifySelf notifies the local instance of its own operation.
func (e *Executor) notifySelf(i *inst, l *life, typ, operation string) {
	if !notifyEnabled(l) || !l.running {
		return
	}
	s := e.snapshot(i)
	var peers []api.Peer
	if s.want != nil {
		peers = s.want.Peers
	} else {
		peers = l.peers
	}
	n := e.notification(i, l, typ, operation, peers)
	me := []agents.Peer{{Resource: peerName(i.name, i.slot), Node: e.cfg.Node}}
	switch operation {
	case "start":
		n.Start = me
	case "stop":
		n.Stop = me
	case "promote":
		n.Promote = me
	case "demote":
		n.Demote = me
	}
	e.runNotify(i, l, n)
}

// notifyPeers tells the local instance what changed among its peers.
func (e *Executor) notifyPeers(i *inst, l *life, peers []api.Peer) {
	old := map[int]api.Peer{}
	for _, p := range l.peers {
		old[p.Slot] = p
	}
	now := map[int]api.Peer{}
	for _, p := range peers {
		now[p.Slot] = p
	}
	l.peers = peers
	if !notifyEnabled(l) || !l.running {
		return
	}
	var started, stopped, promoted, demoted []agents.Peer
	for _, p := range peers {
		if p.Slot == i.slot && p.Node == e.cfg.Node {
			continue // our own operations are notified around them
		}
		ap := agents.Peer{Resource: peerName(i.name, p.Slot), Node: p.Node}
		o, ok := old[p.Slot]
		switch {
		case !ok || o.Node != p.Node:
			started = append(started, ap)
			if p.Role == spec.RolePromoted {
				promoted = append(promoted, ap)
			}
		case o.Role != spec.RolePromoted && p.Role == spec.RolePromoted:
			promoted = append(promoted, ap)
		case o.Role == spec.RolePromoted && p.Role != spec.RolePromoted:
			demoted = append(demoted, ap)
		}
	}
	for slot, o := range old {
		if o.Slot == i.slot && o.Node == e.cfg.Node {
			continue
		}
		if p, ok := now[slot]; !ok || p.Node != o.Node {
			stopped = append(stopped, agents.Peer{Resource: peerName(i.name, slot), Node: o.Node})
		}
	}
	sortPeers(stopped)
	for _, c := range []struct {
		op   string
		list []agents.Peer
	}{{"demote", demoted}, {"stop", stopped}, {"start", started}, {"promote", promoted}} {
		if len(c.list) == 0 {
			continue
		}
		n := e.notification(i, l, "post", c.op, peers)
		switch c.op {
		case "start":
			n.Start = c.list
		case "stop":
			n.Stop = c.list
		case "promote":
			n.Promote = c.list
		case "demote":
			n.Demote = c.list
		}
		e.runNotify(i, l, n)
	}
}

func sortPeers(ps []agents.Peer) {
	sort.Slice(ps, func(a, b int) bool { return ps[a].Resource < ps[b].Resource })
}

func samePeers(a, b []api.Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}
