package spec

import (
	"fmt"
	"time"
)

// DefaultBootstrapTimeout bounds one run of a rank command.
const DefaultBootstrapTimeout = 30 * time.Second

// Bootstrap is an ordered-bootstrap hook: how to find, after a cold
// start, the node that must start first (docs/resources.md, "Ordered
// bootstrap").
type Bootstrap struct {
	// Rank is a command (argv) run on every node that may run the
	// resource while no instance runs there; it prints one integer, the
	// higher the better (Galera: the seqno of grastate.dat or
	// --wsrep-recover). Exit status other than 0, or output that is not
	// an integer, counts as "no rank" (the node may join later).
	Rank []string `json:"rank" yaml:"rank,flow"`
	// Timeout bounds one run (default 30s).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Wait is how long the leader waits for the rank of every node the
	// placement wants before it starts on the best node that answered;
	// 0 (default) waits for all of them, however long: starting from a
	// node with older data can lose committed transactions.
	Wait Duration `json:"wait,omitempty" yaml:"wait,omitempty"`
}

// RankTimeout is Timeout or its default.
func (b *Bootstrap) RankTimeout() time.Duration {
	if b.Timeout > 0 {
		return b.Timeout.D()
	}
	return DefaultBootstrapTimeout
}

func (v *validator) validateBootstrap(s *Spec) {
	for i, r := range s.Resources {
		b := r.Bootstrap
		if b == nil {
			continue
		}
		p := fmt.Sprintf("resources[%d].bootstrap", i)
		if len(b.Rank) == 0 || b.Rank[0] == "" {
			v.add(p+".rank", "rank is required: a command printing the node's rank (e.g. rank: [/usr/local/bin/galera-seqno])")
		}
		if r.Mode != ModeClone && r.Mode != ModePromotable {
			v.add(p, "bootstrap orders the instances of a clone or promotable resource (mode: clone or promotable); a single resource has one instance")
		}
		if b.Timeout < 0 {
			v.add(p+".timeout", "must not be negative")
		}
		if b.Wait < 0 {
			v.add(p+".wait", "must not be negative")
		}
	}
}
