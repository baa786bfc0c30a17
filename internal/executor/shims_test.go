package executor

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// shell runs script under sh with the shims' environment for instance.
func shell(t *testing.T, d shimDirs, instance, script string) (string, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	env := []string{"OCF_RESOURCE_INSTANCE=" + instance, "OCF_ROOT=/usr/lib/ocf"}
	for k, v := range d.env("n1") {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), code
}

func TestShims(t *testing.T) {
	d, err := writeShims(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	score := func(inst string) string {
		if s := d.score(inst); s != nil {
			return strconv.Itoa(*s)
		}
		return "none"
	}
	cases := []struct {
		script, instance, want string
	}{
		{`crm_master -l reboot -v 100`, "db:0", "100"},
		{`"$HA_SBIN_DIR/crm_attribute" --promotion -v 5`, "db:0", "5"},
		{`crm_attribute -p -v INFINITY`, "db:0", "1000000"},
		{`crm_attribute --promotion=db -v -INFINITY`, "db:1", "-1000000"}, // the resource without its clone number
		{`crm_master -D`, "db:0", "none"},
		{`crm_attribute --promotion -v 7 -N othernode`, "db:2", "none"}, // another node's: not ours
	}
	for _, c := range cases {
		if out, code := shell(t, d, c.instance, c.script); code != 0 {
			t.Fatalf("%s: exit %d: %s", c.script, code, out)
		}
		if got := score(c.instance); got != c.want {
			t.Errorf("%s (%s): score %s, want %s", c.script, c.instance, got, c.want)
		}
	}
	// Read back.
	shell(t, d, "db:0", `crm_master -v 12`)
	if out, _ := shell(t, d, "db:0", `crm_master -G -q`); out != "12" {
		t.Errorf("query: %q", out)
	}
	if out, code := shell(t, d, "db:3", `crm_attribute -p -G -q`); code != 105 {
		t.Errorf("query of no score: %q exit %d", out, code)
	}
	// Node attributes.
	if out, code := shell(t, d, "x", `crm_attribute -n pl-attr -v hello && crm_attribute -n pl-attr -G -q`); code != 0 || out != "hello" {
		t.Errorf("node attribute: %q %d", out, code)
	}
	if out, code := shell(t, d, "x", `attrd_updater -n pl-a -U 3 && attrd_updater -n pl-a -Q`); code != 0 || out != `name="pl-a" host="n1" value="3"` {
		t.Errorf("attrd_updater: %q %d", out, code)
	}
	if out, _ := shell(t, d, "x", `crm_node -n`); out != "n1" {
		t.Errorf("crm_node -n: %q", out)
	}
	// ocf_promotion_score from ocf-shellfuncs finds crm_master in PATH.
	if _, err := os.Stat("/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs"); err == nil {
		if out, code := shell(t, d, "web:0", `. /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs; ocf_promotion_score -v 33`); code != 0 {
			t.Fatalf("ocf_promotion_score: exit %d: %s", code, out)
		}
		if got := score("web:0"); got != "33" {
			t.Errorf("ocf_promotion_score: score %s", got)
		}
	}
	if _, err := os.Stat(filepath.Join(d.bin, "crm_master")); err != nil {
		t.Fatal(err)
	}
}

// What agents set with attrd_updater / crm_attribute -n is reported as the
// node's attributes (for location rules), and deleting it removes it.
func TestNodeAttributesReported(t *testing.T) {
	e := New(Config{Node: "n1", StateDir: t.TempDir()})
	if got := e.NodeAttributes(); len(got) != 0 {
		t.Fatalf("fresh executor reports %v", got)
	}
	if out, code := shell(t, e.dirs, "ping:0", `attrd_updater -n pingd -U 100 && crm_attribute -n rack -v r2`); code != 0 {
		t.Fatalf("shims: %s exit %d", out, code)
	}
	if got := e.NodeAttributes(); got["pingd"] != "100" || got["rack"] != "r2" || len(got) != 2 {
		t.Fatalf("attributes %v", got)
	}
	// A new value is seen (the cache follows the directory), and a shim's
	// temporary file before its rename is not an attribute.
	if out, code := shell(t, e.dirs, "ping:0", `attrd_updater -n pingd -U 50`); code != 0 {
		t.Fatalf("update: %s exit %d", out, code)
	}
	if err := os.WriteFile(filepath.Join(e.dirs.attrs, "pingd.4242"), []byte("7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.NodeAttributes(); got["pingd"] != "50" || len(got) != 2 {
		t.Fatalf("after an update: %v", got)
	}
	os.Remove(filepath.Join(e.dirs.attrs, "pingd.4242"))
	if out, code := shell(t, e.dirs, "ping:0", `attrd_updater -n pingd -D`); code != 0 {
		t.Fatalf("delete: %s exit %d", out, code)
	}
	if got := e.NodeAttributes(); got["pingd"] != "" || len(got) != 1 {
		t.Fatalf("after delete: %v", got)
	}
}
