package discovery

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// Options are the inputs of FromState that the replicated state does not
// carry.
type Options struct {
	// Ports gives a resource's service port explicitly; it wins over what
	// the spec says (see PortOf). A 0 entry means "no port".
	Ports map[string]uint16
	// NodeAddrs gives a node's address explicitly; it wins over the host
	// part of the node's APIAddr.
	NodeAddrs map[string]netip.Addr
}

// FromState builds the snapshot discovery answers. It is a pure function of
// its arguments:
//   - services: every resource of st.Spec (even with no instance) and every
//     resource that has an assignment; one Endpoint per assignment;
//   - an endpoint is healthy when its node is online and reports (in
//     reports[node], the nodes' last Renew.Active) the instance "running"
//     for the same slot with an epoch at least the assignment's — the rule
//     the coordinator uses to call an instance started;
//   - a node's address is opts.NodeAddrs[node], else the host part of its
//     APIAddr when it is an IP address (not unspecified);
//   - a resource's port is opts.Ports[name], else PortOf(resource);
//   - VIPs: every resource of class vip, its params.address without the
//     prefix length; Holder is the node of its healthy instance.
func FromState(st *state.State, reports map[string][]api.ActiveInstance, opts Options) *Snapshot {
	snap := &Snapshot{
		Services: map[string][]Endpoint{},
		VIPs:     map[string]VIP{},
		Nodes:    map[string]netip.Addr{},
	}
	if st == nil {
		snap.Version = versionOf(snap)
		return snap
	}
	for name, n := range st.Nodes {
		if a, ok := opts.NodeAddrs[name]; ok && a.IsValid() {
			snap.Nodes[name] = a.Unmap()
			continue
		}
		if n == nil {
			continue
		}
		if a, ok := hostAddr(n.APIAddr); ok {
			snap.Nodes[name] = a
		}
	}
	for name, a := range opts.NodeAddrs {
		if _, known := snap.Nodes[name]; !known && a.IsValid() {
			snap.Nodes[name] = a.Unmap()
		}
	}
	ports := map[string]uint16{}
	var vips []spec.Resource
	if st.Spec != nil {
		for _, r := range st.Spec.Resources {
			snap.Services[r.Name] = []Endpoint{}
			ports[r.Name] = PortOf(r)
			if r.Class == "vip" {
				vips = append(vips, r)
			}
		}
	}
	for name, p := range opts.Ports {
		ports[name] = p
	}
	for _, a := range st.Assignments {
		if a == nil {
			continue
		}
		n := st.Nodes[a.Node]
		ep := Endpoint{
			Node: a.Node,
			Addr: snap.Nodes[a.Node],
			Port: ports[a.Resource],
			Slot: a.Slot,
			Role: a.Role,
		}
		if n != nil && n.Online {
			for _, ai := range reports[a.Node] {
				if ai.Resource == a.Resource && ai.Slot == a.Slot && !ai.Probed &&
					ai.State == "running" && ai.Epoch >= a.Epoch {
					ep.Healthy = true
					break
				}
			}
		}
		snap.Services[a.Resource] = append(snap.Services[a.Resource], ep)
	}
	for _, eps := range snap.Services {
		sort.Slice(eps, func(i, j int) bool {
			if eps[i].Node != eps[j].Node {
				return eps[i].Node < eps[j].Node
			}
			return eps[i].Slot < eps[j].Slot
		})
	}
	for _, r := range vips {
		addr, ok := vipAddr(r.Params.Values["address"])
		if !ok {
			continue
		}
		v := VIP{Addrs: []netip.Addr{addr}}
		for _, ep := range snap.Services[r.Name] {
			if ep.Healthy {
				v.Holder = ep.Node
				break
			}
		}
		snap.VIPs[r.Name] = v
	}
	snap.Version = versionOf(snap)
	return snap
}

// PortOf is the service port the spec gives a resource, 0 when none:
// params.port of a script class (ocf, lsb, systemd), else the port of the
// resource's tcp health check ("host:port"), else the explicit port of its
// http health check URL.
func PortOf(r spec.Resource) uint16 {
	if p, ok := parsePort(r.Params.Values["port"]); ok {
		return p
	}
	if r.Health != nil {
		if r.Health.TCP != "" {
			if _, ps, err := net.SplitHostPort(r.Health.TCP); err == nil {
				if p, ok := parsePort(ps); ok {
					return p
				}
			}
		}
		if r.Health.HTTP != "" {
			if u, err := url.Parse(r.Health.HTTP); err == nil {
				if p, ok := parsePort(u.Port()); ok {
					return p
				}
			}
		}
	}
	return 0
}

func parsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// hostAddr is the host part of an "ip:port" (or bare IP) address when it is
// a usable IP address.
func hostAddr(s string) (netip.Addr, bool) {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.IsUnspecified() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// vipAddr reads a vip params.address ("192.0.2.10/24", or without prefix).
func vipAddr(s string) (netip.Addr, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// versionOf hashes the content of a snapshot in a canonical order.
func versionOf(s *Snapshot) uint64 {
	h := fnv.New64a()
	var b [8]byte
	str := func(v string) {
		binary.BigEndian.PutUint64(b[:], uint64(len(v)))
		h.Write(b[:])
		h.Write([]byte(v))
	}
	num := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	addr := func(a netip.Addr) {
		m, _ := a.MarshalBinary()
		str(string(m))
	}
	str("services")
	for _, name := range sortedKeys(s.Services) {
		str(name)
		eps := s.Services[name]
		num(uint64(len(eps)))
		for _, ep := range eps {
			str(ep.Node)
			addr(ep.Addr)
			num(uint64(ep.Port))
			if ep.Healthy {
				num(1)
			} else {
				num(0)
			}
			num(uint64(int64(ep.Slot)))
			str(ep.Role)
		}
	}
	str("vips")
	for _, name := range sortedKeys(s.VIPs) {
		str(name)
		v := s.VIPs[name]
		num(uint64(len(v.Addrs)))
		for _, a := range v.Addrs {
			addr(a)
		}
		str(v.Holder)
	}
	str("nodes")
	for _, name := range sortedKeys(s.Nodes) {
		str(name)
		addr(s.Nodes[name])
	}
	return h.Sum64()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ActiveFromStates turns the coordinator's InstanceStates (node → slot key
// "name:slot" → state) into the reports FromState reads. Those carry no
// epoch, so the epoch check is skipped (Epoch is set to the maximum): a
// "running" state counts for whatever assignment of that slot is on that
// node. Prefer the nodes' Renew.Active when available.
func ActiveFromStates(states map[string]map[string]string) map[string][]api.ActiveInstance {
	out := map[string][]api.ActiveInstance{}
	for node, m := range states {
		for key, st := range m {
			i := strings.LastIndexByte(key, ':')
			if i < 0 {
				continue
			}
			slot, err := strconv.Atoi(key[i+1:])
			if err != nil {
				continue
			}
			out[node] = append(out[node], api.ActiveInstance{Resource: key[:i], Slot: slot, Epoch: math.MaxUint64, State: st})
		}
	}
	return out
}
