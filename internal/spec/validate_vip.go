package spec

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of the vip class (docs/vip.md).
const (
	DefaultGARPCount    = 5
	DefaultGARPInterval = 200 * time.Millisecond
	// DefaultProbeCount is how many ARP probes (15 ms apart) look for
	// another host answering for the address before it is taken.
	DefaultProbeCount = 3
	maxProbeCount     = 10
	// maxGARPCount bounds a burst (Keepalived allows up to 10000; more
	// than a few dozen only floods the segment).
	maxGARPCount = 100
	// vipLabelMax is IFNAMSIZ-1: the kernel's limit for IFA_LABEL.
	vipLabelMax = 15
)

// VIPParams are the parameters of a vip resource, parsed.
type VIPParams struct {
	Address   netip.Prefix // the address and its prefix length, e.g. 192.0.2.10/24
	Interface string
	// GARPCount is the number of gratuitous ARP rounds (request and reply)
	// or unsolicited neighbour advertisements sent at takeover and at each
	// refresh.
	GARPCount int
	// GARPInterval separates the rounds of a burst.
	GARPInterval time.Duration
	// Refresh re-sends a burst periodically while the address is held;
	// 0: never.
	Refresh time.Duration
	// Label is the IPv4 address label (IFA_LABEL), e.g. "eth0:vip"; "":
	// none.
	Label string
	// ProbeCount is the number of ARP probes before an IPv4 address is
	// taken (each waits 15 ms for an answer); 0 skips the probe, trusting
	// the hold lease alone (45 ms faster failover, no protection against
	// a host outside the cluster using the address).
	ProbeCount int
}

// vipParamNames are the known parameters, for the "did you mean" hint.
var vipParamNames = []string{"address", "interface", "garpCount", "garpInterval", "refresh", "label", "probeCount"}

// ParseVIPParams parses and checks the params of a vip resource. Each
// error names the parameter (as params.NAME) and what to write instead.
func ParseVIPParams(values map[string]string) (VIPParams, []FieldError) {
	p := VIPParams{GARPCount: DefaultGARPCount, GARPInterval: DefaultGARPInterval, ProbeCount: DefaultProbeCount}
	var errs []FieldError
	add := func(name, format string, args ...any) {
		errs = append(errs, FieldError{Path: "params." + name, Msg: fmt.Sprintf(format, args...)})
	}
	for _, k := range sortedKeys(values) {
		known := false
		for _, n := range vipParamNames {
			known = known || n == k
		}
		if !known {
			hint := ""
			if s := suggest(k, vipParamNames); s != "" {
				hint = " (did you mean " + s + "?)"
			}
			add(k, "class vip has no parameter %s%s; its parameters are %s", quote(k), hint, strings.Join(vipParamNames, ", "))
		}
	}
	if a, ok := values["address"]; !ok || a == "" {
		add("address", "is required: the virtual address with its prefix length (e.g. 192.0.2.10/24 or 2001:db8::10/64)")
	} else if pfx, err := netip.ParsePrefix(a); err != nil {
		hint := ""
		if ip, err2 := netip.ParseAddr(a); err2 == nil {
			bits := 24
			if ip.Is6() {
				bits = 64
			}
			hint = fmt.Sprintf(" (it needs a prefix length, e.g. %s/%d)", a, bits)
		}
		add("address", "%s is not an address with a prefix length%s", quote(a), hint)
	} else {
		ip := pfx.Addr()
		switch {
		case ip.Zone() != "":
			add("address", "%s: write the address without a zone; the interface is params.interface", quote(a))
		case ip.Is4In6():
			add("address", "%s: write an IPv4 address as 192.0.2.10/24, not IPv4-mapped IPv6", quote(a))
		case ip.IsUnspecified(), ip.IsMulticast(), ip.IsLoopback(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			add("address", "%s cannot be a virtual address (unspecified, multicast, loopback or broadcast)", quote(a))
		case ip.Is6() && ip.IsLinkLocalUnicast():
			add("address", "%s is link-local: a virtual IPv6 address must be global or unique-local", quote(a))
		default:
			p.Address = pfx
		}
	}
	if n, ok := values["interface"]; !ok || n == "" {
		add("interface", "is required: the interface to put the address on (e.g. eth0)")
	} else if len(n) > vipLabelMax || strings.ContainsAny(n, "/ \t\n\x00:") || n == "." || n == ".." {
		add("interface", "%s is not an interface name (at most %d characters, no '/', ':' or space)", quote(n), vipLabelMax)
	} else {
		p.Interface = n
	}
	if s, ok := values["garpCount"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxGARPCount {
			add("garpCount", "%s: want a number from 1 to %d (the announcements sent at takeover; default %d)", quote(s), maxGARPCount, DefaultGARPCount)
		} else {
			p.GARPCount = n
		}
	}
	if s, ok := values["probeCount"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxProbeCount {
			add("probeCount", "%s: want a number from 0 to %d (ARP probes before taking the address, 15 ms each; 0 skips the probe; default %d)", quote(s), maxProbeCount, DefaultProbeCount)
		} else {
			p.ProbeCount = n
		}
	}
	dur := func(name string, min time.Duration, dst *time.Duration) {
		s, ok := values[name]
		if !ok {
			return
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			add(name, "%s is not a duration (write e.g. 200ms, 30s)", quote(s))
		case d < 0:
			add(name, "must be 0 or more")
		case d > 0 && d < min:
			add(name, "%s is too short: at least %s", s, min)
		default:
			*dst = d
		}
	}
	dur("garpInterval", 0, &p.GARPInterval)
	dur("refresh", time.Second, &p.Refresh)
	if p.GARPInterval > time.Minute {
		add("garpInterval", "%s is too long: at most 1m (announcements spread over minutes help no client)", values["garpInterval"])
	}
	if l, ok := values["label"]; ok && l != "" {
		switch {
		case p.Address.IsValid() && p.Address.Addr().Is6():
			add("label", "labels are for IPv4 addresses only (the kernel has no IPv6 address labels)")
		case len(l) > vipLabelMax:
			add("label", "%s is longer than %d characters", quote(l), vipLabelMax)
		case p.Interface != "" && !strings.HasPrefix(l, p.Interface):
			add("label", "%s must start with the interface name %s (e.g. %s:vip)", quote(l), p.Interface, p.Interface)
		case strings.ContainsAny(l, " \t\n\x00/"):
			add("label", "%s: no spaces or '/'", quote(l))
		default:
			p.Label = l
		}
	}
	return p, errs
}

// vipPolicy checks a vip resource: its params, and that it is a single
// instance (one address cannot be held by several nodes).
func (v *validator) vipPolicy(p string, r *Resource, info ClassInfo) {
	if info.Kind != KindVIP {
		return
	}
	_, errs := ParseVIPParams(r.Params.Values)
	for _, e := range errs {
		v.add(p+"."+e.Path, "%s", e.Msg)
	}
	if r.Mode != "" && r.Mode != ModeSingle {
		v.add(p+".mode", "class vip is a single address: mode must be single (one node holds it at a time)")
	}
}
