// Package cli implements the paceline command line: the agent, the demo,
// the lab, and the client commands that talk to agents through package api.
//
// Exit codes: 0 success; 1 the operation failed; 2 usage error (bad flags
// or arguments); 3 no agent could be reached.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/api"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitUnreachable = 3
)

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) int
	hidden  bool
}

func commands() []command {
	return []command{
		{name: "agent", summary: "run a paceline agent (a cluster node)", run: cmdAgent},
		{name: "witness", summary: "run a quorum witness: the third vote of a two-node cluster (docs/quorum.md)", run: cmdWitness},
		{name: "demo", summary: "run a local 3-node demo cluster with sample services (no root needed)", run: cmdDemo},
		{name: "status", summary: "show nodes, leader, quorum, resources and recent events", run: cmdStatus},
		{name: "apply", summary: "apply a spec: paceline apply -f spec.yaml [--dry-run]", run: cmdApply},
		{name: "spec", summary: "spec get | diff -f FILE | history | rollback VERSION", run: cmdSpec},
		{name: "node", summary: "node list | standby | unstandby | maintenance | unmaintenance | confirm-down | remove NODE", run: cmdNode},
		{name: "resource", summary: "resource list | show | move | ban | clear | cleanup | restart | enable | disable | failcount | manage | unmanage", run: cmdResource},
		{name: "fence", summary: "fence NODE [--off|--reboot|--on] | fence confirm NODE | fence history | status | check", run: cmdFence},
		{name: "simulate", summary: "what the scheduler would do now or after losing nodes: simulate [--node-down NODE]... [--spec FILE]", run: cmdSimulate},
		{name: "import-cib", summary: "convert a Pacemaker CIB into a spec: import-cib cib.xml [-o spec.yaml] [--cluster-name NAME]", run: cmdImportCIB},
		{name: "lb", summary: "lb status [--local]: the built-in load balancers, their frontends and servers", run: cmdLB},
		{name: "events", summary: "show the event log [--follow]", run: cmdEvents},
		{name: "tls", summary: "create and rotate the cluster CA and certificates", run: cmdTLS},
		{name: "lab", summary: "network-namespace lab of N hosts (root): up | kill | pause | partition | heal | down ...", run: cmdLab},
		{name: "sample-service", summary: "a small HTTP service used by the demo and tests", run: cmdSampleService, hidden: true},
		{name: "version", summary: "print the version", run: func(e *env, _ []string) int { fmt.Fprintln(e.stdout, "paceline", Version); return 0 }},
	}
}

// Version is set at build time.
var Version = "0.1.0-dev"

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "paceline: unknown command %q\n\n", args[0])
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "paceline — high-availability cluster manager\n\nUsage: paceline COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nClient commands find the cluster through --addr/PACELINE_ADDR, --token/PACELINE_TOKEN (or PACELINE_TOKEN_FILE)\nand --ca/PACELINE_CA. Run `paceline COMMAND -h` for a command's flags.")
}

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr, token, tokenFile, ca string
	json                       bool
	timeout                    time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", os.Getenv("PACELINE_ADDR"), "agent API address(es), comma-separated (env PACELINE_ADDR; default 127.0.0.1:7480)")
	fs.StringVar(&c.token, "token", os.Getenv("PACELINE_TOKEN"), "bearer token (env PACELINE_TOKEN)")
	fs.StringVar(&c.tokenFile, "token-file", os.Getenv("PACELINE_TOKEN_FILE"), "file holding the bearer token (env PACELINE_TOKEN_FILE)")
	fs.StringVar(&c.ca, "ca", os.Getenv("PACELINE_CA"), "CA certificate to verify agents over HTTPS (env PACELINE_CA)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Second, "how long to wait for an answer")
}

func (c *clientFlags) client() (*api.Client, error) {
	addrs := strings.Split(c.addr, ",")
	if c.addr == "" {
		addrs = []string{"127.0.0.1:7480"}
	}
	tok := c.token
	if tok == "" && c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	var tc *tls.Config
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w (pass --ca with the cluster's ca.crt)", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.ca)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return api.NewClient(addrs, tok, tc), nil
}

func (c *clientFlags) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

// fail prints an error with what to do next and returns the exit code.
func fail(e *env, err error) int {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		fmt.Fprintf(e.stderr, "error: %s\n", ae.Error())
		if ae.Status == 401 {
			fmt.Fprintln(e.stderr, "hint: pass --token or --token-file (the bootstrap leader wrote DATADIR/operator.token)")
		}
		return ExitFailure
	case errors.Is(err, api.ErrUnreachable):
		fmt.Fprintf(e.stderr, "error: %v\nhint: is an agent running there? set --addr or PACELINE_ADDR (and --ca for HTTPS)\n", err)
		return ExitUnreachable
	default:
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitFailure
	}
}

func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: paceline %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags that may come after positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
