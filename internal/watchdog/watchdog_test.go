package watchdog

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRunPetsOnlyWhileOK drives Run with manual ticks against a FIFO
// standing in for /dev/watchdog: a pet per tick while ok, none while not,
// and the magic close when the context ends.
func TestRunPetsOnlyWhileOK(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "watchdog")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDWR, 0) // keeps the FIFO open for Open's write end
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := Open(fifo, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d.Timeout() != 3*time.Second {
		t.Fatalf("timeout %v", d.Timeout())
	}
	// Each evaluation of ok takes one answer from the test, so the test
	// knows exactly when Run asked and what it was told.
	answers := make(chan bool)
	ok := func() bool { return <-answers }
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, d, tick, ok, slog.Default()); close(done) }()
	br := bufio.NewReader(r)
	var got []byte
	answers <- true // the first evaluation, at once: a pet
	for _, a := range []bool{true, false, false, false, true} {
		tick <- time.Now()
		answers <- a
	}
	cancel()
	<-done
	for {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b)
		if b == 'V' {
			break
		}
	}
	// true, true, false ×3, true: three pets, then the magic close.
	if string(got) != "111V" {
		t.Fatalf("device saw %q, want \"111V\" (a pet per true answer, none for false, then the magic close)", got)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "none"), time.Second)
	if err == nil || !contains(err.Error(), "modprobe softdog") {
		t.Fatalf("want an explained error, got %v", err)
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || len(sub) == 0 || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
