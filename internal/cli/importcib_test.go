package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paceline/paceline/internal/spec"
)

func TestImportCIB(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full := write("full.xml", `<cib><configuration><crm_config><cluster_property_set id="o">
<nvpair id="o1" name="cluster-name" value="prod"/></cluster_property_set></crm_config>
<resources><primitive id="Web_1" class="ocf" provider="heartbeat" type="apache"/></resources></configuration></cib>`)
	partial := write("partial.xml", `<cib><configuration><resources>
<primitive id="fence" class="stonith" type="fence_ipmilan"/><primitive id="web" class="ocf" provider="heartbeat" type="apache"/>
</resources></configuration></cib>`)
	broken := write("broken.xml", `<cib><configuration>`)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"import-cib"}, args...), strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, stderr := run(full)
	if code != ExitOK || !strings.Contains(stderr, "fully converted") || !strings.Contains(stderr, "Web_1 -> web-1") {
		t.Fatalf("full: exit %d\n%s", code, stderr)
	}
	sp, err := spec.Parse([]byte(out))
	if err != nil || sp.Cluster.Name != "prod" || sp.Resources[0].Name != "web-1" {
		t.Fatalf("spec on stdout: %v\n%s", err, out)
	}

	dst := filepath.Join(dir, "spec.yaml")
	code, out, stderr = run(partial, "-o", dst, "--cluster-name", "lab")
	if code != ExitPartial || out != "" || !strings.Contains(stderr, "partially converted: 1 items") ||
		!strings.Contains(stderr, "fencing device, not converted") {
		t.Fatalf("partial: exit %d, stdout %q\n%s", code, out, stderr)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sp, err := spec.Parse(b); err != nil || sp.Cluster.Name != "lab" || len(sp.Resources) != 1 {
		t.Fatalf("written spec: %v\n%s", err, b)
	}

	if code, _, stderr = run(broken); code != ExitFailure || !strings.Contains(stderr, "line") {
		t.Errorf("broken CIB: exit %d\n%s", code, stderr)
	}
	if code, _, _ = run(filepath.Join(dir, "missing.xml")); code != ExitFailure {
		t.Errorf("missing file: exit %d", code)
	}
	if code, _, _ = run(); code != ExitUsage {
		t.Errorf("no file: exit %d", code)
	}
	if code, _, _ = run(full, partial); code != ExitUsage {
		t.Errorf("two files: exit %d", code)
	}
}
