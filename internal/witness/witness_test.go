package witness

import (
	"context"
	"testing"
	"time"
)

func TestAnalyzeFindsOverlap(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var ws []Write
	for ms := 0; ms <= 100; ms += 10 {
		ws = append(ws, Write{At: at(ms), Host: "a", Epoch: 1})
	}
	// b starts at 300: no overlap.
	for ms := 300; ms <= 400; ms += 10 {
		ws = append(ws, Write{At: at(ms), Host: "b", Epoch: 2})
	}
	r := Analyze(ws, 30*time.Millisecond)
	if r.Overlap != 0 || len(r.Intervals) != 2 {
		t.Fatalf("want no overlap and 2 intervals, got %+v", r)
	}
	// c writes between 350 and 380 while b is active.
	for ms := 350; ms <= 380; ms += 10 {
		ws = append(ws, Write{At: at(ms), Host: "c", Epoch: 3})
	}
	r = Analyze(ws, 30*time.Millisecond)
	if r.Overlap != 30*time.Millisecond || len(r.Overlaps) != 1 {
		t.Fatalf("want 30ms overlap, got %v %v", r.Overlap, r.Overlaps)
	}
	if w, ok := FirstWriteAfter(ws, at(101), "a"); !ok || w.Host != "b" {
		t.Fatalf("first write after: %+v", w)
	}
}

func TestSendAndReceive(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Send(ctx, s.Addr(), "h1", 7, 5*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Writes()) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	ws := s.Writes()
	if len(ws) < 5 || ws[0].Host != "h1" || ws[0].Epoch != 7 {
		t.Fatalf("got %+v", ws)
	}
}
