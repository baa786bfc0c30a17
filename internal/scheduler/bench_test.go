package scheduler

import (
	"fmt"
	"testing"

	"github.com/paceline/paceline/internal/spec"
)

// benchInput is the benchmark: 500 nodes × 2,000 resources with
// constraints: a quarter clones, the rest single; every fourth single in a
// two-member group; a location preference for every tenth resource, a
// rule-based ban for every twentieth, a colocation and an order for every
// eighth; the current placement is the previous plan (steady state).
func benchInput() Input {
	var rs []spec.Resource
	c := spec.Constraints{}
	var groups []spec.Group
	for i := 0; i < 2000; i++ {
		name := fmt.Sprintf("r%d", i)
		if i%4 == 0 {
			rs = append(rs, clone(name, 3, 1))
		} else {
			rs = append(rs, single(name))
		}
		if i%10 == 0 {
			c.Location = append(c.Location, spec.Location{Resource: name, Node: fmt.Sprintf("n%03d", i%500), Score: sc(50)})
		}
		if i%20 == 0 {
			c.Location = append(c.Location, spec.Location{Resource: name, Rules: []spec.Rule{{Score: -spec.Infinity,
				Expressions: []spec.Expression{{Attribute: "rack", Op: "eq", Value: fmt.Sprintf("rack%d", i%10)}}}}})
		}
		if i%8 == 1 && i > 8 {
			prev := fmt.Sprintf("r%d", i-8)
			c.Colocation = append(c.Colocation, spec.Colocation{Resource: name, With: prev, Score: 100})
			c.Order = append(c.Order, spec.Order{First: prev, Then: name, Kind: spec.OrderOptional})
		}
		if i%4 == 3 && i+1 < 2000 && (i+1)%4 != 0 {
			groups = append(groups, spec.Group{Name: fmt.Sprintf("g%d", i), Members: []string{name, fmt.Sprintf("r%d", i+1)}})
		}
	}
	sp := mkSpec(rs...)
	sp.Constraints = &c
	sp.Groups = groups
	var nodes []Node
	for i := 0; i < 500; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("n%03d", i), Online: true, Labels: map[string]string{"rack": fmt.Sprintf("rack%d", i%10)}})
	}
	in := Input{Spec: sp, Nodes: nodes}
	out := Place(in)
	in.Current = out.Desired
	return in
}

// BenchmarkPlan500x2000 is the target: ≤ 100 ms per plan.
func BenchmarkPlan500x2000(b *testing.B) {
	in := benchInput()
	if err := in.Spec.Validate(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Plan(in)
	}
}

// BenchmarkPlan500x2000NodeLost plans after losing the node holding the most.
func BenchmarkPlan500x2000NodeLost(b *testing.B) {
	in := benchInput()
	in.Nodes[0].Online = false
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Plan(in)
	}
}
