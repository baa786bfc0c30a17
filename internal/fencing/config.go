package fencing

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Defaults (ANCHORS.md, "Fence agents": Pacemaker's fencing-timeout and
// pcmk_off_retries).
const (
	DefaultTimeout      = 60 * time.Second
	DefaultRetries      = 2
	DefaultRetryDelay   = time.Second
	DefaultPollInterval = 250 * time.Millisecond
	DefaultHistorySize  = 200
	DefaultAgentDir     = "/usr/sbin"
	MaxLevel            = 9
)

// Config is the fencing configuration of a cluster: the devices and, per
// node, the topology levels that use them.
type Config struct {
	Devices []DeviceConfig `json:"devices,omitempty"`
	// Levels is the topology. A node without levels gets one implicit
	// level 1 with every device whose hosts/hostMap names it, in the
	// order of Devices.
	Levels []LevelConfig `json:"levels,omitempty"`
	// Timeout bounds one attempt on one device: the action and, for off,
	// the status polls that confirm it. 0 = DefaultTimeout (60 s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries is how many times a failed attempt on a device is retried
	// (so 1+Retries attempts at most). nil = DefaultRetries (2).
	Retries *int `json:"retries,omitempty"`
	// RetryDelay is the pause between attempts. 0 = DefaultRetryDelay.
	RetryDelay time.Duration `json:"retryDelay,omitempty"`
	// PollInterval is the pause between status calls that confirm an
	// off. 0 = DefaultPollInterval.
	PollInterval time.Duration `json:"pollInterval,omitempty"`
	// HistorySize bounds the history. 0 = DefaultHistorySize.
	HistorySize int `json:"historySize,omitempty"`
	// AgentDir is where agent names without a slash are looked up.
	// "" = DefaultAgentDir (/usr/sbin).
	AgentDir string `json:"agentDir,omitempty"`
}

// DeviceConfig is one fence device: either a fence-agents script (Agent)
// or the built-in Redfish client (Redfish).
type DeviceConfig struct {
	Name string `json:"name"`
	// Agent is a fence agent: a name such as "fence_ipmilan" (looked up
	// in Config.AgentDir) or an absolute path.
	Agent string `json:"agent,omitempty"`
	// Redfish configures the built-in Redfish client instead of a script.
	Redfish *RedfishConfig `json:"redfish,omitempty"`
	// Params are the device parameters passed to the agent on stdin
	// ("ip", "username", "lanplus", ...). Secrets are not allowed here:
	// use SecretFiles.
	Params map[string]string `json:"params,omitempty"`
	// SecretFiles maps a parameter name ("password", "hexadecimal_kg")
	// to a file whose content (trailing newline removed) is the value.
	// The file is read at every call; the value is never logged, shown
	// in errors, output or history.
	SecretFiles map[string]string `json:"secretFiles,omitempty"`
	// Hosts lists the nodes this device fences; the port passed to the
	// agent is the node name.
	Hosts []string `json:"hosts,omitempty"`
	// HostMap maps a node to the port (plug, outlet, VM name) the agent
	// must act on. A node may be in Hosts or HostMap, not both.
	HostMap map[string]string `json:"hostMap,omitempty"`
	// HostArgument is the stdin key that carries the port: "port"
	// (default), "plug", or "none" to pass none (one BMC per node, such
	// as fence_ipmilan).
	HostArgument string `json:"hostArgument,omitempty"`
	// Timeout and Retries override Config.Timeout and Config.Retries for
	// this device.
	Timeout time.Duration `json:"timeout,omitempty"`
	Retries *int          `json:"retries,omitempty"`
	// DelayBase + a random duration in [0, DelayMax) is waited before a
	// fence operation whose first device is this one (against fence
	// races in two-node clusters: delay the device that fences the node
	// that should survive).
	DelayBase time.Duration `json:"delayBase,omitempty"`
	DelayMax  time.Duration `json:"delayMax,omitempty"`
}

// RedfishConfig configures the built-in Redfish device.
type RedfishConfig struct {
	// Address is the BMC base URL: "https://10.0.0.5" or
	// "https://bmc:8443"; http:// only with Insecure (lab use).
	Address string `json:"address"`
	// SystemID is the member of /redfish/v1/Systems to act on. A device
	// with HostMap uses the mapped port as the system ID instead.
	SystemID string `json:"systemId,omitempty"`
	// Username and PasswordFile give the HTTP basic auth credentials;
	// the password file is read at every call.
	Username     string `json:"username,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
	// CAFile is a PEM bundle that verifies the BMC's certificate
	// (default: the system roots). Insecure skips verification (and
	// allows http://).
	CAFile   string `json:"caFile,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
}

// LevelConfig is one topology level of one node: its devices are tried
// in order and must all succeed.
type LevelConfig struct {
	Node    string   `json:"node"`
	Level   int      `json:"level"`
	Devices []string `json:"devices"`
}

// isSecretParam reports whether a parameter must come from SecretFiles:
// passwords (password, passwd, snmp_auth_passwd, snmp_priv_passwd, ...),
// IPMI Kg keys, SNMP communities, tokens and secrets. The *_script
// parameters name a command, not a secret.
func isSecretParam(name string) bool {
	n := strings.ToLower(name)
	if strings.HasSuffix(n, "_script") {
		return false
	}
	switch n {
	case "hexadecimal_kg", "kg", "community":
		return true
	}
	for _, s := range []string{"passw", "secret", "token"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

var agentName = regexp.MustCompile(`^fence_[A-Za-z0-9_]+$`)
var paramName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// reserved stdin keys set by paceline itself.
var reservedParams = map[string]bool{"action": true, "nodename": true, "port": true, "plug": true}

// FieldError is a validation error that names the offending field.
type FieldError struct {
	Field string // e.g. "devices[2].hostMap" or "levels[0].devices[1]"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks c and returns every problem found (errors.Join of
// *FieldError), or nil.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if c.Timeout < 0 {
		add(fieldErr("timeout", "must not be negative"))
	}
	if c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10) {
		add(fieldErr("retries", "must be between 0 and 10, got %d", *c.Retries))
	}
	if c.RetryDelay < 0 {
		add(fieldErr("retryDelay", "must not be negative"))
	}
	if c.PollInterval < 0 {
		add(fieldErr("pollInterval", "must not be negative"))
	}
	if c.HistorySize < 0 {
		add(fieldErr("historySize", "must not be negative"))
	}
	if c.AgentDir != "" && !filepath.IsAbs(c.AgentDir) {
		add(fieldErr("agentDir", "must be an absolute path, got %q", c.AgentDir))
	}
	byName := map[string]int{}
	for i := range c.Devices {
		d := &c.Devices[i]
		f := fmt.Sprintf("devices[%d]", i)
		if d.Name == "" {
			add(fieldErr(f+".name", "is required"))
		} else if j, dup := byName[d.Name]; dup {
			add(fieldErr(f+".name", "duplicate device name %q (also devices[%d])", d.Name, j))
		} else {
			byName[d.Name] = i
		}
		errs = append(errs, d.validate(f)...)
	}
	type key struct {
		node  string
		level int
	}
	seen := map[key]int{}
	levelNodes := map[string]bool{}
	for i, l := range c.Levels {
		f := fmt.Sprintf("levels[%d]", i)
		if l.Node == "" {
			add(fieldErr(f+".node", "is required"))
		}
		if l.Level < 1 || l.Level > MaxLevel {
			add(fieldErr(f+".level", "must be between 1 and %d, got %d", MaxLevel, l.Level))
		}
		if j, dup := seen[key{l.Node, l.Level}]; dup && l.Node != "" {
			add(fieldErr(f+".level", "node %q already has a level %d (levels[%d])", l.Node, l.Level, j))
		} else {
			seen[key{l.Node, l.Level}] = i
		}
		levelNodes[l.Node] = true
		if len(l.Devices) == 0 {
			add(fieldErr(f+".devices", "a level needs at least one device"))
		}
		inLevel := map[string]bool{}
		for k, name := range l.Devices {
			df := fmt.Sprintf("%s.devices[%d]", f, k)
			j, ok := byName[name]
			switch {
			case !ok:
				add(fieldErr(df, "unknown device %q", name))
			case inLevel[name]:
				add(fieldErr(df, "device %q listed twice in the level", name))
			default:
				if _, maps := c.Devices[j].portFor(l.Node); !maps && l.Node != "" {
					add(fieldErr(df, "device %q cannot fence node %q (not in devices[%d].hosts or .hostMap)", name, l.Node, j))
				}
			}
			inLevel[name] = true
		}
	}
	return errors.Join(errs...)
}

func (d *DeviceConfig) validate(f string) []error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	switch {
	case d.Agent == "" && d.Redfish == nil:
		add(fieldErr(f+".agent", "set agent (a fence_* script) or redfish"))
	case d.Agent != "" && d.Redfish != nil:
		add(fieldErr(f+".agent", "agent and redfish are exclusive"))
	case d.Agent != "":
		if !filepath.IsAbs(d.Agent) && !agentName.MatchString(d.Agent) {
			add(fieldErr(f+".agent", "must be a fence agent name (fence_*) or an absolute path, got %q", d.Agent))
		}
	default:
		errs = append(errs, d.Redfish.validate(f+".redfish")...)
		if len(d.Params) > 0 {
			add(fieldErr(f+".params", "not used by a redfish device"))
		}
		if len(d.SecretFiles) > 0 {
			add(fieldErr(f+".secretFiles", "not used by a redfish device (use redfish.passwordFile)"))
		}
	}
	for _, k := range sortedKeys(d.Params) {
		pf := fmt.Sprintf("%s.params[%s]", f, k)
		switch {
		case !paramName.MatchString(k):
			add(fieldErr(pf, "not a valid parameter name"))
		case reservedParams[k]:
			add(fieldErr(pf, "is set by paceline (use hosts/hostMap/hostArgument)"))
		case isSecretParam(k):
			add(fieldErr(pf, "is a secret: give it in secretFiles (a file path), not in params"))
		case strings.ContainsAny(d.Params[k], "\n\r"):
			add(fieldErr(pf, "value must be a single line"))
		}
		if _, both := d.SecretFiles[k]; both {
			add(fieldErr(pf, "also given in secretFiles"))
		}
	}
	for _, k := range sortedKeys(d.SecretFiles) {
		pf := fmt.Sprintf("%s.secretFiles[%s]", f, k)
		switch {
		case !paramName.MatchString(k):
			add(fieldErr(pf, "not a valid parameter name"))
		case reservedParams[k]:
			add(fieldErr(pf, "is set by paceline"))
		case !filepath.IsAbs(d.SecretFiles[k]):
			add(fieldErr(pf, "must be an absolute file path"))
		}
	}
	switch d.HostArgument {
	case "", "port", "plug", "none":
	default:
		add(fieldErr(f+".hostArgument", "must be port, plug or none, got %q", d.HostArgument))
	}
	if len(d.Hosts) == 0 && len(d.HostMap) == 0 {
		add(fieldErr(f+".hosts", "device %q is mapped to no node (set hosts or hostMap)", d.Name))
	}
	inHosts := map[string]bool{}
	for i, h := range d.Hosts {
		hf := fmt.Sprintf("%s.hosts[%d]", f, i)
		switch {
		case h == "":
			add(fieldErr(hf, "empty node name"))
		case inHosts[h]:
			add(fieldErr(hf, "node %q listed twice", h))
		}
		inHosts[h] = true
		if _, both := d.HostMap[h]; both {
			add(fieldErr(hf, "node %q is also in hostMap", h))
		}
	}
	for _, n := range sortedKeys(d.HostMap) {
		hf := fmt.Sprintf("%s.hostMap[%s]", f, n)
		if n == "" {
			add(fieldErr(hf, "empty node name"))
		}
		if p := d.HostMap[n]; p == "" || strings.ContainsAny(p, "\n\r") {
			add(fieldErr(hf, "port must be a non-empty single line"))
		}
	}
	if d.Timeout < 0 {
		add(fieldErr(f+".timeout", "must not be negative"))
	}
	if d.Retries != nil && (*d.Retries < 0 || *d.Retries > 10) {
		add(fieldErr(f+".retries", "must be between 0 and 10, got %d", *d.Retries))
	}
	if d.DelayBase < 0 {
		add(fieldErr(f+".delayBase", "must not be negative"))
	}
	if d.DelayMax < 0 {
		add(fieldErr(f+".delayMax", "must not be negative"))
	}
	return errs
}

func (r *RedfishConfig) validate(f string) []error {
	var errs []error
	u, err := url.Parse(r.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fieldErr(f+".address", "must be an http(s) URL such as https://10.0.0.5, got %q", r.Address))
	} else if u.User != nil {
		errs = append(errs, fieldErr(f+".address", "must not carry credentials (use username and passwordFile)"))
	} else if u.Scheme == "http" && !r.Insecure {
		errs = append(errs, fieldErr(f+".address", "plain http sends the password in clear: use https, or set insecure: true"))
	}
	if r.SystemID != "" && strings.ContainsAny(r.SystemID, "/?#") {
		errs = append(errs, fieldErr(f+".systemId", "must be a single path segment, got %q", r.SystemID))
	}
	if r.PasswordFile != "" && !filepath.IsAbs(r.PasswordFile) {
		errs = append(errs, fieldErr(f+".passwordFile", "must be an absolute file path"))
	}
	if r.PasswordFile != "" && r.Username == "" {
		errs = append(errs, fieldErr(f+".username", "is required with passwordFile"))
	}
	if r.CAFile != "" && !filepath.IsAbs(r.CAFile) {
		errs = append(errs, fieldErr(f+".caFile", "must be an absolute file path"))
	}
	if r.CAFile != "" && r.Insecure {
		errs = append(errs, fieldErr(f+".insecure", "contradicts caFile"))
	}
	return errs
}

// portFor returns the port the device acts on to fence node, and whether
// the device can fence node at all.
func (d *DeviceConfig) portFor(node string) (string, bool) {
	if p, ok := d.HostMap[node]; ok {
		return p, true
	}
	if slices.Contains(d.Hosts, node) {
		return node, true
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
