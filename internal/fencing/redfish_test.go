package fencing

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// redfishBMC is a small Redfish service: systems with a power state that
// changes a while after a reset request (PoweringOff -> Off, PoweringOn
// -> On), HTTP basic auth, and a log of the reset types it received.
type redfishBMC struct {
	user, password string
	delay          time.Duration
	hang           chan struct{} // when set, every request waits until it is closed

	mu     sync.Mutex
	power  map[string]string // system id -> PowerState
	resets []string
	gen    map[string]int // invalidates pending transitions
}

func newRedfishBMC(systems ...string) *redfishBMC {
	b := &redfishBMC{user: "root", password: "calvin-secret", delay: 300 * time.Millisecond,
		power: map[string]string{}, gen: map[string]int{}}
	for _, s := range systems {
		b.power[s] = "On"
	}
	return b
}

func (b *redfishBMC) state(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.power[id]
}

// later sets id's power to final after the delay unless another reset came.
func (b *redfishBMC) later(id, final string, d time.Duration, then func()) {
	b.mu.Lock()
	b.gen[id]++
	g := b.gen[id]
	b.mu.Unlock()
	time.AfterFunc(d, func() {
		b.mu.Lock()
		if b.gen[id] != g {
			b.mu.Unlock()
			return
		}
		b.power[id] = final
		b.mu.Unlock()
		if then != nil {
			then()
		}
	})
}

func (b *redfishBMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.hang != nil {
		select {
		case <-b.hang:
		case <-r.Context().Done():
		}
		return
	}
	rfErr := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": "Base.1.0.GeneralError", "message": msg}})
	}
	if u, p, ok := r.BasicAuth(); !ok || u != b.user || p != b.password {
		rfErr(http.StatusUnauthorized, "Unauthorized")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/redfish/v1/Systems")
	if path == r.URL.Path {
		rfErr(http.StatusNotFound, "not found")
		return
	}
	if path == "" && r.Method == http.MethodGet {
		b.mu.Lock()
		n := len(b.power)
		b.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"Members@odata.count": n})
		return
	}
	id, action, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	b.mu.Lock()
	_, exists := b.power[id]
	b.mu.Unlock()
	if !exists {
		rfErr(http.StatusNotFound, "no system "+id)
		return
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Id": id, "PowerState": b.state(id)})
	case action == "Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		var req struct{ ResetType string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			rfErr(http.StatusBadRequest, "bad body")
			return
		}
		b.mu.Lock()
		b.resets = append(b.resets, id+":"+req.ResetType)
		b.mu.Unlock()
		set := func(s string) { b.mu.Lock(); b.power[id] = s; b.mu.Unlock() }
		switch req.ResetType {
		case "ForceOff":
			set("PoweringOff")
			b.later(id, "Off", b.delay, nil)
		case "On":
			set("PoweringOn")
			b.later(id, "On", b.delay, nil)
		case "ForceRestart":
			set("PoweringOff")
			b.later(id, "Off", b.delay, func() { set("PoweringOn"); b.later(id, "On", b.delay, nil) })
		default:
			rfErr(http.StatusBadRequest, "unsupported ResetType "+req.ResetType)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		rfErr(http.StatusMethodNotAllowed, "unsupported")
	}
}

func (b *redfishBMC) resetLog() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.resets, " ")
}

// tlsRedfish starts b behind TLS on loopback and returns its URL and a CA
// file that verifies it.
func tlsRedfish(t *testing.T, b *redfishBMC) (string, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(b)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake errors are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemb := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemb, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, ca
}

func redfishDev(name, url, ca, pwfile string) DeviceConfig {
	return DeviceConfig{Name: name, Hosts: []string{"n1"},
		Redfish: &RedfishConfig{Address: url, SystemID: "sys1", Username: "root", PasswordFile: pwfile, CAFile: ca}}
}

func TestRedfishOffOnReboot(t *testing.T) {
	b := newRedfishBMC("sys1")
	url, ca := tlsRedfish(t, b)
	f := newFencer(t, Config{Devices: []DeviceConfig{redfishDev("rf", url, ca, secretFile(t, b.password))}, PollInterval: 50 * time.Millisecond}, Options{})
	ctx := context.Background()

	r := f.Fence(ctx, "n1", Off)
	logAttempts(t, r)
	if !r.OK || b.state("sys1") != "Off" {
		t.Fatalf("off: %+v (state %s)", r, b.state("sys1"))
	}
	st := r.Attempts[len(r.Attempts)-1]
	if st.Action != Status || st.Polls < 2 || st.Power != PowerOff {
		t.Errorf("off must be confirmed by polling PowerState past PoweringOff: %+v", st)
	}
	t.Logf("redfish fence-to-confirmed-off %s with a %s power-off delay", r.Finished.Sub(r.Started).Round(time.Millisecond), b.delay)

	if r = f.Fence(ctx, "n1", On); !r.OK {
		t.Fatalf("on: %s", r.Error)
	}
	time.Sleep(2 * b.delay)
	if b.state("sys1") != "On" {
		t.Fatalf("state after on: %s", b.state("sys1"))
	}
	r = f.Fence(ctx, "n1", Reboot)
	logAttempts(t, r)
	if !r.OK {
		t.Fatalf("reboot: %s", r.Error)
	}
	if got := b.resetLog(); got != "sys1:ForceOff sys1:On sys1:ForceOff sys1:On" {
		t.Errorf("resets: %s", got)
	}
	// The device's own reboot is a ForceRestart (the topology does not use
	// it: its off half cannot be confirmed).
	dev, _ := f.Device("rf")
	if o := dev.Exec(ctx, Reboot, Target{Node: "n1", Port: "n1"}, time.Second); !o.OK() {
		t.Fatalf("reset: %+v", o)
	}
	if !strings.HasSuffix(b.resetLog(), "sys1:ForceRestart") {
		t.Errorf("resets: %s", b.resetLog())
	}
	for _, a := range []Action{Monitor, List} {
		if o := dev.Exec(ctx, a, Target{Node: "n1"}, time.Second); !o.OK() {
			t.Errorf("%s: %+v", a, o)
		}
	}
	if s := dev.String(); !strings.Contains(s, "password=<file ") || strings.Contains(s, b.password) {
		t.Errorf("String: %s", s)
	}
}

func TestRedfishHostMapSystemID(t *testing.T) {
	b := newRedfishBMC("blade-7", "blade-8")
	b.delay = 10 * time.Millisecond
	url, ca := tlsRedfish(t, b)
	d := DeviceConfig{Name: "chassis", HostMap: map[string]string{"n1": "blade-7", "n2": "blade-8"},
		Redfish: &RedfishConfig{Address: url, Username: "root", PasswordFile: secretFile(t, b.password), CAFile: ca}}
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	if r := f.Fence(context.Background(), "n2", Off); !r.OK {
		t.Fatalf("off: %s", r.Error)
	}
	if b.state("blade-8") != "Off" || b.state("blade-7") != "On" {
		t.Errorf("states: blade-7 %s blade-8 %s", b.state("blade-7"), b.state("blade-8"))
	}
}

func TestRedfishWrongPassword(t *testing.T) {
	b := newRedfishBMC("sys1")
	url, ca := tlsRedfish(t, b)
	const wrong = "wrong-Redfish-pw"
	f := newFencer(t, Config{Devices: []DeviceConfig{redfishDev("rf", url, ca, secretFile(t, wrong))}}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK || len(r.Attempts) != 3 {
		t.Fatalf("result: %+v", r)
	}
	want := "redfish off: POST /redfish/v1/Systems/sys1/Actions/ComputerSystem.Reset: HTTP 401: authentication failed (check username and passwordFile)"
	for _, a := range r.Attempts {
		if a.Error != want || a.ExitCode != ExitFailed {
			t.Errorf("attempt: %+v", a)
		}
	}
	if strings.Contains(fmt.Sprintf("%+v %+v", r, f.History()), wrong) {
		t.Error("password shown")
	}
	if b.state("sys1") != "On" {
		t.Error("state changed")
	}
}

func TestRedfishTLS(t *testing.T) {
	b := newRedfishBMC("sys1")
	b.delay = 10 * time.Millisecond
	url, _ := tlsRedfish(t, b)
	pw := secretFile(t, b.password)
	// No CA: the system roots do not know the test server.
	f := newFencer(t, Config{Devices: []DeviceConfig{redfishDev("rf", url, "", pw)}, Retries: intp(0)}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	if r.OK || !strings.Contains(r.Error, "certificate") {
		t.Fatalf("unverified TLS accepted or unclear error: %+v", r)
	}
	t.Logf("without caFile: %s", r.Error)
	d := redfishDev("rf", url, "", pw)
	d.Redfish.Insecure = true
	f = newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	if r := f.Fence(context.Background(), "n1", Off); !r.OK {
		t.Fatalf("insecure: %s", r.Error)
	}
	// A CA file that is not PEM is refused when the device is built.
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("nope"), 0o644)
	if _, err := New(Config{Devices: []DeviceConfig{redfishDev("rf", url, bad, pw)}}, Options{}); err == nil || !strings.Contains(err.Error(), "devices[0]: redfish.caFile: no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
}

func TestRedfishUnreachableAndHung(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	pw := secretFile(t, "pw")
	d := redfishDev("rf", "https://"+addr, "", pw)
	d.Redfish.Insecure, d.Retries, d.Timeout = true, intp(1), 2*time.Second
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK || len(r.Attempts) != 2 || !strings.Contains(r.Error, "connection refused") {
		t.Fatalf("unreachable: %+v", r)
	}

	b := newRedfishBMC("sys1")
	b.hang = make(chan struct{})
	url, ca := tlsRedfish(t, b)
	t.Cleanup(func() { close(b.hang) }) // runs before the server's Close
	d = redfishDev("rf", url, ca, secretFile(t, b.password))
	d.Retries, d.Timeout = intp(0), 500*time.Millisecond
	f = newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r = f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK || !r.Attempts[0].TimedOut || !strings.Contains(r.Error, "timed out after 500ms") {
		t.Fatalf("hung BMC: %+v", r)
	}
}
