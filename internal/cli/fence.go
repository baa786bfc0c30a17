package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paceline/paceline/api"
)

// fenceSubs are the subcommands of `paceline fence` besides fencing a node.
var fenceSubs = []struct{ name, usage string }{
	{"confirm", "fence confirm NODE"},
	{"history", "fence history [NODE] [--json]"},
	{"status", "fence status [--json]"},
	{"check", "fence check [DEVICE] [--json]"},
}

func fenceUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage:\n  paceline fence NODE [--off|--reboot|--on] [--wait 5m]")
	for _, s := range fenceSubs {
		fmt.Fprintln(w, "  paceline "+s.usage)
	}
	fmt.Fprintln(w, `
fence NODE powers NODE off (--off), off then on (--reboot, the default) or on (--on) through its
fence devices (spec section fencing; levels in order), confirming an off with the device's status.
fence confirm NODE records that you checked NODE is down (powered off by hand, unplugged): the
cluster then recovers its resources as if it had been fenced. Never confirm a node you did not check.
See docs/fencing.md.`)
}

func cmdFence(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fenceUsage(e.stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub := ""
	usage := "fence NODE [--off|--reboot|--on] [--wait 5m]"
	for _, s := range fenceSubs {
		if s.name == args[0] {
			sub, usage, args = s.name, s.usage, args[1:]
		}
	}
	var off, reboot, on *bool
	var wait *time.Duration
	cmd, code := startClient(e, "fence", usage, args, func(fs *flag.FlagSet) {
		if sub == "" {
			off = fs.Bool("off", false, "power the node off (it stays off)")
			reboot = fs.Bool("reboot", false, "power the node off, confirm, then on (default)")
			on = fs.Bool("on", false, "power the node on (unfence)")
			wait = fs.Duration("wait", 5*time.Minute, "how long to wait for the fence operation (every level, retries and status polls)")
		}
	})
	if code != ExitOK {
		return code
	}
	defer cmd.stop()
	pos := cmd.pos
	argc := func(min, max int) bool {
		if len(pos) < min || len(pos) > max {
			fmt.Fprintf(e.stderr, "usage: paceline %s\n", usage)
			return false
		}
		return true
	}
	switch sub {
	case "confirm":
		if !argc(1, 1) {
			return ExitUsage
		}
		rec, err := cmd.c.FenceConfirm(cmd.ctx, pos[0])
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, rec)
		}
		fmt.Fprintf(e.stdout, "%s confirmed down by %s: its resources may now start elsewhere\n", rec.Node, rec.Operator)
		return ExitOK
	case "history":
		if !argc(0, 1) {
			return ExitUsage
		}
		node := ""
		if len(pos) == 1 {
			node = pos[0]
		}
		h, err := cmd.c.FenceHistory(cmd.ctx, node)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, h)
		}
		renderFenceHistory(e.stdout, h)
		return ExitOK
	case "status":
		if !argc(0, 0) {
			return ExitUsage
		}
		st, err := cmd.c.FenceStatus(cmd.ctx)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, st)
		}
		renderFenceStatus(e.stdout, st)
		return ExitOK
	case "check":
		if !argc(0, 1) {
			return ExitUsage
		}
		dev := ""
		if len(pos) == 1 {
			dev = pos[0]
		}
		fmt.Fprintln(e.stderr, "checking fence devices from the leader (monitor action; may take up to each device's timeout)…")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		res, err := cmd.c.FenceCheck(ctx, dev)
		if err != nil {
			return fail(e, err)
		}
		if cmd.cf.json {
			return printJSON(e.stdout, res)
		}
		bad := 0
		for _, r := range res {
			if r.OK {
				fmt.Fprintf(e.stdout, "%-20s ok\n", r.Device)
			} else {
				bad++
				fmt.Fprintf(e.stdout, "%-20s FAILED: %s\n", r.Device, r.Error)
			}
		}
		if bad > 0 {
			fmt.Fprintf(e.stderr, "%d device(s) failed: fix their parameters/credentials (paceline spec get shows them) before you need them\n", bad)
			return ExitFailure
		}
		return ExitOK
	}
	if !argc(1, 1) {
		return ExitUsage
	}
	action, n := "reboot", 0
	for _, f := range []struct {
		set  bool
		name string
	}{{*off, "off"}, {*reboot, "reboot"}, {*on, "on"}} {
		if f.set {
			action = f.name
			n++
		}
	}
	if n > 1 {
		fmt.Fprintln(e.stderr, "paceline fence: choose one of --off, --reboot, --on")
		return ExitUsage
	}
	node := pos[0]
	fmt.Fprintf(e.stderr, "fencing %s (%s) through its fence devices; this waits for the devices and, for off, for status to confirm…\n", node, action)
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	rec, err := cmd.c.Fence(ctx, node, action)
	if err != nil {
		return fail(e, err)
	}
	if cmd.cf.json {
		printJSON(e.stdout, rec)
	} else {
		fmt.Fprintln(e.stdout, fenceLine(*rec))
	}
	if !rec.OK {
		fmt.Fprintf(e.stderr, "hint: paceline fence history %s shows every attempt; paceline fence check tests the devices\n", node)
		return ExitFailure
	}
	return ExitOK
}

func fenceLine(r api.FenceRecord) string {
	d := time.Duration(r.DurationMS) * time.Millisecond
	switch {
	case r.Action == "confirm":
		return fmt.Sprintf("%s confirmed down by %s", r.Node, r.Operator)
	case r.OK:
		s := fmt.Sprintf("%s %s: done in %s (level %d: %s, %d attempt(s))", r.Node, r.Action, d.Round(time.Millisecond), r.Level, strings.Join(r.Devices, ", "), r.Attempts)
		if r.Warning != "" {
			s += "; warning: " + r.Warning
		}
		return s
	default:
		return fmt.Sprintf("%s %s FAILED after %s: %s", r.Node, r.Action, d.Round(time.Millisecond), r.Error)
	}
}

func renderFenceHistory(w io.Writer, h []api.FenceRecord) {
	if len(h) == 0 {
		fmt.Fprintln(w, "no fence operations recorded")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tACTION\tRESULT\tWHY\tDETAIL")
	for _, r := range h {
		res := "ok"
		if !r.OK {
			res = "FAILED"
		}
		detail := ""
		switch {
		case r.Action == "confirm":
			detail = "by " + r.Operator
		case r.OK:
			detail = fmt.Sprintf("level %d %s in %s", r.Level, strings.Join(r.Devices, ","), (time.Duration(r.DurationMS) * time.Millisecond).Round(time.Millisecond))
		default:
			detail = r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format("2006-01-02 15:04:05"), r.Node, r.Action, res, r.Reason, detail)
	}
	tw.Flush()
}

func renderFenceStatus(w io.Writer, st *api.FenceStatus) {
	if st.Mode == "" {
		fmt.Fprintln(w, "fencing: not configured (no fencing section in the spec): lost nodes are recovered by the hold-lease rule alone")
	} else {
		fmt.Fprintf(w, "fencing: mode %s, recovery action %s\n", st.Mode, st.Action)
		for _, d := range st.Devices {
			extra := ""
			if d.Unfence {
				extra = " (unfences)"
			}
			fmt.Fprintf(w, "  device %-16s %-14s fences %s%s\n", d.Name, d.Kind, strings.Join(d.Nodes, ", "), extra)
		}
	}
	for _, f := range st.Fenced {
		fmt.Fprintf(w, "fenced: %s since %s (gets no resources until it is back and unfenced)\n", f.Node, f.Since.Local().Format("2006-01-02 15:04:05"))
	}
	for _, x := range st.Warnings {
		fmt.Fprintln(w, "WARNING: "+x)
	}
}
