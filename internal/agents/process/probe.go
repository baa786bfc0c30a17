package process

import (
	"bytes"
	"os"
	"strconv"
)

// procStat is the part of /proc/PID/stat this package needs.
type procStat struct {
	state byte // R, S, D, Z, T, t, X, I, ...
	pgrp  int
}

// readProcStat parses /proc/PID/stat. The command name (field 2) is
// enclosed in parentheses and may itself contain spaces and ')', so the
// fields are located after the last ')'.
func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	// After ") ": state ppid pgrp session ...
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], pgrp: pgrp}, true
}

// dead reports whether a /proc state means the process no longer runs:
// Z (zombie: exited, not yet reaped) or X/x (dead).
func (s procStat) dead() bool {
	return s.state == 'Z' || s.state == 'X' || s.state == 'x'
}

// ProbeRunning reports whether process pid exists and is not a zombie. An
// existing /proc/PID is not enough: an exited process stays visible as a
// zombie until its parent (or, for orphans, PID 1) reaps it.
func ProbeRunning(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, ok := readProcStat(pid)
	return ok && !st.dead()
}

// groupHasLive reports whether any process that is not a zombie belongs to
// process group pgid. It scans /proc; zombies are ignored because they can
// linger until PID 1 reaps them and hold nothing.
func groupHasLive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, ok := readProcStat(pid)
		if ok && st.pgrp == pgid && !st.dead() {
			return true
		}
	}
	return false
}
