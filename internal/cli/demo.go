package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/tlsutil"
)

const demoSpec = `apiVersion: paceline/v1
cluster:
  name: demo
  noQuorumPolicy: stop
resources:
  # An exclusive (active/passive) web service: runs on exactly one node,
  # under the hold lease; kill that node and it moves within a second.
  - name: web
    class: process
    mode: single
    params:
      command: [%[1]q, sample-service, --listen, "127.0.0.1:%[2]d"]
    health: {http: "http://127.0.0.1:%[2]d/healthz", interval: 1s, timeout: 500ms}
    onFail: restart
    migrationThreshold: 3
  # A clone: one worker per node.
  - name: worker
    class: process
    mode: clone
    replicas: 3
    params:
      command: [%[1]q, sample-service, --ticker]
constraints:
  # web starts once the workers are up (optional: it does not wait for a
  # worker that cannot run), and prefers n1 a little (stickiness 100 wins:
  # once web moved away from n1 it stays where it is).
  order:
    - {first: worker, then: web, kind: optional}
  location:
    - {resource: web, node: n1, score: 50}
`

// cmdDemo runs a 3-node cluster on loopback as three child agents.
func cmdDemo(e *env, args []string) int {
	fs := newFlagSet(e, "demo", "demo [--dir DIR] [--for DURATION]")
	dir := fs.String("dir", "", "where to keep the demo's data (default: a new temporary directory)")
	runFor := fs.Duration("for", 0, "stop by itself after this long (0: until Ctrl-C)")
	base := fs.Int("port", 17480, "first API port (nodes use PORT, PORT+10, PORT+20, 4 consecutive ports each; the web sample service PORT+600)")
	if _, err := parseFlags(fs, args); err != nil {
		return ExitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(e, err)
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "paceline-demo-"); err != nil {
			return fail(e, err)
		}
	}
	say := func(format string, a ...any) { fmt.Fprintf(e.stdout, format+"\n", a...) }
	say("paceline demo: 3 agents on 127.0.0.1, data in %s", *dir)
	tdir := filepath.Join(*dir, "tls")
	if _, err := os.Stat(filepath.Join(tdir, "ca.crt")); err != nil {
		if err := tlsutil.InitCA(tdir, "demo", false); err != nil {
			return fail(e, err)
		}
	}
	tokFile := filepath.Join(*dir, "join.token")
	if _, err := os.Stat(tokFile); err != nil {
		if err := os.WriteFile(tokFile, []byte(fmt.Sprintf("demo-%d\n", time.Now().UnixNano())), 0o600); err != nil {
			return fail(e, err)
		}
	}
	var apis []string
	for i := 1; i <= 3; i++ {
		apis = append(apis, fmt.Sprintf("127.0.0.1:%d", *base+(i-1)*10))
	}
	type child struct {
		name string
		cmd  *exec.Cmd
		done chan struct{}
	}
	var kids []*child
	stopAll := func() {
		for _, k := range kids {
			if k.cmd.Process != nil {
				_ = k.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, k := range kids {
			select {
			case <-k.done:
			case <-time.After(20 * time.Second):
				_ = k.cmd.Process.Kill()
				<-k.done
			}
		}
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		if _, err := os.Stat(filepath.Join(tdir, name+".crt")); err != nil {
			if err := tlsutil.Issue(tdir, tdir, name, []string{"127.0.0.1"}, 0); err != nil {
				return fail(e, err)
			}
		}
		p := *base + (i-1)*10
		cfg := fmt.Sprintf(`nodeName: %s
clusterName: demo
role: control
bindAddr: 127.0.0.1
ports: {api: %d, raft: %d, gossip: %d, coarse: %d}
dataDir: %s
join: [%s]
bootstrapExpect: 3
joinTokenFile: %s
tls: {ca: %s, cert: %s, key: %s}
agents: {rscTmp: %s}
`, name, p, p+1, p+2, p+3, filepath.Join(*dir, name), strings.Join(apis, ", "), tokFile,
			filepath.Join(tdir, "ca.crt"), filepath.Join(tdir, name+".crt"), filepath.Join(tdir, name+".key"),
			filepath.Join(*dir, name, "rsctmp"))
		cfgPath := filepath.Join(*dir, name+".yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return fail(e, err)
		}
		logf, err := os.OpenFile(filepath.Join(*dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fail(e, err)
		}
		cmd := exec.Command(exe, "agent", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			stopAll()
			return fail(e, err)
		}
		k := &child{name: name, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); logf.Close(); close(k.done) }()
		kids = append(kids, k)
		say("  started agent %s (pid %d), API https://%s, log %s", name, cmd.Process.Pid, apis[i-1], filepath.Join(*dir, name+".log"))
	}
	defer stopAll()
	ctx, cancel := signalContext()
	defer cancel()
	if *runFor > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, *runFor)
		defer c2()
	}
	say("waiting for the cluster to elect a leader ...")
	var tokPath string
	for tokPath == "" {
		for i := 1; i <= 3; i++ {
			p := filepath.Join(*dir, fmt.Sprintf("n%d", i), "operator.token")
			if _, err := os.Stat(p); err == nil {
				tokPath = p
			}
		}
		if tokPath != "" {
			break
		}
		for _, k := range kids {
			select {
			case <-k.done:
				fmt.Fprintf(e.stderr, "error: agent %s exited early; see %s\n", k.name, filepath.Join(*dir, k.name+".log"))
				return ExitFailure
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ExitFailure
		case <-time.After(100 * time.Millisecond):
		}
	}
	cf := clientFlags{addr: strings.Join(apis, ","), tokenFile: tokPath, ca: filepath.Join(tdir, "ca.crt"), timeout: 10 * time.Second}
	c, err := cf.client()
	if err != nil {
		return fail(e, err)
	}
	webPort := *base + 600
	doc := []byte(fmt.Sprintf(demoSpec, exe, webPort))
	specPath := filepath.Join(*dir, "spec.yaml")
	_ = os.WriteFile(specPath, doc, 0o644)
	for {
		actx, c3 := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Apply(actx, doc, false, "demo sample spec")
		c3()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fail(e, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	say("applied the sample spec (%s): 'web' (exclusive) and 'worker' (clone of 3)", specPath)
	var st *api.Status
	for {
		sctx, c4 := context.WithTimeout(ctx, 5*time.Second)
		st, err = c.Status(sctx)
		c4()
		if err == nil && running(st, "web") && countRunning(st, "worker") == 3 {
			break
		}
		if ctx.Err() != nil {
			return ExitFailure
		}
		time.Sleep(200 * time.Millisecond)
	}
	say("")
	renderStatus(e.stdout, st)
	pids := map[string]int{}
	for _, k := range kids {
		pids[k.name] = k.cmd.Process.Pid
	}
	webNode := ""
	for _, r := range st.Resources {
		if r.Name == "web" && len(r.Instances) > 0 {
			webNode = r.Instances[0].Node
		}
	}
	say(`
The demo cluster is up. In another terminal:
  export PACELINE_ADDR=%s PACELINE_TOKEN_FILE=%s PACELINE_CA=%s
  %s status --watch                # what runs where, live
  %s events --follow               # the event log
  curl -s http://127.0.0.1:%d/  # the exclusive 'web' service (now on %s)
Crash the node running 'web' and watch it move within a second:
  kill -9 %d                       # agent %s
Then restart it with: %s agent --config %s
Stop the demo with Ctrl-C.`, strings.Join(apis, ","), tokPath, filepath.Join(tdir, "ca.crt"), exe, exe, webPort, webNode, pids[webNode], webNode, exe, filepath.Join(*dir, webNode+".yaml"))
	<-ctx.Done()
	say("stopping the demo cluster ...")
	return ExitOK
}

func running(st *api.Status, res string) bool { return countRunning(st, res) > 0 }

func countRunning(st *api.Status, res string) int {
	n := 0
	for _, r := range st.Resources {
		if r.Name == res {
			for _, i := range r.Instances {
				if i.State == "running" {
					n++
				}
			}
		}
	}
	return n
}
