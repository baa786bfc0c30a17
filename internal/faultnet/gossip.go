package faultnet

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// WrapTransport puts the Net's rules under a memberlist transport (normally
// a *memberlist.NetTransport bound to the host's IP): packets to and from
// cut peers are dropped, stream dials over a cut link fail, streams from
// cut peers are closed, and open streams are closed when their link is cut.
// Stream dials go out from the host's IP (NetTransport's own dialer would
// use 127.0.0.1 as the source address on loopback).
func (h *Host) WrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	g := &gossipTransport{NodeAwareTransport: t, h: h, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	g.wg.Add(2)
	go g.forwardPackets()
	go g.forwardStreams()
	return g
}

type gossipTransport struct {
	memberlist.NodeAwareTransport
	h        *Host
	packets  chan *memberlist.Packet
	streams  chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
}

func (g *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return g.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (g *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if !g.h.n.CanSend(g.h.ip, a.Addr) {
		g.h.n.mu.Lock()
		g.h.n.stats.PacketsDropped++
		g.h.n.mu.Unlock()
		return time.Now(), nil // lost on the way, as UDP is
	}
	return g.NodeAwareTransport.WriteToAddress(b, a)
}

func (g *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return g.h.DialTimeout("tcp", addr, timeout)
}

func (g *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return g.h.DialTimeout("tcp", a.Addr, timeout)
}

func (g *gossipTransport) PacketCh() <-chan *memberlist.Packet { return g.packets }
func (g *gossipTransport) StreamCh() <-chan net.Conn           { return g.streams }

// Shutdown stops the inner transport first (its listener goroutines may be
// blocked handing us a packet, so the forwarders keep draining until it
// returned), then the forwarders.
func (g *gossipTransport) Shutdown() error {
	err := g.NodeAwareTransport.Shutdown()
	g.shutOnce.Do(func() { close(g.done) })
	g.wg.Wait()
	return err
}

func (g *gossipTransport) forwardPackets() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.PacketCh()
	for {
		select {
		case <-g.done:
			return
		case p := <-in:
			if p == nil {
				continue
			}
			if p.From != nil && !g.h.n.CanSend(p.From.String(), g.h.ip) {
				g.h.n.mu.Lock()
				g.h.n.stats.PacketsDropped++
				g.h.n.mu.Unlock()
				continue
			}
			select {
			case g.packets <- p:
			case <-g.done:
				return
			}
		}
	}
}

func (g *gossipTransport) forwardStreams() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.StreamCh()
	for {
		select {
		case <-g.done:
			return
		case c := <-in:
			if c == nil {
				continue
			}
			tc := g.h.adopt(c)
			if tc == nil {
				continue
			}
			select {
			case g.streams <- tc:
			case <-g.done:
				_ = tc.Close()
				return
			}
		}
	}
}
