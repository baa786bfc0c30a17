package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	base := func() *Spec {
		return &Spec{
			APIVersion: APIVersion,
			Cluster:    Cluster{Name: "c1"},
			Resources: []Resource{
				{Name: "keystone", Class: "process", Params: Params{Command: []string{"keystone"}}, Mode: ModeClone},
				{Name: "old", Class: "process", Params: Params{Command: []string{"old"}}},
				{Name: "same", Class: "process", Params: Params{Command: []string{"same"}}},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(s *Spec)
		want   []string
	}{
		{"nothing", func(s *Spec) {}, nil},
		{"reorder is not a change", func(s *Spec) { s.Resources[0], s.Resources[2] = s.Resources[2], s.Resources[0] }, nil},
		{"add and remove", func(s *Spec) {
			s.Resources[1].Name = "web"
		}, []string{"- resource old", "+ resource web"}},
		{"fields", func(s *Spec) {
			s.Resources[0].Params.Command = []string{"keystone", "--debug"}
			s.Resources[0].Replicas = 3
		}, []string{"~ resource keystone: params.command, replicas"}},
		{"health added", func(s *Spec) {
			s.Resources[0].Health = &Health{HTTP: "http://x/", Interval: 1}
		}, []string{"~ resource keystone: health"}},
		{"env key", func(s *Spec) {
			s.Resources[2].Params.Env = map[string]string{"LANG": "C"}
			s.Resources[2].MigrationThreshold = ptr(0)
		}, []string{"~ resource same: migrationThreshold, params.env.LANG"}},
		{"cluster", func(s *Spec) {
			s.Cluster.NoQuorumPolicy = "freeze"
			s.Cluster.Maintenance = true
			s.Resources = s.Resources[:2]
		}, []string{"~ cluster: maintenance, noQuorumPolicy", "- resource same"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, new := base(), base()
			tc.change(new)
			var got []string
			for _, c := range Diff(old, new) {
				got = append(got, c.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(Diff(new, new.Clone())) != 0 {
				t.Errorf("a spec differs from its clone")
			}
		})
	}
}

func TestDiffStructure(t *testing.T) {
	old := &Spec{APIVersion: APIVersion, Cluster: Cluster{Name: "c1"}}
	new := &Spec{APIVersion: "paceline/v2", Cluster: Cluster{Name: "c2"}, Resources: []Resource{{Name: "b"}, {Name: "a"}}}
	got := Diff(old, new)
	want := []Change{
		{Kind: ChangeChanged, Fields: []string{"apiVersion", "cluster.name"}},
		{Kind: ChangeAdded, Resource: "a"},
		{Kind: ChangeAdded, Resource: "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if s := got[0].String(); s != "~ cluster: apiVersion, name" {
		t.Errorf("String() = %q", s)
	}
	removed := Diff(new, nil)
	if len(removed) != 3 || !strings.HasPrefix(removed[1].String(), "- resource a") {
		t.Errorf("Diff to nil: %v", removed)
	}
}

func TestDiffSections(t *testing.T) {
	old := &Spec{APIVersion: APIVersion, Cluster: Cluster{Name: "c"}, Resources: []Resource{{Name: "a", Class: "process"}, {Name: "b", Class: "process"}}}
	nw := old.Clone()
	nw.Groups = []Group{{Name: "g", Members: []string{"a", "b"}}}
	nw.Constraints = &Constraints{Order: []Order{{First: "a", Then: "b"}}}
	nw.Nodes = []NodeSpec{{Name: "n1", Attributes: map[string]string{"rack": "a"}}}
	var got []string
	for _, c := range Diff(old, nw) {
		got = append(got, c.String())
	}
	want := []string{"~ nodes: n1", "~ groups: g", "~ constraints: order[0]"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if d := Diff(nw, nw.Clone()); len(d) != 0 {
		t.Fatalf("no change expected: %v", d)
	}
}
