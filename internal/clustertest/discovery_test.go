package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/paceline/paceline/internal/discovery"
)

// lookupA asks server for the A records of name (sorted addresses).
func lookupA(server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := cl.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// readOnlyToken reads DATADIR/readonly.token from whichever node wrote it.
func (c *Cluster) readOnlyToken() string {
	c.T.Helper()
	var tok string
	c.Wait("readonly.token", func() bool {
		for _, n := range c.Nodes {
			if b, err := os.ReadFile(filepath.Join(n.Cfg.DataDir, "readonly.token")); err == nil && len(b) > 0 {
				tok = strings.TrimSpace(string(b))
				return true
			}
		}
		return false
	})
	return tok
}

// waitA waits until the DNS server on n answers name with exactly want.
func (c *Cluster) waitA(n *Node, name string, want ...string) {
	c.T.Helper()
	slices.Sort(want)
	var got []string
	var err error
	if perr := c.poll(Patience, func() bool {
		got, err = lookupA(n.Cfg.Discovery.DNS, name)
		return err == nil && slices.Equal(got, want)
	}); perr != nil {
		c.T.Fatalf("%s's DNS for %s: got %v (err %v), want %v", n.Name, name, got, err, want)
	}
}

// follower returns a running node that neither leads nor is in except.
func (c *Cluster) follower(except ...*Node) *Node {
	c.T.Helper()
	var f *Node
	c.Wait("a follower", func() bool {
		l := c.Leader(c.Others(except...)...)
		for _, n := range c.Others(except...) {
			if n != l && n.Running() {
				f = n
				return true
			}
		}
		return false
	})
	return f
}

func TestDiscoveryDNSAndHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	t.Cleanup(c.CheckNoOverlap)
	// Restart every node with its DNS server on a free port of its address.
	for _, n := range c.Nodes {
		n.Crash()
	}
	for _, n := range c.Nodes {
		n.Cfg.Discovery.DNS = net.JoinHostPort(n.IP, strconv.Itoa(freePorts(t, n.IP, 1)[0]))
		n.Start()
	}
	c.WaitReady(c.Nodes...)
	c.WaitLeader()
	c.Apply(c.Spec(""), "discovery")
	h := c.WaitPlaced(3)

	f := c.follower(h)
	c.Logf("holder %s, asking follower %s", h.Name, f.Name)
	c.waitA(f, Exclusive+".service.paceline", h.IP)
	c.waitA(f, Clone+".service.paceline", c.Nodes[0].IP, c.Nodes[1].IP, c.Nodes[2].IP)
	c.waitA(f, h.Name+".node.paceline", h.IP)

	// The same over HTTP on the follower (read-only token).
	ro := c.readOnlyToken()
	get := func(n *Node, path, tok string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+n.APIAddr()+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		cl := &http.Client{Timeout: 5 * time.Second}
		defer cl.CloseIdleConnections()
		resp, err := cl.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get(f, "/v1/discovery/services/"+Exclusive, ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", code, body)
	}
	var svc discovery.Service
	c.Wait("HTTP discovery on the follower", func() bool {
		code, body := get(f, "/v1/discovery/services/"+Exclusive+"?healthy=true", ro)
		svc = discovery.Service{}
		return code == http.StatusOK && json.Unmarshal(body, &svc) == nil && svc.Healthy == 1 &&
			len(svc.Instances) == 1 && svc.Instances[0].Node == h.Name && svc.Instances[0].Address == h.IP
	})
	if code, body := get(f, "/v1/discovery/services/nope", ro); code != http.StatusNotFound {
		t.Fatalf("unknown service: %d %s", code, body)
	}

	// The holder crashes: the answer moves to the new holder.
	c.Logf("crashing the holder %s", h.Name)
	h.Crash()
	nh := c.WaitPlaced(2)
	if nh == h {
		t.Fatalf("the crashed node %s still runs %s", h.Name, Exclusive)
	}
	f2 := c.follower(h)
	c.Logf("new holder %s, asking follower %s", nh.Name, f2.Name)
	c.waitA(f2, Exclusive+".service.paceline", nh.IP)
	others := c.Others(h)
	c.waitA(f2, Clone+".service.paceline", others[0].IP, others[1].IP)
}
