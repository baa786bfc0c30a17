// Package lease implements the hold-lease rules of DESIGN §3, the one
// mechanism that keeps an exclusive resource from running twice (I1, I3):
//
//   - a holder keeps its exclusive resources only until
//     t_sent(last acknowledged renewal) + L − margin, by its own monotonic
//     clock, and stops them by itself past that (self-fence);
//   - the leader acknowledges a renewal only while its leadership was
//     confirmed by a quorum within LeaderLeaseTimeout, so a deposed leader
//     stops acknowledging at most LeaderLeaseTimeout after a new leader
//     could have been elected;
//   - the leader treats a holder as gone only after
//     max(t(last ack), leaderSince + LeaderLeaseTimeout) + L + margin.
//
// Everything here is pure: times are passed in, so the rules are tested on
// a fake clock. Times must carry Go's monotonic reading (time.Now()).
package lease

import (
	"fmt"
	"sync"
	"time"
)

// Params are the lease timings.
type Params struct {
	// L is the lease duration.
	L time.Duration
	// Margin absorbs clock-rate differences and scheduling delays.
	Margin time.Duration
	// LeaderLeaseTimeout bounds how long a deposed leader may still
	// acknowledge renewals (the raft LeaderLeaseTimeout).
	LeaderLeaseTimeout time.Duration
}

// Validate checks that the timings can be safe.
func (p Params) Validate() error {
	switch {
	case p.L <= 0:
		return fmt.Errorf("lease duration must be positive (got %v)", p.L)
	case p.Margin <= 0:
		return fmt.Errorf("lease margin must be positive (got %v)", p.Margin)
	case 2*p.Margin >= p.L:
		return fmt.Errorf("lease margin %v must be less than half the lease duration %v", p.Margin, p.L)
	case p.LeaderLeaseTimeout <= 0:
		return fmt.Errorf("leader lease timeout must be positive (got %v)", p.LeaderLeaseTimeout)
	}
	return nil
}

// RenewInterval is how often a holder renews: four chances per lease.
func (p Params) RenewInterval() time.Duration { return p.L / 4 }

// Holder is the holder's side: it tracks until when it may keep exclusive
// resources. Safe for concurrent use.
type Holder struct {
	p     Params
	mu    sync.Mutex
	until time.Time
	epoch uint64
}

// NewHolder returns a holder with no valid lease.
func NewHolder(p Params) *Holder { return &Holder{p: p} }

// Acked records that a renewal sent at sent was acknowledged by a leader.
// It returns the new deadline.
func (h *Holder) Acked(sent time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := sent.Add(h.p.L - h.p.Margin)
	if d.After(h.until) {
		h.until = d
	}
	return h.until
}

// Valid reports whether the holder may keep (or start) exclusive resources at now.
func (h *Holder) Valid(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return now.Before(h.until)
}

// Deadline is the instant the lease ends (zero if never acknowledged).
func (h *Holder) Deadline() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.until
}

// Margin is the margin the holder's deadline is computed with.
func (h *Holder) Margin() time.Duration { return h.p.Margin }

// Revoke drops the lease at once (e.g. on shutdown or when told it lost quorum).
func (h *Holder) Revoke() {
	h.mu.Lock()
	h.until = time.Time{}
	h.mu.Unlock()
}

// Table is the leader's side: last acknowledged renewal per node. Safe for
// concurrent use.
type Table struct {
	p           Params
	mu          sync.Mutex
	leaderSince time.Time
	confirmed   time.Time
	last        map[string]time.Time
	// nodeP holds the lease timings a node declared (it self-fences with
	// them); nodes without an entry use p.
	nodeP map[string]Params
}

// NewTable returns an empty table; it acknowledges nothing until
// BecameLeader and Confirmed are called.
func NewTable(p Params) *Table {
	return &Table{p: p, last: map[string]time.Time{}, nodeP: map[string]Params{}}
}

// BecameLeader resets the table when this node becomes leader at now:
// acknowledgements given by earlier leaders are unknown, so every holder is
// presumed to hold until leaderSince + LeaderLeaseTimeout + L + margin.
func (t *Table) BecameLeader(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leaderSince = now
	t.confirmed = time.Time{}
	t.last = map[string]time.Time{}
	t.nodeP = map[string]Params{}
}

// Declare records the lease timings node uses (from the replicated node
// record), so a new leader judges a node it has not heard from yet with
// the node's own lease, not the table's default.
func (t *Table) Declare(node string, l, margin time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	np := Params{L: l, Margin: margin, LeaderLeaseTimeout: t.p.LeaderLeaseTimeout}
	if np.Validate() == nil {
		t.nodeP[node] = np
	}
}

// LostLeadership stops all acknowledgements.
func (t *Table) LostLeadership() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leaderSince = time.Time{}
	t.confirmed = time.Time{}
	t.last = map[string]time.Time{}
	t.nodeP = map[string]Params{}
}

// Confirmed records that a quorum confirmed this leader's leadership in a
// check that started at started.
func (t *Table) Confirmed(started time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.leaderSince.IsZero() && started.After(t.confirmed) {
		t.confirmed = started
	}
}

// Ack tries to acknowledge a renewal from node at now. It refuses when this
// node is not a leader whose leadership was confirmed within
// LeaderLeaseTimeout.
func (t *Table) Ack(node string, now time.Time) bool {
	return t.AckWith(node, now, 0, 0)
}

// AckWith is Ack for a node that declares its own lease L and margin (the
// values it self-fences with; zero: the table's). The node's expiry is
// judged with them from then on. Declared timings that are not safe on
// their own (see Params.Validate) are refused.
func (t *Table) AckWith(node string, now time.Time, l, margin time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l > 0 || margin > 0 {
		np := Params{L: l, Margin: margin, LeaderLeaseTimeout: t.p.LeaderLeaseTimeout}
		if np.Validate() != nil {
			return false
		}
		t.nodeP[node] = np
	}
	if t.leaderSince.IsZero() || t.confirmed.IsZero() || now.Sub(t.confirmed) >= t.p.LeaderLeaseTimeout {
		return false
	}
	if now.After(t.last[node]) {
		t.last[node] = now
	}
	return true
}

// Forget drops a node (it released everything, or was removed).
func (t *Table) Forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, node)
	delete(t.nodeP, node)
}

func (t *Table) paramsOf(node string) Params {
	if np, ok := t.nodeP[node]; ok {
		return np
	}
	return t.p
}

// ExpiresAt is the instant after which node is provably no longer holding
// anything under a lease from any leader.
func (t *Table) ExpiresAt(node string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expiresAt(node)
}

func (t *Table) expiresAt(node string) time.Time {
	base := t.leaderSince.Add(t.p.LeaderLeaseTimeout)
	if l := t.last[node]; l.After(base) {
		base = l
	}
	p := t.paramsOf(node)
	return base.Add(p.L + p.Margin)
}

// Expired reports whether node's lease has provably ended at now.
func (t *Table) Expired(node string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leaderSince.IsZero() {
		return false
	}
	return now.After(t.expiresAt(node))
}

// Alive reports whether node renewed with this leader within L + margin.
func (t *Table) Alive(node string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.last[node]
	p := t.paramsOf(node)
	return ok && !now.After(l.Add(p.L+p.Margin))
}

// LastAck returns the last acknowledgement time of node (zero if none).
func (t *Table) LastAck(node string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last[node]
}
