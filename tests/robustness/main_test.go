package robustness

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/lab"
)

var (
	flagDuration = flag.Duration("robustness.duration", envDuration("PL_ROBUSTNESS_DURATION", 60*time.Second),
		"how long faults are injected (env PL_ROBUSTNESS_DURATION)")
	flagSeed = flag.Int64("robustness.seed", envInt("PL_ROBUSTNESS_SEED", 0),
		"seed of the fault schedule; 0 picks one from the clock and prints it (env PL_ROBUSTNESS_SEED)")
	flagAgentPause = flag.Bool("robustness.agent-pause", os.Getenv("PL_ROBUSTNESS_AGENT_PAUSE") != "0",
		"include agent pause faults (SIGSTOP of the agent alone) in TestRobustness (on by default since the lease guards; "+
			"env PL_ROBUSTNESS_AGENT_PAUSE=0 leaves them out)")
	flagPauseOnly = flag.Bool("robustness.pause-only", os.Getenv("PL_ROBUSTNESS_PAUSE_ONLY") == "1",
		"also run TestRobustnessAgentPause, a run of agent pauses only (env PL_ROBUSTNESS_PAUSE_ONLY=1)")
)

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "robustness: %s=%q is not a duration (e.g. 10m); using %v\n", name, v, def)
	}
	return def
}

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		var n int64
		if _, err := fmt.Sscan(v, &n); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "robustness: %s=%q is not a number; using %d\n", name, v, def)
	}
	return def
}

// exe is the paceline binary built once by TestMain ("" without root).
var exe string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if lab.Root() != nil {
		return m.Run() // every test skips with the reason
	}
	dir, err := os.MkdirTemp("", "pl-robustness-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "robustness:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out := filepath.Join(dir, "paceline")
	if b, err := exec.Command(goTool, "build", "-o", out, "github.com/paceline/paceline/cmd/paceline").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "robustness: go build: %v\n%s", err, b)
		return 1
	}
	exe = out
	return m.Run()
}

func requireLab(t *testing.T) {
	t.Helper()
	if err := lab.Root(); err != nil {
		t.Skipf("the robustness suite needs a network-namespace lab: %v", err)
	}
	if exe == "" {
		t.Fatal("paceline binary was not built")
	}
}
