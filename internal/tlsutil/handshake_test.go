package tlsutil

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsServer accepts TLS connections on 127.0.0.1, answers "ok\n" to each
// completed handshake and reports every server-side handshake result.
type tlsServer struct {
	addr   string
	result chan error
}

func startServer(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), result: make(chan error, 100)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				err := tc.Handshake()
				if err == nil {
					_, err = tc.Write([]byte("ok\n"))
				}
				s.result <- err
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return s
}

// dial connects, completes the handshake, and reads the server's "ok" (in
// TLS 1.3 a rejected client certificate only shows up on that read). It
// returns the server certificate's serial.
func dial(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	if line != "ok\n" {
		return "", errors.New("unexpected reply " + line)
	}
	return serialHex(c.ConnectionState().PeerCertificates[0]), nil
}

func mustReloader(t *testing.T, f Files) *Reloader {
	t.Helper()
	r, err := NewReloader(f)
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	return r
}

func TestMutualTLSHandshake(t *testing.T) {
	p := newPKI(t, "prod")
	server := mustReloader(t, p.issue(t, "node1", "127.0.0.1"))
	client := mustReloader(t, p.issue(t, "node2"))
	srv := startServer(t, server.ServerConfig(true))

	// Same CA: succeeds, by IP and by the node name.
	for _, name := range []string{"127.0.0.1", "node1", "node1.paceline"} {
		serial, err := dial(srv.addr, client.ClientConfig(name))
		if err != nil {
			t.Fatalf("handshake as %s: %v", name, err)
		}
		if want := serialHex(server.Leaf()); serial != want {
			t.Errorf("server serial %s, want %s", serial, want)
		}
		if err := <-srv.result; err != nil {
			t.Fatalf("server side: %v", err)
		}
	}

	// A client certificate from another CA is rejected by the server.
	other := newPKI(t, "other")
	stranger := mustReloader(t, other.issue(t, "node9"))
	// The stranger trusts our CA, so only the server's check can fail.
	_, err := dial(srv.addr, strangerTrusting(t, stranger, server.files.CA).ClientConfig("node1"))
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("client with a foreign certificate: got %v, want a bad certificate alert", err)
	}
	if err := <-srv.result; !errors.Is(err, ErrNotSignedByCA) {
		t.Errorf("server side: got %v, want ErrNotSignedByCA", err)
	}

	// A server certificate from another CA is rejected by the client.
	foreignSrv := startServer(t, strangerTrusting(t, stranger, server.files.CA).ServerConfig(true))
	_, err = dial(foreignSrv.addr, client.ClientConfig("node9"))
	if !errors.Is(err, ErrNotSignedByCA) {
		t.Errorf("server with a foreign certificate: got %v, want ErrNotSignedByCA", err)
	}
	<-foreignSrv.result

	// The right CA but the wrong name is rejected.
	_, err = dial(srv.addr, client.ClientConfig("node2"))
	if err == nil || !strings.Contains(err.Error(), "node2") {
		t.Errorf("wrong server name: got %v", err)
	}
	<-srv.result

	// No client certificate at all.
	noCert := client.ClientConfig("node1")
	noCert.GetClientCertificate = nil
	_, err = dial(srv.addr, noCert)
	if err == nil {
		t.Error("client without a certificate was accepted")
	}
	if err := <-srv.result; err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server side without client cert: %v", err)
	}
}

// strangerTrusting returns a Reloader with r's certificate (from another CA)
// that trusts caFile, so the only failing check is the peer's.
func strangerTrusting(t *testing.T, r *Reloader, caFile string) *Reloader {
	t.Helper()
	// loadFiles insists that a certificate is signed by its own CA, so
	// build this one by hand.
	own := r.cur.Load()
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, _, err := parseCAPEM(data, caFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &Reloader{files: r.files, log: r.log, now: time.Now, interval: time.Hour, lastCheck: time.Now()}
	s.cur.Store(&loaded{cert: own.cert, pool: pool})
	return s
}

func TestServerWithoutClientCerts(t *testing.T) {
	p := newPKI(t, "prod")
	server := mustReloader(t, p.issue(t, "api"))
	srv := startServer(t, server.ServerConfig(false))
	client := mustReloader(t, p.issue(t, "cli"))
	cfg := client.ClientConfig("api")
	cfg.GetClientCertificate = nil
	if _, err := dial(srv.addr, cfg); err != nil {
		t.Fatalf("plain TLS: %v", err)
	}
	if err := <-srv.result; err != nil {
		t.Fatal(err)
	}
}

func TestClientConfigNeedsServerNameForIP(t *testing.T) {
	p := newPKI(t, "prod")
	server := mustReloader(t, p.issue(t, "node1"))
	srv := startServer(t, server.ServerConfig(true))
	client := mustReloader(t, p.issue(t, "node2"))
	_, err := dial(srv.addr, client.ClientConfig(""))
	if err == nil || !strings.Contains(err.Error(), "no server name") {
		t.Errorf("got %v, want an error asking for the server name", err)
	}
	<-srv.result
}
