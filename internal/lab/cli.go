package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Exit codes of CLI.
const (
	ExitOK      = 0 // success
	ExitFailed  = 1 // the operation failed
	ExitUsage   = 2 // bad arguments
	ExitNoSetup = 3 // not root or a tool is missing
)

const cliUsage = `usage: paceline lab COMMAND [--name NAME] [--state-dir DIR] [ARGS]

commands:
  up [--hosts 3] [--subnet CIDR] [--cgroup v1|v2]   create the lab (and start agents)
  status                                 hosts, addresses, processes, partitions
  kill HOST                              power loss: cut link, SIGKILL all its processes
  poweron HOST                           link up, restart its recorded processes
  pause HOST | resume HOST               freeze / thaw all its processes
  partition GROUP GROUP...               e.g. "partition h1 h2,h3"; unnamed hosts form one more group
  partition --one-way FROM TO            drop packets FROM -> TO (e.g. "h1 h2,h3"); reverse passes
  isolate HOST                           cut its link
  heal                                   remove partitions, restore isolated links
  down                                   kill everything and delete the lab

--name defaults to $PACELINE_LAB or "pl1"; --state-dir to /run/paceline-lab/NAME.
Needs root (network namespaces, cgroups, nftables): run with sudo.
Exit codes: 0 ok, 1 failed, 2 usage, 3 not root or missing tools.
`

// CLI runs `paceline lab ARGS...` and returns the exit code. startAgent, if
// not nil, is called by up for every host (typically it calls l.Start).
func CLI(ctx context.Context, args []string, stdout, stderr io.Writer, startAgent func(l *Lab, h *Host) error) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		w := stdout
		code := ExitOK
		if len(args) == 0 {
			w, code = stderr, ExitUsage
		}
		fmt.Fprint(w, cliUsage)
		return code
	}
	cmd, rest := args[0], args[1:]

	defName := os.Getenv("PACELINE_LAB")
	if defName == "" {
		defName = "pl1"
	}
	fs := flag.NewFlagSet("paceline lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", defName, "lab name")
	stateDir := fs.String("state-dir", "", "state directory")
	hosts := fs.Int("hosts", 3, "number of hosts (up)")
	subnet := fs.String("subnet", "", "IPv4 subnet (up)")
	cgroup := fs.String("cgroup", "", "cgroup hierarchy v1|v2 (up)")
	oneWay := fs.Bool("one-way", false, "one-way partition (partition)")
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		fmt.Fprintf(stderr, "paceline lab %s: %v\n%s", cmd, err, cliUsage)
		return ExitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "paceline lab %s: %s\n%s", cmd, fmt.Sprintf(format, a...), cliUsage)
		return ExitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "paceline lab %s: %v\n", cmd, err)
		return ExitFailed
	}

	known := map[string]int{"up": 0, "status": 0, "kill": 1, "poweron": 1, "pause": 1, "resume": 1,
		"partition": -1, "isolate": 1, "heal": 0, "down": 0}
	nargs, ok := known[cmd]
	if !ok {
		return usage("unknown command %q", cmd)
	}
	if nargs >= 0 && len(pos) != nargs {
		return usage("want %d argument(s), got %d", nargs, len(pos))
	}
	if err := Root(); err != nil {
		fmt.Fprintf(stderr, "paceline lab %s: %v\n(try: sudo paceline lab %s)\n", cmd, err, strings.Join(args, " "))
		return ExitNoSetup
	}

	switch cmd {
	case "up":
		l, err := Up(ctx, Options{
			Name: *name, Hosts: *hosts, Subnet: *subnet, StateDir: *stateDir, Cgroup: *cgroup,
			Logger: slog.New(slog.NewTextHandler(stderr, nil)),
		})
		if err != nil {
			return fail(err)
		}
		if startAgent != nil {
			for _, h := range l.Hosts() {
				if err := startAgent(l, h); err != nil {
					return fail(fmt.Errorf("lab is up but starting the agent on %s failed: %w (remove the lab with `paceline lab down --name %s`)", h.Name, err, *name))
				}
			}
		}
		return printStatus(l, stdout, stderr)
	case "down":
		if err := Destroy(*name, *stateDir); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "lab %s removed\n", *name)
		return ExitOK
	}

	l, err := Open(*name, *stateDir)
	if err != nil {
		return fail(err)
	}
	hostArg := func(s string) ([]*Host, error) {
		var hs []*Host
		for _, n := range strings.Split(s, ",") {
			if n == "" {
				continue
			}
			h, err := l.Host(n)
			if err != nil {
				return nil, err
			}
			hs = append(hs, h)
		}
		if len(hs) == 0 {
			return nil, fmt.Errorf("empty host list %q", s)
		}
		return hs, nil
	}
	badHost := func(err error) int {
		fmt.Fprintf(stderr, "paceline lab %s: %v\n", cmd, err)
		return ExitUsage
	}
	var one *Host
	if nargs == 1 {
		hs, err := hostArg(pos[0])
		if err != nil {
			return badHost(err)
		}
		if len(hs) != 1 {
			return usage("want one host, got %q", pos[0])
		}
		one = hs[0]
	}

	switch cmd {
	case "status":
		return printStatus(l, stdout, stderr)
	case "kill":
		err = l.Kill(one)
	case "poweron":
		err = l.PowerOn(one)
	case "pause":
		err = l.Pause(one)
	case "resume":
		err = l.Resume(one)
	case "isolate":
		err = l.Isolate(one)
	case "heal":
		err = l.Heal()
	case "partition":
		var groups [][]*Host
		for _, p := range pos {
			hs, err := hostArg(p)
			if err != nil {
				return badHost(err)
			}
			groups = append(groups, hs)
		}
		switch {
		case *oneWay && len(groups) != 2:
			return usage("--one-way wants FROM and TO, got %d argument(s)", len(groups))
		case *oneWay:
			err = l.PartitionOneWay(groups[0], groups[1])
		case len(groups) < 1:
			return usage("want at least one host group")
		default:
			err = l.Partition(groups...)
		}
	}
	if err != nil {
		return fail(err)
	}
	return printStatus(l, stdout, stderr)
}

func printStatus(l *Lab, stdout, stderr io.Writer) int {
	s, err := l.Status()
	if err != nil {
		fmt.Fprintf(stderr, "paceline lab status: %v\n", err)
		return ExitFailed
	}
	fmt.Fprint(stdout, s.String())
	return ExitOK
}

// parseInterleaved parses flags that may appear before, between or after
// positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errors.New("see usage")
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
