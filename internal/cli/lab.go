package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
	"github.com/paceline/paceline/internal/tlsutil"
)

func cmdLab(e *env, args []string) int {
	ctx, cancel := signalContext()
	defer cancel()
	if len(args) > 0 && args[0] == "run" {
		return labRun(e, args[1:])
	}
	start := func(l *lab.Lab, h *lab.Host) error { return labcluster.StartAgent(l, h, labcluster.Options{}) }
	if os.Getenv("PACELINE_LAB_NO_AGENTS") != "" {
		start = nil
	}
	code := lab.CLI(ctx, args, e.stdout, e.stderr, start)
	if code == 0 && len(args) > 0 && args[0] == "up" && start != nil {
		fmt.Fprintln(e.stdout, "\nagents are starting; run client commands inside a host with:\n  paceline lab run h1 status      (any paceline command after the host name)")
	}
	return code
}

// labRun runs `paceline ARGS` inside a lab host with the lab's address,
// token and CA: `paceline lab run [--name N] HOST ARGS...`.
func labRun(e *env, args []string) int {
	name := os.Getenv("PACELINE_LAB")
	if name == "" {
		name = "pl1"
	}
	if len(args) >= 2 && args[0] == "--name" {
		name, args = args[1], args[2:]
	}
	if len(args) < 2 {
		fmt.Fprintln(e.stderr, "usage: paceline lab run [--name LAB] HOST COMMAND [ARGS...]   e.g. paceline lab run h1 status")
		return ExitUsage
	}
	l, err := lab.Open(name, "")
	if err != nil {
		return fail(e, err)
	}
	h, err := l.Host(args[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(e, err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	argv := append([]string{"env"}, labcluster.CLIEnv(l)...)
	argv = append(append(argv, exe), args[1:]...)
	out, err := l.Exec(ctx, h, argv...)
	e.stdout.Write(out)
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return xe.ExitCode() // the command already said why
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "error: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

func cmdTLS(e *env, args []string) int { return tlsutil.CLI(args, e.stdout, e.stderr) }
