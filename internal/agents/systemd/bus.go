package systemd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of systemd's manager.
const (
	busName          = "org.freedesktop.systemd1"
	managerPath      = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface     = "org.freedesktop.systemd1.Manager"
	unitIface        = "org.freedesktop.systemd1.Unit"
	propertiesIface  = "org.freedesktop.DBus.Properties"
	jobRemovedMember = "JobRemoved"
	jobRemovedSignal = managerIface + "." + jobRemovedMember
)

// DefaultSystemBusAddress is the system bus when neither an explicit
// address nor DBUS_SYSTEM_BUS_ADDRESS is given.
const DefaultSystemBusAddress = "unix:path=/run/dbus/system_bus_socket"

// SystemBusAddress returns the address of the system bus:
// $DBUS_SYSTEM_BUS_ADDRESS if set, else DefaultSystemBusAddress.
func SystemBusAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return DefaultSystemBusAddress
}

// errConnLost is returned while waiting when the bus connection went away.
var errConnLost = errors.New("the connection to the D-Bus system bus was lost")

// ErrBusClosed is the failure of actions run after Bus.Close.
var ErrBusClosed = errors.New("the Bus to systemd was closed (Bus.Close): paceline is shutting down this agent")

// Bus is a connection to systemd over the D-Bus system bus, shared by any
// number of Units and safe for concurrent use. It connects lazily, on the
// first action that needs it, and when the connection is found broken
// (the bus daemon restarted, systemd re-executed, a socket error) the
// next action connects again: a Bus never stays broken.
//
// On each connection it subscribes to systemd's signals (Manager.Subscribe)
// and to JobRemoved, which tells when a start or stop job has finished.
type Bus struct {
	addr string
	log  *slog.Logger

	lock chan struct{} // held while connecting; a channel so waiting honours ctx

	mu        sync.Mutex
	sess      *session
	closed    bool
	connected bool // a connection was made once
}

// everConnected reports whether the Bus ever had a working connection.
func (b *Bus) everConnected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connected
}

// NewBus returns a Bus for the D-Bus address ("" = SystemBusAddress()).
// It does not connect yet. A nil logger discards.
func NewBus(address string, logger *slog.Logger) *Bus {
	if address == "" {
		address = SystemBusAddress()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Bus{addr: address, log: logger, lock: make(chan struct{}, 1)}
}

// Address returns the D-Bus address the Bus connects to.
func (b *Bus) Address() string { return b.addr }

// Close closes the connection, if any. Actions run after Close fail.
func (b *Bus) Close() error {
	b.mu.Lock()
	s := b.sess
	b.sess, b.closed = nil, true
	b.mu.Unlock()
	if s != nil {
		return s.close()
	}
	return nil
}

// session is one connection and what was set up on it.
type session struct {
	conn *dbus.Conn
	sigs chan *dbus.Signal
	done chan struct{} // closed when the connection is gone

	mu       sync.Mutex
	watchers map[*jobWatch]struct{}

	closeOnce sync.Once
	closeErr  error
}

func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return s.conn.Connected()
	}
}

func (s *session) close() error {
	s.closeOnce.Do(func() { s.closeErr = s.conn.Close() })
	<-s.done // the dispatcher has seen the signal channel close
	return s.closeErr
}

// get returns a live session, connecting if there is none.
func (b *Bus) get(ctx context.Context) (*session, error) {
	select {
	case b.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-b.lock }()
	b.mu.Lock()
	s, closed := b.sess, b.closed
	b.mu.Unlock()
	if closed {
		return nil, ErrBusClosed
	}
	if s != nil {
		if s.alive() {
			return s, nil
		}
		_ = s.close()
		b.log.Info("D-Bus connection to systemd lost; reconnecting", "address", b.addr)
	}
	s, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = s.close()
		return nil, ErrBusClosed
	}
	b.sess, b.connected = s, true
	b.mu.Unlock()
	b.log.Debug("connected to systemd over D-Bus", "address", b.addr)
	return s, nil
}

// drop closes s, whose connection failed, and forgets it if it is the
// current session, so that the next use reconnects. (After a failed write
// the connection may still look connected until its reader sees EOF.)
func (b *Bus) drop(s *session) {
	b.mu.Lock()
	if b.sess == s {
		b.sess = nil
	}
	b.mu.Unlock()
	_ = s.close()
}

// connectError is a failure to connect to or authenticate with the bus.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string {
	return fmt.Sprintf("connecting to the D-Bus system bus at %s: %v", e.addr, e.err)
}
func (e *connectError) Unwrap() error { return e.err }

// connect dials the bus, authenticates, says Hello, adds the JobRemoved
// match and subscribes to systemd. Everything that can block is bounded
// by ctx: closing the connection unblocks the handshake.
func (b *Bus) connect(ctx context.Context) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := dbus.Dial(b.addr)
	if err != nil {
		return nil, &connectError{b.addr, err}
	}
	hello := make(chan error, 1)
	go func() {
		if err := conn.Auth(nil); err != nil {
			hello <- err
			return
		}
		hello <- conn.Hello()
	}()
	select {
	case err = <-hello:
	case <-ctx.Done():
		_ = conn.Close()
		<-hello
		return nil, ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		return nil, &connectError{b.addr, err}
	}
	s := &session{
		conn:     conn,
		sigs:     make(chan *dbus.Signal, 64),
		done:     make(chan struct{}),
		watchers: map[*jobWatch]struct{}{},
	}
	conn.Signal(s.sigs)
	go s.dispatch()
	err = conn.AddMatchSignalContext(ctx,
		dbus.WithMatchObjectPath(managerPath),
		dbus.WithMatchInterface(managerIface),
		dbus.WithMatchMember(jobRemovedMember))
	if err == nil {
		// systemd only emits its signals while some client is subscribed;
		// a connection that closes is unsubscribed by systemd itself.
		err = conn.Object(busName, managerPath).CallWithContext(ctx, managerIface+".Subscribe", 0).Err
		var de dbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.AlreadySubscribed" {
			err = nil
		}
	}
	if err != nil {
		_ = s.close()
		return nil, err
	}
	return s, nil
}

// dispatch hands JobRemoved signals to the watchers until the connection
// closes (godbus then closes the signal channel).
func (s *session) dispatch() {
	defer close(s.done)
	for sig := range s.sigs {
		if sig.Name != jobRemovedSignal || sig.Path != managerPath {
			continue
		}
		var ev jobEvent
		if err := dbus.Store(sig.Body, &ev.ID, &ev.Job, &ev.Unit, &ev.Result); err != nil {
			continue
		}
		s.mu.Lock()
		for w := range s.watchers {
			w.deliver(ev)
		}
		s.mu.Unlock()
	}
}

// jobEvent is one JobRemoved signal.
type jobEvent struct {
	ID     uint32
	Job    dbus.ObjectPath
	Unit   string
	Result string // done, canceled, timeout, failed, dependency, skipped
}

// jobWatch collects JobRemoved signals from before a job is even queued
// (the signal of a job that finishes at once can beat the method reply
// that names the job) until the waiter is done.
type jobWatch struct {
	s      *session
	mu     sync.Mutex
	events []jobEvent
	notify chan struct{}
}

func (s *session) watch() *jobWatch {
	w := &jobWatch{s: s, notify: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	return w
}

func (w *jobWatch) close() {
	w.s.mu.Lock()
	delete(w.s.watchers, w)
	w.s.mu.Unlock()
}

func (w *jobWatch) deliver(ev jobEvent) {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// find returns the JobRemoved event of job, if it was seen.
func (w *jobWatch) find(job dbus.ObjectPath) (jobEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.Job == job {
			return ev, true
		}
	}
	return jobEvent{}, false
}

// manager returns systemd's manager object.
func (s *session) manager() dbus.BusObject { return s.conn.Object(busName, managerPath) }

// call calls method on obj and stores the reply.
func (s *session) call(ctx context.Context, obj dbus.BusObject, method string, args []any, out ...any) error {
	c := obj.CallWithContext(ctx, method, 0, args...)
	if c.Err != nil {
		return c.Err
	}
	if len(out) == 0 {
		return nil
	}
	return c.Store(out...)
}

// D-Bus error names that matter here.
const (
	errNoSuchUnit       = "org.freedesktop.systemd1.NoSuchUnit"
	errServiceUnknown   = "org.freedesktop.DBus.Error.ServiceUnknown"
	errNameHasNoOwner   = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errAccessDenied     = "org.freedesktop.DBus.Error.AccessDenied"
	errInteractiveAuth  = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
	errUnknownMethod    = "org.freedesktop.DBus.Error.UnknownMethod"
	errUnknownObject    = "org.freedesktop.DBus.Error.UnknownObject"
	errUnknownInterface = "org.freedesktop.DBus.Error.UnknownInterface"
	errUnknownProperty  = "org.freedesktop.DBus.Error.UnknownProperty"
	errInvalidArgs      = "org.freedesktop.DBus.Error.InvalidArgs"
	errDisconnected     = "org.freedesktop.DBus.Error.Disconnected"
	errNoReply          = "org.freedesktop.DBus.Error.NoReply"
)

// dbusErrorName returns the D-Bus error name of err, or "".
func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var pde *dbus.Error
	if errors.As(err, &pde) && pde != nil {
		return pde.Name
	}
	return ""
}

// dbusErrorText returns "name: message" of a D-Bus error, or err's text.
func dbusErrorText(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		if len(de.Body) > 0 {
			if msg, ok := de.Body[0].(string); ok && msg != "" {
				return msg + " (" + de.Name + ")"
			}
		}
		return de.Name
	}
	return err.Error()
}

// isTransportError reports whether err means the connection is unusable
// (rather than an error reply from systemd or the bus).
func isTransportError(err error) bool {
	if err == nil || dbusErrorName(err) != "" {
		return dbusErrorName(err) == errDisconnected
	}
	return errors.Is(err, errConnLost) || errors.Is(err, dbus.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "use of closed network connection")
}

// explain turns a bus or systemd failure into a reason that tells the
// operator what to check. what names the step, e.g. "StartUnit(nginx.service)".
func (b *Bus) explain(what string, err error) string {
	var ce *connectError
	switch name := dbusErrorName(err); {
	case errors.Is(err, ErrBusClosed):
		return err.Error()
	case errors.As(err, &ce):
		if name == errAccessDenied || strings.Contains(err.Error(), "authentication") {
			return fmt.Sprintf("cannot reach systemd: the D-Bus system bus at %s refused paceline (%v); paceline must run as root, or the bus policy must allow it to talk to org.freedesktop.systemd1", b.addr, ce.err)
		}
		return fmt.Sprintf("cannot reach systemd: connecting to the D-Bus system bus at %s failed: %v; check that the system bus runs ('systemctl status dbus.service', socket /run/dbus/system_bus_socket) and that DBUS_SYSTEM_BUS_ADDRESS, if set, points to it", b.addr, ce.err)
	case name == errServiceUnknown || name == errNameHasNoOwner:
		return fmt.Sprintf("cannot reach systemd: nothing owns %s on the D-Bus system bus at %s (%s); is systemd the init system of this host? ('ps -p 1 -o comm=' should print systemd)", busName, b.addr, dbusErrorText(err))
	case name == errAccessDenied || name == errInteractiveAuth:
		return fmt.Sprintf("systemd denied %s: %s; paceline must run as root (or be allowed by polkit and the bus policy)", what, dbusErrorText(err))
	case name == errUnknownMethod || name == errUnknownObject || name == errUnknownInterface || name == errUnknownProperty:
		return fmt.Sprintf("systemd does not support %s (%s); is the systemd on this host too old, or is something else posing as %s?", what, dbusErrorText(err), busName)
	case name == errNoReply:
		return fmt.Sprintf("systemd did not answer %s (%s); it may be hung or busy ('systemctl is-system-running')", what, dbusErrorText(err))
	case name != "" && name != errDisconnected:
		return fmt.Sprintf("systemd refused %s: %s", what, dbusErrorText(err))
	case isTransportError(err):
		return fmt.Sprintf("lost the connection to the D-Bus system bus at %s during %s (%v); paceline reconnects when the bus is back (check 'systemctl status dbus.service' if this repeats)", b.addr, what, err)
	}
	return fmt.Sprintf("%s over D-Bus at %s failed: %v", what, b.addr, err)
}
