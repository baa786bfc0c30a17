package cli

import (
	"os"

	"github.com/paceline/paceline/internal/lab"
	"github.com/paceline/paceline/internal/labcluster"
	"github.com/paceline/paceline/internal/tlsutil"
)

func cmdLab(e *env, args []string) int {
	ctx, cancel := signalContext()
	defer cancel()
	start := func(l *lab.Lab, h *lab.Host) error { return labcluster.StartAgent(l, h, labcluster.Options{}) }
	if os.Getenv("PACELINE_LAB_NO_AGENTS") != "" {
		start = nil
	}
	return lab.CLI(ctx, args, e.stdout, e.stderr, start)
}

func cmdTLS(e *env, args []string) int { return tlsutil.CLI(args, e.stdout, e.stderr) }
