package cli

import (
	"flag"
	"fmt"
	"github.com/paceline/paceline/internal/spec"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paceline/paceline/api"
)

// resourceSubs are the subcommands of `paceline resource`, with their usage.
var resourceSubs = []struct{ name, usage string }{
	{"list", "resource list [--json]"},
	{"show", "resource show NAME [--json]"},
	{"move", "resource move NAME [NODE] [--lifetime 10m] [--promoted]"},
	{"ban", "resource ban NAME [NODE] [--lifetime 10m] [--promoted]"},
	{"clear", "resource clear NAME [--node NODE]"},
	{"cleanup", "resource cleanup NAME [--node NODE]"},
	{"restart", "resource restart NAME"},
	{"enable", "resource enable NAME"},
	{"disable", "resource disable NAME"},
	{"manage", "resource manage NAME"},
	{"unmanage", "resource unmanage NAME"},
	{"failcount", "resource failcount [show|reset] NAME [--node NODE]"},
}

func resourceUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, s := range resourceSubs {
		fmt.Fprintln(w, "  paceline "+s.usage)
	}
	fmt.Fprintln(w, "\nmove/ban add a temporary location constraint (+INFINITY / -INFINITY) that disappears by itself\nafter --lifetime (10m, 1h30m, or ISO 8601 like PT10M), or on `paceline resource clear NAME`.\nSee docs/operations.md.")
}

func cmdResource(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		resourceUsage(e.stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub, args := args[0], args[1:]
	usage := ""
	for _, s := range resourceSubs {
		if s.name == sub {
			usage = s.usage
		}
	}
	if usage == "" {
		var names []string
		for _, s := range resourceSubs {
			names = append(names, s.name)
		}
		hint := ""
		if m := closest(sub, names); m != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", m)
		}
		fmt.Fprintf(e.stderr, "paceline resource: unknown subcommand %q%s\n\n", sub, hint)
		resourceUsage(e.stderr)
		return ExitUsage
	}
	// failcount reset NAME is cleanup; failcount show NAME is failcount NAME.
	if sub == "failcount" && len(args) > 0 && (args[0] == "reset" || args[0] == "show") {
		if args[0] == "reset" {
			sub, usage = "cleanup", "resource failcount reset NAME [--node NODE]"
		}
		args = args[1:]
	}
	var node, lifetime *string
	var promoted *bool
	cmd, code := startClient(e, "resource "+sub, usage, args, func(fs *flag.FlagSet) {
		switch sub {
		case "move", "ban":
			node = fs.String("node", "", "the node (instead of the NODE argument)")
			lifetime = fs.String("lifetime", "", "remove the constraint by itself after this long (10m, 1h30m, PT10M); default: until `resource clear`")
			promoted = fs.Bool("promoted", false, "only the promoted role (promotable resources)")
		case "clear":
			node = fs.String("node", "", "only the constraints on this node")
		case "cleanup":
			node = fs.String("node", "", "only this node's fail count")
		case "failcount":
			node = fs.String("node", "", "only this node")
		}
	})
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	pos := cmd.pos
	wantArgs := func(min, max int) bool {
		if len(pos) < min || len(pos) > max {
			fmt.Fprintf(e.stderr, "usage: paceline %s\n", usage)
			return false
		}
		return true
	}
	if sub == "list" {
		if !wantArgs(0, 0) {
			return ExitUsage
		}
		return resourceList(e, cmd)
	}
	max := 1
	if sub == "move" || sub == "ban" {
		max = 2
	}
	if !wantArgs(1, max) {
		return ExitUsage
	}
	name := pos[0]
	switch sub {
	case "show":
		return resourceShow(e, cmd, name)
	case "move", "ban":
		req := api.ConstraintRequest{Node: *node, Lifetime: *lifetime, Promoted: *promoted}
		if len(pos) == 2 {
			if req.Node != "" && req.Node != pos[1] {
				fmt.Fprintf(e.stderr, "error: two nodes given (%s and --node %s); give one\n", pos[1], req.Node)
				return ExitUsage
			}
			req.Node = pos[1]
		}
		if req.Lifetime != "" {
			if _, err := api.ParseLifetime(req.Lifetime); err != nil {
				fmt.Fprintf(e.stderr, "error: %v\n", err)
				return ExitUsage
			}
		}
		call := cmd.c.Move
		if sub == "ban" {
			call = cmd.c.Ban
		}
		res, err := call(cmd.ctx, name, req)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, res)
		}
		renderConstraintResult(e, name, res)
	case "clear":
		res, err := cmd.c.Clear(cmd.ctx, name, *node)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, res)
		}
		renderConstraintResult(e, name, res)
		if len(res.Removed) == 0 {
			where := ""
			if *node != "" {
				where = " on " + *node
			}
			fmt.Fprintf(e.stdout, "%s has no operator constraints%s: nothing to clear\n", name, where)
		}
	case "cleanup":
		if err := cmd.c.Cleanup(cmd.ctx, name, *node); err != nil {
			return fail(e, err)
		}
		where := "every node"
		if *node != "" {
			where = *node
		}
		fmt.Fprintf(e.stdout, "fail counts of %s on %s cleared\n", name, where)
	case "restart":
		res, err := cmd.c.Restart(cmd.ctx, name)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, res)
		}
		fmt.Fprintf(e.stdout, "%s (restart generation %d)\n", res.Message, res.Generation)
	case "enable", "disable", "manage", "unmanage":
		res, err := cmd.c.SetResource(cmd.ctx, name, sub)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, res)
		}
		fmt.Fprintln(e.stdout, res.Message)
		for _, c := range res.Changes {
			fmt.Fprintln(e.stdout, "  "+c)
		}
		for _, w := range res.Warnings {
			fmt.Fprintln(e.stderr, "warning: "+w)
		}
		if res.Version > 0 {
			printTransitionTitled(e.stdout, res.Transition, "Transition the scheduler plans now (whole cluster)")
			fmt.Fprintf(e.stdout, "undo with `paceline spec rollback %d`\n", res.Version-1)
		}
	case "failcount":
		fs, err := cmd.c.FailCounts(cmd.ctx, name, *node)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, fs)
		}
		if len(fs) == 0 {
			fmt.Fprintf(e.stdout, "%s has no failures recorded\n", name)
			return ExitOK
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RESOURCE\tNODE\tCOUNT\tLAST\tREASON")
		for _, f := range fs {
			r := f.Resource
			if r == "" {
				r = name
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r, f.Node, f.Count, f.Last.Local().Format("2006-01-02 15:04:05"), f.Reason)
		}
		tw.Flush()
		fmt.Fprintf(e.stdout, "reset with `paceline resource cleanup %s`\n", name)
	}
	return ExitOK
}

func resourceList(e *env, cmd *clientCmd) int {
	l, err := cmd.c.Resources(cmd.ctx)
	if err != nil {
		return fail(e, err)
	}
	if cmd.cf.json {
		return printJSON(e.stdout, l)
	}
	if len(l.Resources) == 0 {
		fmt.Fprintln(e.stdout, "no resources (apply a spec with `paceline apply -f spec.yaml`)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODE\tCLASS\tRUNS ON\tTARGET\tMANAGED\tFAILS\tCONSTRAINTS")
	for _, r := range l.Resources {
		name := r.Name
		if r.Group != "" {
			name += " (" + r.Group + ")"
		}
		managed := "yes"
		if !r.Managed {
			managed = "NO"
		}
		if r.Maintenance {
			managed += ",maintenance"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Mode, r.Class, where(r), target(r), managed, fails(r.FailCount), constraintsShort(r.Constraints))
	}
	tw.Flush()
	for _, r := range l.Resources {
		if r.Blocked != "" {
			fmt.Fprintf(e.stdout, "%s is BLOCKED after a failure (%s): run `paceline resource cleanup %s`\n", r.Name, r.Blocked, r.Name)
		}
		for _, u := range r.Unplaced {
			fmt.Fprintf(e.stdout, "cannot place %s\n", u)
		}
	}
	return ExitOK
}

func where(r api.ResourceSummary) string {
	if len(r.Instances) == 0 {
		return "-"
	}
	var parts []string
	for _, i := range r.Instances {
		p := i.Node
		if i.Role != "" {
			p += "[" + i.Role + "]"
		}
		if i.State != "running" && i.State != "" {
			p += "(" + i.State + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func target(r api.ResourceSummary) string {
	t := r.TargetRole
	if t == "" {
		t = "started"
	}
	if r.Blocked != "" {
		t += ",BLOCKED"
	}
	return t
}

func fails(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, n := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s:%d", n, m[n]))
	}
	return strings.Join(parts, " ")
}

func constraintsShort(cs []api.OperatorConstraint) string {
	if len(cs) == 0 {
		return "-"
	}
	var parts []string
	for _, c := range cs {
		p := "prefer " + c.Node
		if c.Kind == "ban" {
			p = "ban " + c.Node
		}
		if c.Role != "" {
			p += "[" + c.Role + "]"
		}
		if c.Expires != nil {
			p += " (" + remaining(c) + " left)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// remaining is the constraint's time left, rounded to the second.
func remaining(c api.OperatorConstraint) string {
	if c.Expires == nil {
		return "no lifetime"
	}
	left := time.Duration(c.RemainingMS) * time.Millisecond
	if left <= 0 {
		return "expired, being removed"
	}
	return left.Round(time.Second).String()
}

// describeConstraint is one line: ID, score and node, lifetime, author.
func describeConstraint(c api.OperatorConstraint) string {
	role := ""
	if c.Role != "" {
		role = " (" + c.Role + " role)"
	}
	life := "until `paceline resource clear " + c.Resource + "`"
	if c.Expires != nil {
		life = fmt.Sprintf("expires in %s (at %s)", remaining(c), c.Expires.Local().Format("2006-01-02 15:04:05"))
	}
	by := ""
	if c.Author != "" {
		by = ", by " + c.Author
	}
	return fmt.Sprintf("%s: %s %s on %s%s, %s%s", c.ID, c.Resource, c.Score, c.Node, role, life, by)
}

func renderConstraintResult(e *env, name string, res *api.ConstraintResult) {
	for _, w := range res.Warnings {
		fmt.Fprintln(e.stderr, "warning: "+w)
	}
	if res.Added != nil {
		fmt.Fprintln(e.stdout, "added "+describeConstraint(*res.Added))
	}
	for _, c := range res.Removed {
		if res.Added != nil && c.ID == res.Added.ID {
			continue // replaced by the one just added
		}
		fmt.Fprintln(e.stdout, "removed "+c.ID)
	}
	if res.Added != nil || len(res.Removed) > 0 {
		printTransitionTitled(e.stdout, res.Transition, "Transition the scheduler plans now (whole cluster)")
	}
	if len(res.Active) > 0 {
		fmt.Fprintf(e.stdout, "operator constraints of %s now:\n", name)
		for _, c := range res.Active {
			fmt.Fprintln(e.stdout, "  "+describeConstraint(c))
		}
		fmt.Fprintf(e.stdout, "remove them with `paceline resource clear %s`\n", name)
	}
}

func resourceShow(e *env, cmd *clientCmd, name string) int {
	d, err := cmd.c.Resource(cmd.ctx, name)
	if err != nil {
		return fail(e, err)
	}
	if cmd.cf.json {
		return printJSON(e.stdout, d)
	}
	renderResource(e.stdout, d)
	return ExitOK
}

func renderResource(w io.Writer, d *api.ResourceDetail) {
	if d.Mode == "group" {
		fmt.Fprintf(w, "Group %s: %s   (spec v%d)\n", d.Name, strings.Join(d.Members, " → "), d.SpecVersion)
	} else {
		grp := ""
		if d.Group != "" {
			grp = ", member of group " + d.Group
		}
		fmt.Fprintf(w, "Resource %s (%s, %s%s)   (spec v%d)\n", d.Name, d.Class, d.Mode, grp, d.SpecVersion)
	}
	managed := "yes"
	if !d.Managed {
		managed = "NO (paceline neither starts, stops nor recovers it; `paceline resource manage " + d.Name + "`)"
	}
	fmt.Fprintf(w, "  target role: %s   managed: %s", target(d.ResourceSummary), managed)
	if d.Generation > 0 {
		fmt.Fprintf(w, "   restarts requested: %d", d.Generation)
	}
	fmt.Fprintln(w)
	if d.Blocked != "" {
		fmt.Fprintf(w, "  BLOCKED after failure: %s (run `paceline resource cleanup %s`)\n", d.Blocked, d.Name)
	}
	fmt.Fprintln(w, "\nInstances:")
	if len(d.Instances) == 0 {
		fmt.Fprintln(w, "  none placed")
	}
	for _, i := range d.Instances {
		role := ""
		if i.Role != "" {
			role = " " + i.Role
		}
		fmt.Fprintf(w, "  [%d] %-12s %-9s%s epoch %d\n", i.Slot, i.Node, i.State, role, i.Epoch)
	}
	for _, u := range d.Unplaced {
		fmt.Fprintf(w, "  cannot place %s\n", u)
	}
	fmt.Fprintln(w, "\nOperator constraints (resource move/ban):")
	if len(d.Constraints) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range d.Constraints {
		fmt.Fprintln(w, "  "+describeConstraint(c))
	}
	if len(d.Constraints) > 0 {
		fmt.Fprintf(w, "  (remove them with `paceline resource clear %s`)\n", d.Name)
	}
	if len(d.SpecConstraints) > 0 {
		fmt.Fprintln(w, "\nSpec constraints:")
		for _, c := range d.SpecConstraints {
			fmt.Fprintln(w, "  "+c)
		}
	}
	fmt.Fprintln(w, "\nFail counts:")
	if len(d.Fails) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, f := range d.Fails {
		r := ""
		if f.Resource != "" {
			r = f.Resource + " "
		}
		fmt.Fprintf(w, "  %son %s: %d (last %s: %s)\n", r, f.Node, f.Count, f.Last.Local().Format("2006-01-02 15:04:05"), f.Reason)
	}
	fmt.Fprintln(w, "\nDefinition:")
	for _, l := range strings.Split(strings.TrimRight(d.YAML, "\n"), "\n") {
		fmt.Fprintln(w, "  "+l)
	}
	if len(d.Events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		for _, ev := range d.Events {
			fmt.Fprintln(w, "  "+formatEvent(ev))
		}
	}
}

// renderOperatorConstraints is the status section listing every operator
// constraint in force with its remaining time.
func renderOperatorConstraints(w io.Writer, cs []api.OperatorConstraint) {
	if len(cs) == 0 {
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	fmt.Fprintf(w, "\nOperator constraints (%d; `paceline resource clear NAME` removes them):\n", len(cs))
	for _, c := range cs {
		fmt.Fprintln(w, "  "+describeConstraint(c))
	}
}

func closest(s string, candidates []string) string { return spec.Suggest(s, candidates) }
