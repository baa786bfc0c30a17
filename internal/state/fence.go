package state

import (
	"fmt"
	"strings"
	"time"
)

// Fence commands.
const (
	// CmdFence records the outcome of a fence operation or of an
	// operator's confirmation (Command.Fence).
	CmdFence = "fence"
	// CmdUnfence clears a node's fenced mark when it returns (after the
	// unfencing "on" where devices ask for it).
	CmdUnfence = "unfence"
)

// FenceHistorySize bounds the replicated fence history.
const FenceHistorySize = 200

// Fence record actions besides the fencing library's off, reboot and on.
const FenceConfirm = "confirm"

// FenceRecord is one entry of the replicated fence history. Secrets never
// reach it: the fencing library redacts errors before they are recorded.
type FenceRecord struct {
	// Time is when the operation finished (leader's clock).
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	Action string    `json:"action"` // off, reboot, on, confirm
	OK     bool      `json:"ok"`
	// Reason says why the node was fenced: "lost: lease expired",
	// "onFail: fence of db (monitor failed: ...)", "requested by alice".
	Reason     string   `json:"reason,omitempty"`
	Level      int      `json:"level,omitempty"`
	Devices    []string `json:"devices,omitempty"`
	Attempts   int      `json:"attempts,omitempty"`
	DurationMS int64    `json:"durationMs,omitempty"`
	// Operator: who requested it or confirmed the node down.
	Operator string `json:"operator,omitempty"`
	Error    string `json:"error,omitempty"`
	Warning  string `json:"warning,omitempty"`
}

// Fences reports whether the record proves the node was powered off
// (or confirmed down) at Time.
func (r FenceRecord) Fences() bool {
	return r.OK && (r.Action == "off" || r.Action == "reboot" || r.Action == FenceConfirm)
}

func (s *State) applyFence(idx uint64, c *Command) Result {
	res := Result{Index: idx}
	switch c.Type {
	case CmdFence:
		r := c.Fence
		if r == nil || r.Node == "" {
			res.Err = fmt.Errorf("%w: fence record without a node", ErrRejected)
			return res
		}
		rec := *r
		rec.Devices = append([]string(nil), r.Devices...)
		if rec.Time.IsZero() {
			rec.Time = c.Time
		}
		s.FenceHistory = append(s.FenceHistory, rec)
		if over := len(s.FenceHistory) - FenceHistorySize; over > 0 {
			s.FenceHistory = append([]FenceRecord(nil), s.FenceHistory[over:]...)
		}
		if rec.Fences() {
			if s.Fenced == nil {
				s.Fenced = map[string]time.Time{}
			}
			s.Fenced[rec.Node] = rec.Time
		}
		s.addEvent(idx, rec.Time, fenceEventType(rec), rec.Node, "", fenceEventMessage(rec), 0)
	case CmdUnfence:
		if _, ok := s.Fenced[c.NodeName]; !ok {
			return res
		}
		delete(s.Fenced, c.NodeName)
		msg := fmt.Sprintf("%s is back and unfenced: it may run resources again", c.NodeName)
		if c.Reason != "" {
			msg += " (" + c.Reason + ")"
		}
		s.addEvent(idx, c.Time, "node-unfenced", c.NodeName, "", msg, 0)
	}
	return res
}

func fenceEventType(r FenceRecord) string {
	switch {
	case r.Action == FenceConfirm:
		return "node-fence-confirmed"
	case r.OK && r.Action == "on":
		return "node-power-on"
	case r.OK:
		return "node-fenced"
	default:
		return "node-fence-failed"
	}
}

func fenceEventMessage(r FenceRecord) string {
	var b strings.Builder
	switch {
	case r.Action == FenceConfirm:
		fmt.Fprintf(&b, "%s confirmed down by %s (manual fence acknowledgement): its resources may start elsewhere", r.Node, orUnknown(r.Operator))
	case r.OK:
		fmt.Fprintf(&b, "%s %s succeeded", r.Node, r.Action)
		if r.Level > 0 {
			fmt.Fprintf(&b, " (level %d: %s)", r.Level, strings.Join(r.Devices, ", "))
		}
		if r.DurationMS > 0 {
			fmt.Fprintf(&b, " in %s", (time.Duration(r.DurationMS) * time.Millisecond).Round(time.Millisecond))
		}
		if r.Warning != "" {
			b.WriteString("; warning: " + r.Warning)
		}
	default:
		fmt.Fprintf(&b, "FENCING FAILED: %s %s: %s. Fix the fence device (paceline fence history shows every attempt), or check that %s is powered off and run: paceline fence confirm %s", r.Node, r.Action, r.Error, r.Node, r.Node)
	}
	if r.Reason != "" {
		b.WriteString(" [" + r.Reason + "]")
	}
	return b.String()
}

// FencedSince returns when node was last fenced (off, reboot or confirmed)
// and not unfenced since.
func (s *State) FencedSince(node string) (time.Time, bool) {
	t, ok := s.Fenced[node]
	return t, ok
}

// LastFenceFailure returns the newest fence record of node if it is a
// failure newer than any success, for health warnings.
func (s *State) LastFenceFailure(node string) (FenceRecord, bool) {
	for i := len(s.FenceHistory) - 1; i >= 0; i-- {
		r := s.FenceHistory[i]
		if r.Node != node || r.Action == "on" {
			continue
		}
		return r, !r.OK
	}
	return FenceRecord{}, false
}
