package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/labcluster"
)

// TestJoinRefused starts an extra agent inside a host with a wrong join
// token, then with a wrong cluster name: each must exit with an error that
// says what to fix, and the cluster must not list it.
func TestJoinRefused(t *testing.T) {
	c := newCluster(t, "d")
	h := c.hosts[2]
	dir := c.l.StateDir()
	badTok := filepath.Join(dir, "pl-bad.token")
	if err := os.WriteFile(badTok, []byte("not-the-cluster-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, x := range c.hosts {
		join = append(join, fmt.Sprintf("%q", x.Addr.String()+":7480"))
	}
	cases := []struct {
		name, cluster, token string
		want                 []string
	}{
		{"wrong-token", labcluster.ClusterName, badTok, []string{"cannot join", "wrong or missing join token", "joinToken"}},
		{"wrong-cluster", "plother", filepath.Join(dir, "join.token"), []string{"cannot join", `belongs to cluster "lab"`, `clusterName "plother"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`nodeName: plbad
clusterName: %s
role: control
bindAddr: %s
ports: {api: 7490, raft: 7491, gossip: 7492, coarse: 7493}
dataDir: %s
join: [%s]
bootstrapExpect: 0
joinTokenFile: %s
tls: {ca: %s, cert: %s, key: %s}
`, tc.cluster, h.Addr, filepath.Join(dir, "pl-bad-"+tc.name), strings.Join(join, ", "), tc.token,
				filepath.Join(dir, "tls", "ca.crt"), filepath.Join(dir, "tls", h.Name+".crt"), filepath.Join(dir, "tls", h.Name+".key"))
			path := filepath.Join(dir, "pl-bad-"+tc.name+".yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// Exec runs it to completion inside h; the deadline kills it
			// if it never gives up.
			out, err := c.l.Exec(ctx, h, exe, "agent", "--config", path)
			if ctx.Err() != nil {
				t.Fatalf("agent with %s did not exit within the deadline:\n%s", tc.name, tail(out))
			}
			var xe *exec.ExitError
			if !errors.As(err, &xe) || xe.ExitCode() != 1 {
				t.Fatalf("agent with %s: want exit code 1, got %v:\n%s", tc.name, err, tail(out))
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("agent with %s: want %q in its output:\n%s", tc.name, w, tail(out))
				}
			}
			st, err := c.status(c.hosts[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range st.Nodes {
				if n.Name == "plbad" {
					t.Errorf("refused node is listed: %s", describe(st))
				}
			}
			if n, q := labcluster.Online(st); n != 3 || !q {
				t.Errorf("cluster disturbed by the refused node: %s", describe(st))
			}
		})
	}
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
