package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// Health configures the health check of a supervised process. Every
// configured check (HTTP, TCP, Exec) must pass for the process to be
// healthy; at least one must be set.
type Health struct {
	HTTP string   // URL; healthy = status 2xx/3xx (redirects are not followed)
	TCP  string   // host:port; healthy = connect succeeds
	Exec []string // argv; healthy = exit 0. Runs with the process's Env and Dir.

	Interval time.Duration // between the end of one check and the next (default 10s)
	Timeout  time.Duration // per check (default 5s)
	Fall     int           // consecutive failures before reporting unhealthy (default 1)
}

const (
	defaultInterval = 10 * time.Second
	defaultTimeout  = 5 * time.Second
)

// checker runs the configured checks. It owns its HTTP transport so that no
// connection goroutines outlive the Proc.
type checker struct {
	h        Health
	execPath string // resolved h.Exec[0]
	env      []string
	dir      string
	client   *http.Client
	tr       *http.Transport
}

func newChecker(h Health, execPath string, env []string, dir string) *checker {
	c := &checker{h: h, execPath: execPath, env: env, dir: dir}
	if h.HTTP != "" {
		c.tr = &http.Transport{
			Proxy:             nil, // a health check goes straight to the service
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{}).DialContext,
		}
		c.client = &http.Client{
			Transport: c.tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // 3xx itself counts as healthy
			},
		}
	}
	return c
}

func (c *checker) close() {
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// check runs all configured checks once, each bounded by Timeout.
func (c *checker) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.h.Timeout)
	defer cancel()
	if c.h.HTTP != "" {
		if err := c.checkHTTP(ctx); err != nil {
			return err
		}
	}
	if c.h.TCP != "" {
		if err := c.checkTCP(ctx); err != nil {
			return err
		}
	}
	if len(c.h.Exec) > 0 {
		if err := c.checkExec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) checkHTTP(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.h.HTTP, nil)
	if err != nil {
		return fmt.Errorf("http check %s: %w", c.h.HTTP, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("http check: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("http check %s: status %s", c.h.HTTP, resp.Status)
	}
	return nil
}

func (c *checker) checkTCP(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.h.TCP)
	if err != nil {
		return fmt.Errorf("tcp check: %w", err)
	}
	_ = conn.Close()
	return nil
}

func (c *checker) checkExec(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.execPath, c.h.Exec[1:]...)
	cmd.Args[0] = c.h.Exec[0]
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// On timeout kill the check's whole process group, not just its leader.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("exec check %q: %w", c.h.Exec[0], err)
	}
	err := cmd.Wait()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("exec check %q: timed out after %s", c.h.Exec[0], c.h.Timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("exec check %q: %s", c.h.Exec[0], describeExit(ee.ProcessState))
	}
	return fmt.Errorf("exec check %q: %w", c.h.Exec[0], err)
}

// healthLoop runs checks until ctx ends (process exited, Stop or Kill).
func (p *Proc) healthLoop(ctx context.Context, c *checker) {
	defer close(p.healthDone)
	defer c.close()
	timer := time.NewTimer(0) // first check right away
	defer timer.Stop()
	fails := 0
	healthy := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := c.check(ctx)
		if ctx.Err() != nil {
			return // aborted by exit/stop: not a verdict on the service
		}
		if err == nil {
			if !healthy {
				p.log.Info("health check passing")
			}
			healthy = true
			fails = 0
			p.setSick("")
			p.healthyOnce.Do(func() { close(p.healthy) })
		} else {
			fails++
			p.setLastHealthErr(err)
			p.log.Debug("health check failed", "err", err, "consecutive", fails, "fall", c.h.Fall)
			if fails >= c.h.Fall {
				reason := fmt.Sprintf("health check failed %d consecutive times: %v", fails, err)
				p.log.Warn("process unhealthy", "reason", reason)
				healthy = false
				p.setSick(reason)
				fails = 0 // report again after another Fall consecutive failures
				select {
				case p.unhealthy <- reason:
				default: // an unread report is already pending
				}
			}
		}
		// Until the first check passes, probe quickly so a service that
		// starts in 50 ms counts as started after about 50 ms, not after
		// one full interval.
		next := c.h.Interval
		if !everHealthy(p) && next > startupProbe {
			next = startupProbe
		}
		timer.Reset(next)
	}
}

// startupProbe is the check period until the first check passes.
const startupProbe = 50 * time.Millisecond

func everHealthy(p *Proc) bool {
	select {
	case <-p.healthy:
		return true
	default:
		return false
	}
}
