package cli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/cibimport"
)

// ExitPartial is import-cib's exit code when the spec was written but some
// of the CIB could not be converted (listed on stderr).
const ExitPartial = 4

// cmdImportCIB converts a Pacemaker CIB into a paceline spec:
//
//	paceline import-cib cib.xml [-o spec.yaml] [--cluster-name NAME]
//
// The spec goes to -o (or stdout), the report to stderr. Exit 0: fully
// converted; 4: partially converted (the spec is written; what was left
// out is listed); 1: the CIB could not be read or parsed; 2: usage.
func cmdImportCIB(e *env, args []string) int {
	fs := flag.NewFlagSet("import-cib", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("o", "", "write the spec to this file (default: stdout)")
	name := fs.String("cluster-name", "", "cluster name for the spec (default: the CIB's cluster-name property, or \""+cibimport.DefaultClusterName+"\")")
	quiet := fs.Bool("q", false, "print only the summary line of the report, not each item")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: paceline import-cib CIB.xml [-o spec.yaml] [--cluster-name NAME] [-q]\n\n"+
			"Converts a Pacemaker CIB (cibadmin --query > cib.xml, or /var/lib/pacemaker/cib/cib.xml)\n"+
			"into a paceline spec. The report on stderr lists every renamed id and everything not converted.\n"+
			"Exit codes: 0 fully converted; %d partially converted (spec written, items left out);\n"+
			"1 the CIB could not be read or parsed; 2 usage error.\n\nFlags:\n", ExitPartial)
		fs.PrintDefaults()
	}
	// Flags may come before or after the file name.
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if err == flag.ErrHelp {
				return ExitOK
			}
			return ExitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "error: import-cib takes one CIB file (- for stdin)")
		fs.Usage()
		return ExitUsage
	}
	var data []byte
	var err error
	if pos[0] == "-" {
		data, err = io.ReadAll(e.stdin)
	} else {
		data, err = os.ReadFile(pos[0])
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "error: read CIB: %v\n", err)
		return ExitFailure
	}
	m, err := cib.Parse(bytes.NewReader(data))
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %s is not a CIB paceline can read: %v\n", pos[0], err)
		return ExitFailure
	}
	sp, rep := cibimport.ConvertWith(m, cibimport.Options{ClusterName: *name})
	if verr := sp.Validate(); verr != nil {
		fmt.Fprintf(e.stderr, "error: the converted spec does not validate (an importer bug; please report it with the CIB):\n%v\n", verr)
		return ExitFailure
	}
	for _, it := range rep.Items {
		if it.Category == cibimport.CatInternal {
			fmt.Fprintf(e.stderr, "error: %s\n", it)
			return ExitFailure
		}
	}
	doc := sp.YAML()
	if *out == "" || *out == "-" {
		if _, err := e.stdout.Write(doc); err != nil {
			fmt.Fprintf(e.stderr, "error: write spec: %v\n", err)
			return ExitFailure
		}
	} else if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintf(e.stderr, "error: write spec: %v\n", err)
		return ExitFailure
	}
	if !*quiet {
		fmt.Fprint(e.stderr, rep.String())
	}
	where := "stdout"
	if *out != "" && *out != "-" {
		where = *out
	}
	if rep.Complete() {
		fmt.Fprintf(e.stderr, "fully converted: %d resources, %d groups, %d nodes written to %s\n", len(sp.Resources), len(sp.Groups), len(sp.Nodes), where)
		return ExitOK
	}
	pl := len(rep.PlacementItems())
	var cats []string
	for c, n := range rep.Categories() {
		cats = append(cats, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(cats)
	fmt.Fprintf(e.stderr, "partially converted: %d items not converted (%d can change where resources run; by category: %s); %d resources, %d groups, %d nodes written to %s\n",
		len(rep.Items), pl, strings.Join(cats, ", "), len(sp.Resources), len(sp.Groups), len(sp.Nodes), where)
	return ExitPartial
}
