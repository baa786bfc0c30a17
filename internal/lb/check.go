package lb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

func (l *LB) startCheck(b *backend, s *server, ch *Check) {
	if ch == nil {
		return
	}
	s.checkStop = make(chan struct{})
	s.checkDone = make(chan struct{})
	stop, done := s.checkStop, s.checkDone
	go func() {
		defer close(done)
		l.runChecks(b, s, ch, stop)
	}()
}

func (l *LB) stopCheck(s *server) {
	if s.checkStop == nil {
		return
	}
	close(s.checkStop)
	<-s.checkDone
	s.checkStop, s.checkDone = nil, nil
}

// runChecks runs the check every Interval. A new server counts as up until
// its first check: one failure marks it down (like HAProxy), after that
// Fall consecutive failures mark it down and Rise successes up again.
func (l *LB) runChecks(b *backend, s *server, ch *Check, stop chan struct{}) {
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	first := true
	count := 0 // consecutive results contradicting the current state
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, ccancel := context.WithTimeout(ctx, ch.Timeout)
		err := runCheck(cctx, ch, s)
		ccancel()
		if ctx.Err() != nil {
			return
		}
		up := s.up.Load()
		reason := "ok"
		if err != nil {
			reason = err.Error()
		}
		switch {
		case err == nil && up, err != nil && !up:
			count = 0
			s.setReason(reason)
		case err != nil && (first || count+1 >= ch.Fall):
			count = 0
			b.markUp(s, false, reason)
		case err == nil && count+1 >= ch.Rise:
			count = 0
			b.markUp(s, true, reason)
		default:
			count++
			s.setReason(reason)
		}
		first = false
		t.Reset(ch.Interval)
	}
}

func checkAddr(ch *Check, s *server) string {
	if ch.Port == 0 {
		return s.addr
	}
	host, _, _ := net.SplitHostPort(s.addr)
	return net.JoinHostPort(host, strconv.Itoa(ch.Port))
}

func runCheck(ctx context.Context, ch *Check, s *server) error {
	addr := checkAddr(ch, s)
	switch ch.Type {
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	case "http":
		return httpCheck(ctx, ch, addr)
	case "exec":
		return execCheck(ctx, ch, s, addr)
	case "mysql-galera":
		return galeraCheck(ctx, ch, addr)
	}
	return fmt.Errorf("unknown check type %q", ch.Type)
}

var checkClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func httpCheck(ctx context.Context, ch *Check, addr string) error {
	req, err := http.NewRequestWithContext(ctx, ch.Method, "http://"+addr+ch.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "paceline-lb-check")
	resp, err := checkClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ch.ExpectStatus != 0 && resp.StatusCode != ch.ExpectStatus {
		return fmt.Errorf("http %s %s: status %d, want %d", ch.Method, ch.Path, resp.StatusCode, ch.ExpectStatus)
	}
	if ch.ExpectStatus == 0 && (resp.StatusCode < 200 || resp.StatusCode > 399) {
		return fmt.Errorf("http %s %s: status %d, want 2xx or 3xx", ch.Method, ch.Path, resp.StatusCode)
	}
	if ch.ExpectBody != "" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("http %s %s: reading body: %w", ch.Method, ch.Path, err)
		}
		if !strings.Contains(string(body), ch.ExpectBody) {
			return fmt.Errorf("http %s %s: body does not contain %q", ch.Method, ch.Path, ch.ExpectBody)
		}
	}
	return nil
}

func execCheck(ctx context.Context, ch *Check, s *server, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.CommandContext(ctx, ch.Command[0], ch.Command[1:]...)
	cmd.Env = append(os.Environ(), "PACELINE_SERVER_ADDR="+addr, "PACELINE_SERVER_HOST="+host,
		"PACELINE_SERVER_PORT="+port, "PACELINE_SERVER_NAME="+s.name)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		if ctx.Err() != nil {
			return fmt.Errorf("exec %s: timed out", ch.Command[0])
		}
		if msg != "" {
			return fmt.Errorf("exec %s: %w: %s", ch.Command[0], err, msg)
		}
		return fmt.Errorf("exec %s: %w", ch.Command[0], err)
	}
	return nil
}

// galeraCheck has clustercheck semantics: the node is usable when
// wsrep_local_state is 4 (Synced) and wsrep_cluster_status is Primary.
func galeraCheck(ctx context.Context, ch *Check, addr string) error {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = ch.User, ch.Password, "tcp", addr
	mc.Timeout = ch.Timeout
	mc.ReadTimeout = ch.Timeout
	mc.WriteTimeout = ch.Timeout
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_cluster_status')")
	if err != nil {
		return fmt.Errorf("mysql-galera: %w", err)
	}
	defer rows.Close()
	st := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return fmt.Errorf("mysql-galera: %w", err)
		}
		st[strings.ToLower(k)] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mysql-galera: %w", err)
	}
	state, ok1 := st["wsrep_local_state"]
	cluster, ok2 := st["wsrep_cluster_status"]
	if !ok1 || !ok2 {
		return errors.New("mysql-galera: the server reports no wsrep status (not a Galera node, or wsrep_on=OFF)")
	}
	if state != "4" {
		return fmt.Errorf("mysql-galera: wsrep_local_state=%s, want 4 (Synced)", state)
	}
	if cluster != "Primary" {
		return fmt.Errorf("mysql-galera: wsrep_cluster_status=%s, want Primary", cluster)
	}
	return nil
}

func init() {
	// The driver logs protocol errors to stderr; check results carry them.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}
