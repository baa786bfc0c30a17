package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/coordinator"
	"github.com/paceline/paceline/internal/errs"
	"github.com/paceline/paceline/internal/fencing"
	"github.com/paceline/paceline/internal/state"
)

// The fencing commands of the API (httpapi.FenceBackend). Fence, confirm
// and check run on the leader, whose coordinator owns the fencer; history
// and status come from the replicated state on any node.

func (a *Agent) leaderCoordinator() (*coordinator.Coordinator, error) {
	if err := a.leaderOnly(); err != nil {
		return nil, err
	}
	c := a.coordinator()
	if c == nil {
		return nil, fmt.Errorf("%w: this node just became leader and is not planning yet; retry in a second", errs.ErrUnavailable)
	}
	return c, nil
}

// Fence implements httpapi.FenceBackend. A fence that ran and failed is
// not an error: its record (OK false, Error) is the answer.
func (a *Agent) Fence(ctx context.Context, node, action, author string) (*api.FenceRecord, error) {
	if action == "" {
		action = string(fencing.Reboot)
	}
	switch fencing.Action(action) {
	case fencing.Off, fencing.Reboot, fencing.On:
	default:
		return nil, fmt.Errorf("%w: fence action must be off, reboot or on, got %q", errs.ErrBadRequest, action)
	}
	c, err := a.leaderCoordinator()
	if err != nil {
		return nil, err
	}
	rec, err := c.Fence(ctx, node, fencing.Action(action), author)
	if err != nil && !(rec.Node != "" && rec.Error != "" && errors.Is(err, errs.ErrUnavailable)) {
		return nil, err
	}
	r := toAPIFence(rec)
	return &r, nil
}

// FenceConfirm implements httpapi.FenceBackend.
func (a *Agent) FenceConfirm(ctx context.Context, node, author string) (*api.FenceRecord, error) {
	c, err := a.leaderCoordinator()
	if err != nil {
		return nil, err
	}
	rec, err := c.Confirm(ctx, node, author)
	if err != nil {
		return nil, err
	}
	r := toAPIFence(rec)
	return &r, nil
}

// FenceCheck implements httpapi.FenceBackend.
func (a *Agent) FenceCheck(ctx context.Context, device string) ([]api.FenceCheck, error) {
	c, err := a.leaderCoordinator()
	if err != nil {
		return nil, err
	}
	res, err := c.CheckFencing(ctx, device)
	if err != nil {
		return nil, err
	}
	out := make([]api.FenceCheck, 0, len(res))
	for _, r := range res {
		out = append(out, api.FenceCheck{Device: r.Device, OK: r.Err == "", Error: r.Err})
	}
	return out, nil
}

// FenceHistory implements httpapi.FenceBackend.
func (a *Agent) FenceHistory(ctx context.Context, node string) ([]api.FenceRecord, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	out := []api.FenceRecord{}
	a.fsm.Read(func(s *state.State) {
		for _, r := range s.FenceHistory {
			if node == "" || r.Node == node {
				out = append(out, toAPIFence(r))
			}
		}
	})
	return out, nil
}

// FenceStatus implements httpapi.FenceBackend.
func (a *Agent) FenceStatus(ctx context.Context) (*api.FenceStatus, error) {
	if err := a.readLocal(); err != nil {
		return nil, err
	}
	st := &api.FenceStatus{}
	a.fsm.Read(func(s *state.State) {
		for n, at := range s.Fenced {
			st.Fenced = append(st.Fenced, api.FencedNode{Node: n, Since: at})
		}
		st.Warnings = coordinator.FenceWarnings(s)
		if s.Spec == nil || s.Spec.Fencing == nil {
			return
		}
		f := s.Spec.Fencing
		st.Mode = f.Mode
		if st.Mode == "" {
			st.Mode = "enabled"
		}
		st.Action = string(f.RecoveryAction())
		for _, d := range f.Devices {
			kind := d.Agent
			if d.Redfish != nil {
				kind = "redfish"
			}
			nodes := append([]string(nil), d.Hosts...)
			for n := range d.HostMap {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			st.Devices = append(st.Devices, api.FenceDevice{Name: d.Name, Kind: kind, Nodes: nodes, Unfence: d.Unfence})
		}
	})
	sort.Slice(st.Fenced, func(i, j int) bool { return st.Fenced[i].Node < st.Fenced[j].Node })
	return st, nil
}

func toAPIFence(r state.FenceRecord) api.FenceRecord {
	return api.FenceRecord{Time: r.Time, Node: r.Node, Action: r.Action, OK: r.OK, Reason: r.Reason, Level: r.Level,
		Devices: append([]string(nil), r.Devices...), Attempts: r.Attempts, DurationMS: r.DurationMS, Operator: r.Operator,
		Error: r.Error, Warning: r.Warning}
}
