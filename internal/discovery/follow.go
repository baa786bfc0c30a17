package discovery

import (
	"context"
	"time"
)

// Follow keeps h current: it calls build every interval (and once at
// once) and stores the result, until ctx ends. build runs on this
// goroutine only; a nil result is skipped (the previous snapshot stays).
// Snapshots with an unchanged version do not replace the current one, so
// the DNS server's cache survives idle rounds.
func Follow(ctx context.Context, h *Holder, interval time.Duration, build func() *Snapshot) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if s := build(); s != nil {
			h.Set(s)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
