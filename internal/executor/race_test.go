package executor

import (
	"context"
	"sync"
	"testing"

	"github.com/paceline/paceline/internal/spec"
)

// SelfFence (lease loop) and StopAll (shutdown) may run at the same time;
// both kill exclusive instances and must not close a channel twice.
func TestSelfFenceConcurrentWithStopAll(t *testing.T) {
	for i := 0; i < 10; i++ {
		r := newRig(t)
		r.grant()
		vip := r.resource("vip", spec.ModeSingle, "trap '' TERM; exec sleep 1000")
		r.update(1, item(vip, 0, 1))
		r.waitRunning("vip", "vip:0", 1)
		r.holder.Revoke()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); r.e.SelfFence() }()
		go func() { defer wg.Done(); r.e.SelfFence() }()
		go func() { defer wg.Done(); r.e.StopAll(ctx) }()
		wg.Wait()
	}
}
