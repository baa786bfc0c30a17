package tlsutil

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloaderPicksUpRotation(t *testing.T) {
	p := newPKI(t, "prod")
	var logs bytes.Buffer
	server, err := NewReloader(p.issue(t, "node1"), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	client := mustReloader(t, p.issue(t, "node2"))
	srv := startServer(t, server.ServerConfig(true))

	before, err := dial(srv.addr, client.ClientConfig("node1"))
	if err != nil {
		t.Fatal(err)
	}
	<-srv.result

	if err := Rotate(p.caDir, p.out, "node1", 0); err != nil {
		t.Fatal(err)
	}
	want := serialHex(readCert(t, server.files.Cert))
	if want == before {
		t.Fatal("Rotate did not change the serial")
	}
	waitFor(t, "new connections to see the rotated certificate", func() bool {
		got, err := dial(srv.addr, client.ClientConfig("node1"))
		if err != nil {
			t.Fatalf("handshake during rotation: %v", err)
		}
		if err := <-srv.result; err != nil {
			t.Fatalf("server side during rotation: %v", err)
		}
		if got != before && got != want {
			t.Fatalf("served serial %s, neither old %s nor new %s", got, before, want)
		}
		return got == want
	})
	if err := server.LastError(); err != nil {
		t.Errorf("LastError after a good rotation: %v", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("reloaded")) {
		t.Errorf("no reload logged: %s", logs.String())
	}

	// The client side reloads too: rotate the client and watch the server
	// see the new client serial.
	if err := Rotate(p.caDir, p.out, "node2", 0); err != nil {
		t.Fatal(err)
	}
	wantClient := serialHex(readCert(t, client.files.Cert))
	waitFor(t, "the client to present its rotated certificate", func() bool {
		return serialHex(client.Leaf()) == wantClient
	})
}

func TestReloaderKeepsLastGoodPair(t *testing.T) {
	p := newPKI(t, "prod")
	f := p.issue(t, "node1")
	now := time.Now()
	clock := func() time.Time { return now }
	r, err := NewReloader(f, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	good := serialHex(r.Leaf())

	// Break the certificate file (as if half-written by hand).
	if err := os.WriteFile(f.Cert, []byte("-----BEGIN CERTIFICATE-----\nAAAA"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.Reload()
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("Reload of a broken file: got %v, want ErrMalformed", err)
	}
	if got := serialHex(r.Leaf()); got != good {
		t.Errorf("serving %s after a failed reload, want the last good %s", got, good)
	}
	if !errors.Is(r.LastError(), ErrMalformed) {
		t.Errorf("LastError: %v", r.LastError())
	}

	// Rotation repairs it; the next check after the interval picks it up.
	if err := Rotate(p.caDir, p.out, "node1", 0); err == nil {
		t.Fatal("Rotate of an unreadable certificate succeeded")
	}
	if err := os.Remove(f.Cert); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Key); err != nil {
		t.Fatal(err)
	}
	p.issue(t, "node1")
	now = now.Add(ReloadInterval / 2)
	if got := serialHex(r.Leaf()); got != good {
		t.Errorf("reloaded before the interval passed")
	}
	now = now.Add(ReloadInterval)
	if got := serialHex(r.Leaf()); got == good {
		t.Errorf("not reloaded after the interval")
	}
	if err := r.LastError(); err != nil {
		t.Errorf("LastError after repair: %v", err)
	}
}
