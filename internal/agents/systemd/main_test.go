package systemd

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/paceline/paceline/internal/procfs"
)

// TestMain fails the run if a test left an unreaped child process behind
// (a dbus-daemon or a unit's process of the stand-in), or a goroutine (a
// connection that was never closed).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if kids := procfs.Children(os.Getpid()); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
