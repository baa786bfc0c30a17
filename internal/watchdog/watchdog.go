// Package watchdog drives a Linux watchdog device (/dev/watchdog, the
// kernel's watchdog API: WDIOC_SETTIMEOUT, WDIOC_KEEPALIVE, magic close)
// for the agent's self-fencing: the agent pets it only while it may keep
// its exclusive resources, so a hung agent, a frozen host or a self-fence
// that does not complete ends with a reset of the machine within the
// watchdog's timeout (docs/safety.md, "Hardware watchdog").
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ioctl numbers of linux/watchdog.h.
const (
	wdiocKeepalive  = 0x80045705
	wdiocSetTimeout = 0xc0045706
	wdiocGetTimeout = 0x80045707
)

// Device is an open watchdog. Once opened, a hardware watchdog resets the
// machine unless it is petted within its timeout, or closed with Disarm.
type Device struct {
	f       *os.File
	path    string
	timeout time.Duration
	char    bool // a character device (a real watchdog); else a test stand-in
}

// Open opens the watchdog at path and sets its timeout (whole seconds, at
// least 1; drivers may round it: Timeout tells what it is). A path that is
// not a character device (a FIFO in tests) is accepted and written to
// like a device, without ioctls.
func Open(path string, timeout time.Duration) (*Device, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w (load a driver, e.g. modprobe softdog, or remove watchdog.device from the config)", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w (is another process, e.g. watchdog(8) or sbd, holding it?)", path, err)
	}
	d := &Device{f: f, path: path, timeout: timeout, char: st.Mode()&os.ModeCharDevice != 0}
	if d.char {
		secs := int(max(1, (timeout+time.Second-1)/time.Second))
		if err := unix.IoctlSetPointerInt(int(f.Fd()), wdiocSetTimeout, secs); err != nil {
			d.Disarm()
			return nil, fmt.Errorf("watchdog %s: set timeout %ds: %w", path, secs, err)
		}
		if got, err := unix.IoctlGetInt(int(f.Fd()), wdiocGetTimeout); err == nil && got > 0 {
			d.timeout = time.Duration(got) * time.Second
		}
	}
	return d, nil
}

// Timeout is the device's timeout: the machine resets this long after the
// last Pet.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Pet restarts the device's countdown.
func (d *Device) Pet() error {
	if d.char {
		if err := unix.IoctlSetInt(int(d.f.Fd()), wdiocKeepalive, 0); err == nil {
			return nil
		}
	}
	_, err := d.f.Write([]byte{'1'})
	return err
}

// Disarm stops the watchdog (the magic close: write 'V', then close) and
// closes the device. A driver built with nowayout keeps counting: the
// machine then resets after the timeout anyway, as the kernel documents.
func (d *Device) Disarm() error {
	_, err := d.f.Write([]byte{'V'})
	return errors.Join(err, d.f.Close())
}

// Run pets d at once and at every tick while ok() answers true, and stops
// petting while it answers false (logging the change once); when ctx ends
// it disarms d. A hung caller stops petting by itself: that is the point.
func Run(ctx context.Context, d *Device, tick <-chan time.Time, ok func() bool, log *slog.Logger) {
	petting := true
	for {
		if ok() {
			if !petting {
				log.Warn("watchdog: petting again", "device", d.path)
				petting = true
			}
			if err := d.Pet(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				log.Error("watchdog: pet failed", "device", d.path, "err", err)
			}
		} else if petting {
			petting = false
			log.Error("watchdog: NOT petting: exclusive resources still run without a valid lease; the machine resets when the watchdog expires",
				"device", d.path, "timeout", d.timeout)
		}
		select {
		case <-ctx.Done():
			if err := d.Disarm(); err != nil {
				log.Warn("watchdog: disarm", "device", d.path, "err", err)
			}
			return
		case <-tick:
		}
	}
}
