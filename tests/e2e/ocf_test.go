package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/labcluster"
)

// TestIPaddr2Failover drives Debian's real ocf:heartbeat:IPaddr2 through
// the whole stack in lab hosts: the address is configured on exactly one
// host, and when that host is crashed it comes up on another one.
func TestIPaddr2Failover(t *testing.T) {
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/IPaddr2"); err != nil {
		t.Skip("resource-agents not installed (apt-get install resource-agents)")
	}
	c := newCluster(t, "v")
	sub := c.l.Subnet()
	vip := sub.Addr()
	for i := 0; i < 200; i++ {
		vip = vip.Next()
	}
	doc := fmt.Sprintf(`apiVersion: paceline/v1
cluster: {name: %s}
resources:
  - name: vip
    class: ocf:heartbeat:IPaddr2
    params: {ip: %q, cidr_netmask: "%d", nic: %s}
    operations: [{name: monitor, interval: 2s}]
`, labcluster.ClusterName, vip.String(), sub.Bits(), c.hosts[0].Iface)
	out := c.mustCLI(c.hosts[0], "apply", "-f", c.writeSpec("vip", doc))
	if !strings.Contains(out, "applied as version") {
		t.Fatalf("apply:\n%s", out)
	}
	holders := func(except string) []string {
		var hs []string
		for _, h := range c.hosts {
			if h.Name == except {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			b, err := c.l.Exec(ctx, h, "ip", "-o", "-4", "addr", "show", "dev", h.Iface)
			cancel()
			if err == nil && strings.Contains(string(b), " "+vip.String()+"/") {
				hs = append(hs, h.Name)
			}
		}
		return hs
	}
	var first string
	waitFor(t, 60*time.Second, "the address on exactly one host", func() bool {
		hs := holders("")
		if len(hs) == 1 {
			first = hs[0]
		}
		return len(hs) == 1
	})
	st := c.waitStatus(c.other(first), 30*time.Second, "vip running on "+first, func(st *api.Status) bool {
		hs := labcluster.Holders(st, "vip")
		return len(hs) == 1 && hs[0] == first
	})
	t.Logf("vip %s on %s (%s)", vip, first, describe(st))
	if err := labcluster.Kill(c.l, c.host(first)); err != nil {
		t.Fatal(err)
	}
	var second string
	waitFor(t, 60*time.Second, "the address on one surviving host", func() bool {
		hs := holders(first)
		if len(hs) == 1 {
			second = hs[0]
		}
		return len(hs) == 1
	})
	t.Logf("after %s crashed the address is on %s", first, second)
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
