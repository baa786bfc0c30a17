package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/paceline/paceline/api"
)

func TestRenderLB(t *testing.T) {
	var b bytes.Buffer
	renderLB(&b, &api.LoadBalancers{
		LoadBalancers: []api.LoadBalancerStatus{
			{Name: "api", Node: "h2", VIP: "plvip",
				Frontends: []api.LBFrontendStatus{{Name: "http", Bind: "10.0.0.200:8080", Addr: "10.0.0.200:8080", Mode: "http", Backend: "pool"},
					{Name: "tls", Bind: "10.0.0.200:8443", Mode: "http", Backend: "pool", Error: "bad cert"}},
				Servers: []api.LBServerStatus{{Backend: "pool", Name: "h2", Address: "10.0.0.12:9000", State: "down", Backup: true, Total: 3, Reason: "connection refused"}}},
			{Name: "db", VIP: "dbvip", Error: "runs on no node"},
		},
		Unreachable: map[string]string{"h3": "timeout"},
	})
	out := b.String()
	for _, want := range []string{
		"load balancer api on h2 (vip plvip)",
		"frontend http", "listening on 10.0.0.200:8080",
		"NOT LISTENING: bad cert",
		"server pool/h2", "DOWN backup", "total 3", "connection refused",
		"load balancer db nowhere (vip dbvip)", "error: runs on no node",
		"unreachable h3: timeout",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	b.Reset()
	renderLB(&b, &api.LoadBalancers{})
	if !strings.Contains(b.String(), "no load balancers") {
		t.Errorf("empty: %q", b.String())
	}
}
