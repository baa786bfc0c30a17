package lease

import (
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var p = Params{L: 400 * time.Millisecond, Margin: 40 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond}

func TestValidate(t *testing.T) {
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Params{{}, {L: time.Second}, {L: time.Second, Margin: 600 * time.Millisecond, LeaderLeaseTimeout: 1}, {L: time.Second, Margin: 1}}
	for _, b := range bad {
		if b.Validate() == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

func TestHolderDeadline(t *testing.T) {
	t0 := time.Now()
	h := NewHolder(p)
	if h.Valid(t0) {
		t.Fatal("valid before any ack")
	}
	h.Acked(t0)
	if !h.Valid(t0.Add(p.L - p.Margin - time.Millisecond)) {
		t.Fatal("not valid just before deadline")
	}
	if h.Valid(t0.Add(p.L - p.Margin)) {
		t.Fatal("valid at deadline")
	}
	// An older ack arriving late never shortens the lease.
	h.Acked(t0.Add(100 * time.Millisecond))
	h.Acked(t0)
	if got, want := h.Deadline(), t0.Add(100*time.Millisecond+p.L-p.Margin); !got.Equal(want) {
		t.Fatalf("deadline %v want %v", got, want)
	}
	h.Revoke()
	if h.Valid(t0) {
		t.Fatal("valid after revoke")
	}
}

func TestTableRefusesUnconfirmed(t *testing.T) {
	t0 := time.Now()
	tb := NewTable(p)
	if tb.Ack("a", t0) {
		t.Fatal("acked while not leader")
	}
	tb.BecameLeader(t0)
	if tb.Ack("a", t0) {
		t.Fatal("acked before leadership confirmed")
	}
	tb.Confirmed(t0)
	if !tb.Ack("a", t0.Add(10*time.Millisecond)) {
		t.Fatal("refused while confirmed")
	}
	if tb.Ack("a", t0.Add(p.LeaderLeaseTimeout)) {
		t.Fatal("acked after confirmation went stale")
	}
	if tb.Expired("a", t0.Add(p.LeaderLeaseTimeout+p.L+p.Margin)) {
		t.Fatal("expired before leaderSince+LLT+L+margin")
	}
	if !tb.Expired("a", t0.Add(p.LeaderLeaseTimeout+p.L+p.Margin+time.Millisecond)) {
		t.Fatal("not expired after")
	}
	tb.LostLeadership()
	if tb.Expired("a", t0.Add(time.Hour)) {
		t.Fatal("a non-leader must never declare expiry")
	}
}

// TestNoOverlapAcrossLeaderChange is the I1 property for the lease rules: a
// holder renews with an old leader that is deposed at an arbitrary point and
// with a new one; at no instant does the holder believe it holds while the
// new leader believes the lease expired.
func TestNoOverlapAcrossLeaderChange(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		t0 := time.Now()
		ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
		old := NewTable(p)
		old.BecameLeader(t0)
		// The old leader confirms its leadership at some points before the
		// election of the new leader (a confirmation needs a quorum that has
		// not yet voted for a newer term).
		elect := rapid.IntRange(0, 2000).Draw(rt, "election")
		confirms := rapid.SliceOfN(rapid.IntRange(0, elect), 0, 20).Draw(rt, "confirms")
		sort.Ints(confirms)
		nu := NewTable(p)
		becomes := elect + rapid.IntRange(0, 300).Draw(rt, "barrier")
		nu.BecameLeader(ms(becomes))
		nu.Confirmed(ms(becomes))
		h := NewHolder(p)
		// Renewals: sent at s, reach a leader at s+d1, ack received at s+d1+d2.
		n := rapid.IntRange(0, 40).Draw(rt, "renewals")
		ci := 0
		for i := 0; i < n; i++ {
			s := rapid.IntRange(0, 3000).Draw(rt, "sent")
			d := rapid.IntRange(0, 50).Draw(rt, "delay")
			at := s + d
			// Feed the old leader the confirmations that happened before at.
			for ci < len(confirms) && confirms[ci] <= at {
				old.Confirmed(ms(confirms[ci]))
				ci++
			}
			if rapid.Bool().Draw(rt, "toNew") {
				if at >= becomes && nu.Ack("h", ms(at)) {
					h.Acked(ms(s))
				}
			} else if old.Ack("h", ms(at)) {
				h.Acked(ms(s))
			}
		}
		for q := 0; q <= 5000; q += 5 {
			if h.Valid(ms(q)) && nu.Expired("h", ms(q)) {
				rt.Fatalf("overlap at %d ms: holder deadline %v, new leader expiry %v", q, h.Deadline().Sub(t0), nu.ExpiresAt("h").Sub(t0))
			}
		}
	})
}

// A node that declares a longer lease (remote nodes: 2 s) is judged with
// it: the leader must not call it gone at the table's default L.
func TestPerNodeLease(t *testing.T) {
	t0 := time.Now()
	tb := NewTable(p)
	tb.BecameLeader(t0)
	tb.Confirmed(t0)
	long := 2 * time.Second
	at := t0.Add(10 * time.Millisecond)
	if !tb.AckWith("remote", at, long, long/10) {
		t.Fatal("refused a valid declared lease")
	}
	h := NewHolder(Params{L: long, Margin: long / 10, LeaderLeaseTimeout: p.LeaderLeaseTimeout})
	h.Acked(at)
	for ms := 0; ms < 4000; ms += 5 {
		now := at.Add(time.Duration(ms) * time.Millisecond)
		if h.Valid(now) && tb.Expired("remote", now) {
			t.Fatalf("overlap at +%dms: holder valid until %v, leader expiry %v", ms, h.Deadline().Sub(at), tb.ExpiresAt("remote").Sub(at))
		}
	}
	if !tb.Expired("remote", t0.Add(p.LeaderLeaseTimeout+long+long/10+time.Millisecond)) {
		t.Fatal("never expires")
	}
	// Unsafe declared timings are refused (and not stored).
	if tb.AckWith("odd", at, 100*time.Millisecond, 60*time.Millisecond) {
		t.Fatal("accepted margin ≥ L/2")
	}
	// A new leader learns declared leases from the node records.
	tb2 := NewTable(p)
	tb2.BecameLeader(t0)
	tb2.Declare("remote", long, long/10)
	if tb2.Expired("remote", t0.Add(p.LeaderLeaseTimeout+p.L+p.Margin+time.Millisecond)) {
		t.Fatal("new leader used the default lease for a node that declared a longer one")
	}
}
