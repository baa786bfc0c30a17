// Package ocf runs OCF resource agents (class "ocf:PROVIDER:TYPE"), the
// scripts of Debian's resource-agents and pacemaker-resource-agents
// packages, following Pacemaker's contract (ANCHORS.md, "OCF resource
// agents"): the script is OCF_ROOT/resource.d/PROVIDER/TYPE, the action is
// argv[1], parameters and meta attributes arrive in OCF_RESKEY_* variables,
// and the exit code, mapped by agents.StatusFromOCF, tells the manager
// what to do. The failure reason is the last "ocf-exit-reason:" on stderr.
//
// An Agent is an agents.Invoker. It also parses the agent's meta-data
// (ParseMetadata), validates parameters against it and lists installed
// agents (ListAgents).
//
// Each action runs in its own process group with a timeout; an action that
// outlives it is killed as a group (see agents.RunCommand). Daemons an
// agent starts leave the group (they daemonize) and are not touched.
package ocf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

// Defaults.
const (
	DefaultRoot   = "/usr/lib/ocf"
	DefaultRscTmp = "/run/resource-agents" // what ocf-shellfuncs uses
	defaultPath   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// metadataTimeout is the meta-data action's timeout when the caller
	// gives none.
	metadataTimeout = 10 * time.Second
)

// Options configure an Agent. The zero value is the Debian layout.
type Options struct {
	// Root is OCF_ROOT; agents are Root/resource.d/PROVIDER/TYPE.
	Root string
	// RscTmp is HA_RSCTMP, a writable directory for agents' state; it is
	// created if missing.
	RscTmp string
	// Env is added to every action's environment, e.g. HA_SBIN_DIR. The
	// OCF variables of the action win over it.
	Env map[string]string
	// KillGrace is the time between SIGTERM and SIGKILL of a timed-out
	// action (0 = agents.DefaultKillGrace).
	KillGrace time.Duration
	// Prefix, if set, is an argv the script runs under, e.g.
	// {"ip", "netns", "exec", "NAME"}; it must exec the script (keeping
	// its process) so that a timeout still kills the script's group.
	Prefix []string
	Logger *slog.Logger // nil = discard
}

// Agent is one OCF resource agent type.
type Agent struct {
	provider, typ string
	opts          Options
	log           *slog.Logger

	mu   sync.Mutex
	meta *Metadata // cached after the first successful parse
}

var _ agents.Invoker = (*Agent)(nil)

// ParseSpec splits "ocf:PROVIDER:TYPE".
func ParseSpec(spec string) (provider, typ string, err error) {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 || parts[0] != "ocf" {
		return "", "", fmt.Errorf("agent %q: want ocf:PROVIDER:TYPE", spec)
	}
	for _, p := range parts[1:] {
		if !validName(p) {
			return "", "", fmt.Errorf("agent %q: %q is not a valid provider or type name", spec, p)
		}
	}
	return parts[1], parts[2], nil
}

// validName rejects empty names, path tricks and hidden files.
func validName(s string) bool {
	return s != "" && s[0] != '.' && !strings.ContainsAny(s, "/\x00")
}

// New returns the agent named by spec ("ocf:PROVIDER:TYPE"). It does not
// check that the script exists: a missing script is a hard error
// (ERR_INSTALLED) from Run.
func New(spec string, opts Options) (*Agent, error) {
	provider, typ, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.RscTmp == "" {
		opts.RscTmp = DefaultRscTmp
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{provider: provider, typ: typ, opts: opts, log: log.With("agent", "ocf:"+provider+":"+typ)}, nil
}

// String returns "ocf:PROVIDER:TYPE".
func (a *Agent) String() string { return "ocf:" + a.provider + ":" + a.typ }

// Path returns the script's path.
func (a *Agent) Path() string {
	return filepath.Join(a.opts.Root, "resource.d", a.provider, a.typ)
}

// Run runs action for inst; see agents.Invoker.
func (a *Agent) Run(ctx context.Context, action agents.Action, inst agents.Instance, timeout time.Duration) agents.Result {
	if timeout <= 0 {
		timeout = agents.DefaultTimeout
	}
	if err := checkEnvSafe(inst); err != nil {
		return agents.Result{Code: agents.OCFErrArgs, Status: agents.StatusHardError, Reason: err.Error()}
	}
	if err := os.MkdirAll(a.opts.RscTmp, 0o755); err != nil {
		a.log.Warn("cannot create HA_RSCTMP", "dir", a.opts.RscTmp, "err", err)
	}
	path, args := a.Path(), []string{string(action)}
	if len(a.opts.Prefix) > 0 {
		p, err := exec.LookPath(a.opts.Prefix[0])
		if err != nil {
			return agents.Result{Code: agents.OCFErrInstalled, Status: agents.StatusHardError,
				Reason: fmt.Sprintf("cannot run agent: prefix: %v", err)}
		}
		if _, err := os.Stat(a.Path()); err != nil {
			return agents.Result{Code: agents.OCFErrInstalled, Status: agents.StatusHardError,
				Reason: fmt.Sprintf("cannot run agent: %v", err)}
		}
		path, args = p, append(append(slices.Clone(a.opts.Prefix[1:]), a.Path()), args...)
	}
	ex := agents.RunCommand(ctx, agents.Command{
		Path:      path,
		Args:      args,
		Env:       a.Environ(action, inst, timeout),
		Timeout:   timeout,
		KillGrace: a.opts.KillGrace,
	})
	r := agents.ResultOf(ex, timeout, nil)
	lvl := slog.LevelDebug
	if r.Status.Failed() {
		lvl = slog.LevelWarn
	}
	a.log.Log(ctx, lvl, "action finished", "action", string(action), "instance", inst.Name,
		"code", r.Code, "status", r.Status.String(), "reason", r.Reason, "duration", r.Duration)
	return r
}

// Environ returns the environment of action for inst: PATH, the Options'
// Env, and the OCF variables, sorted.
func (a *Agent) Environ(action agents.Action, inst agents.Instance, timeout time.Duration) []string {
	env := map[string]string{"PATH": defaultPath}
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range a.opts.Env {
		env[k] = v
	}
	set := func(k, v string) { env[k] = v }
	set("OCF_RA_VERSION_MAJOR", "1")
	set("OCF_RA_VERSION_MINOR", "1")
	set("OCF_ROOT", a.opts.Root)
	set("OCF_RESOURCE_INSTANCE", inst.Name)
	set("OCF_RESOURCE_TYPE", a.typ)
	set("OCF_RESOURCE_PROVIDER", a.provider)
	set("HA_RSCTMP", a.opts.RscTmp)
	if inst.CheckLevel != 0 {
		set("OCF_CHECK_LEVEL", strconv.Itoa(inst.CheckLevel))
	}
	for k, v := range inst.Params {
		set("OCF_RESKEY_"+envName(k), v)
	}
	meta := func(k, v string) { set("OCF_RESKEY_CRM_meta_"+envName(k), v) }
	for k, v := range inst.Meta {
		meta(k, v)
	}
	meta("name", string(action))
	meta("interval", strconv.FormatInt(inst.Interval.Milliseconds(), 10))
	meta("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	if inst.Node != "" {
		meta("on_node", inst.Node)
	}
	if c := inst.Clone; c != nil {
		meta("clone", strconv.Itoa(c.Number))
		meta("clone_max", strconv.Itoa(c.Max))
		meta("clone_node_max", strconv.Itoa(c.NodeMax))
		meta("globally_unique", strconv.FormatBool(c.GloballyUnique))
		meta("notify", strconv.FormatBool(c.Notify))
		if c.Promotable {
			meta("promotable", "true")
			for _, pfx := range []string{"promoted", "master"} { // master_*: agents older than Pacemaker 2.1
				meta(pfx+"_max", strconv.Itoa(c.PromotedMax))
				meta(pfx+"_node_max", strconv.Itoa(c.PromotedNodeMax))
			}
		}
	}
	if n := inst.Notify; n != nil {
		meta("notify_type", n.Type)
		meta("notify_operation", n.Operation)
		peers := func(list string, ps []agents.Peer, aliases ...string) {
			res, nodes := make([]string, len(ps)), make([]string, len(ps))
			for i, p := range ps {
				res[i], nodes[i] = p.Resource, p.Node
			}
			for _, l := range append([]string{list}, aliases...) {
				meta("notify_"+l+"_resource", strings.Join(res, " "))
				meta("notify_"+l+"_uname", strings.Join(nodes, " "))
			}
		}
		peers("start", n.Start)
		peers("stop", n.Stop)
		peers("active", n.Active)
		peers("promote", n.Promote)
		peers("demote", n.Demote)
		peers("promoted", n.Promoted, "master")
		peers("unpromoted", n.Unpromoted, "slave")
		meta("notify_inactive_resource", strings.Join(n.Inactive, " "))
		meta("notify_all_uname", strings.Join(n.All, " "))
		meta("notify_available_uname", strings.Join(n.Available, " "))
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// checkEnvSafe rejects names and values that cannot be passed in the
// environment.
func checkEnvSafe(inst agents.Instance) error {
	for kind, m := range map[string]map[string]string{"parameter": inst.Params, "meta attribute": inst.Meta} {
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fmt.Errorf("%s name %q cannot be passed in the environment", kind, k)
			}
			if strings.ContainsRune(v, 0) {
				return fmt.Errorf("%s %q: value contains a NUL byte", kind, k)
			}
		}
	}
	return nil
}

// envName turns a parameter or meta attribute name into the suffix of an
// environment variable: dashes become underscores.
func envName(k string) string { return strings.ReplaceAll(k, "-", "_") }

// Metadata runs the meta-data action (with timeout, 0 = 10s) and parses
// its output. The first successful result is cached.
func (a *Agent) Metadata(ctx context.Context, timeout time.Duration) (*Metadata, error) {
	a.mu.Lock()
	m := a.meta
	a.mu.Unlock()
	if m != nil {
		return m, nil
	}
	if timeout <= 0 {
		timeout = metadataTimeout
	}
	r := a.Run(ctx, agents.MetaData, agents.Instance{}, timeout)
	if r.Status != agents.StatusSuccess {
		return nil, fmt.Errorf("%s meta-data: exit code %d (%s): %s", a, r.Code, r.Status, firstNonEmpty(r.Reason, lastLine(r.Stderr)))
	}
	m, err := ParseMetadata([]byte(r.Stdout))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a, err)
	}
	a.mu.Lock()
	a.meta = m
	a.mu.Unlock()
	return m, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return "no reason given"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// ListAgents returns the agents installed under root (OCF_ROOT; "" =
// DefaultRoot) as sorted "ocf:PROVIDER:TYPE" names: executable files (or
// symlinks to them) in root/resource.d/*/, hidden files excluded. A
// missing resource.d is not an error: no agents are installed.
func ListAgents(root string) ([]string, error) {
	if root == "" {
		root = DefaultRoot
	}
	base := filepath.Join(root, "resource.d")
	providers, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing OCF agents: %w", err)
	}
	var out []string
	for _, p := range providers {
		if !validName(p.Name()) {
			continue
		}
		dir := filepath.Join(base, p.Name())
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("listing OCF agents: %w", err)
		}
		for _, e := range entries {
			if !validName(e.Name()) {
				continue
			}
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				continue
			}
			out = append(out, "ocf:"+p.Name()+":"+e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
