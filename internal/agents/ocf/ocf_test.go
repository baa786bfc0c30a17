package ocf

import (
	"context"
	"github.com/paceline/paceline/internal/procfs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

func TestStatusFromOCF(t *testing.T) {
	for code, want := range map[int]agents.ResultStatus{
		0: agents.StatusSuccess, 1: agents.StatusSoftError, 2: agents.StatusHardError, 3: agents.StatusHardError,
		4: agents.StatusHardError, 5: agents.StatusHardError, 6: agents.StatusFatalError, 7: agents.StatusNotRunning,
		8: agents.StatusRunningPromoted, 9: agents.StatusFailedPromoted, 10: agents.StatusSoftError,
		42: agents.StatusSoftError, 189: agents.StatusSoftError, 190: agents.StatusDegraded,
		191: agents.StatusDegradedPromoted, 192: agents.StatusSoftError, 255: agents.StatusSoftError, -1: agents.StatusSoftError,
	} {
		if got := agents.StatusFromOCF(code); got != want {
			t.Errorf("StatusFromOCF(%d) = %s, want %s", code, got, want)
		}
	}
	for s, want := range map[agents.ResultStatus]agents.Severity{
		agents.StatusSuccess: agents.SeverityNone, agents.StatusNotRunning: agents.SeverityNone,
		agents.StatusRunningPromoted: agents.SeverityNone, agents.StatusDegraded: agents.SeverityNone,
		agents.StatusDegradedPromoted: agents.SeverityNone, agents.StatusFailedPromoted: agents.SeveritySoft,
		agents.StatusSoftError: agents.SeveritySoft, agents.StatusHardError: agents.SeverityHard,
		agents.StatusFatalError: agents.SeverityFatal,
	} {
		if got := s.Severity(); got != want {
			t.Errorf("%s.Severity() = %s, want %s", s, got, want)
		}
	}
}

// TestExitCodes runs a script exiting with each interesting code.
func TestExitCodes(t *testing.T) {
	a := fakeAgent(t, "exiter", `exit "$OCF_RESKEY_code"`+"\n", Options{})
	for _, code := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 99, 190, 191, 200} {
		r := a.Run(ctx(t), agents.Start, agents.Instance{Name: "e", Params: map[string]string{"code": strconv.Itoa(code)}}, patience)
		if r.Code != code || r.Status != agents.StatusFromOCF(code) || r.TimedOut {
			t.Errorf("exit %d: got %+v", code, r)
		}
	}
	if r := a.Run(ctx(t), agents.Start, agents.Instance{Params: map[string]string{"code": "13"}}, 0); r.Status != agents.StatusSoftError {
		t.Errorf("unknown code 13: %s, want soft error", r.Status)
	}
}

func TestExitReason(t *testing.T) {
	a := fakeAgent(t, "reasoner", `
echo "some log line" >&2
echo "ocf-exit-reason:first reason" >&2
echo "Dummy(x)[123]: ERROR: ocf-exit-reason:  config file /etc/x is missing  " >&2
echo "trailing noise" >&2
exit 6
`, Options{})
	r := a.Run(ctx(t), agents.Start, agents.Instance{Name: "r"}, patience)
	if r.Status != agents.StatusFatalError || r.Reason != "config file /etc/x is missing" {
		t.Fatalf("got status %s reason %q", r.Status, r.Reason)
	}
	if r.Status.Severity() != agents.SeverityFatal {
		t.Fatalf("severity %s", r.Status.Severity())
	}
}

func TestEnvironment(t *testing.T) {
	a := fakeAgent(t, "envdump", "env\n", Options{Env: map[string]string{"HA_SBIN_DIR": "/opt/stub", "OCF_ROOT": "overridden"}})
	inst := agents.Instance{
		Name:       "web:2",
		Params:     map[string]string{"config-file": "/etc/web.conf", "port": "80"},
		Meta:       map[string]string{"target-role": "Started", "interval": "999"},
		Interval:   10 * time.Second,
		Node:       "node1",
		CheckLevel: 10,
		Clone:      &agents.Clone{Number: 2, Max: 3, NodeMax: 1, Promotable: true, PromotedMax: 1, PromotedNodeMax: 1, Notify: true},
		Notify: &agents.Notification{
			Type: "pre", Operation: "promote",
			Start:    []agents.Peer{{Resource: "web:0", Node: "n0"}, {Resource: "web:1", Node: "n1"}},
			Promote:  []agents.Peer{{Resource: "web:1", Node: "n1"}},
			Promoted: []agents.Peer{{Resource: "web:2", Node: "n2"}},
			Inactive: []string{"web:3", "web:4"},
			All:      []string{"n0", "n1", "n2"},
		},
	}
	r := run(t, a, agents.Notify, inst, 0)
	env := map[string]string{}
	for _, line := range strings.Split(r.Stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	want := map[string]string{
		"OCF_RA_VERSION_MAJOR":                           "1",
		"OCF_RA_VERSION_MINOR":                           "1",
		"OCF_ROOT":                                       a.opts.Root,
		"OCF_RESOURCE_INSTANCE":                          "web:2",
		"OCF_RESOURCE_TYPE":                              "envdump",
		"OCF_RESOURCE_PROVIDER":                          "test",
		"OCF_CHECK_LEVEL":                                "10",
		"HA_RSCTMP":                                      a.opts.RscTmp,
		"HA_SBIN_DIR":                                    "/opt/stub",
		"OCF_RESKEY_config_file":                         "/etc/web.conf",
		"OCF_RESKEY_port":                                "80",
		"OCF_RESKEY_CRM_meta_target_role":                "Started",
		"OCF_RESKEY_CRM_meta_name":                       "notify",
		"OCF_RESKEY_CRM_meta_interval":                   "10000",
		"OCF_RESKEY_CRM_meta_timeout":                    strconv.FormatInt(patience.Milliseconds(), 10),
		"OCF_RESKEY_CRM_meta_on_node":                    "node1",
		"OCF_RESKEY_CRM_meta_clone":                      "2",
		"OCF_RESKEY_CRM_meta_clone_max":                  "3",
		"OCF_RESKEY_CRM_meta_clone_node_max":             "1",
		"OCF_RESKEY_CRM_meta_promotable":                 "true",
		"OCF_RESKEY_CRM_meta_promoted_max":               "1",
		"OCF_RESKEY_CRM_meta_master_max":                 "1",
		"OCF_RESKEY_CRM_meta_notify":                     "true",
		"OCF_RESKEY_CRM_meta_globally_unique":            "false",
		"OCF_RESKEY_CRM_meta_notify_type":                "pre",
		"OCF_RESKEY_CRM_meta_notify_operation":           "promote",
		"OCF_RESKEY_CRM_meta_notify_start_resource":      "web:0 web:1",
		"OCF_RESKEY_CRM_meta_notify_start_uname":         "n0 n1",
		"OCF_RESKEY_CRM_meta_notify_promote_resource":    "web:1",
		"OCF_RESKEY_CRM_meta_notify_promoted_resource":   "web:2",
		"OCF_RESKEY_CRM_meta_notify_master_uname":        "n2",
		"OCF_RESKEY_CRM_meta_notify_stop_resource":       "",
		"OCF_RESKEY_CRM_meta_notify_inactive_resource":   "web:3 web:4",
		"OCF_RESKEY_CRM_meta_notify_all_uname":           "n0 n1 n2",
		"OCF_RESKEY_CRM_meta_notify_unpromoted_resource": "",
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if env["PATH"] == "" {
		t.Error("PATH not set")
	}
	// Only what we set reaches the agent, nothing else of the test's environment.
	t.Setenv("PACELINE_SECRET_TEST_VAR", "leak")
	if r := run(t, a, agents.Monitor, agents.Instance{Name: "x"}, 0); strings.Contains(r.Stdout, "PACELINE_SECRET_TEST_VAR") {
		t.Error("agent inherited an unrelated environment variable")
	}
	if r := run(t, a, agents.Monitor, agents.Instance{Name: "x"}, 0); strings.Contains(r.Stdout, "OCF_CHECK_LEVEL") || !strings.Contains(r.Stdout, "OCF_RESKEY_CRM_meta_interval=0\n") {
		t.Errorf("probe environment wrong:\n%s", r.Stdout)
	}
}

// hangScript records its PID and that of a background child, then hangs.
// With ignore_term set both ignore SIGTERM and need the SIGKILL.
const hangScript = `
[ -n "$OCF_RESKEY_ignore_term" ] && trap '' TERM
sleep 1000 &
echo "$$ $!" > "$OCF_RESKEY_pids"
echo "hanging" >&2
sleep 1000
`

func TestTimeoutKillsProcessGroup(t *testing.T) {
	for _, ignore := range []string{"", "1"} {
		t.Run("ignore_term="+ignore, func(t *testing.T) {
			a := fakeAgent(t, "hang", hangScript, Options{KillGrace: 300 * time.Millisecond})
			pids := filepath.Join(t.TempDir(), "pids")
			r := a.Run(ctx(t), agents.Start, agents.Instance{Name: "h", Params: map[string]string{"pids": pids, "ignore_term": ignore}}, time.Second)
			if !r.TimedOut || r.Status != agents.StatusSoftError || r.Code != -1 {
				t.Fatalf("got %+v", r)
			}
			if r.Reason != "timed out after 1s" {
				t.Errorf("reason %q", r.Reason)
			}
			if !strings.Contains(r.Stderr, "hanging") {
				t.Errorf("stderr before the kill lost: %q", r.Stderr)
			}
			b, err := os.ReadFile(pids)
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(string(b))
			if len(f) != 2 {
				t.Fatalf("pids file %q", b)
			}
			for _, s := range f {
				pid, _ := strconv.Atoi(s)
				if alive(pid) {
					t.Errorf("process %d survived the timeout", pid)
				}
			}
			leader, _ := strconv.Atoi(f[0])
			if procfs.GroupAlive(leader) {
				t.Errorf("process group %d still has members", leader)
			}
		})
	}
}

func TestCancelKillsAction(t *testing.T) {
	a := fakeAgent(t, "hang", hangScript, Options{KillGrace: 300 * time.Millisecond})
	pids := filepath.Join(t.TempDir(), "pids")
	c, cancel := context.WithCancel(context.Background())
	done := make(chan agents.Result, 1)
	go func() {
		done <- a.Run(c, agents.Stop, agents.Instance{Params: map[string]string{"pids": pids}}, patience)
	}()
	waitUntil(t, "the agent to start", func() bool { _, err := os.Stat(pids); return err == nil })
	cancel()
	select {
	case r := <-done:
		if r.Status != agents.StatusSoftError || r.Reason != "canceled" || r.TimedOut {
			t.Fatalf("got %+v", r)
		}
	case <-time.After(patience):
		t.Fatal("Run did not return after cancel")
	}
}

func TestDaemonHoldingOutputDoesNotBlock(t *testing.T) {
	// The script exits at once but leaves a daemon holding its stdout.
	a := fakeAgent(t, "daemonizer", `
setsid sleep 1000 &
echo $! > "$OCF_RESKEY_pid"
echo started
exit 0
`, Options{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := run(t, a, agents.Start, agents.Instance{Params: map[string]string{"pid": pidFile}}, 0)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitUntil(t, "the daemon to die", func() bool { return !alive(pid) })
	})
	if r.Status != agents.StatusSuccess || !strings.Contains(r.Stdout, "started") {
		t.Fatalf("got %+v", r)
	}
	if !alive(pid) {
		t.Error("a daemon the agent started was killed after a successful action")
	}
}

func TestBrokenMetadata(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"broken":  "echo '<resource-agent name=\"broken\"><parameters><parameter name=\"a\">'\n",
		"garbage": "echo 'crm_attribute: Could not connect to the CIB'\n",
		"failing": "echo 'ocf-exit-reason:no meta-data for you' >&2; exit 3\n",
		"good":    "cat <<'X'\n<?xml version=\"1.0\"?>\n<resource-agent name=\"good\" version=\"0.1\"><version>1.1</version><parameters><parameter name=\"p\" required=\"1\"><content type=\"string\"/></parameter></parameters><actions><action name=\"start\" timeout=\"7s\"/></actions></resource-agent>\nX\n",
	})
	for name, want := range map[string]string{
		"broken":  "invalid XML",
		"garbage": "no <resource-agent> element",
		"failing": "exit code 3 (hard-error): no meta-data for you",
	} {
		a, err := New("ocf:test:"+name, Options{Root: root, RscTmp: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		m, err := a.Metadata(ctx(t), 0)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ocf:test:"+name) {
			t.Errorf("%s: metadata %+v, error %v; want one containing %q", name, m, err, want)
		}
	}
	a, _ := New("ocf:test:good", Options{Root: root, RscTmp: t.TempDir()})
	m, err := a.Metadata(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Timeout("start", "", 0); d != 7*time.Second {
		t.Errorf("start timeout %v", d)
	}
	if err := m.Validate(nil); err == nil {
		t.Error("missing required parameter accepted")
	}
}

func TestMissingAgent(t *testing.T) {
	a, err := New("ocf:test:nonexistent", Options{Root: t.TempDir(), RscTmp: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := a.Run(ctx(t), agents.Start, agents.Instance{}, 0)
	if r.Code != agents.OCFErrInstalled || r.Status != agents.StatusHardError || !strings.Contains(r.Reason, "cannot run agent") {
		t.Fatalf("got %+v", r)
	}
	b := fakeAgent(t, "notexec", "exit 0\n", Options{})
	if err := os.Chmod(b.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Even root cannot execute a file without any x bit.
	if r := b.Run(ctx(t), agents.Start, agents.Instance{}, 0); r.Code != agents.OCFErrPerm || r.Status != agents.StatusHardError {
		t.Fatalf("non-executable agent: %+v", r)
	}
}

func TestUnsafeNamesRejected(t *testing.T) {
	a := fakeAgent(t, "ok", "exit 0\n", Options{})
	for _, inst := range []agents.Instance{
		{Params: map[string]string{"a=b": "x"}},
		{Params: map[string]string{"": "x"}},
		{Params: map[string]string{"a": "x\x00y"}},
		{Meta: map[string]string{"a\x00": "x"}},
	} {
		if r := a.Run(ctx(t), agents.Start, inst, 0); r.Code != agents.OCFErrArgs || r.Status != agents.StatusHardError || r.Reason == "" {
			t.Errorf("%+v: %+v", inst, r)
		}
	}
}

func TestKilledBySignal(t *testing.T) {
	a := fakeAgent(t, "segv", "kill -SEGV $$\n", Options{})
	r := a.Run(ctx(t), agents.Monitor, agents.Instance{}, 0)
	if r.Status != agents.StatusSoftError || r.Code != -1 || !strings.Contains(r.Reason, "signal 11") {
		t.Fatalf("got %+v", r)
	}
}

func TestOutputIsCapped(t *testing.T) {
	a := fakeAgent(t, "chatty", "head -c 10000000 /dev/zero | tr '\\0' x\n", Options{})
	r := run(t, a, agents.Start, agents.Instance{}, 0)
	if len(r.Stdout) > agents.DefaultMaxOutput+100 || !strings.Contains(r.Stdout, "bytes of output dropped") {
		t.Fatalf("stdout is %d bytes", len(r.Stdout))
	}
}

func TestParseSpec(t *testing.T) {
	if p, ty, err := ParseSpec("ocf:heartbeat:IPaddr2"); err != nil || p != "heartbeat" || ty != "IPaddr2" {
		t.Fatalf("got %q %q %v", p, ty, err)
	}
	for _, bad := range []string{"", "ocf:heartbeat", "lsb:nginx", "ocf:heartbeat:IPaddr2:x", "ocf::Dummy", "ocf:..:Dummy", "ocf:heartbeat:.ocf-shellfuncs", "ocf:a/b:c"} {
		if _, _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q): no error", bad)
		}
	}
}

func TestListAgents(t *testing.T) {
	root := fakeRoot(t, map[string]string{"B": "", "A": "", ".hidden": ""})
	dir := filepath.Join(root, "resource.d")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "test", "README"), []byte("x"), 0o644)) // not executable
	must(os.MkdirAll(filepath.Join(dir, "other", "subdir"), 0o755))
	must(os.Symlink(filepath.Join(dir, "test", "A"), filepath.Join(dir, "other", "Alias")))
	must(os.Symlink("/nonexistent", filepath.Join(dir, "other", "Dangling")))
	got, err := ListAgents(root)
	must(err)
	if strings.Join(got, " ") != "ocf:other:Alias ocf:test:A ocf:test:B" {
		t.Errorf("ListAgents = %v", got)
	}
	if got, err := ListAgents(t.TempDir()); err != nil || len(got) != 0 {
		t.Errorf("empty root: %v %v", got, err)
	}
}
