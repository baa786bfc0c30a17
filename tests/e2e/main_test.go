// Package e2e runs paceline end to end: real agents (the built binary) on
// the hosts of a network-namespace lab, driven through the CLI from inside
// the hosts, with crashes and partitions, and an outside witness that
// records who runs an exclusive resource. It needs root; without it every
// test skips and says why.
//
//	go test ./tests/e2e/            (as root)
//	go test ./tests/e2e/ -v -run Crash
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/paceline/paceline/internal/lab"
)

// exe is the paceline binary built once by TestMain ("" without root).
var exe string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if lab.Root() != nil {
		return m.Run() // every test skips with the reason
	}
	dir, err := os.MkdirTemp("", "pl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The lab runs processes from other directories and as other
	// users' children; keep the binary world-readable and executable.
	_ = os.Chmod(dir, 0o755)
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out := filepath.Join(dir, "paceline")
	cmd := exec.Command(goTool, "build", "-o", out, "github.com/paceline/paceline/cmd/paceline")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, b)
		return 1
	}
	exe = out
	return m.Run()
}

func requireLab(t *testing.T) {
	t.Helper()
	if err := lab.Root(); err != nil {
		t.Skipf("end-to-end tests need a network-namespace lab: %v", err)
	}
	if exe == "" {
		t.Fatal("paceline binary was not built")
	}
}
