package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/agents/driver"
	"github.com/paceline/paceline/internal/agents/lsb"
	"github.com/paceline/paceline/internal/agents/ocf"
	"github.com/paceline/paceline/internal/agents/systemd"
	"github.com/paceline/paceline/internal/procfs"
	"github.com/paceline/paceline/internal/spec"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/paceline/paceline/internal/agents/process.spawnerLoop")); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// resource returns r with the spec's defaults filled in.
func resource(r spec.Resource) spec.Resource {
	return (&spec.Spec{Resources: []spec.Resource{r}}).WithDefaults().Resources[0]
}

func newDriver(t *testing.T, opts driver.Options, r spec.Resource) driver.Driver {
	t.Helper()
	d, err := driver.NewFactory(opts).New(driver.Target{Res: resource(r), Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever the test did, leave nothing running.
		if !d.Kill() {
			if r := d.Run(context.Background(), driver.Op{Action: agents.Stop, Timeout: Patience}); r.Status != agents.StatusSuccess {
				t.Errorf("cleanup stop: %+v", r)
			}
		}
		d.Close()
	})
	return d
}

// pidsAlive reports whether any process whose PID is in one of files runs.
func pidsAlive(files ...string) func() bool {
	return func() bool {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && procfs.Running(pid) {
				return true
			}
		}
		return false
	}
}

func testdata(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", p))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestProcess(t *testing.T) {
	opts := func(t *testing.T) driver.Options { return driver.Options{Node: "n1", LogDir: t.TempDir()} }
	Run(t, Fixture{
		New: func(t *testing.T) driver.Driver {
			return newDriver(t, opts(t), spec.Resource{Name: "plproc", Class: spec.ClassProcess,
				Params: spec.Params{Command: []string{"sleep", "1000"}, StopTimeout: spec.Duration(5 * time.Second)}})
		},
		Hang: func(t *testing.T) (driver.Driver, func() bool) {
			pid := filepath.Join(t.TempDir(), "pid")
			d := newDriver(t, opts(t), spec.Resource{Name: "plhang", Class: spec.ClassProcess,
				Params: spec.Params{Command: []string{"/bin/sh", "-c", `echo $$ > "$PIDF"; exec sleep 1000`}, Env: map[string]string{"PIDF": pid}},
				// The health check never passes: start waits for it until its timeout.
				Health: &spec.Health{Exec: []string{"false"}, Interval: spec.Duration(50 * time.Millisecond)}})
			return d, pidsAlive(pid)
		},
		Skip: map[string]string{
			"unknown-code":    "class process has no exit-code protocol: any exit of the process is a failure (driver tests check it is reported)",
			"broken-metadata": "class process has no meta-data",
		},
	})
}

func TestOCF(t *testing.T) {
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/Dummy"); err != nil {
		t.Skipf("ocf:heartbeat:Dummy is not installed (%v): apt-get install resource-agents", err)
	}
	opts := func(t *testing.T, root string) driver.Options {
		return driver.Options{Node: "n1", OCF: ocf.Options{Root: root, RscTmp: t.TempDir()}}
	}
	withState := func(t *testing.T, class string) (spec.Resource, string) {
		state := filepath.Join(t.TempDir(), "state")
		return spec.Resource{Name: "plocf", Class: class, Params: spec.Params{Values: map[string]string{"state": state}}}, state
	}
	Run(t, Fixture{
		New: func(t *testing.T) driver.Driver {
			r, _ := withState(t, "ocf:heartbeat:Dummy")
			return newDriver(t, opts(t, ""), r)
		},
		Hang: func(t *testing.T) (driver.Driver, func() bool) {
			r, state := withState(t, "ocf:pltest:Hang")
			return newDriver(t, opts(t, testdata(t, "ocf")), r), pidsAlive(state+".hang", state+".child")
		},
		UnknownCode: func(t *testing.T) (driver.Driver, driver.Op) {
			d := newDriver(t, opts(t, testdata(t, "ocf")), spec.Resource{Name: "plcode", Class: "ocf:pltest:Code42"})
			return d, driver.Op{Action: agents.Monitor, Timeout: Patience, Interval: 10 * time.Second}
		},
		BrokenMetadata: func(t *testing.T) driver.Driver {
			return newDriver(t, opts(t, testdata(t, "ocf")), spec.Resource{Name: "plbroken", Class: "ocf:pltest:BrokenMeta"})
		},
	})
}

func TestLSB(t *testing.T) {
	opts := func(t *testing.T, env map[string]string) (driver.Options, string) {
		dir := t.TempDir()
		e := map[string]string{"PLSLEEPER_DIR": dir}
		for k, v := range env {
			e[k] = v
		}
		return driver.Options{Node: "n1", LSB: lsb.Options{Dir: testdata(t, "init.d"), Env: e}}, dir
	}
	sleeper := spec.Resource{Name: "plsleeper", Class: "lsb:plsleeper"}
	Run(t, Fixture{
		New: func(t *testing.T) driver.Driver {
			o, _ := opts(t, nil)
			return newDriver(t, o, sleeper)
		},
		Hang: func(t *testing.T) (driver.Driver, func() bool) {
			o, dir := opts(t, map[string]string{"PLSLEEPER_HANG": "1"})
			pid := filepath.Join(dir, "plsleeper.pid")
			return newDriver(t, o, sleeper), pidsAlive(pid+".hang", pid+".child")
		},
		UnknownCode: func(t *testing.T) (driver.Driver, driver.Op) {
			o, _ := opts(t, map[string]string{"PLSLEEPER_STATUS": "42"})
			return newDriver(t, o, sleeper), driver.Op{Action: agents.Monitor, Timeout: Patience, Interval: 10 * time.Second}
		},
		Skip: map[string]string{
			"broken-metadata": "LSB meta-data is generated from the script's INIT INFO block, which cannot be broken (a script without one gets empty descriptions)",
		},
	})
}

// TestLSBNginx drives Debian's own /etc/init.d/nginx, with a configuration
// of its own (DAEMON_OPTS -c) on a free loopback port.
func TestLSBNginx(t *testing.T) {
	for _, p := range []string{"/etc/init.d/nginx", "/usr/sbin/nginx", "/lib/lsb/init-functions"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing (%v): apt-get install nginx", p, err)
		}
	}
	pidFile := nginxPidFile()
	if pidsAlive(pidFile)() {
		t.Skipf("the system's nginx runs (%s): not touching it", pidFile)
	}
	Run(t, Fixture{
		New: func(t *testing.T) driver.Driver {
			dir := t.TempDir()
			conf := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(conf, []byte(nginxConf(dir, pidFile, freePort(t))), 0o644); err != nil {
				t.Fatal(err)
			}
			d := newDriver(t, driver.Options{Node: "n1", LSB: lsb.Options{Env: map[string]string{"DAEMON_OPTS": "-c " + conf}}},
				spec.Resource{Name: "plnginx", Class: "lsb:nginx"})
			t.Cleanup(func() {
				if pidsAlive(pidFile)() {
					t.Errorf("nginx still runs after the test")
				}
			})
			return d
		},
		Skip: map[string]string{
			"hang":            "covered by lsb:plsleeper",
			"unknown-code":    "covered by lsb:plsleeper",
			"broken-metadata": "LSB meta-data is generated",
		},
	})
}

// nginxPidFile finds the pid file the init script uses: the pid directive
// of /etc/nginx/nginx.conf, else /run/nginx.pid.
func nginxPidFile() string {
	b, _ := os.ReadFile("/etc/nginx/nginx.conf")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimSpace(l))
		if len(f) == 2 && f[0] == "pid" {
			return strings.TrimSuffix(f[1], ";")
		}
	}
	return "/run/nginx.pid"
}

func nginxConf(dir, pidFile string, port int) string {
	return fmt.Sprintf(`worker_processes 1;
pid %[3]s;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen 127.0.0.1:%[2]d; location / { return 200 "paceline\n"; } }
}
`, dir, port, pidFile)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSystemd runs the suite over throw-away runtime units
// (/run/systemd/system/plconf-*.service running "sleep") through the
// systemd class. It needs a host booted with systemd and root.
func TestSystemd(t *testing.T) {
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) != "systemd" {
		t.Skipf("PID 1 is %q, not systemd: the systemd class cannot be exercised here (internal/agents/systemd tests it against a private dbus-daemon with a stand-in manager; see docs/systemd.md)", strings.TrimSpace(string(comm)))
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create runtime units")
	}
	bus := systemd.NewBus("", nil)
	t.Cleanup(func() { _ = bus.Close() })
	opts := driver.Options{Node: "n1", Systemd: func(class string) (agents.Invoker, error) {
		return systemd.New(class, systemd.Options{Bus: bus})
	}}
	n := 0
	unit := func(t *testing.T) string {
		n++
		name := fmt.Sprintf("plconf-%d-%d.service", os.Getpid(), n)
		path := filepath.Join("/run/systemd/system", name)
		if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep 1000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		reload := func() {
			if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
				t.Fatalf("systemctl daemon-reload: %v %s", err, out)
			}
		}
		reload()
		t.Cleanup(func() {
			_ = exec.Command("systemctl", "stop", name).Run()
			_ = os.Remove(path)
			_ = os.RemoveAll(filepath.Join("/run/systemd/system", name+".d"))
			reload()
		})
		return name
	}
	Run(t, Fixture{
		New: func(t *testing.T) driver.Driver {
			return newDriver(t, opts, spec.Resource{Name: "plsd", Class: "systemd:" + unit(t)})
		},
		Skip: map[string]string{
			"hang":            "a systemd start is a job of systemd, not a process of paceline: at the timeout the wait is abandoned and the job left to systemd (docs/systemd.md; TestLive -systemd-live covers it)",
			"unknown-code":    "units have states, not exit codes",
			"broken-metadata": "systemd meta-data is generated",
		},
	})
}
