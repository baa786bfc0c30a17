package api

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// OperatorConstraint is a location constraint an operator added with
// `paceline resource move` or `ban`. It lives in the replicated state (not
// in the spec) and disappears by itself at Expires, or on `resource clear`.
type OperatorConstraint struct {
	// ID is Pacemaker's name: cli-prefer-RES (move) or cli-ban-RES-on-NODE (ban).
	ID       string `json:"id"`
	Kind     string `json:"kind"` // move or ban
	Resource string `json:"resource"`
	Node     string `json:"node"`
	Role     string `json:"role,omitempty"`
	// Score is +INFINITY (move) or -INFINITY (ban).
	Score   string    `json:"score"`
	Created time.Time `json:"created"`
	// Expires is nil for a constraint without lifetime.
	Expires *time.Time `json:"expires,omitempty"`
	// RemainingMS is the time left at the answer (0 without lifetime).
	RemainingMS int64  `json:"remainingMs,omitempty"`
	Author      string `json:"author,omitempty"`
}

// ResourceInstance is one placed instance with its role.
type ResourceInstance struct {
	Slot  int    `json:"slot"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	State string `json:"state"`
	Role  string `json:"role,omitempty"`
}

// FailInfo is a resource's fail count on one node.
type FailInfo struct {
	Resource string    `json:"resource,omitempty"`
	Node     string    `json:"node"`
	Count    int       `json:"count"`
	Last     time.Time `json:"last"`
	Reason   string    `json:"reason,omitempty"`
}

// ResourceSummary is one line of `paceline resource list`.
type ResourceSummary struct {
	Name  string `json:"name"`
	Class string `json:"class"`
	Mode  string `json:"mode"`
	// Group is the group the resource belongs to, if any.
	Group       string             `json:"group,omitempty"`
	TargetRole  string             `json:"targetRole"`
	Managed     bool               `json:"managed"`
	Maintenance bool               `json:"maintenance,omitempty"`
	Blocked     string             `json:"blocked,omitempty"`
	Instances   []ResourceInstance `json:"instances"`
	FailCount   map[string]int     `json:"failCount,omitempty"`
	// Generation counts `paceline resource restart`s.
	Generation  uint64               `json:"generation,omitempty"`
	Constraints []OperatorConstraint `json:"constraints,omitempty"`
	Unplaced    []string             `json:"unplaced,omitempty"`
}

// ResourceList answers GET /v1/resources.
type ResourceList struct {
	SpecVersion int               `json:"specVersion"`
	Resources   []ResourceSummary `json:"resources"`
	// Groups maps each group to its members, in order.
	Groups map[string][]string `json:"groups,omitempty"`
}

// ResourceDetail answers GET /v1/resources/NAME.
type ResourceDetail struct {
	ResourceSummary
	SpecVersion int `json:"specVersion"`
	// YAML is the resource's definition as written in the spec.
	YAML string `json:"yaml"`
	// Members are a group's members (Name is then a group).
	Members []string `json:"members,omitempty"`
	// SpecConstraints are the spec's constraints that name this resource
	// (or its group), one line each.
	SpecConstraints []string   `json:"specConstraints,omitempty"`
	Fails           []FailInfo `json:"fails,omitempty"`
	// Events are the most recent events about this resource.
	Events []Event `json:"events"`
}

// ConstraintRequest is the body of POST /v1/resources/NAME/move and /ban.
type ConstraintRequest struct {
	// Node is the destination (move) or the node to avoid (ban). A move
	// without node bans the node the resource runs on; a ban without node
	// bans that node too.
	Node string `json:"node,omitempty"`
	// Lifetime is a Go duration ("10m", "1h30m"); empty: until cleared.
	Lifetime string `json:"lifetime,omitempty"`
	// Promoted limits the constraint to the promoted role.
	Promoted bool `json:"promoted,omitempty"`
}

// ConstraintResult answers move, ban and clear.
type ConstraintResult struct {
	// Added is the constraint move or ban created.
	Added *OperatorConstraint `json:"added,omitempty"`
	// Removed lists what clear removed (or what the new one replaced).
	Removed []OperatorConstraint `json:"removed,omitempty"`
	// Active lists the resource's operator constraints afterwards.
	Active []OperatorConstraint `json:"active"`
	// Warnings say what the operator may not expect (e.g. banned everywhere).
	Warnings []string `json:"warnings,omitempty"`
	// Transition is what the scheduler would do now (a preview).
	Transition []TransitionAction `json:"transition,omitempty"`
}

// ResourceChange answers enable, disable, manage, unmanage and restart.
type ResourceChange struct {
	// Version is the new spec version (0 when nothing changed).
	Version int      `json:"version,omitempty"`
	Changes []string `json:"changes,omitempty"`
	// Message says what happened in one line.
	Message string `json:"message"`
	// Generation is the new restart generation (restart).
	Generation uint64             `json:"generation,omitempty"`
	Warnings   []string           `json:"warnings,omitempty"`
	Transition []TransitionAction `json:"transition,omitempty"`
}

// TransitionAction is one step the scheduler plans: Op (start, stop,
// promote, demote) of Slot on Node, after the actions in After.
type TransitionAction struct {
	ID       int    `json:"id"`
	Op       string `json:"op"`
	Slot     string `json:"slot"`
	Resource string `json:"resource"`
	Node     string `json:"node"`
	After    []int  `json:"after,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// SimulateRequest is the body of POST /v1/simulate.
type SimulateRequest struct {
	// NodesDown are treated as offline.
	NodesDown []string `json:"nodesDown,omitempty"`
	// Spec, when set, is a YAML spec used instead of the current one.
	Spec string `json:"spec,omitempty"`
}

// SimSlot is one slot's current and planned placement.
type SimSlot struct {
	Slot        string `json:"slot"`
	Current     string `json:"current,omitempty"`
	CurrentRole string `json:"currentRole,omitempty"`
	Planned     string `json:"planned,omitempty"`
	PlannedRole string `json:"plannedRole,omitempty"`
}

// SimResource is one resource of a simulation.
type SimResource struct {
	Name  string    `json:"name"`
	Mode  string    `json:"mode"`
	Slots []SimSlot `json:"slots"`
}

// Simulation answers POST /v1/simulate: what the scheduler would do from
// the current state, after the hypothetical changes.
type Simulation struct {
	Index       uint64   `json:"index"`
	SpecVersion int      `json:"specVersion"`
	NodesDown   []string `json:"nodesDown,omitempty"`
	// Changes are the differences of the given spec from the current one.
	Changes     []string             `json:"changes,omitempty"`
	Nodes       []Node               `json:"nodes"`
	Constraints []OperatorConstraint `json:"constraints,omitempty"`
	Resources   []SimResource        `json:"resources"`
	Transition  []TransitionAction   `json:"transition"`
	Unplaced    []string             `json:"unplaced,omitempty"`
}

func resourcePath(name string, parts ...string) string {
	p := "/v1/resources/" + url.PathEscape(name)
	for _, x := range parts {
		p += "/" + x
	}
	return p
}

// Resources lists the resources with their instances and operator constraints.
func (c *Client) Resources(ctx context.Context) (*ResourceList, error) {
	var l ResourceList
	return &l, c.Do(ctx, "GET", "/v1/resources", nil, &l)
}

// Resource describes one resource (or group).
func (c *Client) Resource(ctx context.Context, name string) (*ResourceDetail, error) {
	var d ResourceDetail
	return &d, c.Do(ctx, "GET", resourcePath(name), nil, &d)
}

// Move prefers a node for a resource (+INFINITY) or, without node, bans
// the node it runs on.
func (c *Client) Move(ctx context.Context, name string, req ConstraintRequest) (*ConstraintResult, error) {
	var r ConstraintResult
	return &r, c.Do(ctx, "POST", resourcePath(name, "move"), req, &r)
}

// Ban keeps a resource off a node (-INFINITY).
func (c *Client) Ban(ctx context.Context, name string, req ConstraintRequest) (*ConstraintResult, error) {
	var r ConstraintResult
	return &r, c.Do(ctx, "POST", resourcePath(name, "ban"), req, &r)
}

// Clear removes the operator constraints of a resource (on one node when node is set).
func (c *Client) Clear(ctx context.Context, name, node string) (*ConstraintResult, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	var r ConstraintResult
	return &r, c.Do(ctx, "POST", resourcePath(name, "clear")+"?"+q.Encode(), nil, &r)
}

// Restart asks every node running the resource to restart it once.
func (c *Client) Restart(ctx context.Context, name string) (*ResourceChange, error) {
	var r ResourceChange
	return &r, c.Do(ctx, "POST", resourcePath(name, "restart"), nil, &r)
}

// SetResource runs enable, disable, manage or unmanage: a new spec version.
func (c *Client) SetResource(ctx context.Context, name, action string) (*ResourceChange, error) {
	var r ResourceChange
	return &r, c.Do(ctx, "POST", resourcePath(name, action), nil, &r)
}

// FailCounts returns a resource's fail counts (on one node when node is set).
func (c *Client) FailCounts(ctx context.Context, name, node string) ([]FailInfo, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	var f []FailInfo
	return f, c.Do(ctx, "GET", resourcePath(name, "failcount")+"?"+q.Encode(), nil, &f)
}

// Simulate asks the scheduler what it would do now, or after the
// hypothetical changes in req.
func (c *Client) Simulate(ctx context.Context, req SimulateRequest) (*Simulation, error) {
	var s Simulation
	return &s, c.Do(ctx, "POST", "/v1/simulate", req, &s)
}

// ParseLifetime reads a move or ban lifetime: a Go duration ("10m",
// "1h30m", "45s") or an ISO 8601 duration as crm_resource --lifetime takes
// it ("PT10M", "P1DT2H", "P2W"; years and months are refused: their length
// varies). It must be positive.
func ParseLifetime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty lifetime: write e.g. 10m, 1h30m or PT10M, or leave it out for a constraint that lasts until cleared")
	}
	var d time.Duration
	var err error
	if up := strings.ToUpper(s); strings.HasPrefix(up, "P") {
		d, err = parseISODuration(up)
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			err = fmt.Errorf("lifetime %q is not a duration: write e.g. 10m, 1h30m, 45s (units ns, us, ms, s, m, h) or ISO 8601 like PT10M", s)
		}
	}
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("lifetime %q is not positive: a constraint must live for some time (or leave the lifetime out: until cleared)", s)
	}
	return d, nil
}

func parseISODuration(s string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("lifetime %q is not an ISO 8601 duration (%s): write e.g. PT10M, PT1H30M, P1D, P2W, or a Go duration like 10m", s, why)
	}
	units := map[byte]time.Duration{'W': 7 * 24 * time.Hour, 'D': 24 * time.Hour}
	timeUnits := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}
	rest := s[1:]
	if rest == "" || rest == "T" {
		return bad("no value")
	}
	var total time.Duration
	inTime := false
	num := ""
	for i := 0; i < len(rest); i++ {
		ch := rest[i]
		switch {
		case ch == 'T':
			if inTime || num != "" {
				return bad("misplaced T")
			}
			inTime = true
		case ch >= '0' && ch <= '9' || ch == '.':
			num += string(ch)
		default:
			if num == "" {
				return bad("a unit without a number")
			}
			u, ok := units[ch]
			if inTime {
				u, ok = timeUnits[ch]
			} else if ch == 'Y' || ch == 'M' {
				return bad("years and months have no fixed length; use weeks or days")
			}
			if !ok {
				return bad(fmt.Sprintf("unknown unit %q", ch))
			}
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return bad("bad number " + num)
			}
			total += time.Duration(f * float64(u))
			num = ""
		}
	}
	if num != "" {
		return bad("a number without a unit")
	}
	return total, nil
}
