//go:build !linux

package lb

import (
	"net"
	"time"
)

// loopSet: the tcp event loop exists on Linux only (tcploop_linux.go);
// elsewhere every session takes the goroutine path.
type loopSet struct{}

func (*loopSet) handoff(*LB, *backend, *server, *net.TCPConn, *net.TCPConn, time.Duration, time.Duration) bool {
	return false
}
