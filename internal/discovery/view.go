// Package discovery answers "where does resource NAME run, healthy?" over
// DNS (NAME.service.paceline, NAME.vip.paceline, NODE.node.paceline) and
// over HTTP (/v1/discovery/...). It reads an immutable Snapshot through a
// View; FromState builds that snapshot from the replicated state and the
// nodes' reports (a pure function). See docs/discovery.md.
package discovery

import (
	"net/netip"
	"sync/atomic"
)

// Endpoint is one instance of a resource.
type Endpoint struct {
	// Node is the node the instance is assigned to.
	Node string
	// Addr is the node's address; invalid (the zero Addr) when the node's
	// address is unknown or not an IP address: such an endpoint is listed
	// over HTTP but gives no A/AAAA record.
	Addr netip.Addr
	// Port is the service port; 0 when none is known (no SRV record).
	Port uint16
	// Healthy is true when the node reports the instance "running" for the
	// current assignment (same slot, epoch at least the assignment's) and the
	// node is online.
	Healthy bool
	// Slot is the clone slot (0 for a single resource).
	Slot int
	// Role is RolePromoted for a promoted instance, else empty.
	Role string
}

// RolePromoted is the Role of a promoted instance (state.Assignment.Role).
const RolePromoted = "promoted"

// VIP is a virtual IP address resource (class vip).
type VIP struct {
	// Addrs are the addresses (without prefix length).
	Addrs []netip.Addr
	// Holder is the node that runs the vip resource healthy, "" when none.
	Holder string
}

// Snapshot is an immutable picture of what discovery answers. Never modify
// a Snapshot after handing it to a View.
type Snapshot struct {
	// Version changes whenever the content changes (FromState sets it to a
	// hash of the content): servers cache what they derive from a snapshot
	// until the version changes.
	Version uint64
	// Services maps a resource name to its instances, sorted by node then
	// slot. A resource with no instance is present with an empty list
	// (answered NOERROR with no records, not NXDOMAIN).
	Services map[string][]Endpoint
	// VIPs maps a vip resource name to its addresses.
	VIPs map[string]VIP
	// Nodes maps a node name to its address (nodes without a usable
	// address are absent).
	Nodes map[string]netip.Addr
}

// Snapshot lets a *Snapshot serve as a static View.
func (s *Snapshot) Snapshot() *Snapshot { return s }

// View is what the servers read: one call per query, so every answer comes
// from one consistent snapshot. A nil result means "nothing known" (every
// name in the zone is NXDOMAIN).
type View interface {
	Snapshot() *Snapshot
}

// Holder is a View whose snapshot is replaced as paceline's knowledge
// changes; safe for concurrent use. The zero Holder answers nothing.
type Holder struct {
	p atomic.Pointer[Snapshot]
}

// Snapshot returns the current snapshot (nil before the first Set).
func (h *Holder) Snapshot() *Snapshot { return h.p.Load() }

// Set replaces the snapshot. It reports whether the version changed (a
// snapshot with the same non-zero version as the current one is not
// stored, so caches keyed on the old pointer stay valid; version 0 means
// "unknown" and always replaces).
func (h *Holder) Set(s *Snapshot) bool {
	for {
		old := h.p.Load()
		if old != nil && s != nil && s.Version != 0 && old.Version == s.Version {
			return false
		}
		if h.p.CompareAndSwap(old, s) {
			return true
		}
	}
}
