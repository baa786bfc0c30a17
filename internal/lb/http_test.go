package lb

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func httpConfig(servers ...Server) Config {
	return Config{
		Frontends: []Frontend{{Name: "fe", Bind: "127.0.0.1:0", Mode: "http", Backend: "be"}},
		Backends:  []Backend{{Name: "be", Servers: servers}},
	}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHTTPProxyHeadersAndKeepAlive(t *testing.T) {
	var conns atomic.Int64
	var mu sync.Mutex
	var seen http.Header
	var host string
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen, host = r.Header.Clone(), r.Host
		mu.Unlock()
		io.WriteString(w, "a")
	}, func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	l := mustNew(t, httpConfig(Server{Name: "a", Address: addr}))
	url := "http://" + l.Addr("fe").String() + "/x"
	c := &http.Client{Timeout: 5 * time.Second}
	for range 50 {
		if resp, body := get(t, c, url); resp.StatusCode != 200 || body != "a" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d backend connections for 50 sequential requests: no keep-alive pool", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen.Get("X-Forwarded-For") != "127.0.0.1" || seen.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("forwarded headers: %v", seen)
	}
	if host != l.Addr("fe").String() {
		t.Fatalf("Host %q not preserved", host)
	}
}

func TestHTTPCookieAndSourceStickiness(t *testing.T) {
	var cookieLeak atomic.Bool
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, err := r.Cookie("SRV"); err == nil {
				cookieLeak.Store(true)
			}
			io.WriteString(w, name)
		}
	}
	a, _ := newHTTPServer(t, "a", h("a"))
	b, _ := newHTTPServer(t, "b", h("b"))
	cfg := httpConfig(Server{Name: "a", Address: a}, Server{Name: "b", Address: b})
	cfg.Backends[0].Stick = "cookie"
	cfg.Backends[0].Cookie = "SRV"
	l := mustNew(t, cfg)
	url := "http://" + l.Addr("fe").String() + "/"
	c := &http.Client{Timeout: 5 * time.Second}
	resp, first := get(t, c, url)
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == "SRV" {
			ck = x
		}
	}
	if ck == nil || ck.Value != first {
		t.Fatalf("no SRV cookie naming %s: %v", first, resp.Header)
	}
	for range 10 {
		resp, body := get(t, c, url, "Cookie", "other=1; SRV="+ck.Value)
		if body != first {
			t.Fatalf("cookie to %s, got %s", first, body)
		}
		if len(resp.Cookies()) != 0 {
			t.Fatal("cookie inserted again although it was valid")
		}
	}
	if cookieLeak.Load() {
		t.Fatal("the stickiness cookie was forwarded to the server")
	}
	// Without the cookie: round robin.
	got := map[string]int{}
	for range 10 {
		_, body := get(t, c, url)
		got[body]++
	}
	if got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("without cookie: %v", got)
	}
	// Source stickiness.
	cfg.Backends[0].Stick = "source"
	cfg.Frontends[0].Bind = l.Addr("fe").String()
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	_, first = get(t, c, url)
	for range 10 {
		if _, body := get(t, c, url); body != first {
			t.Fatalf("source stickiness: %s then %s", first, body)
		}
	}
}

func writeCert(t *testing.T, dir string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lb.test"},
		DNSNames: []string{"lb.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return cf, kf
}

func TestHTTPTLSTerminationH2AndBadCert(t *testing.T) {
	var proto atomic.Value
	a, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Header.Get("X-Forwarded-Proto"))
		io.WriteString(w, "a")
	})
	dir := t.TempDir()
	cf, kf := writeCert(t, dir)
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"), 0o644)
	cfg := httpConfig(Server{Name: "a", Address: a})
	cfg.Frontends = append(cfg.Frontends,
		Frontend{Name: "tls", Bind: "127.0.0.1:0", Mode: "http", Backend: "be", TLS: &TLS{CertFile: cf, KeyFile: kf}},
		Frontend{Name: "badtls", Bind: "127.0.0.1:0", Mode: "http", Backend: "be", TLS: &TLS{CertFile: bad, KeyFile: kf}},
		Frontend{Name: "swapped", Bind: "127.0.0.1:0", Mode: "http", Backend: "be", TLS: &TLS{CertFile: kf, KeyFile: cf}},
		Frontend{Name: "h2c", Bind: "127.0.0.1:0", Mode: "http", Backend: "be", H2C: true})
	l, err := New(cfg, testLogger(t), nil)
	if l == nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err == nil || !strings.Contains(err.Error(), "frontends[2](badtls).tls.cert_file") ||
		!strings.Contains(err.Error(), "frontends[3](swapped).tls.cert_file") || !strings.Contains(err.Error(), "swapped?") {
		t.Fatalf("malformed certificates not explained: %v", err)
	}
	t.Log(err)
	for _, f := range l.Status().Frontends {
		if (f.Name == "badtls") != (f.Error != "") && (f.Name == "swapped") != (f.Error != "") {
			t.Fatalf("status %+v", f)
		}
	}
	// HTTP/2 over TLS.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, body := get(t, c, "https://"+l.Addr("tls").String()+"/")
	if resp.ProtoMajor != 2 || body != "a" || proto.Load() != "https" {
		t.Fatalf("TLS: proto %s body %q xfp %v", resp.Proto, body, proto.Load())
	}
	// HTTP/1.1 over TLS still works.
	c1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if resp, _ := get(t, c1, "https://"+l.Addr("tls").String()+"/"); resp.ProtoMajor != 1 {
		t.Fatal(resp.Proto)
	}
	// h2c prior knowledge.
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	if resp, body := get(t, &http.Client{Transport: h2c}, "http://"+l.Addr("h2c").String()+"/"); resp.ProtoMajor != 2 || body != "a" {
		t.Fatalf("h2c: %s %q", resp.Proto, body)
	}
	// Plain frontend works.
	if _, body := get(t, http.DefaultClient, "http://"+l.Addr("fe").String()+"/"); body != "a" {
		t.Fatal(body)
	}
	// Replacing a good certificate with a malformed one keeps the old one.
	cfg.Frontends[1].Bind = l.Addr("tls").String()
	cfg.Frontends[1].TLS = &TLS{CertFile: bad, KeyFile: kf}
	cfg.Frontends[0].Bind = l.Addr("fe").String()
	if err := l.Update(cfg); err == nil || !strings.Contains(err.Error(), "keeps its previous certificate") {
		t.Fatalf("update with a bad cert: %v", err)
	}
	tr.CloseIdleConnections()
	if resp, _ := get(t, c, "https://"+l.Addr("tls").String()+"/"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}

// proxyServer is a raw TCP server that reads a PROXY header, then answers
// an HTTP request with the header it saw.
func proxyServer(t *testing.T, hdr chan<- []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				b, _ := r.Peek(12)
				var h []byte
				if string(b) == string(proxyV2Sig) {
					h = make([]byte, 16)
					io.ReadFull(r, h)
					rest := make([]byte, int(h[14])<<8|int(h[15]))
					io.ReadFull(r, rest)
					h = append(h, rest...)
				} else {
					line, _ := r.ReadString('\n')
					h = []byte(line)
				}
				hdr <- h
				req, err := http.ReadRequest(r)
				if err != nil {
					io.WriteString(c, "tcp\n")
					return
				}
				req.Body.Close()
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String()
}

func TestProxyProtocol(t *testing.T) {
	hdr := make(chan []byte, 10)
	p := proxyServer(t, hdr)
	for _, v := range []int{1, 2} {
		for _, mode := range []string{"tcp", "http"} {
			cfg := httpConfig(Server{Name: "p", Address: p})
			cfg.Frontends[0].Mode = mode
			cfg.Backends[0].ProxyProtocol = v
			l := mustNew(t, cfg)
			fe := l.Addr("fe").(*net.TCPAddr)
			c, err := net.Dial("tcp", fe.String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 100))
			local := c.LocalAddr().(*net.TCPAddr)
			c.Close()
			var h []byte
			select {
			case h = <-hdr:
			case <-time.After(5 * time.Second):
				t.Fatalf("v%d %s: no connection", v, mode)
			}
			if v == 1 {
				want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", local.Port, fe.Port)
				if string(h) != want {
					t.Fatalf("v1 %s: %q, want %q", mode, h, want)
				}
			} else {
				if len(h) != 28 || h[12] != 0x21 || h[13] != 0x11 || int(h[24])<<8|int(h[25]) != local.Port || int(h[26])<<8|int(h[27]) != fe.Port {
					t.Fatalf("v2 %s: %x", mode, h)
				}
			}
			l.Close()
		}
	}
}

func TestHTTPRetryQueueAndLiveChangesUnderLoad(t *testing.T) {
	a, _ := newHTTPServer(t, "a", nil)
	b, _ := newHTTPServer(t, "b", nil)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	cfg := httpConfig(Server{Name: "dead", Address: deadAddr}, Server{Name: "a", Address: a}, Server{Name: "b", Address: b})
	cfg.Backends[0].Redispatch = true
	l := mustNew(t, cfg)
	url := "http://" + l.Addr("fe").String() + "/"
	cfg.Frontends[0].Bind = l.Addr("fe").String()

	// Load: 4 clients, bounded to 3 s and 20000 requests.
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					lastErr.Store(resp.Status)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	step := func(f func()) {
		time.Sleep(150 * time.Millisecond)
		f()
		if err := l.Update(cfg); err != nil {
			t.Error(err)
		}
	}
	step(func() { cfg.Backends[0].Servers[1].Drain = true })       // drain a
	step(func() { cfg.Backends[0].Servers[1].Maintenance = true }) // maintenance a
	step(func() { cfg.Backends[0].Servers = cfg.Backends[0].Servers[1:] })
	step(func() { cfg.Backends[0].Servers[0] = Server{Name: "a", Address: a} }) // back
	step(func() { cfg.Backends[0].Balance = "leastconn" })
	step(func() { cfg.Backends[0].Servers = cfg.Backends[0].Servers[1:] }) // only b
	close(stop)
	wg.Wait()
	t.Logf("%d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("%d failed (last: %v), %d ok", failed.Load(), lastErr.Load(), ok.Load())
	}

	// maxconn queue: one slot, a slow request holds it; the next waits
	// past the queue timeout and gets 503.
	release := make(chan struct{})
	slow, _ := newHTTPServer(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "slow")
	})
	cfg.Backends[0].Servers = []Server{{Name: "slow", Address: slow, MaxConn: 1}}
	cfg.Backends[0].QueueTimeout = 200 * time.Millisecond
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	go http.Get(url)
	time.Sleep(100 * time.Millisecond)
	resp, _ := get(t, http.DefaultClient, url)
	if resp.StatusCode != 503 {
		t.Fatalf("queued request past the queue timeout: %s, want 503", resp.Status)
	}
	close(release)
}

func TestHTTPBodiesHeadStaleConnsAndUpgrade(t *testing.T) {
	var conns atomic.Int64
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %s", r.Method, len(b), r.Header.Get("Connection"))
		case "/stream":
			for i := range 3 {
				fmt.Fprintf(w, "chunk%d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/ws":
			if r.Header.Get("Upgrade") != "test" {
				w.WriteHeader(400)
				return
			}
			c, brw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			line, _ := brw.ReadString('\n')
			io.WriteString(c, "echo:"+line)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}, func(s *http.Server) {
		s.IdleTimeout = 100 * time.Millisecond // the pool meets closed connections
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
	})
	l := mustNew(t, httpConfig(Server{Name: "a", Address: addr}))
	base := "http://" + l.Addr("fe").String()
	c := &http.Client{Timeout: 5 * time.Second}
	// Content-Length body, and chunked body.
	resp, err := c.Post(base+"/echo", "text/plain", strings.NewReader(strings.Repeat("y", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 100000 " {
		t.Fatalf("%q", b)
	}
	resp, err = c.Post(base+"/echo", "text/plain", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 6 " {
		t.Fatalf("chunked: %q", b)
	}
	// HEAD.
	resp, err = c.Head(base + "/")
	if err != nil || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %v %v", err, resp)
	}
	resp.Body.Close()
	// Streaming.
	if _, body := get(t, c, base+"/stream"); body != "chunk0\nchunk1\nchunk2\n" {
		t.Fatalf("stream %q", body)
	}
	// Pooled connections closed by the server are replaced without error.
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		if resp, body := get(t, c, base+"/"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("after idle close: %d %q", resp.StatusCode, body)
		}
	}
	// Upgrade goes through.
	raw, err := net.Dial("tcp", l.Addr("fe").String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(raw)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	io.WriteString(raw, "ping\n")
	if line, _ := br.ReadString('\n'); line != "echo:ping\n" {
		t.Fatalf("upgraded stream: %q", line)
	}
}

func TestHTTPServerTimeoutIsInactivity(t *testing.T) {
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			time.Sleep(600 * time.Millisecond)
		}
		for i := range 5 {
			fmt.Fprintf(w, "%d", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	cfg := httpConfig(Server{Name: "a", Address: addr})
	cfg.Backends[0].ServerTimeout = 300 * time.Millisecond
	l := mustNew(t, cfg)
	base := "http://" + l.Addr("fe").String()
	c := &http.Client{Timeout: 5 * time.Second}
	if resp, body := get(t, c, base+"/slow"); resp.StatusCode != 200 || body != "01234" {
		t.Fatalf("slow but active stream: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, base+"/stall"); resp.StatusCode != 504 {
		t.Fatalf("stalled server: %s, want 504", resp.Status)
	}
}

func TestHTTPRawPathEdgeCases(t *testing.T) {
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close-delimited":
			c, brw, _ := http.NewResponseController(w).Hijack()
			brw.Flush()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil-close")
			c.Close()
		case "/info":
			fmt.Fprintf(w, "%s %s xff=%s", r.Proto, r.URL.Path, r.Header.Get("X-Forwarded-For"))
		default:
			w.WriteHeader(204)
		}
	})
	l := mustNew(t, httpConfig(Server{Name: "a", Address: addr}))
	fe := l.Addr("fe").String()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", fe)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, bufio.NewReader(c)
	}
	read := func(br *bufio.Reader, method string) (*http.Response, string) {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// Pipelined requests, the second with Connection: close.
	c, br := dial()
	io.WriteString(c, "GET /info HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, body := read(br, "GET"); resp.StatusCode != 200 || body != "HTTP/1.1 /info xff=10.0.0.1, 127.0.0.1" {
		t.Fatalf("pipelined 1: %d %q", resp.StatusCode, body)
	}
	if resp, _ := read(br, "GET"); resp.StatusCode != 204 || !resp.Close {
		t.Fatalf("pipelined 2: %d close=%v", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close: %v", err)
	}
	c.Close()
	// HTTP/1.0 goes to net/http.
	c, br = dial()
	io.WriteString(c, "GET /info HTTP/1.0\r\nHost: x\r\n\r\n")
	if resp, body := read(br, "GET"); resp.StatusCode != 200 || !strings.HasPrefix(body, "HTTP/1.1 /info") {
		t.Fatalf("HTTP/1.0: %d %q", resp.StatusCode, body)
	}
	c.Close()
	// A close-delimited response is forwarded and the client connection closed.
	c, br = dial()
	io.WriteString(c, "GET /close-delimited HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := read(br, "GET"); resp.StatusCode != 200 || body != "until-close" || resp.Header.Get("X-A") != "1" {
		t.Fatalf("close-delimited: %d %q", resp.StatusCode, body)
	}
	c.Close()
	// Garbage gets net/http's 400.
	c, br = dial()
	io.WriteString(c, "BLAH\r\n\r\n")
	if resp, _ := read(br, "GET"); resp.StatusCode != 400 {
		t.Fatalf("garbage: %d", resp.StatusCode)
	}
	c.Close()
	// A head that is too big: 431.
	c, br = dial()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 20000)+"\r\n\r\n")
	if resp, _ := read(br, "GET"); resp.StatusCode != 431 {
		t.Fatalf("big head: %d", resp.StatusCode)
	}
	c.Close()
}

func TestModeChangeOnSameAddressAndPromptClose(t *testing.T) {
	a := newTCPServer(t, "a")
	h, _ := newHTTPServer(t, "h", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}
		io.WriteString(w, "h")
	})
	cfg := tcpConfig("", Server{Name: "a", Address: a.addr()})
	l, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr("fe").String()
	n, tc := dialName(t, addr)
	if n != "a" {
		t.Fatal(n)
	}
	defer tc.Close()
	// Same address, now http to another backend.
	cfg = httpConfig(Server{Name: "h", Address: h})
	cfg.Frontends[0].Bind = addr
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/"); body != "h" {
		t.Fatalf("after the mode change: %q", body)
	}
	io.WriteString(tc, "old\n")
	tc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(tc).ReadString('\n'); line != "old\n" {
		t.Fatalf("tcp session across the mode change: %q %v", line, err)
	}
	// Close returns promptly with a request in flight to a slow server.
	go (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/hang")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	l.Close()
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Close took %s", el)
	}
}

func TestHTTPLargeBodiesSpliced(t *testing.T) {
	const size = 32 << 20
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		for range size / len(block) {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	})
	l := mustNew(t, httpConfig(Server{Name: "a", Address: addr}))
	c := &http.Client{Timeout: 20 * time.Second}
	for _, path := range []string{"/length", "/chunked"} {
		before := procIO(t)
		resp, err := c.Get("http://" + l.Addr("fe").String() + path)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(block))
		n := 0
		for {
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				if err != io.EOF {
					t.Fatalf("%s: after %d blocks: %v", path, n, err)
				}
				break
			}
			if string(got) != string(block) {
				t.Fatalf("%s: block %d differs", path, n)
			}
			n++
		}
		resp.Body.Close()
		if n != size/len(block) {
			t.Fatalf("%s: %d blocks", path, n)
		}
		delta := procIO(t) - before
		t.Logf("%s: rchar grew by %d MiB for %d MiB (the client reads it once)", path, delta>>20, size>>20)
		if delta > size*3/2 {
			t.Fatalf("%s: the body went through user space in the proxy", path)
		}
	}
}

func TestHTTPLargeUploadSpliced(t *testing.T) {
	const size = 32 << 20
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d %v", n, err)
	})
	l := mustNew(t, httpConfig(Server{Name: "a", Address: addr}))
	c := &http.Client{Timeout: 20 * time.Second}
	before := procIO(t)
	body := io.LimitReader(zeros{}, size)
	req, _ := http.NewRequest("PUT", "http://"+l.Addr("fe").String()+"/img", body)
	req.ContentLength = size
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprintf("%d <nil>", size) {
		t.Fatalf("server got %q", b)
	}
	delta := procIO(t) - before
	t.Logf("rchar grew by %d MiB for a %d MiB upload (the server reads it once)", delta>>20, size>>20)
	if delta > size*3/2 {
		t.Fatal("the upload went through user space in the proxy")
	}
	// The connection still serves a request afterwards.
	if resp, body := get(t, c, "http://"+l.Addr("fe").String()+"/"); resp.StatusCode != 200 || body != "0 <nil>" {
		t.Fatalf("after the upload: %d %q", resp.StatusCode, body)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
