package cibimport

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/spec"
)

// FuzzConvert feeds arbitrary documents through the CIB parser and the
// converter: the converter must never panic, and whatever it returns must
// validate and survive a YAML round trip.
func FuzzConvert(f *testing.F) {
	for _, s := range []string{
		sampleCIB,
		`<cib><configuration><resources><primitive id="A_b" class="ocf" provider="p" type="T"/></resources></configuration></cib>`,
		`<cib><configuration><resources><clone id="c"><group id="g"><primitive id="x" class="lsb" type="y"/></group></clone></resources></configuration></cib>`,
		`<cib><configuration><resources><primitive id="a" class="ocf" provider="p" type="T"/><primitive id="b" class="ocf" provider="p" type="T"/></resources>
<constraints><rsc_colocation id="c1" rsc="a" with-rsc="b" score="INFINITY"/><rsc_colocation id="c2" rsc="b" with-rsc="a" score="INFINITY"/>
<rsc_order id="o1" first="a" then="b"/><rsc_order id="o2" first="b" then="a"/>
<rsc_location id="l1" rsc="a" node="N1" score="INFINITY"/><rsc_location id="l2" rsc="a" node="N1" score="-INFINITY"/></constraints></configuration></cib>`,
		`<cib><configuration><resources><primitive id="a" class="ocf" provider="p" type="T"/></resources><constraints>
<rsc_location id="l" rsc="a"><rule id="r" score="INFINITY" boolean-op="or"><expression id="e" attribute="#uname" operation="eq" value="X"/>
<rule id="r2" boolean-op="and"><expression id="e2" attribute="a" operation="gt" value="1"/><expression id="e3" attribute="b" operation="defined"/></rule></rule></rsc_location>
</constraints></configuration></cib>`,
	} {
		f.Add([]byte(s))
	}
	for _, name := range []string{"bug-5143-ms-shuffle", "group-dependents", "coloc-list", "one-or-more-3", "promoted-move", "rsc-sets-seq-true"} {
		if b, err := os.ReadFile(filepath.Join(ctsDir, "xml", name+".xml")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := cib.Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		sp, rep := Convert(m)
		if err := sp.Validate(); err != nil {
			t.Fatalf("converted spec does not validate: %v\nreport:\n%s\nspec:\n%s", err, rep.String(), sp.YAML())
		}
		for _, it := range rep.Items {
			if it.Category == CatInternal {
				t.Fatalf("internal: %s", it)
			}
		}
		if _, err := spec.Parse(sp.YAML()); err != nil {
			t.Fatalf("YAML does not parse back: %v\n%s", err, sp.YAML())
		}
		_ = rep.String()
	})
}
