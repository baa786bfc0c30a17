package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paceline/paceline/api"
)

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return ExitOK
}

func cmdStatus(e *env, args []string) int {
	var cf clientFlags
	fs := newFlagSet(e, "status", "status [--json] [--watch [--interval 1s]]")
	cf.register(fs)
	watch := fs.Bool("watch", false, "refresh until interrupted")
	interval := fs.Duration("interval", time.Second, "refresh interval with --watch")
	if _, err := parseFlags(fs, args); err != nil {
		return ExitUsage
	}
	c, err := cf.client()
	if err != nil {
		return fail(e, err)
	}
	sctx, stop := signalContext()
	defer stop()
	for {
		ctx, cancel := cf.ctx()
		st, err := c.Status(ctx)
		cancel()
		if *watch {
			fmt.Fprint(e.stdout, "\033[H\033[2J")
		}
		if err != nil {
			if !*watch {
				return fail(e, err)
			}
			fmt.Fprintf(e.stdout, "%s  error: %v\n", time.Now().Format("15:04:05"), err)
		} else if cf.json {
			printJSON(e.stdout, st)
		} else {
			renderStatus(e.stdout, st)
		}
		if !*watch {
			return ExitOK
		}
		select {
		case <-sctx.Done():
			return ExitOK
		case <-time.After(*interval):
		}
	}
}

func renderStatus(w io.Writer, st *api.Status) {
	q := "yes"
	if !st.Quorum {
		q = "NO — the cluster cannot change anything until a majority of control nodes is back"
	}
	leader := st.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "Cluster %s   leader %s   quorum %s   spec v%d   (answered by %s at %s)\n", st.Cluster, leader, q, st.SpecVersion, st.Answerer, time.Now().Format("15:04:05"))
	if st.Maintenance {
		fmt.Fprintln(w, "*** cluster maintenance mode: nothing is started or stopped ***")
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	if len(st.WaitingFor) > 0 {
		fmt.Fprintf(w, "*** wait-for-all: nothing starts until every control node has been seen at once; waiting for %s (if one is down for good: `paceline node confirm-down NODE`) ***\n", strings.Join(st.WaitingFor, ", "))
	}
	fmt.Fprintf(w, "\nNodes (%d):\n", len(st.Nodes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range st.Nodes {
		state := "online"
		if !n.Online {
			state = "OFFLINE"
		}
		since := "since " + n.Since.Local().Format("15:04:05")
		if n.Role == "witness" {
			// A witness votes and runs nothing: it is reachable or not.
			state, since = "voting", ""
			if !n.Online {
				state = "UNREACHABLE"
			}
		}
		var flags []string
		if n.Leader {
			flags = append(flags, "leader")
		}
		if n.Standby {
			flags = append(flags, "standby")
		}
		if n.Maintenance {
			flags = append(flags, "maintenance")
		}
		if n.Role == "control" && !n.Voter {
			flags = append(flags, "not-a-voter")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, state, n.APIAddr, since, strings.Join(flags, ","))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nResources (%d):\n", len(st.Resources))
	for _, r := range st.Resources {
		fmt.Fprintf(w, "  %s (%s, %s)", r.Name, r.Class, r.Mode)
		if r.Target == "stopped" {
			fmt.Fprint(w, " disabled")
		}
		if r.Blocked != "" {
			fmt.Fprintf(w, " BLOCKED after failure: %s (run `paceline resource cleanup %s`)", r.Blocked, r.Name)
		}
		if r.Frozen != "" {
			fmt.Fprintf(w, " FROZEN where it is after failure (onFail block): %s (run `paceline resource cleanup %s`)", r.Frozen, r.Name)
		}
		if r.Unmanaged {
			fmt.Fprint(w, " unmanaged")
		}
		fmt.Fprintln(w)
		if len(r.Instances) == 0 && r.Target != "stopped" {
			fmt.Fprintln(w, "      not running anywhere")
		}
		for _, i := range r.Instances {
			role := ""
			if i.Role != "" {
				role = " " + i.Role
			}
			fmt.Fprintf(w, "      [%d] %-12s %-9s epoch %d%s\n", i.Slot, i.Node, i.State, i.Epoch, role)
		}
		for _, n := range sortedKeys(r.FailCount) {
			fmt.Fprintf(w, "      fail count on %s: %d\n", n, r.FailCount[n])
		}
		for _, u := range r.Unplaced {
			fmt.Fprintf(w, "      cannot place %s\n", u)
		}
	}
	renderOperatorConstraints(w, st.Constraints)
	if len(st.Events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		for _, ev := range st.Events {
			fmt.Fprintf(w, "  %s\n", formatEvent(ev))
		}
	}
}

func formatEvent(ev api.Event) string {
	return fmt.Sprintf("%s  %-18s %s", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Type, ev.Message)
}

// clientCmd is a parsed client command, connected and with a deadline.
type clientCmd struct {
	cf   clientFlags
	c    *api.Client
	pos  []string
	ctx  context.Context
	stop context.CancelFunc
}

// startClient parses a client command's flags (the shared ones plus those
// addFlags registers) and builds its client. When code is not ExitOK the
// command must return it.
func startClient(e *env, name, usage string, args []string, addFlags func(fs *flag.FlagSet)) (cmd *clientCmd, code int) {
	cmd = &clientCmd{}
	fs := newFlagSet(e, name, usage)
	cmd.cf.register(fs)
	if addFlags != nil {
		addFlags(fs)
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, ExitUsage
	}
	cmd.pos = pos
	if cmd.c, err = cmd.cf.client(); err != nil {
		return nil, fail(e, err)
	}
	cmd.ctx, cmd.stop = cmd.cf.ctx()
	return cmd, ExitOK
}

func readSpecFile(path string, stdin io.Reader) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("no spec file: pass -f spec.yaml (or -f - for stdin)")
	}
	if path == "-" {
		return io.ReadAll(stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return b, nil
}

func cmdApply(e *env, args []string) int {
	var file, comment *string
	var dry *bool
	cmd, code := startClient(e, "apply", "apply -f spec.yaml [--dry-run] [--comment TEXT]", args, func(fs *flag.FlagSet) {
		file = fs.String("f", "", "spec file (- for stdin)")
		dry = fs.Bool("dry-run", false, "show what would change, change nothing")
		comment = fs.String("comment", "", "note recorded in the spec history")
	})
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	cf := cmd.cf
	doc, err := readSpecFile(*file, e.stdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitUsage
	}
	res, err := cmd.c.Apply(cmd.ctx, doc, *dry, *comment)
	if err != nil {
		return fail(e, err)
	}
	if cf.json {
		return printJSON(e.stdout, res)
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(e.stdout, "no changes")
	}
	for _, ch := range res.Changes {
		fmt.Fprintln(e.stdout, ch)
	}
	if len(res.Plan) > 0 {
		fmt.Fprintln(e.stdout, "plan:")
		for _, p := range res.Plan {
			fmt.Fprintln(e.stdout, "  "+p)
		}
	}
	if *dry {
		printTransition(e.stdout, res.Transition, "")
	}
	if *dry {
		fmt.Fprintf(e.stdout, "dry run: nothing changed (current version %d)\n", res.Version)
	} else {
		fmt.Fprintf(e.stdout, "applied as version %d\n", res.Version)
	}
	return ExitOK
}

func cmdSpec(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: paceline spec get [--version N] | diff -f FILE | history | rollback VERSION")
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	var file *string
	var version *int
	cmd, code := startClient(e, "spec "+sub, "spec "+sub, args, func(fs *flag.FlagSet) {
		file = fs.String("f", "", "spec file (diff)")
		version = fs.Int("version", 0, "spec version (get)")
	})
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	c, ctx, cf, pos := cmd.c, cmd.ctx, cmd.cf, cmd.pos
	switch sub {
	case "get":
		d, err := c.SpecVersionYAML(ctx, *version)
		if err != nil {
			return fail(e, err)
		}
		if cf.json {
			return printJSON(e.stdout, d)
		}
		fmt.Fprintf(e.stdout, "# version %d\n%s", d.Version, d.YAML)
	case "diff":
		doc, err := readSpecFile(*file, e.stdin)
		if err != nil {
			fmt.Fprintf(e.stderr, "error: %v\n", err)
			return ExitUsage
		}
		d, err := c.Diff(ctx, doc)
		if err != nil {
			return fail(e, err)
		}
		if cf.json {
			return printJSON(e.stdout, d)
		}
		if len(d.Changes) == 0 {
			fmt.Fprintf(e.stdout, "no differences from version %d\n", d.Version)
		}
		for _, ch := range d.Changes {
			fmt.Fprintln(e.stdout, ch)
		}
	case "history":
		h, err := c.History(ctx)
		if err != nil {
			return fail(e, err)
		}
		if cf.json {
			return printJSON(e.stdout, h)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tTIME\tAUTHOR\tCOMMENT")
		for _, v := range h {
			cur := ""
			if v.Current {
				cur = " (current)"
			}
			fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\n", v.Version, cur, v.Time.Local().Format("2006-01-02 15:04:05"), v.Author, v.Comment)
		}
		tw.Flush()
	case "rollback":
		if len(pos) != 1 {
			fmt.Fprintln(e.stderr, "usage: paceline spec rollback VERSION")
			return ExitUsage
		}
		v, err := strconv.Atoi(pos[0])
		if err != nil {
			fmt.Fprintf(e.stderr, "error: %q is not a version number (see `paceline spec history`)\n", pos[0])
			return ExitUsage
		}
		res, err := c.Rollback(ctx, v)
		if err != nil {
			return fail(e, err)
		}
		for _, ch := range res.Changes {
			fmt.Fprintln(e.stdout, ch)
		}
		fmt.Fprintf(e.stdout, "rolled back to version %d's content as version %d\n", v, res.Version)
	default:
		fmt.Fprintf(e.stderr, "unknown spec subcommand %q (get | diff | history | rollback)\n", sub)
		return ExitUsage
	}
	return ExitOK
}

func cmdNode(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: paceline node list | standby NODE | unstandby NODE | maintenance NODE | unmaintenance NODE | confirm-down NODE | remove NODE")
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	cmd, code := startClient(e, "node "+sub, "node "+sub+" [NODE]", args, nil)
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	c, ctx, cf, pos := cmd.c, cmd.ctx, cmd.cf, cmd.pos
	var err error
	switch sub {
	case "list":
		ns, err := c.Nodes(ctx)
		if err != nil {
			return fail(e, err)
		}
		if cf.json {
			return printJSON(e.stdout, ns)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tADDRESS\tFLAGS")
		for _, n := range ns {
			state := "online"
			if !n.Online {
				state = "offline"
			}
			if n.Role == "witness" {
				state = map[bool]string{true: "voting", false: "unreachable"}[n.Online]
			}
			var f []string
			for _, x := range []struct {
				on   bool
				name string
			}{{n.Leader, "leader"}, {n.Voter, "voter"}, {n.Standby, "standby"}, {n.Maintenance, "maintenance"}} {
				if x.on {
					f = append(f, x.name)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, state, n.APIAddr, strings.Join(f, ","))
		}
		tw.Flush()
	case "standby", "unstandby", "maintenance", "unmaintenance", "confirm-down", "remove":
		if len(pos) != 1 {
			fmt.Fprintf(e.stderr, "usage: paceline node %s NODE\n", sub)
			return ExitUsage
		}
		if sub == "remove" {
			err = c.RemoveNode(ctx, pos[0])
		} else {
			err = c.NodeAction(ctx, pos[0], sub)
		}
		if err != nil {
			return fail(e, err)
		}
		fmt.Fprintf(e.stdout, "node %s: %s done\n", pos[0], sub)
	default:
		fmt.Fprintf(e.stderr, "unknown node subcommand %q (list | standby | unstandby | maintenance | unmaintenance | confirm-down | remove)\n", sub)
		return ExitUsage
	}
	return ExitOK
}

func cmdEvents(e *env, args []string) int {
	var cf clientFlags
	fs := newFlagSet(e, "events", "events [--follow] [--after SEQ]")
	cf.register(fs)
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	after := fs.Uint64("after", 0, "only events after this sequence number")
	if _, err := parseFlags(fs, args); err != nil {
		return ExitUsage
	}
	c, err := cf.client()
	if err != nil {
		return fail(e, err)
	}
	sctx, stop := signalContext()
	defer stop()
	seq := *after
	failures := 0
	for {
		wait := time.Duration(0)
		if *follow {
			wait = 25 * time.Second
		}
		ctx, cancel := cf.ctx()
		if *follow {
			cancel()
			ctx, cancel = context.WithTimeout(sctx, wait+10*time.Second)
		}
		evs, err := c.Events(ctx, seq, wait)
		cancel()
		if err != nil {
			if !*follow || sctx.Err() != nil {
				if sctx.Err() != nil {
					return ExitOK
				}
				return fail(e, err)
			}
			failures++
			if failures == 1 {
				fmt.Fprintf(e.stderr, "(events: %v; retrying)\n", err)
			}
			select {
			case <-sctx.Done():
				return ExitOK
			case <-time.After(time.Second):
			}
			continue
		}
		failures = 0
		for _, ev := range evs {
			if cf.json {
				b, _ := json.Marshal(ev)
				fmt.Fprintln(e.stdout, string(b))
			} else {
				fmt.Fprintln(e.stdout, formatEvent(ev))
			}
			seq = ev.Seq
		}
		if !*follow {
			return ExitOK
		}
	}
}
