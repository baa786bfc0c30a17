package cibimport

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/scheduler"
	"github.com/paceline/paceline/internal/spec"
)

// ctsFloor is the number of supported Pacemaker scheduler cases whose
// placement must match. It locks in progress: when the importer or the
// scheduler gets better, run
//
//	go test ./internal/cibimport -run TestCTS -v
//
// and raise it to the "matched" figure printed (never lower it to make a
// regression pass).
const ctsFloor = 195

// ctsDir is ../shared/pacemaker-cts relative to the repository root (the
// test runs in internal/cibimport).
var ctsDir = filepath.Join("..", "..", "..", "shared", "pacemaker-cts")

// ctsOutEnv names a file to which the per-case table is written.
const ctsOutEnv = "PACELINE_CTS_TABLE"

type ctsCase struct {
	name        string
	supported   bool
	why         []string // why it is not supported
	mismatches  []string // "resource: want X, got Y (was Z)"
	resources   int
	convertErrs []string
	// running counts resources Pacemaker has running after the transition.
	running int
	// changes: Pacemaker's transition changes something.
	changes bool
}

// unsupportedReasons says why a case cannot be compared: report items
// that change placement (except node standby/maintenance written in the
// configuration, which the test feeds to the scheduler from the CIB like
// any node state), fencing, remote nodes, summaries the test cannot read.
func unsupportedReasons(rep *Report, sum summary) []string {
	seen := map[string]bool{}
	var why []string
	addWhy := func(s string) {
		if !seen[s] {
			seen[s] = true
			why = append(why, s)
		}
	}
	for _, it := range rep.Items {
		if it.Placement && it.Category != CatNodeState {
			addWhy(it.Category)
		}
	}
	if sum.fencing {
		addWhy("fencing (the transition fences a node or a node is UNCLEAN)")
	}
	if sum.remote {
		addWhy(CatRemote)
	}
	if len(sum.unparsed) > 0 {
		addWhy("summary not understood: " + sum.unparsed[0])
	}
	sort.Strings(why)
	return why
}

// expectedFor maps the summary onto spec resource names and normalises
// roles: a promotable resource's instances are promoted or unpromoted, any
// other's are started.
func expectedFor(sp *spec.Spec, rep *Report, sum summary) map[string]map[string]map[string]int {
	promotable := map[string]bool{}
	for _, r := range sp.Resources {
		promotable[r.Name] = r.Mode == spec.ModePromotable
	}
	groups := map[string][]string{}
	for _, g := range sp.Groups {
		groups[g.Name] = g.Members
	}
	out := map[string]map[string]map[string]int{}
	for id, nodes := range sum.revised {
		base, _ := baseID(id)
		sn, ok := rep.Resources[id]
		if !ok {
			sn, ok = rep.Resources[base]
		}
		if !ok {
			continue // fencing devices, orphans, resources not converted
		}
		// A cloned group's summary line ("Clone Set: X [G]: Started: [...]")
		// stands for every member of the group.
		names := []string{sn}
		if m, isGroup := groups[sn]; isGroup {
			names = m
		}
		for n, roles := range nodes {
			node := rep.Nodes[n]
			if node == "" {
				node = sanitizeNode(n)
			}
			for r, k := range roles {
				for _, sn := range names {
					if out[sn] == nil {
						out[sn] = map[string]map[string]int{}
					}
					if out[sn][node] == nil {
						out[sn][node] = map[string]int{}
					}
					out[sn][node][normRole(r, promotable[sn])] += k
				}
			}
		}
	}
	return out
}

func normRole(r string, promotable bool) string {
	if !promotable {
		return roleStarted
	}
	if r == rolePromoted {
		return rolePromoted
	}
	return roleUnpromoted
}

// afterTransition applies a transition to what runs now (Current, Roles
// and the unslotted Active instances) and returns resource → node → role
// → count: the state Pacemaker's "Revised Cluster Status" describes
// (the current state with the transition's actions done).
func afterTransition(in scheduler.Input, tr scheduler.Transition) map[string]map[string]map[string]int {
	type inst struct {
		res, slot, node string
		promoted        bool
	}
	var insts []*inst
	for k, n := range in.Current {
		res, _, _ := strings.Cut(k, ":")
		insts = append(insts, &inst{res, k, n, in.Roles[k] == spec.RolePromoted})
	}
	for _, a := range in.Active {
		insts = append(insts, &inst{a.Resource, "", a.Node, a.Role == spec.RolePromoted})
	}
	find := func(a scheduler.Action) int {
		for i, x := range insts {
			if a.Slot != "" && x.slot == a.Slot && x.node == a.Node {
				return i
			}
		}
		for i, x := range insts {
			if x.slot == "" && x.res == a.Resource && x.node == a.Node {
				return i
			}
		}
		return -1
	}
	for _, a := range tr.Actions {
		i := find(a)
		switch a.Op {
		case scheduler.OpStop:
			if i >= 0 {
				insts = append(insts[:i], insts[i+1:]...)
			}
		case scheduler.OpStart:
			res := a.Resource
			if res == "" {
				res, _, _ = strings.Cut(a.Slot, ":")
			}
			insts = append(insts, &inst{res, a.Slot, a.Node, false})
		case scheduler.OpPromote:
			if i >= 0 {
				insts[i].promoted = true
			}
		case scheduler.OpDemote:
			if i >= 0 {
				insts[i].promoted = false
			}
		}
	}
	promotable := map[string]bool{}
	for _, r := range in.Spec.Resources {
		promotable[r.Name] = r.Mode == spec.ModePromotable
	}
	got := map[string]map[string]map[string]int{}
	for _, x := range insts {
		role := roleStarted
		if x.promoted {
			role = rolePromoted
		}
		if got[x.res] == nil {
			got[x.res] = map[string]map[string]int{}
		}
		if got[x.res][x.node] == nil {
			got[x.res][x.node] = map[string]int{}
		}
		got[x.res][x.node][normRole(role, promotable[x.res])]++
	}
	return got
}

func runCTSCase(t *testing.T, name, xmlPath, sumPath string) (c ctsCase) {
	c.name = name
	fh, err := os.Open(xmlPath)
	if err != nil {
		c.why = []string{"cannot read: " + err.Error()}
		return c
	}
	m, err := cib.Parse(fh)
	fh.Close()
	if err != nil {
		c.why = []string{"CIB parse error: " + err.Error()}
		return c
	}
	var sp *spec.Spec
	var rep Report
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.convertErrs = append(c.convertErrs, fmt.Sprintf("Convert panicked: %v\n%s", r, debug.Stack()))
			}
		}()
		sp, rep = Convert(m)
	}()
	if sp == nil {
		c.why = []string{"converter failed"}
		return c
	}
	if err := sp.Validate(); err != nil {
		c.convertErrs = append(c.convertErrs, "converted spec does not validate: "+err.Error())
	}
	for _, it := range rep.Items {
		if it.Category == CatInternal {
			c.convertErrs = append(c.convertErrs, it.String())
		}
	}
	if _, err := spec.Parse(sp.YAML()); err != nil {
		c.convertErrs = append(c.convertErrs, "YAML of the converted spec does not parse back: "+err.Error())
	}
	if len(c.convertErrs) > 0 {
		c.why = []string{"importer error"}
		return c
	}
	text, err := os.ReadFile(sumPath)
	if err != nil {
		c.why = []string{"no summary"}
		return c
	}
	sum := parseSummary(string(text))
	c.why = unsupportedReasons(&rep, sum)
	if len(c.why) > 0 {
		return c
	}
	c.supported = true
	c.changes = sum.actions > 0
	si := buildInput(m, sp, &rep)
	var tr scheduler.Transition
	panicked := ""
	func() {
		defer func() {
			if r := recover(); r != nil {
				panicked = fmt.Sprintf("%v", r)
			}
		}()
		_, tr = scheduler.Plan(si.in)
	}()
	if panicked != "" {
		c.mismatches = append(c.mismatches, "scheduler panicked: "+panicked)
		return c
	}
	want := expectedFor(si.in.Spec, &rep, sum)
	got := afterTransition(si.in, tr)
	for _, r := range si.in.Spec.Resources {
		c.resources++
		w, g := placementString(want[r.Name]), placementString(got[r.Name])
		if w != "stopped" {
			c.running++
		}
		if w != g {
			was := "stopped"
			if cur := si.current[r.Name]; len(cur) > 0 {
				var parts []string
				for n, ro := range cur {
					parts = append(parts, n+":"+ro)
				}
				sort.Strings(parts)
				was = strings.Join(parts, " ")
			}
			c.mismatches = append(c.mismatches, fmt.Sprintf("%s: want %s, got %s (was %s)", r.Name, w, g, was))
		}
	}
	sort.Strings(c.mismatches)
	return c
}

// TestCTS imports each Pacemaker scheduler regression case, schedules it
// with paceline's scheduler and compares the placement with Pacemaker's
// "Revised Cluster Status". It fails only on importer errors (a panic, a
// converted spec that does not validate) and when fewer cases match than
// ctsFloor. See docs/import-cib.md for the results and the mismatches.
func TestCTS(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(ctsDir, "xml", "*.xml"))
	if len(files) == 0 {
		t.Skip("Pacemaker CTS corpus absent: " + ctsDir)
	}
	var cases []ctsCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		c := runCTSCase(t, name, f, filepath.Join(ctsDir, "summary", name+".summary"))
		for _, e := range c.convertErrs {
			t.Errorf("%s: %s", name, e)
		}
		cases = append(cases, c)
	}
	supported, matched, trivial, changing, changingMatched := 0, 0, 0, 0, 0
	whyCount := map[string]int{}
	var lines []string
	for _, c := range cases {
		if !c.supported {
			for _, w := range c.why {
				if strings.HasPrefix(w, "summary not understood") {
					w = "summary not understood"
				}
				whyCount[w]++
			}
			continue
		}
		supported++
		if c.changes {
			changing++
			if len(c.mismatches) == 0 {
				changingMatched++
			}
		}
		if len(c.mismatches) == 0 {
			matched++
			if c.running == 0 {
				trivial++
			}
		}
		for _, mm := range c.mismatches {
			lines = append(lines, c.name+" "+mm)
		}
	}
	sort.Strings(lines)
	rate := 0.0
	if supported > 0 {
		rate = 100 * float64(matched) / float64(supported)
	}
	t.Logf("Pacemaker CTS: %d cases, %d supported, %d matched (%.1f%% of supported)", len(cases), supported, matched, rate)
	t.Logf("(%d of the matched cases have nothing running afterwards; in %d supported cases Pacemaker's transition changes something, and %d of those match)",
		trivial, changing, changingMatched)
	var ws []string
	for w := range whyCount {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool {
		if whyCount[ws[i]] != whyCount[ws[j]] {
			return whyCount[ws[i]] > whyCount[ws[j]]
		}
		return ws[i] < ws[j]
	})
	t.Logf("not supported, by reason (a case can have several):")
	for _, w := range ws {
		t.Logf("  %4d %s", whyCount[w], w)
	}
	t.Logf("mismatches (%d):", len(lines))
	for _, l := range lines {
		t.Logf("  %s", l)
	}
	if path := os.Getenv(ctsOutEnv); path != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "case\tsupported\tmatched\tdetail\n")
		for _, c := range cases {
			detail := strings.Join(c.why, "; ")
			ok := "-"
			if c.supported {
				ok = fmt.Sprint(len(c.mismatches) == 0)
				detail = strings.Join(c.mismatches, "; ")
			}
			fmt.Fprintf(&b, "%s\t%v\t%s\t%s\n", c.name, c.supported, ok, detail)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write %s: %v", path, err)
		} else {
			t.Logf("table written to %s", path)
		}
	}
	if matched < ctsFloor {
		t.Errorf("only %d supported CTS cases match, below the floor of %d: a regression in the importer or the scheduler", matched, ctsFloor)
	}
}

// TestCTSCase prints the details of the cases named in PACELINE_CTS_CASE
// (comma-separated): the converted spec, the scheduler input, placement
// and transition, and the expected placement.
func TestCTSCase(t *testing.T) {
	names := os.Getenv("PACELINE_CTS_CASE")
	if names == "" {
		t.Skip("set PACELINE_CTS_CASE=name[,name] to inspect cases")
	}
	for _, name := range strings.Split(names, ",") {
		fh, err := os.Open(filepath.Join(ctsDir, "xml", name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := cib.Parse(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		sp, rep := Convert(m)
		t.Logf("%s spec:\n%s\nreport:\n%s", name, sp.YAML(), rep.String())
		text, _ := os.ReadFile(filepath.Join(ctsDir, "summary", name+".summary"))
		sum := parseSummary(string(text))
		si := buildInput(m, sp, &rep)
		for _, st := range m.NodeStates {
			for _, lr := range st.LRM {
				t.Logf("history %s %s: %+v", st.Uname, lr.ID, historyState(lr, false, 0, time.Now()))
			}
		}
		for _, n := range si.in.Nodes {
			t.Logf("node %+v", n)
		}
		t.Logf("current %v roles %v active %+v resources %v", si.in.Current, si.in.Roles, si.in.Active, rep.Resources)
		for _, r := range si.in.Spec.Resources {
			for _, n := range si.in.Nodes {
				if v, ok := si.in.PromotionScore(r.Name, n.Name); ok {
					t.Logf("promotion score %s on %s: %d", r.Name, n.Name, v)
				}
				if v := si.in.FailCount(r.Name, n.Name); v > 0 {
					t.Logf("fail count %s on %s: %d", r.Name, n.Name, v)
				}
			}
		}
		out, tr := scheduler.Plan(si.in)
		t.Logf("desired %v roles %v unplaced %v", out.Desired, out.Roles, out.Unplaced)
		for _, a := range tr.Actions {
			t.Logf("action %s", a)
		}
		t.Logf("blocked %v", tr.Blocked)
		want := expectedFor(si.in.Spec, &rep, sum)
		got := afterTransition(si.in, tr)
		for _, r := range si.in.Spec.Resources {
			t.Logf("%s: want %s got %s", r.Name, placementString(want[r.Name]), placementString(got[r.Name]))
		}
	}
}
