package cli_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildPaceline builds the binary the way a newcomer runs it.
func buildPaceline(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "paceline")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/paceline").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDemo runs the README's first command (`paceline demo`), waits for
// "The demo cluster is up", checks the exclusive web service answers, then
// crashes the node that runs it (kill -9, as the demo suggests) and waits
// until the service answers from another node.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	bin := buildPaceline(t)
	dir := t.TempDir()
	base := 27480 + (os.Getpid()+int(time.Now().UnixNano()/1e6))%400*4
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--dir", dir, "--port", strconv.Itoa(base), "--for", "150s")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	var mu sync.Mutex
	var lines []string
	up := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			snapshot := append([]string(nil), lines...)
			mu.Unlock()
			if !sent && strings.Contains(sc.Text(), "Stop the demo with Ctrl-C") {
				up <- snapshot
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var out []string
	select {
	case out = <-up:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		logs := ""
		for _, n := range []string{"n1", "n2", "n3"} {
			b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
			logs += fmt.Sprintf("\n--- %s.log (tail)\n%s", n, tail(string(b), 15))
		}
		t.Fatalf("demo did not come up; output so far:\n%s%s", strings.Join(lines, "\n"), logs)
	}
	text := strings.Join(out, "\n")
	if !strings.Contains(text, "The demo cluster is up") {
		t.Fatalf("no 'cluster is up' message:\n%s", text)
	}
	webURL := fmt.Sprintf("http://127.0.0.1:%d/", base+600)
	first := get(t, ctx, webURL, "")
	m := regexp.MustCompile(`kill -9 (\d+)\s+# agent (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no kill instruction in:\n%s", text)
	}
	if !strings.Contains(first, "hello from "+m[2]) {
		t.Fatalf("web answered %q, demo says it runs on %s", first, m[2])
	}
	pid, _ := strconv.Atoi(m[1])
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	moved := get(t, ctx, webURL, "hello from "+m[2])
	t.Logf("after killing %s: %s", m[2], strings.TrimSpace(moved))
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// get polls url until it answers 200 with a body not containing not.
func get(t *testing.T, ctx context.Context, url, not string) string {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && (not == "" || !strings.Contains(string(b), not)) {
				return string(b)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered (without %q): last error %v", url, not, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
