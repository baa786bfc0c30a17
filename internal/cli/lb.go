package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/paceline/paceline/api"
)

// cmdLB is `paceline lb status [--local]`: the built-in load balancers of
// every node, their frontends and servers.
func cmdLB(e *env, args []string) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(e.stderr, "usage: paceline lb status [--local] [--json]")
		return ExitUsage
	}
	var cf clientFlags
	fs := newFlagSet(e, "lb status", "lb status [--local] [--json]")
	cf.register(fs)
	local := fs.Bool("local", false, "only the load balancers of the agent that answers")
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return ExitUsage
	}
	c, err := cf.client()
	if err != nil {
		return fail(e, err)
	}
	ctx, cancel := cf.ctx()
	defer cancel()
	st, err := c.LoadBalancers(ctx, *local)
	if err != nil {
		return fail(e, err)
	}
	if cf.json {
		return printJSON(e.stdout, st)
	}
	renderLB(e.stdout, st)
	return ExitOK
}

// renderLB prints one block per load balancer and node.
func renderLB(w io.Writer, st *api.LoadBalancers) {
	if len(st.LoadBalancers) == 0 {
		fmt.Fprintln(w, "no load balancers (add a loadBalancers section to the spec; see docs/lb.md)")
	}
	for i, l := range st.LoadBalancers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		where := "on " + l.Node
		if l.Node == "" {
			where = "nowhere"
		}
		head := fmt.Sprintf("load balancer %s %s", l.Name, where)
		if l.VIP != "" {
			head += " (vip " + l.VIP + ")"
		}
		fmt.Fprintln(w, head)
		if l.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", l.Error)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range l.Frontends {
			state := "listening on " + f.Addr
			if f.Addr == "" {
				state = "NOT LISTENING"
			}
			if f.Error != "" {
				state += ": " + f.Error
			}
			fmt.Fprintf(tw, "  frontend %s\t%s\t%s → %s\t%s\n", f.Name, f.Bind, f.Mode, f.Backend, state)
		}
		for _, s := range l.Servers {
			flags := ""
			if s.Backup {
				flags = " backup"
			}
			fmt.Fprintf(tw, "  server %s/%s\t%s\t%s%s\tactive %d total %d failed %d\t%s\n", s.Backend, s.Name, s.Address,
				strings.ToUpper(s.State), flags, s.Active, s.Total, s.Failed, s.Reason)
		}
		tw.Flush()
	}
	var down []string
	for n, e := range st.Unreachable {
		down = append(down, n+": "+e)
	}
	sort.Strings(down)
	for _, d := range down {
		fmt.Fprintf(w, "unreachable %s\n", d)
	}
}
