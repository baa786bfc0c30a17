// Package labcluster runs paceline agents on the hosts of a lab (package
// lab): it writes each host's agent config, a shared join token and a
// cluster CA with one certificate per host, starts the agents inside the
// hosts, and hands out API clients. `paceline lab up`, the end-to-end
// tests and the benchmarks use it, so they all run the same cluster.
package labcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/tlsutil"
)

// Cluster name used in labs.
const ClusterName = "lab"

// Options tune the agents.
type Options struct {
	// Exe is the paceline binary (default: this executable).
	Exe string
	// Lease is the hold lease (default: the agent's default).
	Lease time.Duration
	// LogLevel of the agents (default info).
	LogLevel string
}

func tlsDir(l *lab.Lab) string { return filepath.Join(l.StateDir(), "tls") }

// Prepare creates the CA, the host certificates and the join token (once).
func Prepare(l *lab.Lab) error {
	dir := tlsDir(l)
	if _, err := os.Stat(filepath.Join(dir, tlsutil.CACertFile)); err != nil {
		if err := tlsutil.InitCA(dir, ClusterName, false); err != nil {
			return err
		}
	}
	for _, h := range l.Hosts() {
		if _, err := os.Stat(filepath.Join(dir, h.Name+".crt")); err == nil {
			continue
		}
		if err := tlsutil.Issue(dir, dir, h.Name, []string{h.Addr.String()}, 0); err != nil {
			return err
		}
	}
	tok := filepath.Join(l.StateDir(), "join.token")
	if _, err := os.Stat(tok); err != nil {
		if err := os.WriteFile(tok, []byte(fmt.Sprintf("lab-%d\n", time.Now().UnixNano())), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// DataDir is a host's agent data dir.
func DataDir(l *lab.Lab, h *lab.Host) string { return filepath.Join(l.StateDir(), h.Name, "data") }

// StartAgent writes h's config and starts its agent inside h.
func StartAgent(l *lab.Lab, h *lab.Host, o Options) error {
	if err := Prepare(l); err != nil {
		return err
	}
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	var join []string
	for _, x := range l.Hosts() {
		join = append(join, fmt.Sprintf("%q", x.Addr.String()+":7480"))
	}
	expect := 3
	if n := len(l.Hosts()); n < 3 {
		expect = 1
	}
	lease := ""
	if o.Lease > 0 {
		lease = fmt.Sprintf("lease: {duration: %s, margin: %s}\n", o.Lease, o.Lease/10)
	}
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	dir := tlsDir(l)
	cfg := fmt.Sprintf(`nodeName: %s
clusterName: %s
role: control
bindAddr: %s
dataDir: %s
join: [%s]
bootstrapExpect: %d
joinTokenFile: %s
tls: {ca: %s, cert: %s, key: %s}
logLevel: %s
agents: {rscTmp: %s}
%s`, h.Name, ClusterName, h.Addr, DataDir(l, h), strings.Join(join, ", "), expect, filepath.Join(l.StateDir(), "join.token"),
		filepath.Join(dir, "ca.crt"), filepath.Join(dir, h.Name+".crt"), filepath.Join(dir, h.Name+".key"), level,
		filepath.Join(DataDir(l, h), "rsctmp"), lease)
	path := filepath.Join(l.StateDir(), h.Name, "agent.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	_, err := l.Start(h, "agent", []string{exe, "agent", "--config", path}, nil)
	return err
}

// Client returns an API client for the lab's agents, reachable from the
// root namespace only through a host (use lab.Exec) — so this client is for
// code running inside a host's namespace, or via ExecClient.
func Client(l *lab.Lab) (*api.Client, error) {
	pem, err := os.ReadFile(filepath.Join(tlsDir(l), "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var addrs []string
	for _, h := range l.Hosts() {
		addrs = append(addrs, h.Addr.String()+":7480")
	}
	tok, err := OperatorToken(l)
	if err != nil {
		return nil, err
	}
	return api.NewClient(addrs, tok, &tls.Config{RootCAs: pool}), nil
}

// OperatorToken finds the operator token the bootstrap leader wrote.
func OperatorToken(l *lab.Lab) (string, error) {
	for _, h := range l.Hosts() {
		b, err := os.ReadFile(filepath.Join(DataDir(l, h), "operator.token"))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	return "", fmt.Errorf("no operator token yet in any host's data dir (is the cluster up?)")
}

// CLIEnv returns the environment a `paceline` client command needs inside
// a lab host (ip netns exec NS paceline status).
func CLIEnv(l *lab.Lab) []string {
	tok, _ := OperatorToken(l)
	var addrs []string
	for _, h := range l.Hosts() {
		addrs = append(addrs, h.Addr.String()+":7480")
	}
	return []string{"PACELINE_ADDR=" + strings.Join(addrs, ","), "PACELINE_TOKEN=" + tok, "PACELINE_CA=" + filepath.Join(tlsDir(l), "ca.crt")}
}

// WaitReady waits until a leader answers status inside the lab (run from a
// host namespace via lab.Exec of `paceline status --json`).
func WaitReady(ctx context.Context, l *lab.Lab, exe string) error {
	for {
		if _, err := OperatorToken(l); err == nil {
			h := l.Hosts()[0]
			args := append([]string{"env"}, CLIEnv(l)...)
			args = append(args, exe, "status", "--json", "--timeout", "2s")
			if out, err := l.Exec(ctx, h, args...); err == nil && strings.Contains(string(out), `"quorum": true`) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab cluster not ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CLI runs `exe ARGS...` (a paceline client command) inside h with the
// lab's token and CA, talking to h's own agent first and then to the
// others, so that it answers under a partition that leaves h in the
// majority and does not wait for a dial timeout to a killed first host.
func CLI(ctx context.Context, l *lab.Lab, exe string, h *lab.Host, args ...string) ([]byte, error) {
	addrs := []string{h.Addr.String() + ":7480"}
	for _, x := range l.Hosts() {
		if x.Name != h.Name {
			addrs = append(addrs, x.Addr.String()+":7480")
		}
	}
	argv := append([]string{"env"}, CLIEnv(l)...)
	argv = append(argv, "PACELINE_ADDR="+strings.Join(addrs, ","), exe)
	return l.Exec(ctx, h, append(argv, args...)...)
}

// Status runs `paceline status --json` inside h (see CLI).
func Status(ctx context.Context, l *lab.Lab, exe string, h *lab.Host) (*api.Status, error) {
	out, err := CLI(ctx, l, exe, h, "status", "--json", "--timeout", "3s")
	if err != nil {
		return nil, err
	}
	var st api.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("status on %s: %w: %.300s", h.Name, err, out)
	}
	return &st, nil
}

// Holders lists the nodes where resource res has a running instance
// according to st.
func Holders(st *api.Status, res string) []string {
	var out []string
	for _, r := range st.Resources {
		if r.Name != res {
			continue
		}
		for _, i := range r.Instances {
			if i.State == "running" {
				out = append(out, i.Node)
			}
		}
	}
	return out
}

// Online reports how many nodes st shows online, and whether a leader with
// quorum answered.
func Online(st *api.Status) (online int, quorum bool) {
	for _, n := range st.Nodes {
		if n.Online {
			online++
		}
	}
	return online, st.Quorum && st.Leader != ""
}
