// Package lsb runs LSB init scripts (class "lsb:NAME", the script
// /etc/init.d/NAME) as an agents.Invoker, the way Pacemaker does:
//
//   - start and stop run the script with that argument; their exit codes
//     share the OCF meaning up to 7. Stop that reports 7 ("not running")
//     succeeded: the service is stopped. Codes above 7 are soft errors.
//   - monitor runs "status", whose codes LSB defines differently: 0
//     running; 1, 2, 3 not running (→ 7); 4 status unknown (→ 4, hard);
//     5 not installed (→ 5, hard); anything else a soft error.
//   - meta-data is generated from the script's "### BEGIN INIT INFO"
//     block in the OCF meta-data format; validate-all checks that the
//     script is installed and executable.
//   - other actions (promote, notify, migrate_to, ...) are not
//     implemented by LSB scripts: code 3, a hard error.
//
// Scripts get no parameters: LSB has none. Each action runs in its own
// process group and is killed as a group at its timeout (agents.RunCommand).
package lsb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/paceline/paceline/internal/agents"
)

// DefaultDir holds the init scripts.
const DefaultDir = "/etc/init.d"

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LSB status exit codes.
const (
	StatusRunning      = 0
	StatusDeadPidFile  = 1
	StatusDeadLockFile = 2
	StatusNotRunning   = 3
	StatusUnknown      = 4
	StatusNotInstalled = 5 // Pacemaker's use; LSB reserves 5-99 for future use
)

// Options configure a Script. The zero value is the Debian layout.
type Options struct {
	Dir       string            // directory of init scripts; "" = DefaultDir
	Env       map[string]string // added to the minimal environment (PATH, LANG, LC_ALL, TZ)
	KillGrace time.Duration     // SIGTERM to SIGKILL at a timeout; 0 = agents.DefaultKillGrace
	Logger    *slog.Logger      // nil = discard
}

// Script is one LSB init script.
type Script struct {
	name string
	opts Options
	log  *slog.Logger
}

var _ agents.Invoker = (*Script)(nil)

// ParseSpec returns NAME from "lsb:NAME".
func ParseSpec(spec string) (string, error) {
	name, ok := strings.CutPrefix(spec, "lsb:")
	if !ok || name == "" || name[0] == '.' || strings.ContainsAny(name, "/:\x00") {
		return "", fmt.Errorf("agent %q: want lsb:NAME", spec)
	}
	return name, nil
}

// New returns the script named by spec ("lsb:NAME"). A missing script is
// reported by Run (code 5, a hard error), not here.
func New(spec string, opts Options) (*Script, error) {
	name, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Script{name: name, opts: opts, log: log.With("agent", "lsb:"+name)}, nil
}

// String returns "lsb:NAME".
func (s *Script) String() string { return "lsb:" + s.name }

// Path returns the script's path.
func (s *Script) Path() string { return filepath.Join(s.opts.Dir, s.name) }

// Run runs action; see the package documentation for the mapping.
func (s *Script) Run(ctx context.Context, action agents.Action, inst agents.Instance, timeout time.Duration) agents.Result {
	if timeout <= 0 {
		timeout = agents.DefaultTimeout
	}
	var r agents.Result
	switch action {
	case agents.Start, agents.Stop:
		r = s.exec(ctx, string(action), timeout, mapAction)
		if action == agents.Stop && r.Code == agents.OCFNotRunning {
			r.Code, r.Status = agents.OCFSuccess, agents.StatusSuccess
		}
	case agents.Monitor, agents.Status:
		r = s.exec(ctx, "status", timeout, mapStatus)
	case agents.MetaData:
		r = s.metaData()
	case agents.ValidateAll:
		r = s.validate()
	default:
		r = agents.Result{Code: agents.OCFErrUnimplemented, Status: agents.StatusHardError,
			Reason: fmt.Sprintf("LSB scripts do not implement %s", action)}
	}
	lvl := slog.LevelDebug
	if r.Status.Failed() {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "action finished", "action", string(action), "instance", inst.Name,
		"code", r.Code, "status", r.Status.String(), "reason", r.Reason, "duration", r.Duration)
	return r
}

// exec runs the script with arg and maps its exit code with mapCode,
// which returns the OCF code.
func (s *Script) exec(ctx context.Context, arg string, timeout time.Duration, mapCode func(int) int) agents.Result {
	ex := agents.RunCommand(ctx, agents.Command{
		Path:      s.Path(),
		Args:      []string{arg},
		Env:       s.environ(),
		Timeout:   timeout,
		KillGrace: s.opts.KillGrace,
	})
	raw := ex.ExitCode
	if raw >= 0 && !ex.TimedOut && !ex.Canceled {
		ex.ExitCode = mapCode(raw)
	}
	r := agents.ResultOf(ex, timeout, nil)
	if r.Reason == "" && r.Status.Failed() && raw >= 0 {
		r.Reason = fmt.Sprintf("%s %s exited with %d", s, arg, raw)
	}
	return r
}

// mapAction maps the exit code of start or stop: LSB and OCF agree up to 7.
func mapAction(code int) int {
	if code < 0 || code > agents.OCFNotRunning {
		return agents.OCFErrGeneric
	}
	return code
}

// mapStatus maps the exit code of status.
func mapStatus(code int) int {
	switch code {
	case StatusRunning:
		return agents.OCFSuccess
	case StatusDeadPidFile, StatusDeadLockFile, StatusNotRunning:
		return agents.OCFNotRunning
	case StatusUnknown:
		return agents.OCFErrPerm
	case StatusNotInstalled:
		return agents.OCFErrInstalled
	}
	return agents.OCFErrGeneric
}

func (s *Script) environ() []string {
	env := map[string]string{"PATH": defaultPath}
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range s.opts.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// check reports whether the script is installed and executable.
func (s *Script) check() agents.Result {
	fi, err := os.Stat(s.Path())
	switch {
	case errors.Is(err, os.ErrNotExist):
		return agents.Result{Code: agents.OCFErrInstalled, Status: agents.StatusHardError, Reason: fmt.Sprintf("%s: %s not installed", s, s.Path())}
	case err != nil:
		return agents.Result{Code: agents.OCFErrPerm, Status: agents.StatusHardError, Reason: fmt.Sprintf("%s: %v", s, err)}
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return agents.Result{Code: agents.OCFErrPerm, Status: agents.StatusHardError, Reason: fmt.Sprintf("%s: %s is not an executable file", s, s.Path())}
	}
	return agents.Result{Code: agents.OCFSuccess, Status: agents.StatusSuccess}
}

func (s *Script) validate() agents.Result { return s.check() }

// metaData returns OCF-format meta-data built from the INIT INFO block.
func (s *Script) metaData() agents.Result {
	if r := s.check(); r.Status != agents.StatusSuccess {
		return r
	}
	info, err := s.InitInfo()
	if err != nil {
		return agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, Reason: err.Error()}
	}
	out, err := MetadataXML(s.name, info)
	if err != nil {
		return agents.Result{Code: agents.OCFErrGeneric, Status: agents.StatusSoftError, Reason: err.Error()}
	}
	return agents.Result{Code: agents.OCFSuccess, Status: agents.StatusSuccess, Stdout: string(out)}
}

// InitInfo is the "### BEGIN INIT INFO" block of an init script.
type InitInfo struct {
	Provides         []string
	RequiredStart    []string
	RequiredStop     []string
	ShouldStart      []string
	ShouldStop       []string
	DefaultStart     []string
	DefaultStop      []string
	ShortDescription string
	Description      string
}

// maxScriptSize bounds how much of a script InitInfo reads.
const maxScriptSize = 1 << 20

// InitInfo reads the script's INIT INFO block. A script without one has
// an empty InitInfo.
func (s *Script) InitInfo() (InitInfo, error) {
	f, err := os.Open(s.Path())
	if err != nil {
		return InitInfo{}, fmt.Errorf("%s: %w", s, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxScriptSize)); err != nil {
		return InitInfo{}, fmt.Errorf("%s: %w", s, err)
	}
	return ParseInitInfo(buf.Bytes()), nil
}

// ParseInitInfo parses the INIT INFO block of script text. Continuation
// lines of Description ("#" followed by a tab or two or more spaces) are
// joined.
func ParseInitInfo(script []byte) InitInfo {
	var info InitInfo
	in, last := false, ""
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case line == "### BEGIN INIT INFO":
			in = true
			continue
		case line == "### END INIT INFO":
			return info
		case !in || !strings.HasPrefix(line, "#"):
			continue
		}
		body := line[1:]
		if last == "Description" && (strings.HasPrefix(body, "\t") || strings.HasPrefix(body, "  ")) {
			info.Description += " " + strings.TrimSpace(body)
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(body), ":")
		if !ok {
			continue
		}
		val, last = strings.TrimSpace(val), key
		switch key {
		case "Provides":
			info.Provides = strings.Fields(val)
		case "Required-Start":
			info.RequiredStart = strings.Fields(val)
		case "Required-Stop":
			info.RequiredStop = strings.Fields(val)
		case "Should-Start":
			info.ShouldStart = strings.Fields(val)
		case "Should-Stop":
			info.ShouldStop = strings.Fields(val)
		case "Default-Start":
			info.DefaultStart = strings.Fields(val)
		case "Default-Stop":
			info.DefaultStop = strings.Fields(val)
		case "Short-Description":
			info.ShortDescription = val
		case "Description":
			info.Description = val
		}
	}
	return info
}

// MetadataXML renders OCF-format meta-data for an LSB script, as
// Pacemaker generates it: no parameters, the LSB actions with 15s
// timeouts, and the INIT INFO in a <special tag="LSB"> element.
func MetadataXML(name string, info InitInfo) ([]byte, error) {
	type desc struct {
		Lang string `xml:"lang,attr"`
		Text string `xml:",chardata"`
	}
	type action struct {
		Name     string `xml:"name,attr"`
		Timeout  string `xml:"timeout,attr"`
		Interval string `xml:"interval,attr,omitempty"`
	}
	type special struct {
		Tag              string `xml:"tag,attr"`
		Provides         string `xml:"Provides,omitempty"`
		RequiredStart    string `xml:"Required-Start,omitempty"`
		RequiredStop     string `xml:"Required-Stop,omitempty"`
		ShouldStart      string `xml:"Should-Start,omitempty"`
		ShouldStop       string `xml:"Should-Stop,omitempty"`
		DefaultStart     string `xml:"Default-Start,omitempty"`
		DefaultStop      string `xml:"Default-Stop,omitempty"`
		ShortDescription string `xml:"Short-Description,omitempty"`
		Description      string `xml:"Description,omitempty"`
	}
	type agent struct {
		XMLName    xml.Name `xml:"resource-agent"`
		Name       string   `xml:"name,attr"`
		Version    string   `xml:"version,attr"`
		OCFVersion string   `xml:"version"`
		LongDesc   desc     `xml:"longdesc"`
		ShortDesc  desc     `xml:"shortdesc"`
		Parameters struct{} `xml:"parameters"`
		Actions    []action `xml:"actions>action"`
		Special    special  `xml:"special"`
	}
	j := func(s []string) string { return strings.Join(s, " ") }
	a := agent{
		Name: name, Version: "0.1", OCFVersion: "1.0",
		LongDesc:  desc{"en", info.Description},
		ShortDesc: desc{"en", info.ShortDescription},
		Actions: []action{
			{Name: "meta-data", Timeout: "5s"},
			{Name: "start", Timeout: "15s"},
			{Name: "stop", Timeout: "15s"},
			{Name: "status", Timeout: "15s"},
			{Name: "monitor", Timeout: "15s", Interval: "15s"},
		},
		Special: special{
			Tag: "LSB", Provides: j(info.Provides), RequiredStart: j(info.RequiredStart), RequiredStop: j(info.RequiredStop),
			ShouldStart: j(info.ShouldStart), ShouldStop: j(info.ShouldStop), DefaultStart: j(info.DefaultStart),
			DefaultStop: j(info.DefaultStop), ShortDescription: info.ShortDescription, Description: info.Description,
		},
	}
	out, err := xml.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("lsb:%s meta-data: %w", name, err)
	}
	return append([]byte(xml.Header+"<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n"), append(out, '\n')...), nil
}
