// Package lab builds a network-namespace lab: N hosts on one Linux bridge,
// each host a network namespace with its own address and its own cgroup, so
// that integration tests, benchmarks and the `paceline lab` CLI can crash
// (Kill), freeze (Pause), partition and heal whole hosts.
//
// Layout of a lab named NAME (NAME must match ^pl[a-z0-9]{1,8}$ so that every
// object it creates carries the "pl" prefix):
//
//	netns NAME-br       the bridge NAME"br" with address .1 and one veth port
//	                    NAME"v"I per host; partitions are bridge-family
//	                    nftables rules (table "plcut") in this namespace
//	netns NAME-hI       host hI: lo up, eth0 (peer of NAME"vI") with .(10+I)
//	cgroup NAME/hI      every process started with Start (v1 freezer
//	                    hierarchy when mounted, else cgroup2)
//	StateDir            state.json, a lock file and hI/<proc>.log
//
// Nothing is added to the root network namespace. Each operation of the CLI
// runs in a new process, so every mutation re-reads and re-writes the state
// file under an flock.
//
// The lab needs root, iproute2 (ip), nftables (nft) and /bin/sh; see Root.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure Up.
type Options struct {
	// Name of the lab and prefix of every object it creates; must match
	// ^pl[a-z0-9]{1,8}$ (interface names are limited to 15 bytes).
	Name string
	// Hosts is the number of hosts (1..99), named h1..hN.
	Hosts int
	// Subnet is an IPv4 prefix of at most /24 bits, e.g. "10.77.0.0/24"; the
	// bridge gets .1 and host i gets .(10+i). Default derived from Name.
	// Labs never share a namespace, so overlapping subnets do not collide.
	Subnet string
	// StateDir holds the state file and process logs; default
	// /run/paceline-lab/NAME.
	StateDir string
	// Logger receives progress messages; default discards.
	Logger *slog.Logger
	// Cgroup forces the cgroup hierarchy: "v1" (freezer controller) or "v2";
	// default v1 freezer when mounted, else cgroup2.
	Cgroup string
}

// Host is one host of a lab.
type Host struct {
	Name  string     // "h1"
	Index int        // 1-based
	NS    string     // network namespace name, "NAME-h1"
	Addr  netip.Addr // address on Iface
	Iface string     // interface name inside NS ("eth0")
	Port  string     // the bridge-side veth in the bridge namespace
	// Cgroup is the host's cgroup directory.
	Cgroup string
}

// Lab is a handle on a lab. Its methods are safe for concurrent use; other
// processes may operate on the same lab through their own handle (Open).
type Lab struct {
	name     string
	stateDir string
	log      *slog.Logger

	mu      sync.Mutex
	st      *state
	hosts   []*Host
	waiters map[int]chan struct{} // children of this process, closed when reaped
	bmcs    map[string]*BMC       // BMCs started by this handle, by host name
}

// DefaultStateRoot is the parent of default state directories.
const DefaultStateRoot = "/run/paceline-lab"

const (
	stateFile = "state.json"
	lockFile  = "lock"
	netnsDir  = "/run/netns"
	cutTable  = "plcut"
	hostIface = "eth0"
)

var nameRE = regexp.MustCompile(`^pl[a-z0-9]{1,8}$`)

// state is the persistent description of a lab.
type state struct {
	Version    int         `json:"version"`
	Name       string      `json:"name"`
	Subnet     string      `json:"subnet"`
	Bridge     string      `json:"bridge"`
	BridgeNS   string      `json:"bridge_ns"`
	CgroupKind string      `json:"cgroup_kind"` // "v1" or "v2"
	CgroupRoot string      `json:"cgroup_root"`
	Complete   bool        `json:"complete"`
	Hosts      []hostState `json:"hosts"`
	// Partition is the current symmetric partition (groups of host names,
	// including the implicit group of unnamed hosts), nil when none.
	Partition [][]string `json:"partition,omitempty"`
	// OneWay lists directed cuts added by PartitionOneWay.
	OneWay []oneWay `json:"one_way,omitempty"`
}

type hostState struct {
	Name       string      `json:"name"`
	Index      int         `json:"index"`
	NS         string      `json:"ns"`
	Addr       string      `json:"addr"`
	Iface      string      `json:"iface"`
	Port       string      `json:"port"`
	Cgroup     string      `json:"cgroup"`
	Isolated   bool        `json:"isolated,omitempty"`    // link cut by Isolate
	PoweredOff bool        `json:"powered_off,omitempty"` // killed, link cut
	Procs      []procState `json:"procs,omitempty"`
}

type procState struct {
	Name  string   `json:"name"`
	Argv  []string `json:"argv"`
	Env   []string `json:"env,omitempty"`
	PID   int      `json:"pid"`
	Start uint64   `json:"start"` // starttime from /proc/PID/stat, guards against PID reuse
}

type oneWay struct {
	From []string `json:"from"`
	To   []string `json:"to"`
}

// Root reports whether this process can run a lab: nil when running as root
// with ip, nft, /bin/sh and a usable cgroup hierarchy; otherwise an error that
// says what is missing (tests pass it to t.Skip).
func Root() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges (run as root, e.g. with sudo)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"ip": "iproute2", "nft": "nftables"}[tool]
			missing = append(missing, fmt.Sprintf("%s in PATH (apt-get install %s)", tool, pkg))
		}
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		missing = append(missing, "/bin/sh")
	}
	if _, _, err := findCgroup(""); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return fmt.Errorf("network-namespace lab unavailable: missing %s", strings.Join(missing, "; "))
	}
	return nil
}

func validateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q invalid: must match %s (prefix pl, at most 10 characters)", name, nameRE)
	}
	return nil
}

func defaultStateDir(name, dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(DefaultStateRoot, name)
}

// DefaultSubnet is the subnet Up uses for a lab name when Options.Subnet is
// empty: 10.77.X.0/24 with X derived from the name.
func DefaultSubnet(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("10.77.%d.0/24", h.Sum32()%256)
}

// Up creates a lab. It fails, without touching anything, if objects of a lab
// with that name already exist; the operator must run Down (paceline lab
// down) first. If creation fails half-way, Up removes what it created.
func Up(ctx context.Context, o Options) (*Lab, error) {
	if err := validateName(o.Name); err != nil {
		return nil, err
	}
	if o.Hosts < 1 || o.Hosts > 99 {
		return nil, fmt.Errorf("lab %s: hosts must be between 1 and 99, got %d", o.Name, o.Hosts)
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet(o.Name)
	}
	pfx, err := netip.ParsePrefix(o.Subnet)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 24 {
		return nil, fmt.Errorf("lab %s: subnet %q must be an IPv4 prefix of at most /24", o.Name, o.Subnet)
	}
	pfx = pfx.Masked()
	if err := Root(); err != nil {
		return nil, err
	}
	kind, cgBase, err := findCgroup(o.Cgroup)
	if err != nil {
		return nil, err
	}
	o.StateDir = defaultStateDir(o.Name, o.StateDir)
	if found := existing(o.Name, o.StateDir, cgBase); len(found) > 0 {
		return nil, fmt.Errorf("lab %s already exists (found %s): run `paceline lab down --name %s` first",
			o.Name, strings.Join(found, ", "), o.Name)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	st := &state{
		Version:    1,
		Name:       o.Name,
		Subnet:     pfx.String(),
		Bridge:     o.Name + "br",
		BridgeNS:   o.Name + "-br",
		CgroupKind: kind,
		CgroupRoot: filepath.Join(cgBase, o.Name),
	}
	base := pfx.Addr().As4()
	for i := 1; i <= o.Hosts; i++ {
		a := base
		a[3] += byte(10 + i)
		name := fmt.Sprintf("h%d", i)
		st.Hosts = append(st.Hosts, hostState{
			Name:   name,
			Index:  i,
			NS:     fmt.Sprintf("%s-%s", o.Name, name),
			Addr:   netip.AddrFrom4(a).String(),
			Iface:  hostIface,
			Port:   fmt.Sprintf("%sv%d", o.Name, i),
			Cgroup: filepath.Join(st.CgroupRoot, name),
		})
	}
	l := &Lab{name: o.Name, stateDir: o.StateDir, log: lg, waiters: map[int]chan struct{}{}}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: %w", o.Name, err)
	}
	// Record intent first, so a crash half-way leaves a state file that Open
	// and Down understand.
	if err := l.withLock(func() error { return l.save(st) }); err != nil {
		return nil, err
	}
	l.setState(st)
	if err := l.create(ctx, st); err != nil {
		if derr := Destroy(o.Name, o.StateDir); derr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", derr))
		}
		return nil, fmt.Errorf("lab %s: up: %w", o.Name, err)
	}
	st.Complete = true
	if err := l.withLock(func() error { return l.save(st) }); err != nil {
		return nil, err
	}
	lg.Info("lab up", "lab", o.Name, "hosts", o.Hosts, "subnet", st.Subnet, "state_dir", o.StateDir)
	return l, nil
}

func (l *Lab) create(ctx context.Context, st *state) error {
	pfx := netip.MustParsePrefix(st.Subnet)
	brAddr := pfx.Addr().As4()
	brAddr[3]++
	if err := os.MkdirAll(st.CgroupRoot, 0o755); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	cmds := [][]string{
		{"netns", "add", st.BridgeNS},
		{"-n", st.BridgeNS, "link", "set", "lo", "up"},
		{"-n", st.BridgeNS, "link", "add", st.Bridge, "type", "bridge"},
		{"-n", st.BridgeNS, "addr", "add", fmt.Sprintf("%s/%d", netip.AddrFrom4(brAddr), pfx.Bits()), "dev", st.Bridge},
		{"-n", st.BridgeNS, "link", "set", st.Bridge, "up"},
	}
	for _, h := range st.Hosts {
		cmds = append(cmds,
			[]string{"netns", "add", h.NS},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
			[]string{"-n", st.BridgeNS, "link", "add", h.Port, "type", "veth", "peer", "name", h.Iface, "netns", h.NS},
			[]string{"-n", st.BridgeNS, "link", "set", h.Port, "master", st.Bridge, "up"},
			[]string{"-n", h.NS, "addr", "add", fmt.Sprintf("%s/%d", h.Addr, pfx.Bits()), "dev", h.Iface},
			[]string{"-n", h.NS, "link", "set", h.Iface, "up"},
		)
	}
	for _, h := range st.Hosts {
		if err := os.MkdirAll(h.Cgroup, 0o755); err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
	}
	for _, c := range cmds {
		if _, err := run(ctx, "ip", c...); err != nil {
			return err
		}
	}
	return nil
}

// existing lists objects that belong to a lab called name.
func existing(name, stateDir, cgBase string) []string {
	var found []string
	if _, err := os.Stat(filepath.Join(stateDir, stateFile)); err == nil {
		found = append(found, "state file "+filepath.Join(stateDir, stateFile))
	}
	for _, ns := range labNetns(name) {
		found = append(found, "netns "+ns)
	}
	if _, err := os.Stat(filepath.Join(cgBase, name)); err == nil {
		found = append(found, "cgroup "+filepath.Join(cgBase, name))
	}
	return found
}

// labNetns lists the named network namespaces of lab name.
func labNetns(name string) []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Open returns a handle on an existing lab, read from the state file in
// stateDir (default /run/paceline-lab/NAME).
func Open(name, stateDir string) (*Lab, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	l := &Lab{
		name:     name,
		stateDir: defaultStateDir(name, stateDir),
		log:      slog.New(slog.DiscardHandler),
		waiters:  map[int]chan struct{}{},
	}
	var st *state
	err := l.withLock(func() error {
		var err error
		st, err = l.load()
		return err
	})
	if err != nil {
		return nil, err
	}
	l.setState(st)
	return l, nil
}

// SetLogger replaces the handle's logger (Open starts with a discarding one).
func (l *Lab) SetLogger(lg *slog.Logger) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l.mu.Lock()
	l.log = lg
	l.mu.Unlock()
}

// Name returns the lab's name.
func (l *Lab) Name() string { return l.name }

// StateDir returns the lab's state directory.
func (l *Lab) StateDir() string { return l.stateDir }

// Subnet returns the lab's subnet.
func (l *Lab) Subnet() netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	return netip.MustParsePrefix(l.st.Subnet)
}

// LogPath returns the file that receives stdout and stderr of the process
// started with Start(h, name, ...).
func (l *Lab) LogPath(h *Host, name string) string {
	return filepath.Join(l.stateDir, h.Name, name+".log")
}

// Hosts returns the lab's hosts in index order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hosts)
}

// Host returns the host called name; the error lists the valid names.
func (l *Lab) Host(name string) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.Name == name {
			return h, nil
		}
	}
	names := make([]string, len(l.hosts))
	for i, h := range l.hosts {
		names[i] = h.Name
	}
	return nil, fmt.Errorf("lab %s has no host %q (hosts: %s)", l.name, name, strings.Join(names, ", "))
}

// setState installs st and (re)builds the Host values, keeping pointers stable.
// Callers hold l.mu or own l exclusively.
func (l *Lab) setState(st *state) {
	l.st = st
	if len(l.hosts) == len(st.Hosts) {
		return
	}
	l.hosts = l.hosts[:0]
	for _, hs := range st.Hosts {
		addr, _ := netip.ParseAddr(hs.Addr)
		l.hosts = append(l.hosts, &Host{
			Name: hs.Name, Index: hs.Index, NS: hs.NS, Addr: addr,
			Iface: hs.Iface, Port: hs.Port, Cgroup: hs.Cgroup,
		})
	}
}

// hostState returns the state entry of h; callers hold l.mu.
func (st *state) host(h *Host) (*hostState, error) {
	if h == nil {
		return nil, errors.New("nil host")
	}
	for i := range st.Hosts {
		if st.Hosts[i].Name == h.Name {
			return &st.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("lab %s has no host %q", st.Name, h.Name)
}

// update runs fn on a freshly loaded state under the in-process mutex and the
// cross-process flock, and saves the state afterwards (also when fn fails, so
// that partial progress such as new PIDs is recorded).
func (l *Lab) update(fn func(st *state) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.withLock(func() error {
		st, err := l.load()
		if err != nil {
			return err
		}
		l.setState(st)
		ferr := fn(st)
		if err := l.save(st); err != nil {
			return errors.Join(ferr, err)
		}
		return ferr
	})
}

// view runs fn on a freshly loaded state without saving it.
func (l *Lab) view(fn func(st *state) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.withLock(func() error {
		st, err := l.load()
		if err != nil {
			return err
		}
		l.setState(st)
		return fn(st)
	})
}

func (l *Lab) withLock(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(l.stateDir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lab %s does not exist (no state in %s): run `paceline lab up --name %s` first", l.name, l.stateDir, l.name)
		}
		return fmt.Errorf("lab %s: lock: %w", l.name, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lab %s: lock: %w", l.name, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck
	return fn()
}

func (l *Lab) load() (*state, error) {
	b, err := os.ReadFile(filepath.Join(l.stateDir, stateFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("lab %s does not exist (no %s in %s): run `paceline lab up --name %s` first", l.name, stateFile, l.stateDir, l.name)
		}
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("lab %s: state file %s: %w", l.name, filepath.Join(l.stateDir, stateFile), err)
	}
	if st.Name != l.name {
		return nil, fmt.Errorf("lab %s: state file in %s belongs to lab %q", l.name, l.stateDir, st.Name)
	}
	return &st, nil
}

func (l *Lab) save(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(l.stateDir, stateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab %s: save state: %w", l.name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("lab %s: save state: %w", l.name, err)
	}
	return nil
}

// Down destroys the lab; see Destroy.
func (l *Lab) Down() error {
	berr := l.closeBMCs()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := errors.Join(berr, Destroy(l.name, l.stateDir))
	// Let the reapers of our own children finish.
	for pid, ch := range l.waiters {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, fmt.Errorf("lab %s: process %d not reaped", l.name, pid))
		}
		delete(l.waiters, pid)
	}
	return err
}

// Destroy kills every process of lab name, deletes its namespaces (and with
// them its links, bridge and nftables tables), its cgroups and its state
// directory. It works from names alone, so it also removes a half-created
// lab or one whose state file is lost, and it is idempotent.
func Destroy(name, stateDir string) error {
	if err := validateName(name); err != nil {
		return err
	}
	stateDir = defaultStateDir(name, stateDir)
	var errs []error
	// Processes first: cgroups cannot be removed while populated.
	for _, kind := range []string{"v1", "v2"} {
		base, err := cgroupBase(kind)
		if err != nil {
			continue
		}
		root := filepath.Join(base, name)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		cg := cgroupOpsFor(kind)
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(root, e.Name())
			if err := cg.killAll(dir); err != nil {
				errs = append(errs, err)
			}
			if err := rmdirWait(dir); err != nil {
				errs = append(errs, err)
			}
		}
		if err := cg.killAll(root); err != nil {
			errs = append(errs, err)
		}
		if err := rmdirWait(root); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range labNetns(name) {
		if _, err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			if _, serr := os.Stat(filepath.Join(netnsDir, ns)); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(stateDir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s: down: %w", name, err)
	}
	return nil
}

func rmdirWait(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a command to completion and returns its stdout; a failure includes
// the command line and its stderr.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
