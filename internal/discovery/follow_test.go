package discovery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestFollow(t *testing.T) {
	h := &Holder{}
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, h, 5*time.Millisecond, func() *Snapshot {
			n := calls.Add(1)
			if n == 2 {
				return nil // skipped
			}
			return bigState(int(n))
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("Follow does not call build")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if s := h.Snapshot(); s == nil || len(s.Services["big"]) < 3 {
		t.Fatalf("snapshot %v", s)
	}
}
