package fencing

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

// Action is a fence action.
type Action string

// The actions of the fence-agents stdin protocol (ANCHORS.md).
const (
	Off      Action = "off"
	On       Action = "on"
	Reboot   Action = "reboot"
	Status   Action = "status"
	Monitor  Action = "monitor"
	List     Action = "list"
	Metadata Action = "metadata"
)

// Exit codes of a fence agent (ANCHORS.md): 0 success; 1 failure;
// status: 0 on, 2 off, 1 unreachable. The Redfish device reports the
// same codes.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitOff     = 2
	ExitNoExit  = -1 // killed, timed out, or could not run
	redactedStr = "[redacted]"
)

// Power is the power state a status call reported.
type Power string

// Power states.
const (
	PowerUnknown Power = ""
	PowerOn      Power = "on"
	PowerOff     Power = "off"
)

// Target is what an action acts on: the cluster node and the device port
// (plug, outlet, VM, Redfish system) that powers it.
type Target struct {
	Node string
	Port string
}

// Outcome is the result of one call of one action on one device (no
// retries, no confirmation). Nothing in it contains a secret.
type Outcome struct {
	ExitCode int           // agent exit code; ExitNoExit when it did not exit by itself
	Power    Power         // status: PowerOn (exit 0) or PowerOff (exit 2)
	Output   string        // stdout (list, metadata), secrets redacted
	Err      string        // why it failed, secrets redacted; "" on success
	TimedOut bool          // killed at its timeout
	Duration time.Duration // how long the call took
}

// OK reports whether the call succeeded; for status, whether it
// reported a power state.
func (o Outcome) OK() bool { return o.Err == "" }

// Device is one fence device. Exec runs one action once. It is safe for
// concurrent use; String and JSON never show secrets.
type Device interface {
	Name() string
	Exec(ctx context.Context, action Action, t Target, timeout time.Duration) Outcome
	String() string
}

// AgentDevice is a fence-agents script driven by its stdin protocol.
type AgentDevice struct {
	cfg       DeviceConfig
	path      string
	killGrace time.Duration
}

// NewAgentDevice returns the device of cfg (cfg.Agent set), resolving an
// agent name in agentDir ("" = DefaultAgentDir). It does not run the
// agent; Check does.
func NewAgentDevice(cfg DeviceConfig, agentDir string) (*AgentDevice, error) {
	if errs := cfg.validate("device"); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Agent == "" {
		return nil, fieldErr("device.agent", "is required")
	}
	if agentDir == "" {
		agentDir = DefaultAgentDir
	}
	path := cfg.Agent
	if !filepath.IsAbs(path) {
		path = filepath.Join(agentDir, path)
	}
	return &AgentDevice{cfg: cfg, path: path, killGrace: 2 * time.Second}, nil
}

// Name returns the device name.
func (d *AgentDevice) Name() string { return d.cfg.Name }

// Path returns the agent script's path.
func (d *AgentDevice) Path() string { return d.path }

// String shows the device without secrets: secret parameters show their
// file, never their value.
func (d *AgentDevice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s(%s", d.cfg.Name, filepath.Base(d.path))
	for _, k := range sortedKeys(d.cfg.Params) {
		fmt.Fprintf(&b, " %s=%s", k, d.cfg.Params[k])
	}
	for _, k := range sortedKeys(d.cfg.SecretFiles) {
		fmt.Fprintf(&b, " %s=<file %s>", k, d.cfg.SecretFiles[k])
	}
	b.WriteString(")")
	return b.String()
}

// MarshalJSON shows the configuration (which holds file paths, not
// secrets).
func (d *AgentDevice) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Path   string       `json:"path"`
		Config DeviceConfig `json:"config"`
	}{d.path, d.cfg})
}

// readSecret reads a secret file; the value never leaves this package
// except on an agent's stdin or in an Authorization header.
func readSecret(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s: cannot read secret file %s: %v", field, path, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: secret file %s is empty", field, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s: secret file %s has more than one line", field, path)
	}
	return s, nil
}

// stdin builds the agent's stdin and returns the secret values in it.
func (d *AgentDevice) stdin(action Action, t Target) ([]byte, []string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "action=%s\n", action)
	if action == Metadata {
		return b.Bytes(), nil, nil // no parameters, no secrets
	}
	if t.Node != "" {
		fmt.Fprintf(&b, "nodename=%s\n", t.Node)
	}
	if arg := d.cfg.HostArgument; arg != "none" && t.Port != "" {
		if arg == "" {
			arg = "port"
		}
		fmt.Fprintf(&b, "%s=%s\n", arg, t.Port)
	}
	for _, k := range sortedKeys(d.cfg.Params) {
		fmt.Fprintf(&b, "%s=%s\n", k, d.cfg.Params[k])
	}
	var secrets []string
	for _, k := range sortedKeys(d.cfg.SecretFiles) {
		v, err := readSecret("secretFiles["+k+"]", d.cfg.SecretFiles[k])
		if err != nil {
			return nil, nil, err
		}
		secrets = append(secrets, v)
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.Bytes(), secrets, nil
}

// agentEnv is the environment of a fence agent: never paceline's own.
var agentEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "PYTHONWARNINGS=ignore::DeprecationWarning"}

// Exec runs action once, killing the agent's process group at timeout
// (<= 0: DefaultTimeout).
func (d *AgentDevice) Exec(ctx context.Context, action Action, t Target, timeout time.Duration) Outcome {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	in, secrets, err := d.stdin(action, t)
	if err != nil {
		return Outcome{ExitCode: ExitNoExit, Err: redact(err.Error(), secrets)}
	}
	ex := agents.RunCommand(ctx, agents.Command{Path: d.path, Env: agentEnv, Timeout: timeout, KillGrace: d.killGrace, MaxOutput: 1 << 20, Stdin: in})
	clear(in)
	o := Outcome{ExitCode: ex.ExitCode, TimedOut: ex.TimedOut, Duration: ex.Duration,
		Output: redact(ex.Stdout, secrets)}
	stderr := redact(ex.Stderr, secrets)
	name := filepath.Base(d.path)
	switch {
	case ex.TimedOut:
		o.Err = fmt.Sprintf("%s %s: timed out after %s, process group killed", name, action, timeout)
	case ex.Canceled:
		o.Err = fmt.Sprintf("%s %s: canceled", name, action)
	case ex.PID == 0:
		o.Err = fmt.Sprintf("%s %s: cannot run agent: %v", name, action, redact(fmt.Sprint(ex.Err), secrets))
	case ex.Signal != 0:
		o.Err = fmt.Sprintf("%s %s: killed by signal %d (%s)", name, action, int(ex.Signal), ex.Signal)
	case action == Status && ex.ExitCode == ExitOK:
		o.Power = PowerOn
	case action == Status && ex.ExitCode == ExitOff:
		o.Power = PowerOff
	case ex.ExitCode == ExitOK:
	default:
		o.Err = fmt.Sprintf("%s %s: exit %d: %s", name, action, ex.ExitCode, agentReason(stderr, o.Output))
	}
	return o
}

// logStamp is the time stamp fence-agents put before their log lines.
var logStamp = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ `)

// agentReason picks the most telling line of an agent's output: the
// last "ERROR" line of stderr, else its last line, else stdout's.
func agentReason(stderr, stdout string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(logStamp.ReplaceAllString(l, ""))
		if l == "" || strings.Contains(l, "DeprecationWarning") || strings.HasPrefix(l, "from pipes import") {
			continue
		}
		lines = append(lines, l)
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "ERROR") {
			return lines[i]
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	if s := strings.TrimSpace(stdout); s != "" {
		ls := strings.Split(s, "\n")
		return strings.TrimSpace(ls[len(ls)-1])
	}
	return "no output"
}

// redact replaces every secret value in s.
func redact(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, redactedStr)
		}
	}
	return s
}

// AgentMetadata is the XML metadata of a fence agent (action=metadata).
type AgentMetadata struct {
	Name       string          `xml:"name,attr" json:"name"`
	ShortDesc  string          `xml:"shortdesc,attr" json:"shortdesc,omitempty"`
	Parameters []MetaParameter `xml:"parameters>parameter" json:"parameters"`
	Actions    []MetaAction    `xml:"actions>action" json:"actions"`
}

// MetaParameter is one parameter in agent metadata.
type MetaParameter struct {
	Name       string `xml:"name,attr" json:"name"`
	Required   string `xml:"required,attr" json:"required,omitempty"`
	Obsoletes  string `xml:"obsoletes,attr" json:"obsoletes,omitempty"`
	Deprecated string `xml:"deprecated,attr" json:"deprecated,omitempty"`
	Content    struct {
		Type    string `xml:"type,attr" json:"type,omitempty"`
		Default string `xml:"default,attr" json:"default,omitempty"`
	} `xml:"content" json:"content"`
}

// MetaAction is one action in agent metadata.
type MetaAction struct {
	Name string `xml:"name,attr" json:"name"`
}

// ParseMetadata parses a fence agent's metadata XML.
func ParseMetadata(b []byte) (*AgentMetadata, error) {
	var md AgentMetadata
	if err := xml.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("invalid fence agent metadata: %v", err)
	}
	if md.Name == "" || len(md.Parameters) == 0 {
		return nil, errors.New("invalid fence agent metadata: no <resource-agent name=...> with <parameters>")
	}
	return &md, nil
}

// Param returns the parameter called name.
func (md *AgentMetadata) Param(name string) (MetaParameter, bool) {
	for _, p := range md.Parameters {
		if p.Name == name {
			return p, true
		}
	}
	return MetaParameter{}, false
}

// HasAction reports whether the agent advertises action a.
func (md *AgentMetadata) HasAction(a Action) bool {
	return slices.ContainsFunc(md.Actions, func(x MetaAction) bool { return x.Name == string(a) })
}

// Metadata runs the agent's metadata action and parses it.
func (d *AgentDevice) Metadata(ctx context.Context, timeout time.Duration) (*AgentMetadata, error) {
	o := d.Exec(ctx, Metadata, Target{}, timeout)
	if !o.OK() {
		return nil, errors.New(o.Err)
	}
	md, err := ParseMetadata([]byte(o.Output))
	if err != nil {
		return nil, fmt.Errorf("%s metadata: %v", filepath.Base(d.path), err)
	}
	return md, nil
}

// CheckMetadata validates the device configuration against the agent's
// metadata: every parameter must be known to the agent, every required
// one must be given, and the agent must support off and status. field
// prefixes the errors ("devices[2]").
func (d *AgentDevice) CheckMetadata(md *AgentMetadata, field string) error {
	var errs []error
	agent := filepath.Base(d.path)
	given := map[string]bool{}
	check := func(kind, k string) {
		given[k] = true
		if _, ok := md.Param(k); !ok {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.%s[%s]", field, kind, k), "agent %s has no parameter %q", agent, k))
		}
	}
	for _, k := range sortedKeys(d.cfg.Params) {
		check("params", k)
	}
	for _, k := range sortedKeys(d.cfg.SecretFiles) {
		check("secretFiles", k)
	}
	if arg := d.cfg.HostArgument; arg == "port" || arg == "plug" {
		if _, ok := md.Param(arg); !ok {
			errs = append(errs, fieldErr(field+".hostArgument", "agent %s has no parameter %q (use \"none\")", agent, arg))
		}
	}
	for _, p := range md.Parameters {
		if p.Required != "1" || reservedParams[p.Name] || p.Content.Default != "" {
			continue
		}
		if given[p.Name] || (p.Obsoletes != "" && given[p.Obsoletes]) {
			continue
		}
		// an obsoleted name given through its replacement
		if slices.ContainsFunc(md.Parameters, func(q MetaParameter) bool { return q.Obsoletes == p.Name && given[q.Name] }) {
			continue
		}
		errs = append(errs, fieldErr(field+".params", "agent %s requires parameter %q", agent, p.Name))
	}
	for _, a := range []Action{Off, Status} {
		if !md.HasAction(a) {
			errs = append(errs, fieldErr(field+".agent", "agent %s does not support action %s", agent, a))
		}
	}
	return errors.Join(errs...)
}

// Check runs the agent's metadata action and validates the device
// against it (see CheckMetadata).
func (d *AgentDevice) Check(ctx context.Context, field string) error {
	if _, err := os.Stat(d.path); err != nil {
		return fieldErr(field+".agent", "fence agent %s: %v", d.path, errors.Unwrap(err))
	}
	md, err := d.Metadata(ctx, 20*time.Second)
	if err != nil {
		return fieldErr(field+".agent", "%v", err)
	}
	return d.CheckMetadata(md, field)
}
