package consensus

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// RoleWitness is the role of a quorum witness (`paceline witness`): a raft
// voter that keeps the replicated log (as every voter must, or a committed
// entry could be lost) but never runs resources, never renews a lease and
// leads only when no control node can, and then just long enough to hand
// leadership to one (witnessTransport).
//
// A witness is named "witness:NAME" in raft and in the gossip pool: the
// prefix cannot occur in a node name (config.nodeNameRE), so every member
// of the cluster tells witnesses from control nodes by the raft
// configuration alone, also while the witness is down.
const RoleWitness = "witness"

// WitnessPrefix starts the raft server ID and gossip name of a witness.
const WitnessPrefix = "witness:"

// WitnessID is the raft server ID (and gossip name) of the witness name.
func WitnessID(name string) string { return WitnessPrefix + name }

// IsWitness reports whether a raft server ID or gossip name is a witness's.
func IsWitness(id string) bool { return strings.HasPrefix(id, WitnessPrefix) }

// WitnessName is the configured name of a witness ID ("witness:w1" → "w1").
func WitnessName(id string) string { return strings.TrimPrefix(id, WitnessPrefix) }

// memberName is this node's raft server ID and gossip name.
func (n *Node) memberName() string {
	if n.cfg.Role == RoleWitness {
		return WitnessID(n.cfg.NodeName)
	}
	return n.cfg.NodeName
}

// bootstrapSet chooses the voters of a new cluster among the live gossip
// members: control nodes first (by name), then at most one witness; nil
// while fewer than expect are there. Two control nodes and a witness
// bootstrap with bootstrapExpect 3.
func bootstrapSet(members []Member, expect int) []Member {
	var ctl, wit []Member
	for _, m := range members {
		switch {
		case !m.Alive || m.Meta.Raft == "":
		case m.Meta.Role == "control":
			ctl = append(ctl, m)
		case m.Meta.Role == RoleWitness && IsWitness(m.Name):
			wit = append(wit, m)
		}
	}
	if len(wit) > 1 {
		wit = wit[:1]
	}
	all := append(ctl, wit...)
	if expect <= 0 || len(all) < expect || len(ctl) == 0 {
		return nil
	}
	return all[:expect]
}

// errNoCandidacy is what a witness's transport answers when its raft asks
// for votes too early. (The text must not contain "unexpected command":
// raft would count that as a granted pre-vote from an old peer.)
var errNoCandidacy = errors.New("a witness stands for election only after the control nodes had their chance")

// witnessTransport keeps a witness's raft from taking leadership a control
// node could take; hashicorp/raft has no setting for that.
//
// A witness cannot simply never lead: when the surviving control node's
// log lacks entries the witness holds (committed by the lost node with the
// witness's vote, or after a full stop in which the survivor stopped
// first), raft rightly refuses to elect the survivor, and only the witness
// can bring it up to date. So:
//   - its (pre-)vote requests are not sent until it has heard from no
//     leader for grace (several election timeouts, from its start at the
//     earliest): a control node that can win has won by then, and its
//     heartbeats keep the witness quiet. With pre-vote (on by default) a
//     candidate raises its term only after a majority granted its
//     pre-vote, so the refused requests do not disturb the cluster;
//   - it refuses TimeoutNow (a leadership transfer to the witness);
//   - when it does win, package qwitness hands leadership at once to a
//     control node (raft first brings that node's log up to date); while
//     the witness leads, no coordinator runs anywhere and no lease is
//     renewed.
//
// Everything else (appending entries, snapshots, granting votes to
// control nodes) works as for any voter.
type witnessTransport struct {
	*raft.NetworkTransport
	rpcs chan raft.RPC
	done chan struct{}
	once sync.Once
	// contact returns when a leader was last heard from (raft.LastContact),
	// set once raft runs.
	contact atomic.Pointer[func() time.Time]
	start   time.Time
	grace   time.Duration
}

var (
	_ raft.Transport   = (*witnessTransport)(nil)
	_ raft.WithPreVote = (*witnessTransport)(nil)
	_ raft.WithClose   = (*witnessTransport)(nil)
)

// WitnessGrace is how many election timeouts a witness waits without a
// leader before it stands for election itself.
const WitnessGrace = 4

func newWitnessTransport(t *raft.NetworkTransport, election time.Duration) *witnessTransport {
	w := &witnessTransport{NetworkTransport: t, rpcs: make(chan raft.RPC), done: make(chan struct{}),
		start: time.Now(), grace: WitnessGrace * election}
	go w.filter()
	return w
}

// mayStand reports whether the witness has heard from no leader for grace.
func (w *witnessTransport) mayStand() bool {
	f := w.contact.Load()
	if f == nil {
		return false
	}
	last := (*f)()
	if last.Before(w.start) {
		last = w.start
	}
	return time.Since(last) >= w.grace
}

// filter passes incoming RPCs on to raft, except TimeoutNow.
func (w *witnessTransport) filter() {
	in := w.NetworkTransport.Consumer()
	for {
		select {
		case <-w.done:
			return
		case rpc := <-in:
			if _, ok := rpc.Command.(*raft.TimeoutNowRequest); ok {
				rpc.Respond(nil, errNoCandidacy)
				continue
			}
			select {
			case w.rpcs <- rpc:
			case <-w.done:
				return
			}
		}
	}
}

// Consumer implements raft.Transport.
func (w *witnessTransport) Consumer() <-chan raft.RPC { return w.rpcs }

// RequestVote implements raft.Transport: sent only after grace.
func (w *witnessTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if !w.mayStand() {
		return errNoCandidacy
	}
	return w.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote: sent only after grace.
func (w *witnessTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if !w.mayStand() {
		return errNoCandidacy
	}
	return w.NetworkTransport.RequestPreVote(id, target, args, resp)
}

// Close implements raft.WithClose; safe to call more than once.
func (w *witnessTransport) Close() error {
	w.once.Do(func() { close(w.done) })
	return w.NetworkTransport.Close()
}
