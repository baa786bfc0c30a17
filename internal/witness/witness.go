// Package witness records who holds an exclusive resource, as seen from
// outside: the resource (a sample service) sends "host epoch" lines over
// TCP every few milliseconds; the server stamps each with its own clock.
// From the record, Analyze finds overlaps (two hosts active at once — an
// I1 violation) and gaps (downtime).
package witness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Write is one received line.
type Write struct {
	At    time.Time
	Host  string
	Epoch uint64
}

// Server receives writes.
type Server struct {
	ln     net.Listener
	mu     sync.Mutex
	writes []Write
	wg     sync.WaitGroup
	conns  map[net.Conn]bool
	closed bool
}

// Listen starts a server on addr (e.g. "10.77.0.1:9999" or "127.0.0.1:0").
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("witness listen: %w", err)
	}
	s := &Server{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		ep, _ := strconv.ParseUint(f[1], 10, 64)
		w := Write{At: time.Now(), Host: f[0], Epoch: ep}
		s.mu.Lock()
		s.writes = append(s.writes, w)
		s.mu.Unlock()
	}
}

// Writes returns a copy of the record.
func (s *Server) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Write(nil), s.writes...)
}

// Close stops the server.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Report summarises a record.
type Report struct {
	Writes int
	// Overlap is the total time two or more hosts were active at once.
	Overlap time.Duration
	// Overlaps lists each overlapping pair of intervals.
	Overlaps []string
	// Intervals are the activity intervals per host in time order.
	Intervals []Interval
}

// Interval is a period in which one host wrote at least every maxGap.
type Interval struct {
	Host       string
	Epoch      uint64
	Start, End time.Time
}

// Analyze builds activity intervals (a host is active from a write until
// its next write if that comes within maxGap, else until the write itself)
// and reports overlaps between different hosts.
func Analyze(ws []Write, maxGap time.Duration) Report {
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].At.Before(ws[j].At) })
	r := Report{Writes: len(ws)}
	open := map[string]*Interval{}
	var all []Interval
	for _, w := range ws {
		iv := open[w.Host]
		if iv != nil && w.At.Sub(iv.End) <= maxGap {
			iv.End = w.At
			continue
		}
		if iv != nil {
			all = append(all, *iv)
		}
		open[w.Host] = &Interval{Host: w.Host, Epoch: w.Epoch, Start: w.At, End: w.At}
	}
	for _, iv := range open {
		all = append(all, *iv)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	r.Intervals = all
	for i := range all {
		for j := i + 1; j < len(all) && !all[j].Start.After(all[i].End); j++ {
			if all[i].Host == all[j].Host {
				continue
			}
			end := all[i].End
			if all[j].End.Before(end) {
				end = all[j].End
			}
			d := end.Sub(all[j].Start)
			if d >= 0 {
				r.Overlap += d
				r.Overlaps = append(r.Overlaps, fmt.Sprintf("%s(epoch %d) and %s(epoch %d) both active for %v from %s", all[i].Host, all[i].Epoch, all[j].Host, all[j].Epoch, d, all[j].Start.Format("15:04:05.000")))
			}
		}
	}
	return r
}

// FirstWriteAfter returns the first write at or after t by a host other
// than not ("" = any host).
func FirstWriteAfter(ws []Write, t time.Time, not string) (Write, bool) {
	for _, w := range ws {
		if !w.At.Before(t) && w.Host != not {
			return w, true
		}
	}
	return Write{}, false
}

// Send connects to addr and writes "host epoch" every period until ctx ends,
// reconnecting on errors.
func Send(ctx context.Context, addr, host string, epoch uint64, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	var c net.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	line := []byte(fmt.Sprintf("%s %d\n", host, epoch))
	for {
		if c == nil {
			d := net.Dialer{Timeout: period * 10}
			c, _ = d.DialContext(ctx, "tcp", addr)
		}
		if c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(period * 10))
			if _, err := c.Write(line); err != nil {
				c.Close()
				c = nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
