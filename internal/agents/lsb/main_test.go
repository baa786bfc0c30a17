package lsb

import (
	"fmt"
	"github.com/paceline/paceline/internal/procfs"
	"os"
	"testing"
)

// TestMain fails the run if a test left an unreaped child process behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
	}
	os.Exit(code)
}
