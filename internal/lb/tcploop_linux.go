package lb

// tcp mode event loop. Once a tcp session is connected (server picked,
// PROXY header written, retries done) by the goroutine of the accepted
// connection, its two sockets are handed to an event loop and that goroutine
// ends: a loop goroutine watches the sockets of many sessions in one
// level-triggered epoll set and moves the bytes itself, like HAProxy's
// event loop. For tiny request/response traffic this saves the two
// goroutines per session, their wake-ups and the runtime's per-syscall
// bookkeeping of the goroutine path (pipe in tcp.go).
//
// The epoll set is itself registered in the Go netpoller (an epoll fd is
// pollable): the loop never blocks in a system call, it parks like any
// goroutine waiting for a socket when no session has work, and the runtime
// wakes it when one has.
//
// Per direction (client→server, server→client): a readable source is read
// and its bytes written to the peer. Small reads of one epoll batch are
// collected in an arena and written together at the end of the batch
// (HAProxy's receive-then-send rounds: a receiver is woken once for many
// messages); bulk reads are written at once. What the peer does not take
// stays in a per-direction buffer, the source is no longer read and the
// peer is watched for EPOLLOUT (backpressure). A direction that makes bulk
// reads several times in a row switches to splice(2) through a pipe, so
// large transfers never enter user space. EOF is forwarded with
// shutdown(SHUT_WR) once everything read has been written, and the other
// direction continues (half-close). A session ends when both directions have
// ended, on an error, on its inactivity timeout (neither direction moved a
// byte for the timeout of a direction still open: client_timeout for
// client→server, server_timeout for server→client), when its server goes
// down with shutdown_on_down, or on Close.

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	loopBufSize = 64 << 10 // read buffer, one per loop
	// bigRead: a read at least this large is part of a bulk transfer
	// (loopback delivers 65483-byte segments, so not "a full buffer"): it
	// is written at once, the source is read again, and spliceAfter of
	// them in a row switch the direction to splice.
	bigRead      = 16 << 10
	pipeSize     = 1 << 20 // like Go's own splice
	maxIdlePipes = 16
	maxLoops     = 8
	loopEvents   = 256
	maxPumps     = 16 // reads of one direction per event
	arenaSize    = 256 << 10
)

// tcpPathEnv is PACELINE_LB_TCP: "goroutine" keeps every tcp session on the
// goroutine path (tcp.go), "loop-immediate" uses the event loop without
// batched writes; anything else the event loop. For benchmarks and as an
// escape hatch.
var tcpPathEnv = sync.OnceValue(func() string { return os.Getenv("PACELINE_LB_TCP") })

// Tests: tcpPathOverride ("loop", "loop-immediate" or "goroutine") wins
// over PACELINE_LB_TCP for loops started afterwards; spliceAfter bulk reads
// in a row switch a direction to splice(2).
var (
	tcpPathOverride string
	spliceAfter     = 2
)

func tcpPath() string {
	if tcpPathOverride != "" {
		return tcpPathOverride
	}
	return tcpPathEnv()
}

// loopSet holds the event loops of one LB, started on the first tcp
// session: one per GOMAXPROCS (at most maxLoops), sessions spread round
// robin.
type loopSet struct {
	mu    sync.Mutex
	loops []*evloop
	err   error
	next  atomic.Uint32
}

func (ls *loopSet) get(l *LB) *evloop {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if tcpPath() == "goroutine" || ls.err != nil {
		return nil
	}
	if ls.loops == nil {
		n := min(runtime.GOMAXPROCS(0), maxLoops)
		for range n {
			lp, err := newEvloop(l)
			if err != nil {
				// Keep the loops already started (they end with
				// Close); new sessions take the goroutine path.
				ls.err = err
				l.log.Warn("tcp: event loop not available, using one goroutine per direction", "err", err)
				return nil
			}
			ls.loops = append(ls.loops, lp)
		}
	}
	return ls.loops[ls.next.Add(1)%uint32(len(ls.loops))]
}

// handoff gives the connected session to an event loop. False: there is no
// loop, nothing was touched and the caller proxies. True: the loop owns c,
// sc and the slot on s, also when the handoff failed (then all is closed and
// released).
func (ls *loopSet) handoff(l *LB, b *backend, s *server, c, sc *net.TCPConn, clientTO, serverTO time.Duration) bool {
	lp := ls.get(l)
	if lp == nil {
		return false
	}
	ss := &session{lp: lp, b: b, srv: s, id: -1, fd: [2]int{-1, -1}, to: [2]int64{int64(clientTO), int64(serverTO)}}
	ss.h = &loopConn{s: ss, laddr: c.LocalAddr(), raddr: c.RemoteAddr()}
	var err error
	if ss.fd[0], err = dupFD(c); err == nil {
		ss.fd[1], err = dupFD(sc)
	}
	if err == nil && !l.trackConn(ss.h, true) {
		err = errors.New("load balancer closing")
	}
	// The duplicates keep the sockets open; closing the originals takes
	// them out of the Go netpoller.
	c.Close()
	sc.Close()
	if err != nil {
		l.log.Debug("tcp: session not handed to the event loop", "client", c.RemoteAddr().String(), "err", err)
		for _, fd := range ss.fd {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		b.release(s)
		return true
	}
	s.track(ss.h, true)
	if !lp.add(ss) {
		ss.lp.end(ss)
	}
	return true
}

// dupFD duplicates the socket of c (close-on-exec; the duplicate shares
// the non-blocking file status of the original).
func dupFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", derr)
	}
	return fd, nil
}

// session is one proxied connection pair owned by a loop. Only the loop
// goroutine touches its fields after add, except closeReq.
type session struct {
	lp       *evloop
	b        *backend
	srv      *server
	h        *loopConn
	id       int32  // slot in evloop.sess, -1 before add
	gen      int32  // registration generation, in the epoll data with the side
	fd       [2]int // client, server
	interest [2]uint32
	dir      [2]direction // 0: client→server (reads fd[0]), 1: server→client
	to       [2]int64     // inactivity timeout of each direction: client, server
	last     int64        // loop clock of the last byte moved
	ended    bool
	closeReq atomic.Bool
}

type direction struct {
	pend     []byte // read but not yet written to the peer
	off      int    // pend[off:] is left
	pipe     *spipe // splice mode
	inPipe   int    // bytes in pipe not yet written to the peer
	full     int    // bulk reads in a row
	eof      bool   // the source sent EOF
	deferred bool   // read bytes wait in the loop's outq
	shut     bool   // EOF forwarded: shutdown(SHUT_WR) on the peer
	// hup: the source reported EPOLLHUP (its FIN in, ours out) while the
	// direction waited for its peer; the socket left the epoll set (HUP
	// is reported whatever the interest) and is read as the peer drains.
	hup bool
}

func (d *direction) paused() bool { return d.inPipe > 0 || d.off < len(d.pend) }

// limit is the inactivity timeout of the session: the shortest among the
// directions still open.
func (ss *session) limit() int64 {
	lim := int64(math.MaxInt64)
	for k := range ss.dir {
		if !ss.dir[k].shut && ss.to[k] < lim {
			lim = ss.to[k]
		}
	}
	return lim
}

type spipe struct{ r, w int }

// outRef is a deferred write: arena[off:off+n] read by direction k of ss.
type outRef struct {
	ss     *session
	k      int
	off, n int
}

// loopConn stands for a loop session in LB.conns and server.conns, so that
// Close and shutdown_on_down end it; Close asks the loop to end the session.
type loopConn struct {
	s            *session
	laddr, raddr net.Addr
}

var errLoopConn = errors.New("lb: tcp session is owned by the event loop")

func (h *loopConn) Read([]byte) (int, error)         { return 0, errLoopConn }
func (h *loopConn) Write([]byte) (int, error)        { return 0, errLoopConn }
func (h *loopConn) Close() error                     { h.s.lp.requestClose(h.s); return nil }
func (h *loopConn) LocalAddr() net.Addr              { return h.laddr }
func (h *loopConn) RemoteAddr() net.Addr             { return h.raddr }
func (h *loopConn) SetDeadline(time.Time) error      { return errLoopConn }
func (h *loopConn) SetReadDeadline(time.Time) error  { return errLoopConn }
func (h *loopConn) SetWriteDeadline(time.Time) error { return errLoopConn }

// evloop is one event loop goroutine and its epoll set.
type evloop struct {
	l    *LB
	epfd int
	efd  int      // eventfd: new sessions, close requests, Close
	file *os.File // epfd in the Go netpoller
	rc   syscall.RawConn

	woken  atomic.Bool
	mu     sync.Mutex
	addq   []*session
	closeq []*session
	done   bool // the loop has exited: add fails

	// loop goroutine only
	sess        []*session
	free        []int32
	freeLater   []int32
	buf         []byte
	events      []unix.EpollEvent
	pipes       []*spipe
	base        time.Time
	now         int64 // loop clock: nanoseconds since base
	nextScan    int64 // no session times out before this
	deadline    int64 // read deadline set on file (MaxInt64: none)
	quit        bool
	spliceAfter int
	again       bool               // the last pump stopped at EAGAIN (drain)
	gen         int32              // last session generation
	batch       bool               // defer small writes to the end of the batch
	arena       []byte             // bytes read in this batch, not yet written
	outq        []outRef           // deferred writes, in read order
	pollFn      func(uintptr) bool // lp.poll, allocated once
	polled      int                // events returned by pollFn
}

func newEvloop(l *LB) (*evloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	// Non-blocking, so os.NewFile registers it in the netpoller.
	file := os.NewFile(uintptr(epfd), "lb-epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		unix.Close(efd)
		return nil, err
	}
	lp := &evloop{l: l, epfd: epfd, efd: efd, file: file, rc: rc, buf: make([]byte, loopBufSize),
		events: make([]unix.EpollEvent, loopEvents), base: time.Now(),
		nextScan: math.MaxInt64, deadline: math.MaxInt64, spliceAfter: spliceAfter}
	lp.pollFn = lp.poll
	if tcpPath() != "loop-immediate" {
		lp.batch = true
		lp.arena = make([]byte, arenaSize)
	}
	l.wg.Add(1)
	go lp.run()
	return lp, nil
}

func (lp *evloop) clock() int64 { return int64(time.Since(lp.base)) }

var wakeOne = [8]byte{1} // eventfd counter increment, little endian

// wake makes the loop look at its queues and at the LB's context. The
// eventfd is written under mu, so never after shutdown closed it.
func (lp *evloop) wake() {
	lp.mu.Lock()
	lp.wakeLocked()
	lp.mu.Unlock()
}

func (lp *evloop) wakeLocked() {
	if !lp.done && !lp.woken.Swap(true) {
		unix.Write(lp.efd, wakeOne[:])
	}
}

// add queues a session for the loop; false when the loop has exited.
func (lp *evloop) add(ss *session) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.done {
		return false
	}
	lp.addq = append(lp.addq, ss)
	lp.wakeLocked()
	return true
}

func (lp *evloop) requestClose(ss *session) {
	ss.closeReq.Store(true)
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.done {
		lp.closeq = append(lp.closeq, ss)
		lp.wakeLocked()
	}
}

func (lp *evloop) run() {
	defer lp.l.wg.Done()
	stop := context.AfterFunc(lp.l.ctx, lp.wake)
	defer stop()
	for !lp.quit {
		n := lp.wait()
		lp.now = lp.clock()
		for i := range n {
			ev := &lp.events[i]
			if ev.Fd < 0 {
				lp.drainWake()
				continue
			}
			// A socket closed by a session that ended can still be
			// reported while a forked child (exec health check) holds it
			// until its exec: the generation tells it from the slot's
			// new session.
			if ss := lp.sess[ev.Fd]; ss != nil && ss.gen == ev.Pad>>1 {
				lp.onEvent(ss, int(ev.Pad&1), ev.Events)
			}
		}
		lp.flushBatch()
		// Slots of sessions ended in this batch are reused only now, so a
		// later event of the batch cannot reach a new session.
		lp.free = append(lp.free, lp.freeLater...)
		lp.freeLater = lp.freeLater[:0]
		if lp.now >= lp.nextScan {
			lp.scan()
		}
	}
	lp.shutdown()
}

// wait returns the number of ready events, parking the goroutine in the
// netpoller while there are none, until the next timeout is due.
func (lp *evloop) wait() int {
	if lp.nextScan != lp.deadline {
		lp.deadline = lp.nextScan
		var t time.Time
		if lp.deadline != math.MaxInt64 {
			t = lp.base.Add(time.Duration(lp.deadline))
		}
		lp.file.SetReadDeadline(t)
	}
	lp.polled = 0
	err := lp.rc.Read(lp.pollFn)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// The epoll fd was closed under us: nothing else can work.
		lp.l.log.Error("tcp event loop: wait failed, closing its sessions", "err", err)
		lp.quit = true
		return 0
	}
	return lp.polled
}

// poll is the callback of RawConn.Read: true when events are ready.
func (lp *evloop) poll(uintptr) bool {
	n, err := rawEpollPoll(lp.epfd, lp.events)
	lp.polled = n
	return n > 0 || (err != nil && err != unix.EINTR)
}

func (lp *evloop) drainWake() {
	var b [8]byte
	unix.Read(lp.efd, b[:])
	lp.woken.Store(false)
	lp.mu.Lock()
	addq, closeq := lp.addq, lp.closeq
	lp.addq, lp.closeq = nil, nil
	lp.mu.Unlock()
	for _, ss := range addq {
		lp.register(ss)
	}
	for _, ss := range closeq {
		if ss.id >= 0 && !ss.ended {
			lp.end(ss)
		}
	}
	if lp.l.ctx.Err() != nil {
		lp.quit = true
	}
}

func (lp *evloop) register(ss *session) {
	if len(lp.free) > 0 {
		ss.id = lp.free[len(lp.free)-1]
		lp.free = lp.free[:len(lp.free)-1]
		lp.sess[ss.id] = ss
	} else {
		ss.id = int32(len(lp.sess))
		lp.sess = append(lp.sess, ss)
	}
	ss.last = lp.now
	lp.gen = (lp.gen + 1) & (math.MaxInt32 >> 1)
	ss.gen = lp.gen
	for k, fd := range ss.fd {
		ss.interest[k] = unix.EPOLLIN
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: ss.id, Pad: ss.gen<<1 | int32(k)}); err != nil {
			lp.l.log.Warn("tcp event loop: epoll_ctl", "err", err)
			lp.end(ss)
			return
		}
	}
	if ss.closeReq.Load() {
		lp.end(ss)
		return
	}
	lp.nextScan = min(lp.nextScan, ss.last+ss.limit())
}

// onEvent handles the events of side k (0 client, 1 server) of a session.
func (lp *evloop) onEvent(ss *session, k int, ev uint32) {
	acted := false
	if ss.interest[k]&unix.EPOLLIN != 0 && ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		acted = true
		if !ss.dir[k].deferred && !lp.pump(ss, k) {
			return
		}
	}
	if ss.interest[k]&unix.EPOLLOUT != 0 && ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		acted = true
		if !lp.flush(ss, 1-k) || !lp.drain(ss, 1-k) {
			return
		}
	}
	if !acted && ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		if ev&unix.EPOLLERR == 0 && !ss.dir[k].eof {
			// HUP while direction k waits for its peer to drain (so it
			// was not reading): the source closed and we shut our side,
			// but what it sent is still to be read and forwarded. HUP
			// is reported whatever the interest (level-triggered: for
			// ever), so take the socket out of the epoll set and read
			// it as the peer drains (onEvent's EPOLLOUT, drain).
			ss.dir[k].hup = true
			ss.interest[k] = 0
			unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, ss.fd[k], nil)
			lp.drain(ss, k)
			return
		}
		// Nothing to read or write on a dead socket (level-triggered:
		// it would be reported forever).
		lp.end(ss)
	}
}

// drain reads direction k's source after its HUP (no more epoll events
// for it) until the direction waits for its peer again or forwarded EOF.
// False: the session ended.
func (lp *evloop) drain(ss *session, k int) bool {
	d := &ss.dir[k]
	for d.hup && !ss.ended && !d.eof && !d.paused() && !d.deferred {
		lp.again = false
		if !lp.pump(ss, k) {
			return false
		}
		if lp.again {
			// Cannot happen after a HUP (a read returns data or EOF);
			// were it to, the timeout scan ends the session.
			return true
		}
	}
	return !ss.ended
}

func again(err error) bool { return err == unix.EAGAIN || err == unix.EINTR }

// pump moves what direction k's source has to the peer: reads once, and
// again while reads come back full, at most maxPumps times (fairness). False:
// the session ended.
func (lp *evloop) pump(ss *session, k int) bool {
	d := &ss.dir[k]
	src, dst := ss.fd[k], ss.fd[1-k]
	for range maxPumps {
		if d.pipe != nil {
			n, err := rawSplice(src, d.pipe.w, pipeSize)
			switch {
			case n > 0:
				d.inPipe = n
				ss.last = lp.now
				if !lp.flush(ss, k) {
					return false
				}
				if d.paused() || n < bigRead {
					return true
				}
				continue
			case err == nil:
				return lp.eof(ss, k)
			case again(err):
				lp.again = true
				return true
			}
			lp.end(ss)
			return false
		}
		buf, used, inArena := lp.buf, 0, false
		if lp.batch && !d.hup { // a hup source is read only by drain, never again after the batch
			if q := len(lp.outq); q > 0 {
				used = lp.outq[q-1].off + lp.outq[q-1].n
			}
			if inArena = len(lp.arena)-used >= loopBufSize; inArena {
				buf = lp.arena[used : used+loopBufSize]
			}
		}
		n, err := rawRead(src, buf)
		if inArena && n > 0 && n < bigRead {
			// A small read: written with the others at the end of the
			// batch, so the receivers are woken once for many.
			ss.last = lp.now
			d.full = 0
			d.deferred = true
			lp.outq = append(lp.outq, outRef{ss: ss, k: k, off: used, n: n})
			return true
		}
		switch {
		case n > 0:
			ss.last = lp.now
			w, err := rawWrite(dst, buf[:n])
			if err != nil {
				if !again(err) {
					lp.end(ss)
					return false
				}
				w = 0
			}
			if w < n {
				d.pend = append(d.pend[:0], buf[w:n]...)
				d.off = 0
				lp.setInterest(ss)
				return true
			}
			if n < bigRead {
				d.full = 0
				return true
			}
			if d.full++; d.full >= lp.spliceAfter {
				if p, err := lp.getPipe(); err == nil {
					d.pipe = p
					d.pend = nil
				}
			}
			continue
		case n == 0 && err == nil:
			return lp.eof(ss, k)
		case again(err):
			lp.again = true
			return true
		}
		lp.end(ss)
		return false
	}
	return true
}

// The loop's sockets and pipes are non-blocking: their system calls skip
// the runtime's blocking-syscall bookkeeping (RawSyscall).

func rawRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawSplice(in, out, n int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawEpollPoll returns the ready events without waiting (epoll_pwait with
// a zero timeout: arm64 has no epoll_wait).
func rawEpollPoll(epfd int, evs []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// flushBatch writes the small reads of the batch to their peers.
func (lp *evloop) flushBatch() {
	for i := range lp.outq {
		o := &lp.outq[i]
		ss := o.ss
		o.ss = nil
		if ss.ended {
			continue
		}
		d := &ss.dir[o.k]
		d.deferred = false
		p := lp.arena[o.off : o.off+o.n]
		w, err := rawWrite(ss.fd[1-o.k], p)
		if err != nil {
			if !again(err) {
				lp.end(ss)
				continue
			}
			w = 0
		}
		if w < len(p) {
			d.pend = append(d.pend[:0], p[w:]...)
			d.off = 0
			lp.setInterest(ss)
		}
	}
	lp.outq = lp.outq[:0]
}

// eof: direction k's source sent EOF.
func (lp *evloop) eof(ss *session, k int) bool {
	ss.dir[k].eof = true
	return lp.flush(ss, k)
}

// flush writes what direction k holds to the peer, forwards EOF once all
// is written, and updates the epoll interest. False: the session ended.
func (lp *evloop) flush(ss *session, k int) bool {
	d := &ss.dir[k]
	dst := ss.fd[1-k]
	var err error
	if d.inPipe > 0 {
		var n int
		n, err = rawSplice(d.pipe.r, dst, d.inPipe)
		if n > 0 {
			d.inPipe -= n
			ss.last = lp.now
		}
	} else if d.off < len(d.pend) {
		var n int
		n, err = rawWrite(dst, d.pend[d.off:])
		if n > 0 {
			d.off += n
			ss.last = lp.now
		}
		if d.off == len(d.pend) {
			d.pend, d.off = nil, 0 // idle sessions hold no buffer
		}
	}
	if err != nil && !again(err) {
		lp.end(ss)
		return false
	}
	if d.eof && !d.shut && !d.paused() {
		d.shut = true
		unix.Shutdown(dst, unix.SHUT_WR)
		if ss.dir[1-k].shut {
			lp.end(ss)
			return false
		}
	}
	lp.setInterest(ss)
	return true
}

func (lp *evloop) setInterest(ss *session) {
	for k, fd := range ss.fd {
		if ss.dir[k].hup {
			continue // out of the epoll set
		}
		var want uint32
		if !ss.dir[k].eof && !ss.dir[k].paused() {
			want |= unix.EPOLLIN
		}
		if ss.dir[1-k].paused() {
			want |= unix.EPOLLOUT
		}
		if want != ss.interest[k] {
			ss.interest[k] = want
			unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: want, Fd: ss.id, Pad: ss.gen<<1 | int32(k)})
		}
	}
}

// end closes the session's sockets and releases its accounting.
func (lp *evloop) end(ss *session) {
	if ss.ended {
		return
	}
	ss.ended = true
	if ss.id >= 0 && lp.sess[ss.id] == ss {
		lp.sess[ss.id] = nil
		lp.freeLater = append(lp.freeLater, ss.id)
	}
	for k := range ss.fd {
		unix.Close(ss.fd[k])
		d := &ss.dir[k]
		if d.pipe != nil {
			if d.inPipe == 0 {
				lp.putPipe(d.pipe)
			} else {
				unix.Close(d.pipe.r)
				unix.Close(d.pipe.w)
			}
			d.pipe = nil
		}
		d.pend = nil
	}
	lp.l.trackConn(ss.h, false)
	ss.srv.track(ss.h, false)
	ss.b.release(ss.srv)
}

// scan ends the sessions past their inactivity timeout and computes when
// the next one can be.
func (lp *evloop) scan() {
	next := int64(math.MaxInt64)
	for _, ss := range lp.sess {
		if ss == nil {
			continue
		}
		lim := ss.limit()
		if lim == math.MaxInt64 {
			continue
		}
		if dl := ss.last + lim; dl <= lp.now {
			lp.end(ss)
		} else if dl < next {
			next = dl
		}
	}
	lp.nextScan = next
}

func (lp *evloop) getPipe() (*spipe, error) {
	if n := len(lp.pipes); n > 0 {
		p := lp.pipes[n-1]
		lp.pipes = lp.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize) // a smaller pipe works too
	return &spipe{r: fds[0], w: fds[1]}, nil
}

func (lp *evloop) putPipe(p *spipe) {
	if len(lp.pipes) < maxIdlePipes {
		lp.pipes = append(lp.pipes, p)
		return
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// shutdown ends every session when the LB closes; later adds fail.
func (lp *evloop) shutdown() {
	lp.mu.Lock()
	lp.done = true
	addq := lp.addq
	lp.addq, lp.closeq = nil, nil
	lp.mu.Unlock()
	for _, ss := range lp.sess {
		if ss != nil {
			lp.end(ss)
		}
	}
	for _, ss := range addq {
		lp.end(ss)
	}
	for _, p := range lp.pipes {
		unix.Close(p.r)
		unix.Close(p.w)
	}
	lp.pipes = nil
	lp.file.Close()
	lp.mu.Lock()
	unix.Close(lp.efd)
	lp.mu.Unlock()
}
