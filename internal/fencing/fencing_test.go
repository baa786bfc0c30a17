package fencing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func fakeAgent(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("testdata/fence_fake")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func intp(i int) *int { return &i }

// fakeDev returns a fence_fake device for node n1 keeping its power state
// in a file of dir.
func fakeDev(t *testing.T, name, mode string, extra map[string]string) DeviceConfig {
	t.Helper()
	dir := t.TempDir()
	p := map[string]string{"ip": "192.0.2.1", "mode": mode, "state": filepath.Join(dir, "state"), "log": filepath.Join(dir, "log")}
	for k, v := range extra {
		p[k] = v
	}
	if err := os.WriteFile(p["state"], []byte("on\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return DeviceConfig{Name: name, Agent: fakeAgent(t), Params: p, Hosts: []string{"n1"}}
}

// testClock is an injected clock that advances one second per reading.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newFencer(t *testing.T, cfg Config, opts Options) *Fencer {
	t.Helper()
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 10 * time.Millisecond
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	f, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

func logAttempts(t *testing.T, r Result) {
	t.Helper()
	for _, a := range r.Attempts {
		t.Logf("  %s", a)
	}
}

func TestValidateRefusesContradictions(t *testing.T) {
	dev := func(name string, hosts ...string) DeviceConfig {
		return DeviceConfig{Name: name, Agent: "fence_ipmilan", Hosts: hosts}
	}
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"duplicate device", Config{Devices: []DeviceConfig{dev("a", "n1"), dev("a", "n2")}},
			[]string{`devices[1].name: duplicate device name "a" (also devices[0])`}},
		{"device mapped to no node", Config{Devices: []DeviceConfig{dev("a")}},
			[]string{`devices[0].hosts: device "a" is mapped to no node`}},
		{"two levels with the same number", Config{Devices: []DeviceConfig{dev("a", "n1"), dev("b", "n1")},
			Levels: []LevelConfig{{Node: "n1", Level: 1, Devices: []string{"a"}}, {Node: "n1", Level: 1, Devices: []string{"b"}}}},
			[]string{`levels[1].level: node "n1" already has a level 1 (levels[0])`}},
		{"unknown device", Config{Devices: []DeviceConfig{dev("a", "n1")},
			Levels: []LevelConfig{{Node: "n1", Level: 1, Devices: []string{"a", "zz"}}}},
			[]string{`levels[0].devices[1]: unknown device "zz"`}},
		{"device that cannot fence the level's node", Config{Devices: []DeviceConfig{dev("a", "n1")},
			Levels: []LevelConfig{{Node: "n2", Level: 1, Devices: []string{"a"}}}},
			[]string{`levels[0].devices[0]: device "a" cannot fence node "n2"`}},
		{"level out of range", Config{Devices: []DeviceConfig{dev("a", "n1")},
			Levels: []LevelConfig{{Node: "n1", Level: 10, Devices: []string{"a"}}}},
			[]string{`levels[0].level: must be between 1 and 9`}},
		{"password in params", Config{Devices: []DeviceConfig{{Name: "a", Agent: "fence_ipmilan", Hosts: []string{"n1"},
			Params: map[string]string{"password": "x"}}}},
			[]string{`devices[0].params[password]: is a secret: give it in secretFiles`}},
		{"snmp community in params", Config{Devices: []DeviceConfig{{Name: "a", Agent: "fence_apc_snmp", Hosts: []string{"n1"},
			Params: map[string]string{"community": "private", "snmp_priv_passwd": "x", "password_script": "/bin/pw"}}}},
			[]string{`devices[0].params[community]: is a secret`, `devices[0].params[snmp_priv_passwd]: is a secret`}},
		{"agent and redfish", Config{Devices: []DeviceConfig{{Name: "a", Agent: "fence_ipmilan", Hosts: []string{"n1"},
			Redfish: &RedfishConfig{Address: "https://x"}}}},
			[]string{`devices[0].agent: agent and redfish are exclusive`}},
		{"bad agent name", Config{Devices: []DeviceConfig{{Name: "a", Agent: "../x", Hosts: []string{"n1"}}}},
			[]string{`devices[0].agent: must be a fence agent name`}},
		{"node in hosts and hostMap", Config{Devices: []DeviceConfig{{Name: "a", Agent: "fence_apc", Hosts: []string{"n1"},
			HostMap: map[string]string{"n1": "3"}}}},
			[]string{`devices[0].hosts[0]: node "n1" is also in hostMap`}},
		{"redfish without scheme, relative password file", Config{Devices: []DeviceConfig{{Name: "r", Hosts: []string{"n1"},
			Redfish: &RedfishConfig{Address: "10.0.0.1", Username: "u", PasswordFile: "pw"}}}},
			[]string{`devices[0].redfish.address: must be an http(s) URL`, `devices[0].redfish.passwordFile: must be an absolute file path`}},
		{"reserved param", Config{Devices: []DeviceConfig{{Name: "a", Agent: "fence_apc", Hosts: []string{"n1"},
			Params: map[string]string{"port": "3"}}}},
			[]string{`devices[0].params[port]: is set by paceline`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", c.cfg)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a *FieldError: %T", err)
			}
			if _, nerr := New(c.cfg, Options{}); nerr == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
	ok := Config{Devices: []DeviceConfig{dev("a", "n1", "n2"), {Name: "pdu", Agent: "fence_apc", HostMap: map[string]string{"n1": "1", "n2": "2"},
		Params: map[string]string{"password_script": "/usr/local/bin/pdu-pw"}}},
		Levels: []LevelConfig{{Node: "n1", Level: 1, Devices: []string{"a"}}, {Node: "n1", Level: 2, Devices: []string{"pdu"}}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	f, err := New(ok, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// n2 has no explicit level: implicit level 1 with every device mapping it.
	if got := f.Levels("n2"); len(got) != 1 || strings.Join(got[0].Devices, ",") != "a,pdu" {
		t.Errorf("implicit levels of n2 = %+v", got)
	}
	if got := f.Levels("n1"); len(got) != 2 || got[0].Devices[0] != "a" || got[1].Devices[0] != "pdu" {
		t.Errorf("levels of n1 = %+v", got)
	}
}

func TestFakeAgentMetadataCheck(t *testing.T) {
	d := fakeDev(t, "fake", "ok", nil)
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	if err := f.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	d.Params["bogus"] = "1"
	delete(d.Params, "ip")
	f = newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	err := f.Check(context.Background())
	if err == nil {
		t.Fatal("Check accepted an unknown parameter and a missing required one")
	}
	for _, w := range []string{`devices[0].params[bogus]: agent fence_fake has no parameter "bogus"`,
		`devices[0].params: agent fence_fake requires parameter "ip"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	d.Agent = "/nonexistent/fence_x"
	f = newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	if err := f.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "devices[0].agent: fence agent /nonexistent/fence_x") {
		t.Errorf("missing agent: %v", err)
	}
}

// An agent that reports success before the node is off: the off is only
// confirmed when status says so.
func TestOffConfirmedByStatus(t *testing.T) {
	d := fakeDev(t, "fake", "ok", map[string]string{"offdelay": "3"})
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if !r.OK {
		t.Fatalf("fence failed: %s", r.Error)
	}
	if len(r.Attempts) != 2 || r.Attempts[1].Action != Status || r.Attempts[1].Polls != 4 || r.Attempts[1].Power != PowerOff || r.Attempts[1].ExitCode != ExitOff {
		t.Errorf("want off + 4 status polls ending off (exit 2), got %+v", r.Attempts)
	}
	log, _ := os.ReadFile(d.Params["log"])
	if !strings.HasPrefix(string(log), "off n1 n1\nstatus n1 n1\n") {
		t.Errorf("agent log:\n%s", log)
	}
	// Reboot = off (confirmed), then on.
	r = f.Fence(context.Background(), "n1", Reboot)
	logAttempts(t, r)
	if !r.OK || r.Attempts[len(r.Attempts)-1].Action != On {
		t.Fatalf("reboot: %+v", r)
	}
	if st, _ := os.ReadFile(d.Params["state"]); string(st) != "on\n" {
		t.Errorf("state after reboot = %q", st)
	}
}

// Status never reports off: the off is not trusted, retried, and fails.
func TestOffNeverConfirmed(t *testing.T) {
	d := fakeDev(t, "fake", "ok", map[string]string{"offdelay": "100000"})
	d.Timeout = 700 * time.Millisecond
	d.Retries = intp(1)
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK {
		t.Fatal("an off that status never confirmed was reported as success")
	}
	if !strings.Contains(r.Error, "status still reports power on at the timeout") || !strings.Contains(r.Error, "attempt 2 of 2") {
		t.Errorf("error: %s", r.Error)
	}
	if len(r.Attempts) != 4 {
		t.Errorf("want off, status, off, status; got %d attempts", len(r.Attempts))
	}
}

func TestFailingAgentRetriedAndReported(t *testing.T) {
	d := fakeDev(t, "bad", "fail", nil)
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if r.OK {
		t.Fatal("failing agent reported success")
	}
	if len(r.Attempts) != 3 {
		t.Fatalf("want 1+2 attempts (default retries), got %d", len(r.Attempts))
	}
	for i, a := range r.Attempts {
		if a.Try != i+1 || a.ExitCode != 1 || a.Device != "bad" || a.Action != Off || a.Level != 1 ||
			a.Error != "fence_fake off: exit 1: ERROR: simulated failure of off" {
			t.Errorf("attempt %d: %+v", i, a)
		}
	}
	want := "fence n1 off failed: level 1: device bad: fence_fake off: exit 1: ERROR: simulated failure of off (attempt 3 of 3)"
	if r.Error != want {
		t.Errorf("error\n got %s\nwant %s", r.Error, want)
	}
	h := f.History()
	if len(h) != 1 || h[0].OK || h[0].Error != want || h[0].Attempts != 3 {
		t.Errorf("history: %+v", h)
	}
}

func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestHangingAgentKilledAtTimeout(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	d := fakeDev(t, "hang", "hang", map[string]string{"pidfile": pidfile})
	d.Timeout = 800 * time.Millisecond
	d.Retries = intp(1)
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	begin := time.Now()
	r := f.Fence(context.Background(), "n1", Off)
	took := time.Since(begin)
	logAttempts(t, r)
	if r.OK {
		t.Fatal("hanging agent reported success")
	}
	if len(r.Attempts) != 2 {
		t.Fatalf("want 2 attempts, got %d", len(r.Attempts))
	}
	for _, a := range r.Attempts {
		if !a.TimedOut || a.ExitCode != -1 || !strings.Contains(a.Error, "timed out after 800ms, process group killed") {
			t.Errorf("attempt: %+v", a)
		}
	}
	if took > 20*time.Second {
		t.Errorf("took %s", took)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(s)
		if !processGone(pid) {
			t.Errorf("process %d of the hung agent's group still alive", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Secrets come from files read at call time and never appear in errors,
// logs, String, JSON or history, even when the agent prints them.
func TestSecretsNeverShown(t *testing.T) {
	const secret = "Tr0ub4dor&3-very-secret"
	pwfile := filepath.Join(t.TempDir(), "pw")
	d := fakeDev(t, "leaky", "leak", nil)
	d.SecretFiles = map[string]string{"password": pwfile}
	d.Retries = intp(0)
	var logs bytes.Buffer
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	// File missing at call time: a clear error naming the field and file.
	r := f.Fence(context.Background(), "n1", Off)
	if r.OK || !strings.Contains(r.Error, "secretFiles[password]: cannot read secret file "+pwfile) {
		t.Fatalf("missing secret file: %s", r.Error)
	}
	if err := os.WriteFile(pwfile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = f.Fence(context.Background(), "n1", Off)
	if r.OK {
		t.Fatal("leak agent succeeded")
	}
	if !strings.Contains(r.Error, "ERROR: got ") {
		t.Errorf("error lost the agent's message: %s", r.Error)
	}
	dev, _ := f.Device("leaky")
	o := dev.Exec(context.Background(), Status, Target{Node: "n1", Port: "n1"}, 0)
	if !strings.Contains(o.Output, "password="+redactedStr) {
		t.Errorf("the agent did not get the password or output was not redacted: %q", o.Output)
	}
	rj, _ := json.Marshal(r)
	hj, _ := json.Marshal(f.History())
	dj, _ := json.Marshal(dev)
	cj, _ := json.Marshal(d)
	for what, s := range map[string]string{"result": string(rj), "history": string(hj), "logs": logs.String(),
		"String": dev.String(), "device JSON": string(dj), "config JSON": string(cj), "outcome": o.Output + o.Err, "error": r.Err().Error()} {
		if strings.Contains(s, secret) {
			t.Errorf("secret shown in %s: %s", what, s)
		}
	}
	if !strings.Contains(dev.String(), "password=<file "+pwfile+">") {
		t.Errorf("String: %s", dev.String())
	}
	// The file is read at call time: a changed password is used at once.
	if err := os.WriteFile(pwfile, []byte("new-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o = dev.Exec(context.Background(), Status, Target{Node: "n1"}, 0)
	if strings.Contains(o.Output, "new-secret-value") || strings.Contains(o.Output, secret) {
		t.Errorf("output: %q", o.Output)
	}
}

func TestTwoLevelsFirstFails(t *testing.T) {
	bad := fakeDev(t, "ipmi", "fail", nil)
	good := fakeDev(t, "pdu", "ok", nil)
	good2 := fakeDev(t, "pdu2", "ok", nil)
	cfg := Config{Devices: []DeviceConfig{bad, good, good2}, Retries: intp(1),
		Levels: []LevelConfig{{Node: "n1", Level: 2, Devices: []string{"pdu", "pdu2"}}, {Node: "n1", Level: 1, Devices: []string{"ipmi"}}}}
	f := newFencer(t, cfg, Options{})
	r := f.Fence(context.Background(), "n1", Off)
	logAttempts(t, r)
	if !r.OK || r.Level != 2 || strings.Join(r.Devices, ",") != "pdu,pdu2" {
		t.Fatalf("result: %+v", r)
	}
	var seq []string
	for _, a := range r.Attempts {
		seq = append(seq, strconv.Itoa(a.Level)+":"+a.Device+":"+string(a.Action))
	}
	if got := strings.Join(seq, " "); got != "1:ipmi:off 1:ipmi:off 2:pdu:off 2:pdu:status 2:pdu2:off 2:pdu2:status" {
		t.Errorf("sequence: %s", got)
	}
	// A level fails when any of its devices fails.
	cfg.Devices[2] = fakeDev(t, "pdu2", "fail", nil)
	f = newFencer(t, cfg, Options{})
	r = f.Fence(context.Background(), "n1", Off)
	if r.OK || !strings.Contains(r.Error, "level 1: device ipmi") || !strings.Contains(r.Error, "level 2: device pdu2") {
		t.Errorf("both levels should fail: %s", r.Error)
	}
}

func TestDelayHistoryConfirm(t *testing.T) {
	d := fakeDev(t, "fake", "ok", nil)
	d.DelayBase, d.DelayMax = 5*time.Second, 10*time.Second
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var slept []time.Duration
	var mu sync.Mutex
	opts := Options{Clock: clk.Now,
		Rand: func(n int64) int64 {
			if n != int64(10*time.Second) {
				t.Errorf("Rand(%d)", n)
			}
			return int64(3 * time.Second)
		},
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
			return nil
		}}
	f := newFencer(t, Config{Devices: []DeviceConfig{d}, HistorySize: 3}, opts)
	r := f.Fence(context.Background(), "n1", Off)
	if !r.OK || r.Delay != 8*time.Second || slept[0] != 8*time.Second {
		t.Fatalf("delay: %+v slept %v", r, slept)
	}
	if _, err := f.Confirm("", "op"); err == nil {
		t.Error("Confirm accepted an empty node")
	}
	e, err := f.Confirm("n9", "alice")
	if err != nil || e.Action != ActionConfirm || e.Operator != "alice" || !e.OK {
		t.Fatalf("Confirm: %+v %v", e, err)
	}
	f.Fence(context.Background(), "n1", On)
	f.Fence(context.Background(), "nX", Off) // no device: fails, recorded
	h := f.History()
	if len(h) != 3 {
		t.Fatalf("history not bounded to 3: %d", len(h))
	}
	if h[0].Action != ActionConfirm || h[0].Node != "n9" || h[1].Action != "on" || h[2].OK || !strings.Contains(h[2].Error, "no fence device can fence node nX") {
		t.Errorf("history: %+v", h)
	}
	for i := 1; i < len(h); i++ {
		if !h[i].Time.After(h[i-1].Time) || h[i].Time.Year() != 2026 {
			t.Errorf("history times not from the injected clock: %v", h)
		}
	}
	if at, ok := f.LastFenced("n9"); !ok || !at.Equal(h[0].Time) {
		t.Errorf("LastFenced(n9) = %v %v", at, ok)
	}
	if _, ok := f.LastFenced("n1"); ok {
		t.Error("LastFenced(n1): the off fell out of the bounded history, the on must not count")
	}
	if r := f.Fence(context.Background(), "n1", Status); r.OK || !strings.Contains(r.Error, "action must be off, reboot or on") {
		t.Errorf("status via Fence: %+v", r)
	}
}

// Concurrent requests for the same node and action are merged.
func TestConcurrentFenceMerged(t *testing.T) {
	d := fakeDev(t, "fake", "ok", map[string]string{"offdelay": "2"})
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	var wg sync.WaitGroup
	res := make([]Result, 4)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = f.Fence(context.Background(), "n1", Off) }()
	}
	wg.Wait()
	for _, r := range res {
		if !r.OK {
			t.Errorf("result: %+v", r)
		}
	}
	log, _ := os.ReadFile(d.Params["log"])
	offs := strings.Count(string(log), "off n1")
	if offs < 1 || offs > 4 {
		t.Errorf("%d offs", offs)
	}
	t.Logf("4 concurrent requests ran %d off operation(s)", offs)
}

// Cancelling the context stops a hung agent at once and is reported.
func TestFenceCanceled(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	d := fakeDev(t, "hang", "hang", map[string]string{"pidfile": pidfile})
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	r := f.Fence(ctx, "n1", Off)
	logAttempts(t, r)
	if r.OK || len(r.Attempts) != 1 || !strings.Contains(r.Error, "canceled") {
		t.Fatalf("result: %+v", r)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("cancel took %s", took)
	}
}

// A reboot whose on half fails still fences the node (its off half was
// confirmed) and says so in Warning.
func TestRebootOnHalfFails(t *testing.T) {
	d := fakeDev(t, "fake", "ok", map[string]string{"onfail": "1"})
	d.Retries = intp(0)
	f := newFencer(t, Config{Devices: []DeviceConfig{d}}, Options{})
	r := f.Fence(context.Background(), "n1", Reboot)
	logAttempts(t, r)
	if !r.OK || !strings.Contains(r.Warning, "did not power on again: device fake: fence_fake on: exit 1: ERROR: simulated failure of on") {
		t.Fatalf("result: %+v", r)
	}
	if h := f.History(); len(h) != 1 || !h[0].OK || h[0].Warning != r.Warning {
		t.Errorf("history: %+v", h)
	}
}
