package spec

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/paceline/paceline/internal/fencing"
)

// Fencing modes (fencing.mode).
const (
	// FencingEnabled (the default when devices are listed): a node lost
	// uncleanly is fenced; its exclusive resources start elsewhere at the
	// first of (fence confirmed, hold lease provably expired).
	FencingEnabled = "enabled"
	// FencingRequired: exclusive resources of a lost node start elsewhere
	// only once the node is confirmed fenced (or an operator confirmed it
	// down); an expired lease is not enough.
	FencingRequired = "required"
	// FencingDisabled: devices are kept (for `paceline fence`) but the
	// cluster fences nobody by itself.
	FencingDisabled = "disabled"
)

// Fence actions used for recovery (fencing.action).
const (
	FenceReboot = "reboot"
	FenceOff    = "off"
)

// Fencing is the spec's fencing section: the devices, their topology and
// how recovery uses them (docs/fencing.md).
type Fencing struct {
	// Mode is enabled (default), required or disabled.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Action is what recovery and onFail: fence do to a node: reboot
	// (default, like Pacemaker's stonith-action) or off.
	Action string `json:"action,omitempty" yaml:"action,omitempty"`
	// Timeout bounds one attempt on one device (default 60s); Retries
	// (default 2), RetryDelay (1s) and PollInterval (250ms) as in
	// internal/fencing.
	Timeout      Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	Retries      *int     `json:"retries,omitempty" yaml:"retries,omitempty"`
	RetryDelay   Duration `json:"retryDelay,omitempty" yaml:"retryDelay,omitempty"`
	PollInterval Duration `json:"pollInterval,omitempty" yaml:"pollInterval,omitempty"`
	// AgentDir is where agent names are looked up (default /usr/sbin).
	AgentDir string        `json:"agentDir,omitempty" yaml:"agentDir,omitempty"`
	Devices  []FenceDevice `json:"devices,omitempty" yaml:"devices,omitempty"`
	// Levels is the topology; a node without levels uses every device
	// that names it, in order, as one level.
	Levels []FenceLevel `json:"levels,omitempty" yaml:"levels,omitempty"`
}

// FenceDevice is one fence device (see fencing.DeviceConfig).
type FenceDevice struct {
	Name         string            `json:"name" yaml:"name"`
	Agent        string            `json:"agent,omitempty" yaml:"agent,omitempty"`
	Redfish      *FenceRedfish     `json:"redfish,omitempty" yaml:"redfish,omitempty"`
	Params       map[string]string `json:"params,omitempty" yaml:"params,omitempty"`
	SecretFiles  map[string]string `json:"secretFiles,omitempty" yaml:"secretFiles,omitempty"`
	Hosts        []string          `json:"hosts,omitempty" yaml:"hosts,omitempty,flow"`
	HostMap      map[string]string `json:"hostMap,omitempty" yaml:"hostMap,omitempty"`
	HostArgument string            `json:"hostArgument,omitempty" yaml:"hostArgument,omitempty"`
	Timeout      Duration          `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	Retries      *int              `json:"retries,omitempty" yaml:"retries,omitempty"`
	DelayBase    Duration          `json:"delayBase,omitempty" yaml:"delayBase,omitempty"`
	DelayMax     Duration          `json:"delayMax,omitempty" yaml:"delayMax,omitempty"`
	// Unfence: when a node fenced by this device comes back, run "on"
	// through its topology before it gets resources again (fabric
	// fencing: SAN or switch port access).
	Unfence bool `json:"unfence,omitempty" yaml:"unfence,omitempty"`
}

// FenceRedfish configures the built-in Redfish device.
type FenceRedfish struct {
	Address      string `json:"address" yaml:"address"`
	SystemID     string `json:"systemId,omitempty" yaml:"systemId,omitempty"`
	Username     string `json:"username,omitempty" yaml:"username,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty"`
	CAFile       string `json:"caFile,omitempty" yaml:"caFile,omitempty"`
	Insecure     bool   `json:"insecure,omitempty" yaml:"insecure,omitempty"`
}

// FenceLevel is one topology level of one node.
type FenceLevel struct {
	Node    string   `json:"node" yaml:"node"`
	Level   int      `json:"level" yaml:"level"`
	Devices []string `json:"devices" yaml:"devices,flow"`
}

// Active reports whether the cluster fences lost nodes by itself.
func (f *Fencing) Active() bool {
	return f != nil && len(f.Devices) > 0 && f.Mode != FencingDisabled
}

// Required reports whether recovery of exclusive resources waits for a
// confirmed fence.
func (f *Fencing) Required() bool { return f != nil && f.Mode == FencingRequired }

// RecoveryAction is the action recovery uses (reboot by default).
func (f *Fencing) RecoveryAction() fencing.Action {
	if f != nil && f.Action == FenceOff {
		return fencing.Off
	}
	return fencing.Reboot
}

// Unfences reports whether a device that can fence node asks for
// unfencing.
func (f *Fencing) Unfences(node string) bool {
	if f == nil {
		return false
	}
	for _, d := range f.Devices {
		if d.Unfence && (slices.Contains(d.Hosts, node) || d.HostMap[node] != "") {
			return true
		}
	}
	return false
}

// CanFence reports whether some device can fence node.
func (f *Fencing) CanFence(node string) bool {
	if f == nil {
		return false
	}
	for _, d := range f.Devices {
		if slices.Contains(d.Hosts, node) || d.HostMap[node] != "" {
			return true
		}
	}
	return false
}

// Config converts the section to the fencing library's configuration.
func (f *Fencing) Config() fencing.Config {
	c := fencing.Config{Timeout: f.Timeout.D(), Retries: clonePtr(f.Retries), RetryDelay: f.RetryDelay.D(),
		PollInterval: f.PollInterval.D(), AgentDir: f.AgentDir}
	for _, d := range f.Devices {
		dc := fencing.DeviceConfig{Name: d.Name, Agent: d.Agent, Params: maps.Clone(d.Params), SecretFiles: maps.Clone(d.SecretFiles),
			Hosts: slices.Clone(d.Hosts), HostMap: maps.Clone(d.HostMap), HostArgument: d.HostArgument, Timeout: d.Timeout.D(),
			Retries: clonePtr(d.Retries), DelayBase: d.DelayBase.D(), DelayMax: d.DelayMax.D()}
		if r := d.Redfish; r != nil {
			dc.Redfish = &fencing.RedfishConfig{Address: r.Address, SystemID: r.SystemID, Username: r.Username,
				PasswordFile: r.PasswordFile, CAFile: r.CAFile, Insecure: r.Insecure}
		}
		c.Devices = append(c.Devices, dc)
	}
	for _, l := range f.Levels {
		c.Levels = append(c.Levels, fencing.LevelConfig{Node: l.Node, Level: l.Level, Devices: slices.Clone(l.Devices)})
	}
	return c
}

func (f *Fencing) clone() *Fencing {
	if f == nil {
		return nil
	}
	c := *f
	c.Retries = clonePtr(f.Retries)
	c.Devices = cloneEach(f.Devices, func(d FenceDevice) FenceDevice {
		d.Params, d.SecretFiles, d.HostMap = maps.Clone(d.Params), maps.Clone(d.SecretFiles), maps.Clone(d.HostMap)
		d.Hosts = slices.Clone(d.Hosts)
		d.Retries = clonePtr(d.Retries)
		if d.Redfish != nil {
			r := *d.Redfish
			d.Redfish = &r
		}
		return d
	})
	c.Levels = cloneEach(f.Levels, func(l FenceLevel) FenceLevel { l.Devices = slices.Clone(l.Devices); return l })
	return &c
}

func (d *decoder) fencing(n *yaml.Node, path string, f *Fencing) {
	d.object(n, path, "{devices: [{name: ipmi-n1, agent: fence_ipmilan, hosts: [n1]}]}", []field{
		{"mode", func(v *yaml.Node, p string) { f.Mode = d.str(v, p) }},
		{"action", func(v *yaml.Node, p string) { f.Action = d.str(v, p) }},
		{"timeout", func(v *yaml.Node, p string) { f.Timeout = d.duration(v, p) }},
		{"retries", func(v *yaml.Node, p string) { f.Retries = d.intPtr(v, p) }},
		{"retryDelay", func(v *yaml.Node, p string) { f.RetryDelay = d.duration(v, p) }},
		{"pollInterval", func(v *yaml.Node, p string) { f.PollInterval = d.duration(v, p) }},
		{"agentDir", func(v *yaml.Node, p string) { f.AgentDir = d.str(v, p) }},
		{"devices", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: ipmi-n1, agent: fence_ipmilan, hosts: [n1]}]", func(v *yaml.Node, p string) {
				f.Devices = append(f.Devices, FenceDevice{})
				d.fenceDevice(v, p, &f.Devices[len(f.Devices)-1])
			})
		}},
		{"levels", func(v *yaml.Node, p string) {
			d.list(v, p, "[{node: n1, level: 1, devices: [ipmi-n1]}]", func(v *yaml.Node, p string) {
				f.Levels = append(f.Levels, FenceLevel{})
				l := &f.Levels[len(f.Levels)-1]
				d.object(v, p, "{node: n1, level: 1, devices: [ipmi-n1]}", []field{
					{"node", func(v *yaml.Node, p string) { l.Node = d.str(v, p) }},
					{"level", func(v *yaml.Node, p string) { l.Level = d.integer(v, p) }},
					{"devices", func(v *yaml.Node, p string) { l.Devices = d.strings(v, p, "[ipmi-n1, pdu-a]") }},
				}, nil)
			})
		}},
	}, []string{"watchdog"})
}

func (d *decoder) fenceDevice(n *yaml.Node, path string, x *FenceDevice) {
	d.object(n, path, "{name: ipmi-n1, agent: fence_ipmilan, hosts: [n1]}", []field{
		{"name", func(v *yaml.Node, p string) { x.Name = d.str(v, p) }},
		{"agent", func(v *yaml.Node, p string) { x.Agent = d.str(v, p) }},
		{"redfish", func(v *yaml.Node, p string) {
			r := &FenceRedfish{}
			x.Redfish = r
			d.object(v, p, "{address: https://bmc-n1, username: root, passwordFile: /etc/paceline/bmc-n1.pw}", []field{
				{"address", func(v *yaml.Node, p string) { r.Address = d.str(v, p) }},
				{"systemId", func(v *yaml.Node, p string) { r.SystemID = d.str(v, p) }},
				{"username", func(v *yaml.Node, p string) { r.Username = d.str(v, p) }},
				{"passwordFile", func(v *yaml.Node, p string) { r.PasswordFile = d.str(v, p) }},
				{"caFile", func(v *yaml.Node, p string) { r.CAFile = d.str(v, p) }},
				{"insecure", func(v *yaml.Node, p string) { r.Insecure = d.boolean(v, p) }},
			}, nil)
		}},
		{"params", func(v *yaml.Node, p string) {
			x.Params = d.stringMap(v, p, "{ip: 192.0.2.21, username: admin, lanplus: \"1\"}")
		}},
		{"secretFiles", func(v *yaml.Node, p string) {
			x.SecretFiles = d.stringMap(v, p, "{password: /etc/paceline/bmc-n1.pw}")
		}},
		{"hosts", func(v *yaml.Node, p string) { x.Hosts = d.strings(v, p, "[n1]") }},
		{"hostMap", func(v *yaml.Node, p string) { x.HostMap = d.stringMap(v, p, "{n1: \"1\", n2: \"2\"}") }},
		{"hostArgument", func(v *yaml.Node, p string) { x.HostArgument = d.str(v, p) }},
		{"timeout", func(v *yaml.Node, p string) { x.Timeout = d.duration(v, p) }},
		{"retries", func(v *yaml.Node, p string) { x.Retries = d.intPtr(v, p) }},
		{"delayBase", func(v *yaml.Node, p string) { x.DelayBase = d.duration(v, p) }},
		{"delayMax", func(v *yaml.Node, p string) { x.DelayMax = d.duration(v, p) }},
		{"unfence", func(v *yaml.Node, p string) { x.Unfence = d.boolean(v, p) }},
	}, nil)
}

var fencingModes = enum{"mode", []string{FencingEnabled, FencingRequired, FencingDisabled}, nil}
var fenceActions = enum{"action", []string{FenceReboot, FenceOff}, nil}

// libField turns the fencing library's field path ("devices[2].hostMap[n1]",
// "levels[0].devices[1]") into the spec's ("fencing.devices[2].hostMap.n1").
var bracketKey = regexp.MustCompile(`\[([^\]0-9][^\]]*)\]`)

func libField(f string) string {
	return "fencing." + bracketKey.ReplaceAllString(f, ".$1")
}

// validateFencing checks the fencing section and what depends on it
// (onFail: fence, noQuorumPolicy freeze/ignore).
func (v *validator) validateFencing(s *Spec) {
	f := s.Fencing
	if f != nil {
		if is := fencingModes.check(f.Mode); is != nil {
			v.add("fencing.mode", "%s", is.msg)
		}
		if is := fenceActions.check(f.Action); is != nil {
			v.add("fencing.action", "%s", is.msg)
		}
		if f.Mode == FencingRequired && len(f.Devices) == 0 {
			v.add("fencing.mode", "mode: required needs at least one device in fencing.devices (recovery would wait for ever)")
		}
		cfg := f.Config()
		if err := cfg.Validate(); err != nil {
			for _, e := range joined(err) {
				if fe, ok := errors.AsType[*fencing.FieldError](e); ok {
					v.add(libField(fe.Field), "%s", fe.Msg)
				} else {
					v.add("fencing", "%s", e.Error())
				}
			}
		}
		for i, d := range f.Devices {
			if d.Timeout != 0 && d.Timeout.D() < time.Second {
				v.add(fmt.Sprintf("fencing.devices[%d].timeout", i), "%s is too short for a fence agent (at least 1s; a BMC answers in seconds)", d.Timeout)
			}
		}
	}
	active := f.Active()
	fenceUse := func(p string) {
		if !active {
			why := "there is no fencing section with devices"
			if f != nil && len(f.Devices) > 0 {
				why = "fencing.mode is disabled"
			}
			v.add(p, "onFail: fence needs fencing, but %s (add fencing.devices, or choose another onFail such as restart or standby)", why)
		}
	}
	for i, r := range s.Resources {
		p := fmt.Sprintf("resources[%d]", i)
		if r.OnFail == OnFailFence {
			fenceUse(p + ".onFail")
		}
		for j, o := range r.Operations {
			if o.OnFail == OnFailFence {
				fenceUse(fmt.Sprintf("%s.operations[%d].onFail", p, j))
			}
		}
	}
	switch s.Cluster.NoQuorumPolicy {
	case NoQuorumFreeze, NoQuorumIgnore:
		if !active {
			v.add("cluster.noQuorumPolicy", "noQuorumPolicy %s keeps resources running on a node that lost quorum, so the rest of the cluster can take them over only after fencing that node; it needs fencing.devices that can fence every node (or use stop or demote)", s.Cluster.NoQuorumPolicy)
		}
	}
}

// joined splits an errors.Join into its parts.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, joined(e)...)
		}
		return out
	}
	return []error{err}
}

// fencingSummary is a one-line description for diffs.
func (f *Fencing) summary() string {
	if f == nil {
		return "none"
	}
	var names []string
	for _, d := range f.Devices {
		names = append(names, d.Name)
	}
	mode := f.Mode
	if mode == "" {
		mode = FencingEnabled
	}
	return fmt.Sprintf("mode %s, devices [%s]", mode, strings.Join(names, ", "))
}
