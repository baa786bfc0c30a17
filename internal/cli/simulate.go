package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/paceline/paceline/api"
)

// listFlag is a repeatable flag that also takes comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l = append(*l, x)
		}
	}
	return nil
}

func cmdSimulate(e *env, args []string) int {
	var down listFlag
	var file *string
	cmd, code := startClient(e, "simulate", "simulate [--node-down NODE]... [--spec FILE] [--json]", args, func(fs *flag.FlagSet) {
		fs.Var(&down, "node-down", "simulate the loss of this node (repeat, or comma-separate, for several)")
		file = fs.String("spec", "", "simulate this spec instead of the current one (- for stdin)")
	})
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	if len(cmd.pos) > 0 {
		fmt.Fprintf(e.stderr, "error: unexpected argument %q\nusage: paceline simulate [--node-down NODE]... [--spec FILE] [--json]\n", cmd.pos[0])
		return ExitUsage
	}
	req := api.SimulateRequest{NodesDown: down}
	if *file != "" {
		doc, err := readSpecFile(*file, e.stdin)
		if err != nil {
			fmt.Fprintf(e.stderr, "error: %v\n", err)
			return ExitUsage
		}
		req.Spec = string(doc)
	}
	sim, err := cmd.c.Simulate(cmd.ctx, req)
	if err != nil {
		return fail(e, err)
	}
	if cmd.cf.json {
		return printJSON(e.stdout, sim)
	}
	renderSimulation(e.stdout, sim, *file)
	return ExitOK
}

func renderSimulation(w io.Writer, sim *api.Simulation, file string) {
	what := "now"
	var hyp []string
	if len(sim.NodesDown) > 0 {
		hyp = append(hyp, "nodes down: "+strings.Join(sim.NodesDown, ", "))
	}
	if file != "" {
		hyp = append(hyp, "spec from "+file)
	}
	if len(hyp) > 0 {
		what = "with " + strings.Join(hyp, "; ")
	}
	fmt.Fprintf(w, "Simulation from the cluster state at index %d (spec v%d), %s. Nothing is changed.\n", sim.Index, sim.SpecVersion, what)
	if file != "" {
		if len(sim.Changes) == 0 {
			fmt.Fprintln(w, "\nSpec changes: none")
		} else {
			fmt.Fprintln(w, "\nSpec changes:")
			for _, c := range sim.Changes {
				fmt.Fprintln(w, "  "+c)
			}
		}
	}
	fmt.Fprintln(w, "\nNodes:")
	down := map[string]bool{}
	for _, n := range sim.NodesDown {
		down[n] = true
	}
	for _, n := range sim.Nodes {
		st := "online"
		if !n.Online {
			st = "OFFLINE"
		}
		if down[n.Name] {
			st += " (simulated)"
		}
		var f []string
		if n.Standby {
			f = append(f, "standby")
		}
		if n.Maintenance {
			f = append(f, "maintenance")
		}
		fmt.Fprintf(w, "  %-12s %s %s\n", n.Name, st, strings.Join(f, ","))
	}
	if len(sim.Constraints) > 0 {
		fmt.Fprintln(w, "\nOperator constraints in force:")
		for _, c := range sim.Constraints {
			fmt.Fprintln(w, "  "+describeConstraint(c))
		}
	}
	fmt.Fprintln(w, "\nPlacement:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  RESOURCE\tSLOT\tCURRENT\tPLANNED\t")
	for _, r := range sim.Resources {
		if len(r.Slots) == 0 {
			fmt.Fprintf(tw, "  %s\t-\t-\t-\tnot placed\n", r.Name)
		}
		for _, s := range r.Slots {
			cur, pl := withRole(s.Current, s.CurrentRole), withRole(s.Planned, s.PlannedRole)
			change := ""
			switch {
			case s.Current == "" && s.Planned != "":
				change = "start"
			case s.Current != "" && s.Planned == "":
				change = "stop"
			case s.Current != s.Planned:
				change = "move"
			case s.CurrentRole != s.PlannedRole && s.PlannedRole != "":
				change = "promote"
			case s.CurrentRole != s.PlannedRole:
				change = "demote"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Name, s.Slot, cur, pl, change)
		}
	}
	tw.Flush()
	printTransition(w, sim.Transition, "\n")
	for _, u := range sim.Unplaced {
		fmt.Fprintf(w, "cannot place %s\n", u)
	}
}

func withRole(node, role string) string {
	if node == "" {
		return "-"
	}
	if role != "" {
		return node + " [" + role + "]"
	}
	return node
}

// printTransition prints the scheduler's actions in order with their
// dependencies and reasons.
func printTransition(w io.Writer, acts []api.TransitionAction, before string) {
	printTransitionTitled(w, acts, before+"Transition")
}

func printTransitionTitled(w io.Writer, acts []api.TransitionAction, title string) {
	if len(acts) == 0 {
		fmt.Fprintf(w, "%s: nothing to do\n", title)
		return
	}
	fmt.Fprintf(w, "%s (%d actions, in order):\n", title, len(acts))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range acts {
		after := ""
		if len(a.After) > 0 {
			var ids []string
			for _, x := range a.After {
				ids = append(ids, fmt.Sprint(x))
			}
			after = "after " + strings.Join(ids, ",")
		}
		reason := ""
		if a.Reason != "" {
			reason = "# " + a.Reason
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\ton %s\t%s\t%s\n", a.ID, a.Op, a.Slot, a.Node, after, reason)
	}
	tw.Flush()
}
