package consensus

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestWitnessIDs(t *testing.T) {
	id := WitnessID("w1")
	if id != "witness:w1" || !IsWitness(id) || WitnessName(id) != "w1" || IsWitness("w1") {
		t.Fatalf("witness IDs: %q", id)
	}
}

func TestBootstrapSet(t *testing.T) {
	ctl := func(n string) Member {
		return Member{Name: n, Alive: true, Meta: Meta{Role: "control", Raft: n + ":1"}}
	}
	wit := func(n string) Member {
		return Member{Name: WitnessID(n), Alive: true, Meta: Meta{Role: RoleWitness, Raft: n + ":1"}}
	}
	names := func(ms []Member) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return strings.Join(s, ",")
	}
	dead := ctl("c3")
	dead.Alive = false
	for _, tc := range []struct {
		ms     []Member
		expect int
		want   string
	}{
		{[]Member{ctl("a"), ctl("b"), wit("w")}, 3, "a,b,witness:w"},
		{[]Member{wit("w"), ctl("a"), ctl("b"), ctl("c")}, 3, "a,b,c"}, // control nodes first
		{[]Member{ctl("a"), wit("w"), wit("x")}, 3, ""},                // one witness at most
		{[]Member{ctl("a"), dead, wit("w")}, 3, ""},
		{[]Member{wit("w")}, 1, ""},                                                                       // a witness alone bootstraps nothing
		{[]Member{ctl("a"), {Name: "witness:z", Alive: true, Meta: Meta{Role: RoleWitness}}}, 2, ""},      // no raft address
		{[]Member{ctl("a"), {Name: "z", Alive: true, Meta: Meta{Role: RoleWitness, Raft: "z:1"}}}, 2, ""}, // not named as a witness
	} {
		if got := names(bootstrapSet(tc.ms, tc.expect)); got != tc.want {
			t.Errorf("bootstrapSet(%s, %d) = %q, want %q", names(tc.ms), tc.expect, got, tc.want)
		}
	}
}

func tcpTransport(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestWitnessTransport checks the three rules of witnessTransport over real
// TCP transports: no (pre-)vote request leaves before grace, one does
// after; TimeoutNow is refused; other RPCs reach raft.
func TestWitnessTransport(t *testing.T) {
	peer := tcpTransport(t)
	defer peer.Close()
	w := newWitnessTransport(tcpTransport(t), 50*time.Millisecond)
	defer w.Close()
	// The peer grants every pre-vote and acknowledges every append.
	go func() {
		for rpc := range peer.Consumer() {
			switch rpc.Command.(type) {
			case *raft.RequestPreVoteRequest:
				rpc.Respond(&raft.RequestPreVoteResponse{Granted: true, Term: 1}, nil)
			default:
				rpc.Respond(nil, nil)
			}
		}
	}()
	pre := func() error {
		var resp raft.RequestPreVoteResponse
		err := w.RequestPreVote("p", peer.LocalAddr(), &raft.RequestPreVoteRequest{Term: 1}, &resp)
		if err == nil && !resp.Granted {
			t.Fatal("pre-vote sent but not granted")
		}
		return err
	}
	if err := pre(); err != errNoCandidacy {
		t.Fatalf("pre-vote before raft runs: %v", err)
	}
	now := time.Now()
	contact := func() time.Time { return now }
	w.contact.Store(&contact)
	if err := pre(); err != errNoCandidacy {
		t.Fatalf("pre-vote right after contact with a leader: %v", err)
	}
	var vresp raft.RequestVoteResponse
	if err := w.RequestVote("p", peer.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &vresp); err != errNoCandidacy {
		t.Fatalf("vote right after contact with a leader: %v", err)
	}
	if strings.Contains(errNoCandidacy.Error(), "unexpected command") {
		t.Fatal("raft would count the refusal as a granted pre-vote")
	}
	// grace (4 × 50 ms) without a leader, counted from the witness's start.
	long := now.Add(-time.Hour)
	contact2 := func() time.Time { return long }
	w.contact.Store(&contact2)
	w.start = long
	if err := pre(); err != nil {
		t.Fatalf("pre-vote after grace: %v", err)
	}

	// TimeoutNow (leadership transfer to the witness) is refused.
	var tresp raft.TimeoutNowResponse
	err := peer.TimeoutNow("w", w.LocalAddr(), &raft.TimeoutNowRequest{}, &tresp)
	if err == nil || !strings.Contains(err.Error(), "stands for election only") {
		t.Fatalf("TimeoutNow to the witness: %v", err)
	}
	// Appends reach the witness's raft.
	got := make(chan any, 1)
	go func() {
		rpc := <-w.Consumer()
		got <- rpc.Command
		rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
	}()
	var aresp raft.AppendEntriesResponse
	if err := peer.AppendEntries("w", w.LocalAddr(), &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1}}}, &aresp); err != nil || !aresp.Success {
		t.Fatalf("append to the witness: %v %+v", err, aresp)
	}
	if _, ok := (<-got).(*raft.AppendEntriesRequest); !ok {
		t.Fatal("the append did not reach raft")
	}
}
