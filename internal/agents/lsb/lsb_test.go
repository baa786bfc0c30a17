package lsb

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/ocf"
)

const patience = 30 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*patience)
	t.Cleanup(cancel)
	return c
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// compliantScript is an init script that follows LSB: it manages a
// "sleep" daemon through a pid file, start of a started service and stop
// of a stopped one succeed, and status distinguishes running (0), dead
// with a stale pid file (1) and stopped (3).
const compliantScript = `#!/bin/sh
### BEGIN INIT INFO
# Provides:          plsleeper sleeper
# Required-Start:    $local_fs
# Required-Stop:     $local_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: sleeps <a lot> & well
# Description:       A daemon that sleeps,
#                    used to test the lsb class.
### END INIT INFO
PIDFILE=%[1]s/sleeper.pid

# A zombie is not running (init may be slow to reap an orphan).
running() {
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	st=$(sed 's/.*) \(.\).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

case "$1" in
start)
	running && exit 0
	setsid sleep 1000 </dev/null >/dev/null 2>&1 &
	echo $! > "$PIDFILE"
	exit 0 ;;
stop)
	if running; then
		kill "$(cat "$PIDFILE")"
		while running; do sleep 0.05; done
	fi
	rm -f "$PIDFILE"
	exit 0 ;;
status)
	running && exit 0
	[ -f "$PIDFILE" ] && exit 1
	exit 3 ;;
restart|force-reload)
	"$0" stop && "$0" start ;;
*)
	echo "Usage: $0 {start|stop|status|restart|force-reload}" >&2
	exit 2 ;;
esac
`

// scriptDir writes scripts (name → body) into a new init directory.
func scriptDir(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newScript(t *testing.T, dir, name string) *Script {
	t.Helper()
	s, err := New("lsb:"+name, Options{Dir: dir, KillGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, s *Script, action agents.Action, want int) agents.Result {
	t.Helper()
	r := s.Run(ctx(t), action, agents.Instance{Name: "svc"}, patience)
	if r.Code != want {
		t.Fatalf("%s %s: code %d (%s, %q), want %d\nstdout: %s\nstderr: %s", s, action, r.Code, r.Status, r.Reason, want, r.Stdout, r.Stderr)
	}
	return r
}

func TestCompliantScriptCycle(t *testing.T) {
	state := t.TempDir()
	dir := scriptDir(t, map[string]string{"plsleeper": fmt.Sprintf(compliantScript, state)})
	s := newScript(t, dir, "plsleeper")
	t.Cleanup(func() { s.Run(context.Background(), agents.Stop, agents.Instance{}, patience) })

	run(t, s, agents.ValidateAll, agents.OCFSuccess)
	run(t, s, agents.Monitor, agents.OCFNotRunning)
	run(t, s, agents.Stop, agents.OCFSuccess) // stop of a stopped service
	run(t, s, agents.Start, agents.OCFSuccess)
	run(t, s, agents.Start, agents.OCFSuccess) // start of a started service
	r := run(t, s, agents.Monitor, agents.OCFSuccess)
	if r.Status != agents.StatusSuccess {
		t.Fatalf("monitor: %s", r.Status)
	}
	run(t, s, agents.Status, agents.OCFSuccess)

	// The daemon dies behind the script's back: status 1 (stale pid file) → not running.
	b, err := os.ReadFile(filepath.Join(state, "sleeper.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	run(t, s, agents.Monitor, agents.OCFNotRunning)

	run(t, s, agents.Start, agents.OCFSuccess)
	run(t, s, agents.Stop, agents.OCFSuccess)
	run(t, s, agents.Stop, agents.OCFSuccess)
	run(t, s, agents.Monitor, agents.OCFNotRunning)
}

func TestStatusMapping(t *testing.T) {
	dir := scriptDir(t, map[string]string{"codes": "#!/bin/sh\nexit $(cat \"$(dirname \"$0\")/code\")\n"})
	s := newScript(t, dir, "codes")
	for _, tc := range []struct {
		raw      int
		action   agents.Action
		code     int
		status   agents.ResultStatus
		severity agents.Severity
	}{
		{0, agents.Monitor, 0, agents.StatusSuccess, agents.SeverityNone},
		{1, agents.Monitor, 7, agents.StatusNotRunning, agents.SeverityNone},
		{2, agents.Monitor, 7, agents.StatusNotRunning, agents.SeverityNone},
		{3, agents.Monitor, 7, agents.StatusNotRunning, agents.SeverityNone},
		{4, agents.Monitor, 4, agents.StatusHardError, agents.SeverityHard},
		{5, agents.Monitor, 5, agents.StatusHardError, agents.SeverityHard},
		{6, agents.Monitor, 1, agents.StatusSoftError, agents.SeveritySoft},
		{150, agents.Monitor, 1, agents.StatusSoftError, agents.SeveritySoft},
		{0, agents.Start, 0, agents.StatusSuccess, agents.SeverityNone},
		{1, agents.Start, 1, agents.StatusSoftError, agents.SeveritySoft},
		{5, agents.Start, 5, agents.StatusHardError, agents.SeverityHard},
		{6, agents.Start, 6, agents.StatusFatalError, agents.SeverityFatal},
		{150, agents.Start, 1, agents.StatusSoftError, agents.SeveritySoft},
		{7, agents.Stop, 0, agents.StatusSuccess, agents.SeverityNone}, // already stopped
		{1, agents.Stop, 1, agents.StatusSoftError, agents.SeveritySoft},
	} {
		if err := os.WriteFile(filepath.Join(dir, "code"), []byte(strconv.Itoa(tc.raw)), 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.Run(ctx(t), tc.action, agents.Instance{}, patience)
		if r.Code != tc.code || r.Status != tc.status || r.Status.Severity() != tc.severity {
			t.Errorf("%s exiting %d: code %d %s; want %d %s", tc.action, tc.raw, r.Code, r.Status, tc.code, tc.status)
		}
		if r.Status.Failed() && !strings.Contains(r.Reason, fmt.Sprintf("exited with %d", tc.raw)) {
			t.Errorf("%s exiting %d: reason %q", tc.action, tc.raw, r.Reason)
		}
	}
}

func TestUnsupportedAndMissing(t *testing.T) {
	dir := scriptDir(t, map[string]string{"plsleeper": fmt.Sprintf(compliantScript, t.TempDir())})
	s := newScript(t, dir, "plsleeper")
	for _, a := range []agents.Action{agents.Promote, agents.Demote, agents.Notify, agents.MigrateTo, agents.ReloadAgent} {
		if r := s.Run(ctx(t), a, agents.Instance{}, 0); r.Code != agents.OCFErrUnimplemented || r.Status != agents.StatusHardError {
			t.Errorf("%s: %+v", a, r)
		}
	}
	missing := newScript(t, dir, "nonexistent")
	for _, a := range []agents.Action{agents.Start, agents.Monitor, agents.ValidateAll, agents.MetaData} {
		if r := missing.Run(ctx(t), a, agents.Instance{}, 0); r.Code != agents.OCFErrInstalled || r.Status != agents.StatusHardError {
			t.Errorf("missing script %s: %+v", a, r)
		}
	}
	for _, bad := range []string{"nginx", "lsb:", "lsb:../x", "lsb:a/b", "lsb:.hidden", "ocf:heartbeat:Dummy"} {
		if _, err := New(bad, Options{}); err == nil {
			t.Errorf("New(%q): no error", bad)
		}
	}
}

func TestTimeoutKillsScript(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	dir := scriptDir(t, map[string]string{"hang": fmt.Sprintf("#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho \"$$ $!\" > %q\nsleep 1000\n", pids)})
	s := newScript(t, dir, "hang")
	r := s.Run(ctx(t), agents.Start, agents.Instance{}, time.Second)
	if !r.TimedOut || r.Status != agents.StatusSoftError || r.Reason != "timed out after 1s" {
		t.Fatalf("got %+v", r)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if alive(pid) {
			t.Errorf("process %d survived the timeout", pid)
		}
	}
}

func TestMetadata(t *testing.T) {
	dir := scriptDir(t, map[string]string{
		"plsleeper": fmt.Sprintf(compliantScript, t.TempDir()),
		"bare":      "#!/bin/sh\nexit 0\n",
	})
	r := run(t, newScript(t, dir, "plsleeper"), agents.MetaData, agents.OCFSuccess)
	m, err := ocf.ParseMetadata([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("generated meta-data does not parse: %v\n%s", err, r.Stdout)
	}
	if m.Name != "plsleeper" || m.ShortDesc != "sleeps <a lot> & well" || m.LongDesc != "A daemon that sleeps, used to test the lsb class." {
		t.Errorf("meta-data %+v", m)
	}
	if d, ok := m.Timeout("monitor", "", 15*time.Second); !ok || d != 15*time.Second || len(m.Parameters) != 0 {
		t.Errorf("monitor timeout %v %v, parameters %v", d, ok, m.Parameters)
	}
	if !strings.Contains(r.Stdout, "<Provides>plsleeper sleeper</Provides>") {
		t.Errorf("no LSB special section:\n%s", r.Stdout)
	}
	r = run(t, newScript(t, dir, "bare"), agents.MetaData, agents.OCFSuccess)
	if m, err := ocf.ParseMetadata([]byte(r.Stdout)); err != nil || m.Name != "bare" {
		t.Errorf("script without INIT INFO: %v %+v", err, m)
	}
}

func TestParseInitInfo(t *testing.T) {
	info := ParseInitInfo([]byte(fmt.Sprintf(compliantScript, "/x")))
	if strings.Join(info.Provides, ",") != "plsleeper,sleeper" || strings.Join(info.DefaultStop, ",") != "0,1,6" ||
		strings.Join(info.RequiredStart, ",") != "$local_fs" || info.ShortDescription != "sleeps <a lot> & well" {
		t.Errorf("info %+v", info)
	}
	if info := ParseInitInfo([]byte("#!/bin/sh\n# Provides: x\n")); len(info.Provides) != 0 {
		t.Errorf("fields outside the block parsed: %+v", info)
	}
}

// TestRealNginxStatus runs Debian's /etc/init.d/nginx: status (which does
// not change the system) and meta-data.
func TestRealNginxStatus(t *testing.T) {
	s, err := New("lsb:nginx", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); err != nil {
		t.Skipf("%s not installed (%v): apt-get install nginx", s.Path(), err)
	}
	r := s.Run(ctx(t), agents.Monitor, agents.Instance{Name: "nginx"}, patience)
	if r.Status != agents.StatusNotRunning && r.Status != agents.StatusSuccess {
		t.Fatalf("status: code %d %s %q\n%s%s", r.Code, r.Status, r.Reason, r.Stdout, r.Stderr)
	}
	t.Logf("lsb:nginx status: %s", r.Status)
	r = run(t, s, agents.MetaData, agents.OCFSuccess)
	m, err := ocf.ParseMetadata([]byte(r.Stdout))
	if err != nil || m.ShortDesc != "starts the nginx web server" {
		t.Fatalf("meta-data: %v %+v", err, m)
	}
}
