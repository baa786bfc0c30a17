package tlsutil

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes of CLI.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command ran and failed (or `show` found a problem)
	ExitUsage   = 2 // bad command line
)

const cliUsage = `usage: paceline tls COMMAND [flags]

commands:
  init    --dir D --cluster NAME [--force]
          create the cluster CA (D/ca.crt, D/ca.key)
  issue   --ca-dir D --out DIR --name NAME --host H [--host H2 ...] [--days N]
          issue DIR/NAME.crt and DIR/NAME.key (server and client certificate);
          --host takes IP addresses and DNS names, repeated or comma-separated
  rotate  --ca-dir D --out DIR --name NAME [--days N]
          re-issue NAME with the same names; the old pair is kept as *.prev
  show    FILE [--ca CAFILE]
          describe a certificate; exits 1 if it is expired or not signed by CAFILE

exit codes: 0 ok, 1 failure, 2 usage error
`

// CLI runs `paceline tls ...`. args are the arguments after "tls" (a leading
// "tls" is also accepted). It returns ExitOK, ExitFailure or ExitUsage.
func CLI(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "tls" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, cliUsage)
		return ExitUsage
	}
	cmd, args := args[0], args[1:]
	var run func([]string, io.Writer, io.Writer) int
	switch cmd {
	case "init":
		run = cliInit
	case "issue":
		run = cliIssue
	case "rotate":
		run = cliRotate
	case "show":
		run = cliShow
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, cliUsage)
		return ExitOK
	default:
		fmt.Fprintf(stderr, "paceline tls: unknown command %q\n\n%s", cmd, cliUsage)
		return ExitUsage
	}
	return run(args, stdout, stderr)
}

// hostList is a repeatable, comma-separable --host flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*h = append(*h, p)
		}
	}
	return nil
}

func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("paceline tls "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: paceline tls %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, allowing positional arguments between them
// (`show FILE --ca X`). It returns the positional arguments, or an exit code.
func parse(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, false
			}
			return nil, ExitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func usageErr(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return ExitUsage
}

func failure(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "paceline tls %s: %v\n", cmd, err)
	return ExitFailure
}

func cliInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("init", stderr, "--dir D --cluster NAME [--force]")
	dir := fs.String("dir", "", "directory for ca.crt and ca.key (required)")
	cluster := fs.String("cluster", "", "cluster name, recorded in the CA (required)")
	force := fs.Bool("force", false, "replace an existing CA (invalidates every certificate it issued)")
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, stderr, "unexpected argument %q", pos[0])
	case *dir == "":
		return usageErr(fs, stderr, "--dir is required")
	case strings.TrimSpace(*cluster) == "":
		return usageErr(fs, stderr, "--cluster is required")
	}
	if err := InitCA(*dir, *cluster, *force); err != nil {
		return failure(stderr, "init", err)
	}
	fmt.Fprintf(stdout, "created CA %q in %s (ca.crt, ca.key); keep ca.key private and copy only ca.crt to the nodes\n",
		caCNPrefix+strings.TrimSpace(*cluster), *dir)
	return ExitOK
}

func daysFlag(fs *flag.FlagSet) *int {
	return fs.Int("days", int(DefaultValidity/(24*time.Hour)), "validity in days")
}

func cliIssue(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("issue", stderr, "--ca-dir D --out DIR --name NAME --host H [--host H2] [--days N]")
	caDir := fs.String("ca-dir", "", "directory holding ca.crt and ca.key (required)")
	out := fs.String("out", "", "directory to write NAME.crt and NAME.key to (required)")
	name := fs.String("name", "", "certificate name, usually the node name (required)")
	var hosts hostList
	fs.Var(&hosts, "host", "IP address or DNS name the node is reached at (repeatable, comma-separated; at least one)")
	days := daysFlag(fs)
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, stderr, "unexpected argument %q", pos[0])
	case *caDir == "":
		return usageErr(fs, stderr, "--ca-dir is required")
	case *out == "":
		return usageErr(fs, stderr, "--out is required")
	case *name == "":
		return usageErr(fs, stderr, "--name is required")
	case len(hosts) == 0:
		return usageErr(fs, stderr, "at least one --host is required (the node's IP address or DNS name)")
	case *days <= 0:
		return usageErr(fs, stderr, "--days must be at least 1")
	}
	leaf, err := issue(*caDir, *out, *name, hosts, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return failure(stderr, "issue", err)
	}
	certPath, keyPath := pairPaths(*out, *name)
	fmt.Fprintf(stdout, "issued %s and %s (serial %s, valid until %s)\n",
		certPath, keyPath, serialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	return ExitOK
}

func cliRotate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rotate", stderr, "--ca-dir D --out DIR --name NAME [--days N]")
	caDir := fs.String("ca-dir", "", "directory holding ca.crt and ca.key (required)")
	out := fs.String("out", "", "directory holding NAME.crt and NAME.key (required)")
	name := fs.String("name", "", "certificate name (required)")
	days := daysFlag(fs)
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, stderr, "unexpected argument %q", pos[0])
	case *caDir == "":
		return usageErr(fs, stderr, "--ca-dir is required")
	case *out == "":
		return usageErr(fs, stderr, "--out is required")
	case *name == "":
		return usageErr(fs, stderr, "--name is required")
	case *days <= 0:
		return usageErr(fs, stderr, "--days must be at least 1")
	}
	old, cur, err := rotate(*caDir, *out, *name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return failure(stderr, "rotate", err)
	}
	certPath, _ := pairPaths(*out, *name)
	fmt.Fprintf(stdout, "rotated %s: serial %s -> %s, valid until %s; previous pair kept as %s.prev\n",
		certPath, serialHex(old), serialHex(cur), cur.NotAfter.UTC().Format(time.RFC3339), strings.TrimSuffix(certPath, ".crt")+".{crt,key}")
	return ExitOK
}

func cliShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("show", stderr, "FILE [--ca CAFILE]")
	ca := fs.String("ca", "", "CA certificate to check the signature against")
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	switch len(pos) {
	case 0:
		return usageErr(fs, stderr, "no certificate file given")
	case 1:
	default:
		return usageErr(fs, stderr, "one certificate file at a time (got %d)", len(pos))
	}
	s, problems, err := describe(pos[0], *ca, time.Now())
	if err != nil {
		return failure(stderr, "show", err)
	}
	fmt.Fprint(stdout, s)
	for _, p := range problems {
		fmt.Fprintf(stderr, "paceline tls show: %s\n", p)
	}
	if len(problems) > 0 {
		return ExitFailure
	}
	return ExitOK
}
