package clustertest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// lbGet asks node n's load balancer; "" when it does not answer.
func lbGet(n *Node) string {
	a := n.Agent()
	if a == nil || a.LBManager() == nil {
		return ""
	}
	addr := a.LBManager().Addr("web", "http")
	if addr == nil {
		return ""
	}
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr.String() + "/")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return ""
	}
	return string(b)
}

// A load balancer without a VIP runs on every node; its backend follows
// the resource it names: when the node running it crashes, the resource
// starts elsewhere and every surviving load balancer sends there.
func TestLBFollowsResource(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test (-short)")
	}
	c := New(t, Options{N: 3})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, c.Nodes[0].IP, 1)[0]
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, fmt.Sprintf("%s=%s", n.Name, net.JoinHostPort(n.IP, fmt.Sprint(port))))
	}
	c.Apply(c.Spec(fmt.Sprintf(`  - name: web
    class: process
    params:
      command: [%q]
      env: {%s: http, CT_HTTP: %q}
loadBalancers:
  - name: web
    frontends: [{name: http, bind: "127.0.0.1:0", mode: http, backend: web}]
    backends:
      - name: web
        connectTimeout: 1s
        servers: [{resource: web, port: %d}]
`, exe, HelperEnv, strings.Join(addrs, ","), port)), "lb")
	var h *Node
	c.Wait("web running on one node and every load balancer sending there", func() bool {
		hs := c.Running("web")
		if len(hs) != 1 {
			return false
		}
		h = hs[0]
		for _, n := range c.Nodes {
			if lbGet(n) != h.Name {
				return false
			}
		}
		return true
	})
	c.Logf("web runs on %s; crashing it", h.Name)
	h.Crash()
	var nh *Node
	c.Wait("web on another node and the surviving load balancers sending there", func() bool {
		hs := c.Running("web")
		if len(hs) != 1 || hs[0] == h {
			return false
		}
		nh = hs[0]
		for _, n := range c.Others(h) {
			if lbGet(n) != nh.Name {
				return false
			}
		}
		return true
	})
	// The status API of a survivor lists both survivors' load balancers
	// with the one server, up.
	cl := c.Client(c.Others(h)...)
	c.Wait("status over the API", func() bool {
		st, err := cl.LoadBalancers(t.Context(), false)
		if err != nil {
			return false
		}
		k := 0
		for _, l := range st.LoadBalancers {
			if l.Name == "web" && len(l.Servers) == 1 && l.Servers[0].Name == nh.Name && l.Servers[0].State == "up" {
				k++
			}
		}
		return k == 2
	})
	// Every node reported starting its load balancer to the event log.
	c.Wait("lb-started events from every node", func() bool {
		started := map[string]bool{}
		for _, e := range nh.Events() {
			if e.Type == "lb-started" {
				started[e.Node] = true
			}
		}
		return len(started) == 3
	})
}
