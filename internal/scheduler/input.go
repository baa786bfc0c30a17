package scheduler

import (
	"time"

	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

// FromState builds the scheduler input from the replicated state: sp with
// defaults (the state's spec, or a hypothetical one), node records with the
// spec's node attributes and capacities, assignments as the current
// placement and roles, fail counts, blocked resources and the operator
// constraints in force at now. What nodes report (Running, Active,
// promotion scores) is the caller's to add. Call it under the FSM's read
// lock (FSM.Read); the result shares nothing with s.
func FromState(s *state.State, sp *spec.Spec, now time.Time) Input {
	in := Input{Current: map[string]string{}, Roles: map[string]string{}, Blocked: map[string]bool{}, Extra: s.OperatorLocations(now)}
	fails := map[string]map[string]int{}
	for r, m := range s.Fails {
		fails[r] = map[string]int{}
		for n, f := range m {
			fails[r][n] = f.Count
		}
	}
	in.FailCount = func(r, n string) int { return fails[r][n] }
	if sp != nil {
		in.Spec = sp.WithDefaults()
	}
	declared := map[string]spec.NodeSpec{}
	if in.Spec != nil {
		for _, n := range in.Spec.Nodes {
			declared[n.Name] = n
		}
	}
	for _, name := range s.NodeNames() {
		n := s.Nodes[name]
		// A fenced node gets nothing until it is back and unfenced.
		_, fenced := s.Fenced[name]
		sn := Node{Name: n.Name, Online: n.Online && !fenced, Standby: n.Standby, Maintenance: n.Maintenance, Labels: map[string]string{}}
		for k, v := range n.Labels {
			sn.Labels[k] = v
		}
		if d, ok := declared[name]; ok {
			for k, v := range d.Attributes {
				sn.Labels[k] = v
			}
			sn.Capacity = d.Capacity
		}
		in.Nodes = append(in.Nodes, sn)
	}
	for r := range s.Blocked {
		in.Blocked[r] = true
	}
	in.Frozen = map[string]bool{}
	for r := range s.Frozen {
		in.Frozen[r] = true
	}
	for k, a := range s.Assignments {
		in.Current[k] = a.Node
		if a.Role != "" {
			in.Roles[k] = a.Role
		}
	}
	return in
}
