// Package procfs reads the little of /proc that paceline needs to tell
// whether processes really run: on this kind of host an exited process
// stays visible as a zombie until its parent (or, late, PID 1) reaps it,
// so "/proc/PID exists" never means "running".
package procfs

import (
	"bytes"
	"os"
	"strconv"
)

// Stat is the part of /proc/PID/stat paceline uses.
type Stat struct {
	PID   int
	State byte // R, S, D, Z, T, t, X, I, ...
	PPID  int
	PGRP  int
}

// Dead reports whether the state means the process no longer runs:
// Z (zombie: exited, not yet reaped) or X/x (dead).
func (s Stat) Dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// Read parses /proc/PID/stat.
func Read(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
	st, ok := Parse(b)
	st.PID = pid
	return st, ok
}

// Parse parses the contents of a /proc/PID/stat file. The command name
// (field 2) is in parentheses and may itself hold spaces and ')', so the
// fields are found after the last ')'.
func Parse(b []byte) (Stat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, false
	}
	// After ") ": state ppid pgrp session ...
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return Stat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return Stat{}, false
	}
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(b[:bytes.IndexByte(b, '(')])))
	return Stat{PID: pid, State: f[0][0], PPID: ppid, PGRP: pgrp}, true
}

// All lists every process (unreadable entries are skipped).
func All() []Stat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Stat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if st, ok := Read(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// Running reports whether pid exists and is not a zombie.
func Running(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, ok := Read(pid)
	return ok && !st.Dead()
}

// GroupAlive reports whether process group pgid has a member that is not
// a zombie.
func GroupAlive(pgid int) bool {
	for _, st := range All() {
		if st.PGRP == pgid && !st.Dead() {
			return true
		}
	}
	return false
}

// Children lists the PIDs whose parent is ppid (zombies included: an
// unreaped child is a leak too).
func Children(ppid int) []int {
	var out []int
	for _, st := range All() {
		if st.PPID == ppid {
			out = append(out, st.PID)
		}
	}
	return out
}
