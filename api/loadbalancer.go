package api

import (
	"context"
	"net/url"
)

// LoadBalancers is the answer of GET /v1/loadbalancers: the built-in load
// balancers running on each node (docs/lb.md, "Status").
type LoadBalancers struct {
	// LoadBalancers lists one entry per load balancer and node it runs on,
	// sorted by name then node, and one entry with Node "" for a load
	// balancer of the spec that runs nowhere.
	LoadBalancers []LoadBalancerStatus `json:"loadBalancers"`
	// Unreachable maps a node that did not answer to the error.
	Unreachable map[string]string `json:"unreachable,omitempty"`
}

// LoadBalancerStatus is one load balancer on one node.
type LoadBalancerStatus struct {
	Name string `json:"name"`
	Node string `json:"node,omitempty"`
	// VIP is the vip resource it is colocated with ("" when it runs on every node).
	VIP       string             `json:"vip,omitempty"`
	Frontends []LBFrontendStatus `json:"frontends,omitempty"`
	Servers   []LBServerStatus   `json:"servers,omitempty"`
	// Error says why it does not run (or not completely).
	Error string `json:"error,omitempty"`
}

// LBFrontendStatus is one frontend.
type LBFrontendStatus struct {
	Name    string `json:"name"`
	Bind    string `json:"bind"`
	Addr    string `json:"addr,omitempty"` // the bound address; "" when not listening
	Mode    string `json:"mode"`
	Backend string `json:"backend"`
	Error   string `json:"error,omitempty"`
}

// LBServerStatus is one server of a backend.
type LBServerStatus struct {
	Backend string `json:"backend"`
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is up, down, drain, maintenance or ejected.
	State  string `json:"state"`
	Backup bool   `json:"backup,omitempty"`
	Active int64  `json:"active"`
	Total  int64  `json:"total"`
	Failed int64  `json:"failed"`
	Reason string `json:"reason,omitempty"`
}

// LoadBalancers asks for the load balancers of every node (local: only
// the answering node's).
func (c *Client) LoadBalancers(ctx context.Context, local bool) (*LoadBalancers, error) {
	p := "/v1/loadbalancers"
	if local {
		p += "?" + url.Values{"local": {"1"}}.Encode()
	}
	var out LoadBalancers
	return &out, c.Do(ctx, "GET", p, nil, &out)
}
