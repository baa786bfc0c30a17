// Package config holds the agent's configuration: defaults, strict YAML
// decoding (unknown fields refused), flag overrides and Validate, whose
// errors name the field to fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the agent configuration file.
type Config struct {
	NodeName    string `yaml:"nodeName"`
	ClusterName string `yaml:"clusterName"`
	// Role is control (votes in raft), remote (no vote) or witness (votes,
	// runs nothing: `paceline witness`, docs/quorum.md).
	Role string `yaml:"role"`
	// BindAddr is the IP the agent listens on; AdvertiseAddr the IP other
	// nodes reach it at (default: BindAddr, or the first non-loopback IP
	// when BindAddr is 0.0.0.0).
	BindAddr      string `yaml:"bindAddr"`
	AdvertiseAddr string `yaml:"advertiseAddr"`
	Ports         Ports  `yaml:"ports"`
	DataDir       string `yaml:"dataDir"`
	// Join lists API addresses (host:port) of existing nodes.
	Join []string `yaml:"join"`
	// BootstrapExpect is the number of control nodes that form a new
	// cluster together (0: join an existing cluster only).
	BootstrapExpect int               `yaml:"bootstrapExpect"`
	Labels          map[string]string `yaml:"labels"`
	// JoinToken (or JoinTokenFile) is the shared secret agents present to
	// each other; it also encrypts gossip.
	JoinToken     string `yaml:"joinToken"`
	JoinTokenFile string `yaml:"joinTokenFile"`
	TLS           TLS    `yaml:"tls"`
	Lease         Lease  `yaml:"lease"`
	Raft          Raft   `yaml:"raft"`
	LogLevel      string `yaml:"logLevel"`
	// Agents overrides where script-class agents live (Debian's layout by default).
	Agents Agents `yaml:"agents"`
	// Discovery configures the discovery DNS server (docs/discovery.md).
	Discovery Discovery `yaml:"discovery"`
	// Quorum holds the quorum options (docs/quorum.md).
	Quorum Quorum `yaml:"quorum"`
	// Watchdog is an optional hardware watchdog for self-fencing
	// (docs/safety.md, "Hardware watchdog").
	Watchdog Watchdog `yaml:"watchdog"`
}

// Watchdog configures the hardware watchdog.
type Watchdog struct {
	// Device is the watchdog device, e.g. /dev/watchdog; empty: none.
	Device string `yaml:"device"`
	// Timeout is how long after the last pet the machine resets (whole
	// seconds; default 2 × the lease duration, at least 1s).
	Timeout time.Duration `yaml:"timeout"`
}

// WatchdogTimeout is the configured timeout or its default.
func (c *Config) WatchdogTimeout() time.Duration {
	if c.Watchdog.Timeout > 0 {
		return c.Watchdog.Timeout
	}
	d := 2 * c.Lease.Duration
	d = (d + time.Second - 1) / time.Second * time.Second
	return max(d, time.Second)
}

// Quorum holds quorum options, like corosync's votequorum section.
type Quorum struct {
	// WaitForAll: when true, the leader starts no resource after a start
	// of its agent until it has seen every control node of the raft
	// configuration alive at once (`paceline node confirm-down NODE`
	// releases the wait for a node known to be down). Unset: true when the
	// cluster has exactly two control nodes (corosync's two_node default),
	// else false.
	WaitForAll *bool `yaml:"waitForAll"`
}

// Discovery configures the DNS server answering NAME.service.DOMAIN,
// NAME.vip.DOMAIN and NODE.node.DOMAIN. The HTTP answers
// (/v1/discovery/...) are served by every agent whatever this says.
type Discovery struct {
	// DNS is the address (IP:port) the DNS server listens on, UDP and TCP;
	// empty (the default) turns the DNS server off. Typically
	// 127.0.0.1:8600.
	DNS string `yaml:"dns"`
	// Domain is the zone (default paceline).
	Domain string `yaml:"domain"`
	// TTL of every record and of negative answers (default 2s; 1s to 1h).
	TTL time.Duration `yaml:"ttl"`
}

// Agents locates resource agents and their runtime directory.
type Agents struct {
	// OCFRoot holds resource.d/PROVIDER/TYPE (default /usr/lib/ocf).
	OCFRoot string `yaml:"ocfRoot"`
	// RscTmp is HA_RSCTMP, where OCF agents keep state (default
	// /run/resource-agents). Agents sharing a machine (tests, demos) need
	// one each.
	RscTmp string `yaml:"rscTmp"`
	// LSBDir holds init scripts (default /etc/init.d).
	LSBDir string `yaml:"lsbDir"`
	// Env is added to the environment of every OCF and LSB action (e.g.
	// HA_VARRUN, where some agents keep state).
	Env map[string]string `yaml:"env"`
}

// Ports are the agent's listening ports.
type Ports struct {
	API    int `yaml:"api"`
	Raft   int `yaml:"raft"`
	Gossip int `yaml:"gossip"`
	// Coarse is the coarse gossip pool for remote nodes.
	Coarse int `yaml:"coarse"`
}

// TLS names PEM files; all three or none.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// Raft holds raft's timings (LAN defaults: 150 ms, 150 ms, 100 ms).
type Raft struct {
	Heartbeat   time.Duration `yaml:"heartbeat"`
	Election    time.Duration `yaml:"election"`
	LeaderLease time.Duration `yaml:"leaderLease"`
}

// Lease holds the hold-lease timings. Zero values take the role's
// defaults: 400 ms on control nodes, 2 s on remote nodes (hundreds of
// them renew, each every duration/4); the margin defaults to a tenth.
type Lease struct {
	Duration time.Duration `yaml:"duration"`
	Margin   time.Duration `yaml:"margin"`
}

// Default returns a configuration with every default filled.
func Default() Config {
	return Config{Role: "control", BindAddr: "0.0.0.0", DataDir: "/var/lib/paceline",
		Ports:     Ports{API: 7480, Raft: 7481, Gossip: 7482, Coarse: 7483},
		Raft:      Raft{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 100 * time.Millisecond},
		LogLevel:  "info",
		Discovery: Discovery{Domain: DefaultDiscoveryDomain, TTL: DefaultDiscoveryTTL}}
}

// Discovery defaults.
const (
	DefaultDiscoveryDomain = "paceline"
	DefaultDiscoveryTTL    = 2 * time.Second
)

// Role-dependent lease defaults.
const (
	DefaultControlLease = 400 * time.Millisecond
	DefaultRemoteLease  = 2 * time.Second
)

// fillLease sets the lease timings left at zero to the role's defaults.
func (c *Config) fillLease() {
	if c.Discovery.Domain == "" {
		c.Discovery.Domain = DefaultDiscoveryDomain
	}
	if c.Discovery.TTL == 0 {
		c.Discovery.TTL = DefaultDiscoveryTTL
	}
	if c.Lease.Duration == 0 {
		c.Lease.Duration = DefaultControlLease
		if c.Role == "remote" {
			c.Lease.Duration = DefaultRemoteLease
		}
	}
	if c.Lease.Margin == 0 {
		c.Lease.Margin = c.Lease.Duration / 10
	}
}

// Load reads a YAML file over the defaults. Unknown fields are errors that
// name the line.
func Load(path string) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := Decode(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Decode decodes YAML strictly into c. A file holding only comments
// changes nothing; a second YAML document is an error; type errors name the
// field path as well as the line.
func Decode(data []byte, c *Config) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var root yaml.Node
	docs := yaml.NewDecoder(bytes.NewReader(data))
	if err := docs.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // only comments
		}
		return err
	}
	var extra yaml.Node
	if err := docs.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return fmt.Errorf("line %d: a config file holds one YAML document; remove the '---' and what follows it", extra.Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = nameField(&root, m)
			}
			return fmt.Errorf("%s (fields are: nodeName, clusterName, role, bindAddr, advertiseAddr, ports{api,raft,gossip,coarse}, dataDir, join, bootstrapExpect, labels, joinToken, joinTokenFile, tls{ca,cert,key}, lease{duration,margin}, raft{heartbeat,election,leaderLease}, logLevel, agents, discovery, quorum{waitForAll}, watchdog{device,timeout})", strings.Join(msgs, "; "))
		}
		return err
	}
	return nil
}

// nameField turns yaml's "line N: cannot unmarshal !!str `x` into int"
// into "line N: ports.api: cannot unmarshal ..." by finding the value of
// that kind written on line N.
func nameField(root *yaml.Node, msg string) string {
	var line int
	m := unmarshalRE.FindStringSubmatch(msg)
	if _, err := fmt.Sscanf(msg, "line %d:", &line); err != nil || m == nil {
		return msg
	}
	p := fieldAt(root, "", line, m[1])
	if p == "" {
		return msg
	}
	prefix := fmt.Sprintf("line %d: ", line)
	return prefix + p + ": " + strings.TrimPrefix(msg, prefix)
}

var unmarshalRE = regexp.MustCompile(`cannot unmarshal (!!\w+)`)

// fieldAt returns the path of the innermost value of kind tag that starts on line.
func fieldAt(n *yaml.Node, path string, line int, tag string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := fieldAt(c, path, line, tag); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		if path != "" && onLine(n.Content, 2, line) > 1 {
			return path // flow style: several fields on the line, name their parent
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if inner := fieldAt(v, p, line, tag); inner != "" {
				return inner
			}
			if v.Line == line && v.ShortTag() == tag {
				return p
			}
		}
	case yaml.SequenceNode:
		if onLine(n.Content, 1, line) > 1 {
			return path
		}
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if inner := fieldAt(c, p, line, tag); inner != "" {
				return inner
			}
			if c.Line == line && c.ShortTag() == tag {
				return p
			}
		}
	}
	return ""
}

// onLine counts the items (every step-th node) that start on line.
func onLine(nodes []*yaml.Node, step, line int) int {
	n := 0
	for i := 0; i < len(nodes); i += step {
		if nodes[i].Line == line {
			n++
		}
	}
	return n
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// nodeNameRE also allows dotted host names (ctl1.example.org).
var domainRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$`)

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// Validate fills the role-dependent defaults (lease timings) and checks
// the configuration; each error names the field.
func (c *Config) Validate() error {
	c.fillLease()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.NodeName == "" {
		bad("nodeName", "required (a DNS label such as ctl1)")
	} else if !nodeNameRE.MatchString(c.NodeName) {
		bad("nodeName", "%q must be lowercase letters, digits, '-' and '.' (a host name)", c.NodeName)
	}
	if c.ClusterName == "" {
		bad("clusterName", "required; every node of a cluster uses the same name")
	} else if !nameRE.MatchString(c.ClusterName) {
		bad("clusterName", "%q must be lowercase letters, digits and '-'", c.ClusterName)
	}
	switch c.Role {
	case "control", "remote":
	case RoleWitness:
		c.validateWitness(bad)
	default:
		bad("role", "%q is not a role (control | remote | witness)", c.Role)
	}
	if net.ParseIP(c.BindAddr) == nil {
		bad("bindAddr", "%q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		bad("advertiseAddr", "%q is not an IP address", c.AdvertiseAddr)
	}
	ports := map[string]int{"ports.api": c.Ports.API, "ports.raft": c.Ports.Raft, "ports.gossip": c.Ports.Gossip, "ports.coarse": c.Ports.Coarse}
	seen := map[int]string{}
	for _, f := range []string{"ports.api", "ports.raft", "ports.gossip", "ports.coarse"} {
		p := ports[f]
		if p <= 0 || p > 65535 {
			bad(f, "%d is not a port (1-65535)", p)
			continue
		}
		if o, ok := seen[p]; ok {
			bad(f, "port %d is already used by %s", p, o)
		}
		seen[p] = f
	}
	if c.DataDir == "" {
		bad("dataDir", "required")
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 7 || (c.BootstrapExpect > 1 && c.BootstrapExpect%2 == 0) {
		bad("bootstrapExpect", "%d: use 1 (single node), 3, 5 or 7 (an even number of voters survives no more failures than one fewer); two control nodes and a `paceline witness` bootstrap with 3", c.BootstrapExpect)
	}
	if c.Role == "remote" && c.BootstrapExpect > 0 {
		bad("bootstrapExpect", "remote nodes do not vote and cannot bootstrap a cluster; set it on control nodes")
	}
	if c.Role == RoleWitness && c.BootstrapExpect > 0 {
		bad("bootstrapExpect", "a witness does not bootstrap a cluster; set bootstrapExpect: 3 on the two control nodes and give the witness their API addresses in join")
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		bad("join", "required when bootstrapExpect is 0 (list API addresses of existing nodes)")
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			bad(fmt.Sprintf("join[%d]", i), "%q must be host:port (an agent's API address)", j)
		}
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		bad("joinTokenFile", "set joinToken or joinTokenFile, not both")
	}
	if c.JoinToken == "" && c.JoinTokenFile == "" {
		bad("joinTokenFile", "required: the shared secret agents present to each other (it also encrypts gossip); create one with `head -c 32 /dev/urandom | base64 > /etc/paceline/join.token` and give every node the same file")
	}
	if t := c.TLS; t.Enabled() && (t.CA == "" || t.Cert == "" || t.Key == "") {
		bad("tls", "set ca, cert and key together (create them with `paceline tls init` and `paceline tls issue`)")
	}
	if c.Lease.Duration <= 0 {
		bad("lease.duration", "must be positive (default 400ms on control nodes, 2s on remote nodes)")
	}
	if w := c.Watchdog; w.Device != "" || w.Timeout != 0 {
		switch {
		case w.Device == "":
			bad("watchdog.device", "timeout is set but no device: set device (e.g. /dev/watchdog) or remove the watchdog section")
		case !filepath.IsAbs(w.Device):
			bad("watchdog.device", "%q must be an absolute path, e.g. /dev/watchdog", w.Device)
		}
		if w.Timeout != 0 && (w.Timeout < time.Second || w.Timeout > 5*time.Minute || w.Timeout%time.Second != 0) {
			bad("watchdog.timeout", "%v: a watchdog counts whole seconds; use 1s to 5m (default 2 × lease.duration, at least 1s)", w.Timeout)
		}
	}
	if c.Lease.Margin <= 0 || 2*c.Lease.Margin >= c.Lease.Duration {
		bad("lease.margin", "%v must be positive and less than half of lease.duration %v", c.Lease.Margin, c.Lease.Duration)
	}
	r := c.Raft
	switch {
	case r.Heartbeat < 10*time.Millisecond:
		bad("raft.heartbeat", "%v is too short (at least 10ms; default 150ms)", r.Heartbeat)
	case r.Election < r.Heartbeat:
		bad("raft.election", "%v must be at least raft.heartbeat %v", r.Election, r.Heartbeat)
	case r.LeaderLease <= 0 || r.LeaderLease > r.Heartbeat:
		bad("raft.leaderLease", "%v must be positive and at most raft.heartbeat %v (default 100ms)", r.LeaderLease, r.Heartbeat)
	case c.Lease.Duration <= r.Election+r.LeaderLease:
		bad("lease.duration", "%v must be longer than raft.election + raft.leaderLease (%v), or every leader change drops exclusive resources", c.Lease.Duration, r.Election+r.LeaderLease)
	}
	if d := c.Discovery; d.DNS != "" {
		host, port, err := net.SplitHostPort(d.DNS)
		if err != nil {
			bad("discovery.dns", "%q must be IP:port, e.g. 127.0.0.1:8600 (empty: no DNS server)", d.DNS)
		} else {
			if net.ParseIP(host) == nil {
				bad("discovery.dns", "%q: %q is not an IP address", d.DNS, host)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				bad("discovery.dns", "%q: %q is not a port (0-65535)", d.DNS, port)
			}
		}
	}
	if d := c.Discovery; d.TTL < time.Second || d.TTL > time.Hour || d.TTL%time.Second != 0 {
		bad("discovery.ttl", "%v must be whole seconds from 1s to 1h (default 2s)", d.TTL)
	}
	if d := c.Discovery.Domain; !domainRE.MatchString(strings.TrimSuffix(d, ".")) {
		bad("discovery.domain", "%q is not a DNS name (letters, digits, '-' and '.'; default paceline)", d)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("logLevel", "%q is not a level (debug | info | warn | error)", c.LogLevel)
	}
	return errors.Join(errs...)
}

// ResolveToken returns the join token, reading JoinTokenFile if set.
func (c *Config) ResolveToken() (string, error) {
	if c.JoinTokenFile == "" {
		return c.JoinToken, nil
	}
	b, err := os.ReadFile(c.JoinTokenFile)
	if err != nil {
		return "", fmt.Errorf("joinTokenFile: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Advertise returns the address others use to reach this node.
func (c *Config) Advertise() string {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr
	}
	if ip := net.ParseIP(c.BindAddr); ip != nil && !ip.IsUnspecified() {
		return c.BindAddr
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

// RoleWitness is the role of `paceline witness` (see internal/qwitness).
const RoleWitness = "witness"

// validateWitness refuses the settings a witness has no use for, so that a
// copied agent config does not silently mean something else.
func (c *Config) validateWitness(bad func(field, format string, a ...any)) {
	if len(c.Labels) > 0 {
		bad("labels", "a witness runs no resources; remove labels")
	}
	if c.Watchdog.Device != "" {
		bad("watchdog.device", "a witness runs no resources and needs no watchdog; remove it")
	}
	if c.Discovery.DNS != "" {
		bad("discovery.dns", "a witness serves no discovery; remove discovery.dns")
	}
	if c.Quorum.WaitForAll != nil {
		bad("quorum.waitForAll", "set it on the control nodes (their leader applies it), not on the witness")
	}
	if c.NodeName != "" && strings.Contains(c.NodeName, ":") {
		bad("nodeName", "%q must not contain ':'", c.NodeName)
	}
}
