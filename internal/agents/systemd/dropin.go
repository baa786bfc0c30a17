package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DropInPath returns where the unit's drop-in is written.
func (u *Unit) DropInPath() string {
	return filepath.Join(u.opts.DropInDir, u.name+".d", DropInName)
}

// DropIn returns the content of the drop-in written for unit, the
// counterpart of Pacemaker's 50-pacemaker.conf: Before= the cluster
// manager's unit, so that at shutdown systemd stops the manager (which
// stops its resources in order) before the unit, and Restart=no, so that
// systemd does not restart a failed service by itself: recovery is the
// cluster manager's decision, and a restart behind its back would hide
// the failure from the monitor and could run the service on two nodes.
func DropIn(unit, managerUnit string) []byte {
	return fmt.Appendf(nil, `# Written by paceline when it started %[1]s; removed when it stops it.
# The cluster manager, not systemd, decides when %[1]s runs and restarts.
[Unit]
Before=%[2]s

[Service]
Restart=no
`, unit, managerUnit)
}

// ensureDropIn writes the drop-in of a service unit and reloads systemd
// when the file changed. A drop-in that cannot be written is logged and
// the start goes on, as in Pacemaker; a reload that fails because the
// action timed out or the bus broke fails the start.
func (o *op) ensureDropIn() error {
	u := o.u
	if u.opts.NoDropIn || !strings.HasSuffix(u.name, ".service") {
		return nil
	}
	path := u.DropInPath()
	want := DropIn(u.name, u.opts.ManagerUnit)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := writeFileAtomic(path, want); err != nil {
		u.log.Warn("cannot write the drop-in that keeps systemd from restarting the unit by itself; starting anyway",
			"path", path, "err", err)
		return nil
	}
	return o.reload("reloading systemd after writing " + path)
}

// removeDropIn removes the drop-in, if there is one, and reloads systemd.
func (o *op) removeDropIn() error {
	path := o.u.DropInPath()
	if err := os.Remove(path); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			o.u.log.Warn("cannot remove the drop-in", "path", path, "err", err)
		}
		return nil
	}
	_ = os.Remove(filepath.Dir(path)) // only if empty
	return o.reload("reloading systemd after removing " + path)
}

// reload calls Manager.Reload (daemon-reload), which returns when systemd
// has re-read its unit files.
func (o *op) reload(waiting string) error {
	o.waiting = waiting
	err := o.s.call(o.ctx, o.s.manager(), managerIface+".Reload", nil)
	if err == nil || o.ctx.Err() != nil || isTransportError(err) {
		return err
	}
	o.u.log.Warn("systemd daemon-reload failed; the drop-in takes effect at the next reload", "err", err)
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
