package process

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
)

// Output copying.
//
// The child's stdout/stderr are the write ends of os pipes; the parent keeps
// only the read ends. A reader goroutine per stream reads until EOF, which
// comes when the child *and every descendant* holding the write end have
// closed it. Done never depends on that: it depends only on cmd.Wait of the
// main child, and we never hand exec.Cmd a non-*os.File writer (which would
// make cmd.Wait wait for the copying).
//
// A slow or stuck Writer must not block the child: the reader hands chunks
// to a writer goroutine through a bounded queue and drops output (counting
// the bytes) when the queue is full, so the pipe is always drained.

const (
	outputChunk      = 32 << 10
	outputQueueDepth = 64 // chunks; bounds buffered output at 2 MiB per stream
)

// outputStream copies one pipe to one Writer.
type outputStream struct {
	name   string // "stdout" or "stderr", for logs
	r      *os.File
	w      io.Writer
	wmu    *sync.Mutex // shared by both streams of a Proc: Writes never run concurrently
	log    *slog.Logger
	queue  chan []byte
	readed chan struct{} // closed when the reader goroutine ended
	done   chan struct{} // closed when the writer goroutine ended
	close  sync.Once
}

func newOutputStream(name string, r *os.File, w io.Writer, wmu *sync.Mutex, log *slog.Logger) *outputStream {
	s := &outputStream{
		name:   name,
		r:      r,
		w:      w,
		wmu:    wmu,
		log:    log,
		queue:  make(chan []byte, outputQueueDepth),
		readed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.readLoop()
	go s.writeLoop()
	return s
}

func (s *outputStream) readLoop() {
	defer close(s.readed)
	defer close(s.queue)
	defer s.closeRead()
	var dropped int64
	buf := make([]byte, outputChunk)
	for {
		n, err := s.r.Read(buf)
		if n > 0 {
			chunk := make([]byte, n)
			copy(chunk, buf[:n])
			select {
			case s.queue <- chunk:
			default:
				dropped += int64(n)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				s.log.Warn("reading child output failed", "stream", s.name, "err", err)
			}
			break
		}
	}
	if dropped > 0 {
		s.log.Warn("dropped child output: writer too slow", "stream", s.name, "bytes", dropped)
	}
}

func (s *outputStream) writeLoop() {
	defer close(s.done)
	failed := false
	for chunk := range s.queue {
		if failed {
			continue // keep draining so the reader never blocks
		}
		s.wmu.Lock()
		_, err := s.w.Write(chunk)
		s.wmu.Unlock()
		if err != nil {
			failed = true
			s.log.Warn("writing child output failed; discarding the rest", "stream", s.name, "err", err)
		}
	}
}

// closeRead closes the read end. Called by the reader at EOF, or by Stop
// to cut off descendants that escaped the process group and still hold the
// write end; closing unblocks a pending Read (pipes use the netpoller).
func (s *outputStream) closeRead() {
	s.close.Do(func() { _ = s.r.Close() })
}
