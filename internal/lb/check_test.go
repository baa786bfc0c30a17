package lb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestHTTPCheckStatusAndBody(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	addr, _ := newHTTPServer(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Method != "HEAD" && r.Method != "GET" {
			w.WriteHeader(404)
			return
		}
		if !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		fmt.Fprint(w, "status: synced")
	})
	cfg := tcpConfig("", Server{Name: "a", Address: addr})
	cfg.Backends[0].Check = &Check{Type: "http", Path: "/healthz", ExpectStatus: 200, ExpectBody: "synced",
		Interval: 20 * time.Millisecond, Rise: 2, Fall: 2}
	l := mustNew(t, cfg)
	time.Sleep(100 * time.Millisecond)
	if s := serverState(l, "be", "a"); s != "up" {
		t.Fatalf("state %s", s)
	}
	healthy.Store(false)
	waitFor(t, "a down", 3*time.Second, func() bool { return serverState(l, "be", "a") == "down" })
	st, _ := l.Status().Server("be", "a")
	if !strings.Contains(st.Reason, "status 503, want 200") {
		t.Fatalf("reason %q", st.Reason)
	}
	healthy.Store(true)
	waitFor(t, "a up", 3*time.Second, func() bool { return serverState(l, "be", "a") == "up" })

	// Body expectation.
	cfg.Backends[0].Check.ExpectBody = "primary"
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a down on body", 3*time.Second, func() bool { return serverState(l, "be", "a") == "down" })
	st, _ = l.Status().Server("be", "a")
	if !strings.Contains(st.Reason, `does not contain "primary"`) {
		t.Fatalf("reason %q", st.Reason)
	}
}

func TestExecCheck(t *testing.T) {
	a := newTCPServer(t, "a")
	flag := filepath.Join(t.TempDir(), "ok")
	os.WriteFile(flag, nil, 0o644)
	cfg := tcpConfig("", Server{Name: "a", Address: a.addr()})
	cfg.Backends[0].Check = &Check{Type: "exec", Interval: 20 * time.Millisecond, Rise: 1, Fall: 1,
		Command: []string{"sh", "-c", `test "$PACELINE_SERVER_NAME" = a && test -e ` + flag + ` || { echo not ready; exit 3; }`}}
	l := mustNew(t, cfg)
	time.Sleep(100 * time.Millisecond)
	if s := serverState(l, "be", "a"); s != "up" {
		t.Fatalf("state %s", s)
	}
	os.Remove(flag)
	waitFor(t, "down", 3*time.Second, func() bool { return serverState(l, "be", "a") == "down" })
	st, _ := l.Status().Server("be", "a")
	if !strings.Contains(st.Reason, "exit status 3: not ready") {
		t.Fatalf("reason %q", st.Reason)
	}
	// Maintenance stops checks; the server is out of rotation.
	cfg.Backends[0].Servers[0].Maintenance = true
	if err := l.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if s := serverState(l, "be", "a"); s != "maintenance" {
		t.Fatalf("state %s", s)
	}
}

// mariadb runs a real mariadbd from Debian in a temp datadir on loopback.
type mariadb struct {
	dir, addr, sock string
	cmd             *exec.Cmd
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startMariaDB(t *testing.T, dir string, galera bool) *mariadb {
	t.Helper()
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Skip("mariadbd not installed (apt-get install mariadb-server)")
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(data); err != nil {
		out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
			"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
		if err != nil {
			t.Skipf("mariadb-install-db: %v: %s", err, out)
		}
	}
	m := &mariadb{dir: dir, sock: filepath.Join(dir, "sock")}
	port := freePort(t)
	m.addr = fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"--no-defaults", "--datadir=" + data, "--socket=" + m.sock, fmt.Sprintf("--port=%d", port),
		"--bind-address=127.0.0.1", "--user=root", "--log-error=" + filepath.Join(dir, "err.log"), "--pid-file=" + filepath.Join(dir, "pid")}
	if galera {
		if _, err := os.Stat("/usr/lib/galera/libgalera_smm.so"); err != nil {
			t.Skip("no Galera provider /usr/lib/galera/libgalera_smm.so")
		}
		args = append(args, "--wsrep-on=ON", "--wsrep-provider=/usr/lib/galera/libgalera_smm.so",
			"--wsrep-cluster-address=gcomm://", "--wsrep-node-address=127.0.0.1",
			fmt.Sprintf("--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d", freePort(t)),
			"--binlog-format=ROW", "--innodb-autoinc-lock-mode=2", "--wsrep-new-cluster")
	}
	m.cmd = exec.Command(bin, args...)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		db := m.root()
		err := db.Ping()
		db.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("mariadbd did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m
}

func (m *mariadb) root() *sql.DB {
	mc := mysql.NewConfig()
	mc.User, mc.Net, mc.Addr = "root", "unix", m.sock
	c, _ := mysql.NewConnector(mc)
	return sql.OpenDB(c)
}

func (m *mariadb) exec(t *testing.T, q string) {
	db := m.root()
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (m *mariadb) stop() {
	if m.cmd.Process != nil && m.cmd.ProcessState == nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			m.cmd.Process.Kill()
			<-done
		}
	}
}

func TestGaleraCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mariadbd")
	}
	if os.Geteuid() != 0 {
		t.Skip("mariadbd --user=root needs root")
	}
	dir := t.TempDir()
	ch := &Check{Type: "mysql-galera", User: "check", Password: "pw", Timeout: 2 * time.Second}
	s := &server{name: "db"}

	// A plain MariaDB has no wsrep status: the check fails and says why.
	m := startMariaDB(t, dir, false)
	m.exec(t, "CREATE USER IF NOT EXISTS 'check'@'127.0.0.1' IDENTIFIED BY 'pw'")
	s.addr = m.addr
	err := runCheck(context.Background(), ch, s)
	if err == nil || !strings.Contains(err.Error(), "no wsrep status") {
		t.Fatalf("plain MariaDB: %v", err)
	}
	// Wrong password: the MySQL error is reported.
	bad := *ch
	bad.Password = "wrong"
	if err := runCheck(context.Background(), &bad, s); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("wrong password: %v", err)
	}
	m.stop()

	// A one-node Galera cluster (bootstrapped with --wsrep-new-cluster).
	m = startMariaDB(t, dir, true)
	s.addr = m.addr
	waitFor(t, "galera synced", 20*time.Second, func() bool { return runCheck(context.Background(), ch, s) == nil })
	// Through the LB: the server is up and proxied.
	cfg := tcpConfig("first", Server{Name: "db", Address: m.addr})
	cfg.Backends[0].Check = &Check{Type: "mysql-galera", User: "check", Password: "pw", Interval: 50 * time.Millisecond, Rise: 1, Fall: 1}
	l := mustNew(t, cfg)
	time.Sleep(200 * time.Millisecond)
	if st := serverState(l, "be", "db"); st != "up" {
		t.Fatalf("db %s", st)
	}
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = "check", "pw", "tcp", l.Addr("fe").String()
	c, _ := mysql.NewConnector(mc)
	db := sql.OpenDB(c)
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query through the lb: %v", err)
	}
	db.Close()
	// Desynced (wsrep_local_state 2): clustercheck says unavailable.
	m.exec(t, "SET GLOBAL wsrep_desync=ON")
	waitFor(t, "db down when desynced", 5*time.Second, func() bool { return serverState(l, "be", "db") == "down" })
	st, _ := l.Status().Server("be", "db")
	if !strings.Contains(st.Reason, "wsrep_local_state=2") {
		t.Fatalf("reason %q", st.Reason)
	}
	m.exec(t, "SET GLOBAL wsrep_desync=OFF")
	waitFor(t, "db up again", 5*time.Second, func() bool { return serverState(l, "be", "db") == "up" })
	// Server gone: connection refused.
	m.stop()
	waitFor(t, "db down when stopped", 5*time.Second, func() bool { return serverState(l, "be", "db") == "down" })
	st, _ = l.Status().Server("be", "db")
	if !strings.Contains(st.Reason, "connect") && !strings.Contains(st.Reason, "refused") {
		t.Fatalf("reason %q", st.Reason)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Frontends: []Frontend{{Name: "f", Bind: "nope", Backend: "b"}}, Backends: []Backend{{Name: "b"}}}, "frontends[0](f).bind"},
		{Config{Frontends: []Frontend{{Name: "f", Bind: ":1", Backend: "x"}}}, "frontends[0](f).backend: \"x\" is not a backend"},
		{Config{Backends: []Backend{{Name: "b", Servers: []Server{{Name: "s", Address: "h"}}}}}, "backends[0](b).servers[0].address"},
		{Config{Backends: []Backend{{Name: "b", Servers: []Server{{Name: "s", Address: "h:1", Weight: ip(-1)}}}}}, "backends[0](b).servers[0].weight"},
		{Config{Backends: []Backend{{Name: "b", Check: &Check{Type: "ping"}}}}, "backends[0](b).check.type"},
		{Config{Backends: []Backend{{Name: "b", Check: &Check{Type: "exec"}}}}, "backends[0](b).check.command"},
		{Config{Backends: []Backend{{Name: "b", ProxyProtocol: 3}}}, "backends[0](b).proxy_protocol"},
		{Config{Frontends: []Frontend{{Name: "f", Bind: ":1", Backend: "b", TLS: &TLS{CertFile: "c"}}}, Backends: []Backend{{Name: "b"}}}, "frontends[0](f).tls"},
		{Config{Frontends: []Frontend{{Name: "f", Bind: ":1", Mode: "udp", Backend: "b"}}, Backends: []Backend{{Name: "b"}}}, "frontends[0](f).mode"},
	}
	for _, c := range cases {
		_, err := New(c.cfg, testLogger(t), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error naming %s", err, c.want)
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%v is not a *FieldError", err)
		}
	}
}
