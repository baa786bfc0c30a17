package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/cli"
)

// fenceScript is a fence agent whose "BMC" only records the power state:
// off and on set it, status reports it (0 on, 2 off).
const fenceScript = `#!/bin/sh
action= ; port= ; dir=
while IFS='=' read -r k v; do
  case "$k" in action) action=$v;; port) port=$v;; dir) dir=$v;; esac
done
case "$action" in
off|on) echo "$action" > "$dir/$port"; exit 0;;
status) [ "$(cat "$dir/$port" 2>/dev/null)" = off ] && exit 2; exit 0;;
monitor) exit 0;;
*) exit 1;;
esac
`

func TestFenceCommands(t *testing.T) {
	o := newOpCluster(t)
	contains(t, "status unconfigured", o.ok("fence", "status"), "fencing: not configured")
	contains(t, "history empty", o.ok("fence", "history"), "no fence operations recorded")
	contains(t, "no devices", o.refused(cli.ExitFailure, "fence", "n2"), "no fence devices are configured")
	o.refused(cli.ExitUsage, "fence")
	contains(t, "two actions", o.refused(cli.ExitUsage, "fence", "n2", "--off", "--on"), "choose one of --off, --reboot, --on")
	contains(t, "confirm live", o.refused(cli.ExitFailure, "fence", "confirm", "n2"), "n2 is alive", "paceline fence n2")
	contains(t, "unknown node", o.refused(cli.ExitFailure, "fence", "confirm", "n9"), `no node "n9"`)

	dir := t.TempDir()
	agent := filepath.Join(dir, "fence_rec")
	if err := os.WriteFile(agent, []byte(fenceScript), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := o.spec + "fencing:\n  mode: disabled\n  devices:\n    - {name: rec, agent: " + agent + ", params: {dir: " + dir + "}, hosts: [n1, n2, n3]}\n"
	f := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	o.ok("apply", "-f", f)
	contains(t, "status configured", o.ok("fence", "status"), "fencing: mode disabled, recovery action reboot", "device rec", "fences n1, n2, n3")
	contains(t, "check", o.ok("fence", "check"), "rec", "ok")
	contains(t, "fence off", o.ok("fence", "n3", "--off"), "n3 off: done in", "level 1: rec")
	if b, _ := os.ReadFile(filepath.Join(dir, "n3")); strings.TrimSpace(string(b)) != "off" {
		t.Fatalf("the device did not power n3 off: %q", b)
	}
	contains(t, "history", o.ok("fence", "history", "n3"), "n3", "off", "ok", "requested by operator")
}
