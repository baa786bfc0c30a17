package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupOps freezes, thaws and kills the processes of one cgroup directory.
type cgroupOps interface {
	freeze(dir string) error
	thaw(dir string) error
	frozen(dir string) (bool, error)
	killAll(dir string) error
}

// findCgroup picks the hierarchy the lab uses: pref ("v1" or "v2") if not
// empty, else the cgroup v1 freezer when mounted, else cgroup2.
func findCgroup(pref string) (kind, base string, err error) {
	kinds := []string{"v1", "v2"}
	switch pref {
	case "":
	case "v1", "v2":
		kinds = []string{pref}
	default:
		return "", "", fmt.Errorf("cgroup kind %q invalid: want v1 or v2", pref)
	}
	for _, k := range kinds {
		if b, err := cgroupBase(k); err == nil {
			return k, b, nil
		}
	}
	return "", "", errors.New("a cgroup hierarchy with freezer: mount the cgroup v1 freezer controller or cgroup2")
}

// cgroupBase returns the mount point of the hierarchy of kind ("v1": the v1
// freezer controller; "v2": cgroup2 with cgroup.freeze support).
func cgroupBase(kind string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mnt := pf[4]
		switch {
		case kind == "v1" && qf[0] == "cgroup" && slices.Contains(strings.Split(qf[2], ","), "freezer"):
			return mnt, nil
		case kind == "v2" && qf[0] == "cgroup2":
			// cgroup.freeze exists only in non-root cgroups; need kernel ≥ 5.2.
			if _, err := os.Stat(filepath.Join(mnt, "cgroup.procs")); err == nil {
				return mnt, nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup %s hierarchy mounted", kind)
}

func cgroupOpsFor(kind string) cgroupOps {
	if kind == "v2" {
		return cgroupV2{}
	}
	return cgroupV1{}
}

// cgroupV1 uses the v1 freezer controller.
type cgroupV1 struct{}

func (cgroupV1) freeze(dir string) error {
	if err := writeFile(filepath.Join(dir, "freezer.state"), "FROZEN"); err != nil {
		return err
	}
	return waitFor(10*time.Second, func() (bool, error) { return cgroupV1{}.frozen(dir) },
		"cgroup %s to freeze", dir)
}

func (cgroupV1) thaw(dir string) error {
	if err := writeFile(filepath.Join(dir, "freezer.state"), "THAWED"); err != nil {
		return err
	}
	return waitFor(10*time.Second, func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		return strings.TrimSpace(string(b)) == "THAWED", err
	}, "cgroup %s to thaw", dir)
}

func (cgroupV1) frozen(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
	return strings.TrimSpace(string(b)) == "FROZEN", err
}

func (c cgroupV1) killAll(dir string) error { return freezeKillThaw(c, dir) }

// cgroupV2 uses cgroup.freeze and cgroup.kill.
type cgroupV2 struct{}

func (cgroupV2) freeze(dir string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), "1"); err != nil {
		return err
	}
	return waitFor(10*time.Second, func() (bool, error) { return cgroupV2{}.frozen(dir) },
		"cgroup %s to freeze", dir)
}

func (cgroupV2) thaw(dir string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), "0"); err != nil {
		return err
	}
	return waitFor(10*time.Second, func() (bool, error) {
		f, err := cgroupV2{}.frozen(dir)
		return !f, err
	}, "cgroup %s to thaw", dir)
}

func (cgroupV2) frozen(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "frozen 1" {
			return true, nil
		}
	}
	return false, nil
}

func (c cgroupV2) killAll(dir string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err == nil {
		return waitEmpty(dir, nil)
	}
	return freezeKillThaw(c, dir) // kernels before 5.14
}

// freezeKillThaw freezes dir so that nothing can fork, SIGKILLs every member,
// thaws (the kills are delivered on thaw) and waits until no member runs.
func freezeKillThaw(c cgroupOps, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	ferr := c.freeze(dir) // on failure, kill anyway and keep re-killing below
	kill := func() {
		pids, _ := cgroupPIDs(dir)
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	kill()
	if err := c.thaw(dir); err != nil {
		return errors.Join(ferr, err)
	}
	return waitEmpty(dir, kill)
}

// waitEmpty waits until no process in dir is alive (zombies count as gone),
// calling again (if not nil) on every round.
func waitEmpty(dir string, again func()) error {
	return waitFor(10*time.Second, func() (bool, error) {
		pids, err := cgroupPIDs(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return true, nil
			}
			return false, err
		}
		for _, p := range pids {
			if procAlive(p) {
				if again != nil {
					again()
				}
				return false, nil
			}
		}
		return true, nil
	}, "processes of cgroup %s to die", dir)
}

func cgroupPIDs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// procStat returns the state letter and starttime of pid from /proc/PID/stat.
func procStat(pid int) (st byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// comm may contain spaces and parentheses: fields follow the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22 overall
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return f[0][0], start, nil
}

// procAlive reports whether pid exists and is neither a zombie nor dead.
func procAlive(pid int) bool {
	s, _, err := procStat(pid)
	return err == nil && s != 'Z' && s != 'X' && s != 'x'
}

// procRunning reports whether the process recorded as (pid, start) is alive.
func procRunning(pid int, start uint64) bool {
	s, st, err := procStat(pid)
	return err == nil && st == start && s != 'Z' && s != 'X' && s != 'x'
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", s, path, err)
	}
	return nil
}

// waitFor polls cond until it returns true or timeout passes.
func waitFor(timeout time.Duration, cond func() (bool, error), format string, args ...any) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for "+format, append([]any{timeout}, args...)...)
			if last != nil {
				return fmt.Errorf("%s: %w", msg, last)
			}
			return errors.New(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
