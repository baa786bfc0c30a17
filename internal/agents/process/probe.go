package process

import "github.com/paceline/paceline/internal/procfs"

// ProbeRunning reports whether process pid exists and is not a zombie. An
// existing /proc/PID is not enough: an exited process stays visible as a
// zombie until its parent (or, for orphans, PID 1) reaps it.
func ProbeRunning(pid int) bool { return procfs.Running(pid) }

// groupHasLive reports whether any process that is not a zombie belongs to
// process group pgid; zombies can linger until PID 1 reaps them and hold
// nothing.
func groupHasLive(pgid int) bool { return procfs.GroupAlive(pgid) }
