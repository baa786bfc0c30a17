package systemd

// The test fixture: a private dbus-daemon and a stand-in for systemd's
// manager on it. See the comment of systemd_test.go for what this does
// and does not prove.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

const patience = 30 * time.Second

// testBus is a private dbus-daemon configured like a system bus (type
// system, EXTERNAL authentication) listening on a unix socket in a
// temporary directory, with a policy that lets anyone own names and send
// anything (the real system bus lets root do that).
type testBus struct {
	t      testing.TB
	dir    string
	sock   string
	conf   string
	cmd    *exec.Cmd
	waited chan struct{}
	stderr *syncBuffer
}

// Addr is the bus address without the guid, stable across restarts.
func (b *testBus) Addr() string { return "unix:path=" + b.sock }

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

func startBus(t testing.TB) *testBus {
	t.Helper()
	// Not t.TempDir(): a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "pl-sd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b := &testBus{t: t, dir: dir, sock: filepath.Join(dir, "bus"), conf: filepath.Join(dir, "bus.conf")}
	if err := os.WriteFile(b.conf, fmt.Appendf(nil, busConfig, b.sock), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

// start runs dbus-daemon and waits until it printed its address.
func (b *testBus) start() {
	b.t.Helper()
	b.stderr = &syncBuffer{}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		daemon = "/usr/bin/dbus-daemon"
	}
	if _, err := os.Stat(daemon); err != nil {
		b.t.Fatalf("these tests need a real dbus-daemon (Debian package dbus-daemon): %v", err)
	}
	cmd := exec.Command(daemon, "--config-file="+b.conf, "--nofork", "--nopidfile", "--nosyslog", "--print-address")
	cmd.Stderr = b.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("dbus-daemon: %v", err)
	}
	b.cmd, b.waited = cmd, make(chan struct{})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		_, _ = bufio.NewReader(out).WriteTo(discard{})
	}()
	go func(w chan struct{}) { _ = cmd.Wait(); close(w) }(b.waited)
	select {
	case s := <-line:
		if !strings.HasPrefix(s, "unix:") {
			b.stop()
			b.t.Fatalf("dbus-daemon printed %q; stderr: %s", s, b.stderr)
		}
	case <-time.After(patience):
		b.stop()
		b.t.Fatalf("dbus-daemon did not print its address; stderr: %s", b.stderr)
	}
}

// stop terminates the daemon and reaps it.
func (b *testBus) stop() { b.signal(syscall.SIGTERM) }

// kill kills the daemon at once (the bus "goes away") and reaps it.
func (b *testBus) kill() { b.signal(syscall.SIGKILL) }

func (b *testBus) signal(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.waited:
	case <-time.After(patience):
		_ = b.cmd.Process.Kill()
		<-b.waited
	}
	b.cmd = nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ---------------------------------------------------------------------------
// The stand-in for systemd

// behaviour is how a fake unit reacts to start.
type behaviour int

const (
	runs   behaviour = iota // runs "sleep 1000"; active as soon as it is forked
	fails                   // runs "false"; the start job fails, the unit is failed
	gated                   // runs "sleep 1000" but stays activating until released
	silent                  // like runs, but its JobRemoved signal is never sent
)

// fakeUnit is one unit of the stand-in.
type fakeUnit struct {
	name, load, active, sub, desc string
	how                           behaviour
	job                           uint32 // the pending job, 0 if none
	jobKind                       string // "start" or "stop"
	proc                          *exec.Cmd
	pid                           int
	stopping                      bool
	gate                          chan struct{} // gated: closed by release
	abort                         chan struct{} // closed when the start job is canceled
}

// fakeSystemd implements the subset of org.freedesktop.systemd1 that
// package systemd calls: Manager.{LoadUnit,GetUnit,StartUnit,StopUnit,
// ResetFailedUnit,Reload,Subscribe,Unsubscribe}, the JobRemoved signal and
// org.freedesktop.DBus.Properties.{Get,GetAll} of units (LoadState,
// ActiveState, SubState, Description, Job, LoadError). Units run real
// processes, which it reaps.
type fakeSystemd struct {
	t testing.TB

	mu         sync.Mutex
	conn       *dbus.Conn
	units      map[string]*fakeUnit
	paths      map[dbus.ObjectPath]string
	nextJob    uint32
	reloads    int
	subscribes int
	resets     int
	reads      map[string]int // property reads per unit
	closed     bool

	wg sync.WaitGroup
}

func newFakeSystemd(t testing.TB, addr string) *fakeSystemd {
	t.Helper()
	f := &fakeSystemd{t: t, units: map[string]*fakeUnit{}, paths: map[dbus.ObjectPath]string{}, reads: map[string]int{}}
	f.attach(addr)
	t.Cleanup(f.close)
	return f
}

// attach connects to the bus at addr and takes systemd's name there (again,
// after the bus was restarted: the units and their processes stay).
func (f *fakeSystemd) attach(addr string) {
	f.t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		f.t.Fatalf("fake systemd: %v", err)
	}
	if err := conn.Export(mgrObj{f}, managerPath, managerIface); err != nil {
		f.t.Fatal(err)
	}
	if err := conn.ExportSubtree(propsObj{f}, "/org/freedesktop/systemd1/unit", propertiesIface); err != nil {
		f.t.Fatal(err)
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		f.t.Fatalf("fake systemd: RequestName: %v %v", reply, err)
	}
	f.mu.Lock()
	old := f.conn
	f.conn = conn
	f.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

// add defines a unit.
func (f *fakeSystemd) add(name string, how behaviour) *fakeUnit {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unitLocked(name)
	u.load, u.how, u.desc = LoadLoaded, how, "Test unit "+name
	if how == gated {
		u.gate = make(chan struct{})
	}
	return u
}

// mask masks a unit.
func (f *fakeSystemd) mask(name string) { f.setLoad(name, LoadMasked) }

// setLoad sets a unit's LoadState (as masking it or deleting its file and
// reloading would), leaving whatever runs running.
func (f *fakeSystemd) setLoad(name, load string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unitLocked(name).load = load
}

// release lets a gated unit finish activating.
func (f *fakeSystemd) release(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.units[name].gate)
}

// state returns a unit's ActiveState, its main PID (0 if none) and how
// often its properties were read.
func (f *fakeSystemd) state(name string) (active string, pid, reads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.units[name]
	if !ok {
		return "", 0, 0
	}
	return u.active, u.pid, f.reads[name]
}

func (f *fakeSystemd) counters() (reloads, subscribes, resets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads, f.subscribes, f.resets
}

// waitState waits until the unit is in state active.
func (f *fakeSystemd) waitState(name, active string) {
	f.t.Helper()
	deadline := time.Now().Add(patience)
	for {
		a, _, _ := f.state(name)
		if a == active {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s is %q, want %q", name, a, active)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// close kills every unit's process, reaps it and leaves the bus.
func (f *fakeSystemd) close() {
	f.mu.Lock()
	f.closed = true
	for _, u := range f.units {
		if u.abort != nil {
			close(u.abort)
			u.abort = nil
		}
		if u.proc != nil {
			_ = syscall.Kill(-u.pid, syscall.SIGKILL)
		}
	}
	conn := f.conn
	f.mu.Unlock()
	f.wg.Wait()
	if conn != nil {
		_ = conn.Close()
	}
}

func unitPath(name string) dbus.ObjectPath {
	var b strings.Builder
	b.WriteString("/org/freedesktop/systemd1/unit/")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return dbus.ObjectPath(b.String())
}

// unitLocked returns the unit, creating a not-found one as LoadUnit does.
func (f *fakeSystemd) unitLocked(name string) *fakeUnit {
	u, ok := f.units[name]
	if !ok {
		u = &fakeUnit{name: name, load: LoadNotFound, active: StateInactive, sub: "dead"}
		f.units[name] = u
		f.paths[unitPath(name)] = name
	}
	return u
}

func (f *fakeSystemd) newJobLocked() uint32 {
	f.nextJob++
	return f.nextJob
}

// emitLocked sends JobRemoved on the current connection.
func (f *fakeSystemd) emitLocked(id uint32, unit, result string) {
	if f.conn != nil {
		_ = f.conn.Emit(managerPath, jobRemovedSignal, id, jobPath(id), unit, result)
	}
}

// emitLater sends JobRemoved after the method reply, as systemd does.
func (f *fakeSystemd) emitLater(id uint32, unit, result string) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		time.Sleep(2 * time.Millisecond)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.emitLocked(id, unit, result)
	}()
}

// spawnLocked runs the unit's process and watches it exit.
func (f *fakeSystemd) spawnLocked(u *fakeUnit, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	u.proc, u.pid = cmd, cmd.Process.Pid
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = cmd.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		if u.proc != cmd {
			return
		}
		u.proc, u.pid = nil, 0
		switch {
		case u.stopping:
			u.stopping, u.active, u.sub = false, StateInactive, "dead"
		default:
			u.active, u.sub = StateFailed, "failed"
		}
		if u.job != 0 {
			result := "done"
			if u.jobKind == "start" {
				result = "failed"
			}
			f.emitLocked(u.job, u.name, result)
			u.job, u.jobKind = 0, ""
		}
	}()
	return nil
}

func noSuchUnit(name string) *dbus.Error {
	return &dbus.Error{Name: errNoSuchUnit, Body: []any{"Unit " + name + " not found."}}
}

// mgrObj is org.freedesktop.systemd1.Manager.
type mgrObj struct{ f *fakeSystemd }

func (m mgrObj) LoadUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	m.f.unitLocked(name)
	return unitPath(name), nil
}

func (m mgrObj) GetUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if u, ok := m.f.units[name]; !ok || u.load == LoadNotFound {
		return "", noSuchUnit(name)
	}
	return unitPath(name), nil
}

func (m mgrObj) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unitLocked(name)
	switch {
	case u.load == LoadNotFound:
		return "", noSuchUnit(name)
	case u.load == LoadMasked:
		return "", &dbus.Error{Name: "org.freedesktop.systemd1.UnitMasked", Body: []any{"Unit " + name + " is masked."}}
	case mode != "replace":
		return "", &dbus.Error{Name: errInvalidArgs, Body: []any{"fake: mode " + mode}}
	case u.job != 0 && u.jobKind == "start":
		return jobPath(u.job), nil // merged into the pending job
	}
	id := f.newJobLocked()
	if u.active == StateActive {
		// Nothing to do: the job finishes at once, and its signal goes out
		// before the reply (the race package systemd must survive).
		f.emitLocked(id, name, "done")
		return jobPath(id), nil
	}
	u.job, u.jobKind, u.active, u.sub = id, "start", StateActivating, "start"
	switch u.how {
	case runs, silent:
		if err := f.spawnLocked(u, "sleep", "1000"); err != nil {
			return "", dbus.MakeFailedError(err)
		}
		u.active, u.sub, u.job, u.jobKind = StateActive, "running", 0, ""
		if u.how == runs {
			f.emitLater(id, name, "done")
		}
	case fails:
		// The process exits at once; its watcher fails the job.
		if err := f.spawnLocked(u, "false"); err != nil {
			return "", dbus.MakeFailedError(err)
		}
	case gated:
		if err := f.spawnLocked(u, "sleep", "1000"); err != nil {
			return "", dbus.MakeFailedError(err)
		}
		u.abort = make(chan struct{})
		gate, abort := u.gate, u.abort
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			select {
			case <-gate:
			case <-abort:
				return
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if u.job == id && u.proc != nil {
				u.active, u.sub, u.job, u.jobKind = StateActive, "running", 0, ""
				f.emitLocked(id, name, "done")
			}
		}()
	}
	return jobPath(id), nil
}

func (m mgrObj) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unitLocked(name)
	if u.load == LoadNotFound && u.proc == nil {
		return "", noSuchUnit(name)
	}
	if u.job != 0 && u.jobKind == "start" {
		f.emitLocked(u.job, name, "canceled")
		u.job, u.jobKind = 0, ""
		if u.abort != nil {
			close(u.abort)
			u.abort = nil
		}
	}
	id := f.newJobLocked()
	if u.proc == nil {
		f.emitLater(id, name, "done")
		return jobPath(id), nil
	}
	u.job, u.jobKind, u.active, u.sub, u.stopping = id, "stop", StateDeactivating, "stop-sigterm", true
	_ = syscall.Kill(-u.pid, syscall.SIGTERM)
	return jobPath(id), nil
}

func (m mgrObj) ResetFailedUnit(name string) *dbus.Error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	u, ok := m.f.units[name]
	if !ok {
		return noSuchUnit(name)
	}
	m.f.resets++
	if u.active == StateFailed {
		u.active, u.sub = StateInactive, "dead"
	}
	return nil
}

func (m mgrObj) Reload() *dbus.Error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	m.f.reloads++
	return nil
}

func (m mgrObj) Subscribe() *dbus.Error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	m.f.subscribes++
	return nil
}

func (m mgrObj) Unsubscribe() *dbus.Error { return nil }

// propsObj is org.freedesktop.DBus.Properties of every unit.
type propsObj struct{ f *fakeSystemd }

func (p propsObj) GetAll(msg dbus.Message, iface string) (map[string]dbus.Variant, *dbus.Error) {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	name, ok := p.f.paths[path]
	if !ok {
		return nil, &dbus.Error{Name: errUnknownObject, Body: []any{"no object " + string(path)}}
	}
	if iface != unitIface {
		return nil, &dbus.Error{Name: errUnknownInterface, Body: []any{"fake: interface " + iface}}
	}
	u := p.f.units[name]
	p.f.reads[name]++
	job := struct {
		ID   uint32
		Path dbus.ObjectPath
	}{0, "/"}
	if u.job != 0 {
		job.ID, job.Path = u.job, jobPath(u.job)
	}
	loadErr := struct{ Name, Message string }{}
	if u.load == LoadNotFound {
		loadErr.Name, loadErr.Message = errNoSuchUnit, "Unit "+name+" not found."
	}
	return map[string]dbus.Variant{
		"Id":          dbus.MakeVariant(name),
		"Description": dbus.MakeVariant(u.desc),
		"LoadState":   dbus.MakeVariant(u.load),
		"ActiveState": dbus.MakeVariant(u.active),
		"SubState":    dbus.MakeVariant(u.sub),
		"Job":         dbus.MakeVariant(job),
		"LoadError":   dbus.MakeVariant(loadErr),
	}, nil
}

func (p propsObj) Get(msg dbus.Message, iface, prop string) (dbus.Variant, *dbus.Error) {
	all, err := p.GetAll(msg, iface)
	if err != nil {
		return dbus.Variant{}, err
	}
	v, ok := all[prop]
	if !ok {
		return dbus.Variant{}, &dbus.Error{Name: errUnknownProperty, Body: []any{"fake: property " + prop}}
	}
	return v, nil
}
