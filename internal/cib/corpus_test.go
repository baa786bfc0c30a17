package cib

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const corpusDir = "/work/shared/pacemaker-cts/xml"

// TestCorpus parses every scheduler regression input of Pacemaker and logs
// what the corpus contains.
func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.xml"))
	if len(files) == 0 {
		t.Skip("corpus absent: " + corpusDir)
	}
	count := map[string]int{}   // files containing a construct
	unsup := map[string]int{}   // unsupported entries by element name
	unsupIn := map[string]int{} // files with at least one unsupported entry, by element name
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(fh)
		fh.Close()
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		has := map[string]bool{}
		var walk func([]*Resource)
		walk = func(rs []*Resource) {
			for _, r := range rs {
				has[string(r.Kind)] = true
				if r.Promotable() {
					has["promotable"] = true
				}
				if r.Template != "" {
					has["template-use"] = true
				}
				walk(r.Children)
			}
		}
		walk(m.Resources)
		has["rsc_location"] = len(m.Locations) > 0
		has["rsc_colocation"] = len(m.Colocations) > 0
		has["rsc_order"] = len(m.Orders) > 0
		has["rsc_ticket"] = len(m.Tickets) > 0
		for _, l := range m.Locations {
			if len(l.Rules) > 0 {
				has["location-rule"] = true
			}
		}
		for _, c := range m.Colocations {
			if len(c.Sets) > 0 {
				has["colocation-set"] = true
			}
		}
		for _, o := range m.Orders {
			if len(o.Sets) > 0 {
				has["order-set"] = true
			}
		}
		has["any-unsupported"] = len(m.Unsupported) > 0
		has["notes"] = len(m.Notes) > 0
		for k, v := range has {
			if v {
				count[k]++
			}
		}
		count["locations(total)"] += len(m.Locations)
		count["colocations(total)"] += len(m.Colocations)
		count["orders(total)"] += len(m.Orders)
		count["tickets(total)"] += len(m.Tickets)
		seen := map[string]bool{}
		for _, u := range m.Unsupported {
			k := unsupportedKind(u)
			unsup[k]++
			if !seen[k] {
				seen[k] = true
				unsupIn[k]++
			}
		}
	}
	t.Logf("parsed %d files", len(files))
	for _, k := range sortedKeys(count) {
		t.Logf("  %-22s %d", k, count[k])
	}
	t.Logf("unsupported elements by kind (entries / files):")
	for _, k := range sortedKeys(unsup) {
		t.Logf("  %-22s %d / %d", k, unsup[k], unsupIn[k])
	}
}

// unsupportedKind extracts the element name of an Unsupported entry.
func unsupportedKind(u string) string {
	path, _, _ := strings.Cut(u, ": ")
	path, _, _ = strings.Cut(path, "[")
	return path[strings.LastIndex(path, "/")+1:]
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
