package clustertest

import (
	"bufio"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestWatchdogPetted: an agent configured with a watchdog device (a FIFO
// standing in for /dev/watchdog) pets it while it runs and disarms it
// with the magic close when it stops cleanly.
func TestWatchdogPetted(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	fifo := filepath.Join(c.Dir, "watchdog")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []byte
	go func() {
		br := bufio.NewReader(r)
		for {
			b, err := br.ReadByte()
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, b)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { r.Close() })
	seen := func() []byte { mu.Lock(); defer mu.Unlock(); return append([]byte(nil), got...) }

	n := c.Nodes[2]
	n.Stop()
	n.Cfg.Watchdog.Device = fifo
	n.Cfg.Watchdog.Timeout = 2 * time.Second
	n.Start()
	c.WaitReady(n)
	c.Wait("five pets", func() bool {
		k := 0
		for _, b := range seen() {
			if b == '1' {
				k++
			}
		}
		return k >= 5
	})
	n.Stop()
	c.Wait("the magic close", func() bool {
		s := seen()
		return len(s) > 0 && s[len(s)-1] == 'V'
	})
}
