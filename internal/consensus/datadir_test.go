package consensus

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDataDirWritable(t *testing.T) {
	if err := CheckDataDir(filepath.Join(t.TempDir(), "a", "b")); err != nil {
		t.Fatalf("fresh dir refused: %v", err)
	}
}

// mountTmpfs mounts a small tmpfs (root only) and unmounts it at cleanup.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (run the tests as root to cover full and read-only data dirs)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "pltmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

func TestCheckDataDirFull(t *testing.T) {
	dir := mountTmpfs(t, "size=16k")
	err := CheckDataDir(dir)
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "free space") {
		t.Fatalf("full data dir: got %v, want ErrDataDir telling to free space", err)
	}
}

func TestCheckDataDirReadOnly(t *testing.T) {
	dir := mountTmpfs(t, "ro,size=1m")
	err := CheckDataDir(filepath.Join(dir))
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("read-only data dir: got %v, want ErrDataDir saying not writable", err)
	}
}
