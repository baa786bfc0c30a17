package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/config"
)

func witnessArgs(t testing.TB, args ...string) (config.Config, int, string) {
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	cfg, code := witnessConfig(e, args)
	return cfg, code, errb.String()
}

func TestWitnessConfigFromFlags(t *testing.T) {
	cfg, code, msg := witnessArgs(t, "--node-name", "w1", "--cluster-name", "site-a", "--join", "10.0.0.1:7480,10.0.0.2:7480",
		"--join-token", "x", "--bind", "10.0.0.3", "--raft-port", "9481", "--gossip-port", "9482")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if cfg.Role != config.RoleWitness || cfg.DataDir != DefaultWitnessDataDir || len(cfg.Join) != 2 || cfg.Ports.Raft != 9481 || cfg.Ports.Gossip != 9482 {
		t.Fatalf("config %+v", cfg)
	}
}

func TestWitnessConfigFileAndOverrides(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "witness.yaml")
	doc := "nodeName: w1\nclusterName: site-a\nbindAddr: 10.0.0.3\njoin: [10.0.0.1:7480]\njoinToken: x\ndataDir: /srv/w\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, code, msg := witnessArgs(t, "--config", f, "--node-name", "w2")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if cfg.NodeName != "w2" || cfg.DataDir != "/srv/w" || cfg.Role != config.RoleWitness {
		t.Fatalf("config %+v", cfg)
	}

	// A control node's config is not silently turned into a witness.
	ctl := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(ctl, []byte(doc+"role: control\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, code, msg := witnessArgs(t, "--config", ctl); code != ExitUsage || !strings.Contains(msg, `role: "control"`) {
		t.Fatalf("control config: exit %d: %s", code, msg)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(doc+"labels: {zone: a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, code, msg := witnessArgs(t, "--config", bad); code != ExitUsage || !strings.Contains(msg, "labels: a witness runs no resources") {
		t.Fatalf("labels: exit %d: %s", code, msg)
	}
	if _, code, msg := witnessArgs(t, "--config", filepath.Join(dir, "missing.yaml")); code != ExitUsage || !strings.Contains(msg, "read config") {
		t.Fatalf("missing file: exit %d: %s", code, msg)
	}
}

func TestWitnessConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-name", "w1", "--cluster-name", "c", "--join-token", "x"}, "join: required"},
		{[]string{"--cluster-name", "c", "--join", "10.0.0.1:7480", "--join-token", "x"}, "nodeName: required"},
		{[]string{"--node-name", "w1", "--cluster-name", "c", "--join", "10.0.0.1:7480"}, "joinTokenFile: required"},
		{[]string{"--node-name", "w1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		if _, code, msg := witnessArgs(t, tc.args...); code != ExitUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, ExitUsage, tc.want, msg)
		}
	}
}

// FuzzWitnessConfig: any argument list either yields a valid witness
// config or a usage error, never a panic.
func FuzzWitnessConfig(f *testing.F) {
	f.Add("--node-name w1 --cluster-name c --join 10.0.0.1:7480 --join-token x")
	f.Add("--node-name w1 --cluster-name c --join a,b --join-token x --raft-port -1")
	f.Add("--bind ::1 --advertise x --data-dir")
	f.Fuzz(func(t *testing.T, line string) {
		cfg, code, _ := witnessArgs(t, strings.Fields(line)...)
		if code == ExitOK {
			if cfg.Role != config.RoleWitness {
				t.Fatalf("role %q accepted", cfg.Role)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("accepted an invalid config: %v", err)
			}
		}
	})
}
