package api

import (
	"context"
	"net/url"
	"time"
)

// FenceRequest asks the leader to fence a node (POST /v1/fence/{node}).
type FenceRequest struct {
	// Action is off, reboot (default) or on.
	Action string `json:"action,omitempty"`
}

// FenceRecord is one entry of the replicated fence history.
type FenceRecord struct {
	Time       time.Time `json:"time"`
	Node       string    `json:"node"`
	Action     string    `json:"action"` // off, reboot, on, confirm
	OK         bool      `json:"ok"`
	Reason     string    `json:"reason,omitempty"`
	Level      int       `json:"level,omitempty"`
	Devices    []string  `json:"devices,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	DurationMS int64     `json:"durationMs,omitempty"`
	Operator   string    `json:"operator,omitempty"`
	Error      string    `json:"error,omitempty"`
	Warning    string    `json:"warning,omitempty"`
}

// FenceDevice describes a configured device (never its secrets).
type FenceDevice struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"` // the agent (fence_ipmilan) or "redfish"
	Nodes []string `json:"nodes"`
	// Unfence: the device unfences a node that comes back.
	Unfence bool `json:"unfence,omitempty"`
}

// FencedNode is a node fenced and not unfenced since.
type FencedNode struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
}

// FenceStatus answers GET /v1/fence.
type FenceStatus struct {
	// Mode is enabled, required, disabled, or "" without a fencing section.
	Mode     string        `json:"mode"`
	Action   string        `json:"action,omitempty"`
	Devices  []FenceDevice `json:"devices,omitempty"`
	Fenced   []FencedNode  `json:"fenced,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

// FenceCheck is the outcome of checking one device (POST /v1/fence/check):
// its agent's metadata against the parameters, then its status action.
type FenceCheck struct {
	Device string `json:"device"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Fence fences node (action off, reboot or on) through the leader and
// waits for the outcome, which is also returned when the fence failed.
func (c *Client) Fence(ctx context.Context, node, action string) (*FenceRecord, error) {
	var r FenceRecord
	return &r, c.Do(ctx, "POST", "/v1/fence/"+url.PathEscape(node), FenceRequest{Action: action}, &r)
}

// FenceConfirm records the operator's acknowledgement that node is down.
func (c *Client) FenceConfirm(ctx context.Context, node string) (*FenceRecord, error) {
	var r FenceRecord
	return &r, c.Do(ctx, "POST", "/v1/fence/"+url.PathEscape(node)+"/confirm", nil, &r)
}

// FenceHistory returns the fence history (of node, when set), oldest first.
func (c *Client) FenceHistory(ctx context.Context, node string) ([]FenceRecord, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	var out []FenceRecord
	return out, c.Do(ctx, "GET", "/v1/fence/history?"+q.Encode(), nil, &out)
}

// FenceStatus returns the fencing configuration, fenced nodes and warnings.
func (c *Client) FenceStatus(ctx context.Context) (*FenceStatus, error) {
	var s FenceStatus
	return &s, c.Do(ctx, "GET", "/v1/fence", nil, &s)
}

// FenceCheck checks every device (or the named one) from the leader.
func (c *Client) FenceCheck(ctx context.Context, device string) ([]FenceCheck, error) {
	q := url.Values{}
	if device != "" {
		q.Set("device", device)
	}
	var out []FenceCheck
	return out, c.Do(ctx, "POST", "/v1/fence/check?"+q.Encode(), nil, &out)
}
