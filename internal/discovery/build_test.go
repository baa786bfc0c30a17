package discovery

import (
	"net/netip"
	"testing"

	"github.com/paceline/paceline/api"
	"github.com/paceline/paceline/internal/spec"
	"github.com/paceline/paceline/internal/state"
)

func testState() *state.State {
	st := state.New()
	st.Spec = &spec.Spec{Resources: []spec.Resource{
		{Name: "web", Class: "ocf:heartbeat:apache", Mode: "clone", Params: spec.Params{Values: map[string]string{"port": "8080"}}},
		{Name: "api", Class: "process", Health: &spec.Health{TCP: "127.0.0.1:5000"}},
		{Name: "gui", Class: "process", Health: &spec.Health{HTTP: "http://127.0.0.1:9090/health"}},
		{Name: "idle", Class: "process"},
		{Name: "api-vip", Class: "vip", Params: spec.Params{Values: map[string]string{"address": "192.0.2.10/24", "interface": "eth0"}}},
		{Name: "api-vip6", Class: "vip", Params: spec.Params{Values: map[string]string{"address": "2001:db8::10/64", "interface": "eth0"}}},
		{Name: "bad-vip", Class: "vip", Params: spec.Params{Values: map[string]string{"address": "nonsense"}}},
	}}
	st.Nodes = map[string]*state.Node{
		"n1": {Name: "n1", APIAddr: "10.0.0.1:7480", Online: true},
		"n2": {Name: "n2", APIAddr: "10.0.0.2:7480", Online: true},
		"n3": {Name: "n3", APIAddr: "[2001:db8::3]:7480", Online: true},
		"n4": {Name: "n4", APIAddr: "10.0.0.4:7480", Online: false},
		"n5": {Name: "n5", APIAddr: "0.0.0.0:7480", Online: true},
	}
	add := func(res string, slot int, node string, epoch uint64) {
		a := &state.Assignment{Resource: res, Slot: slot, Node: node, Epoch: epoch}
		st.Assignments[a.Key()] = a
	}
	add("web", 0, "n1", 10)
	add("web", 1, "n2", 10)
	add("web", 2, "n3", 10)
	add("web", 3, "n4", 10) // offline node
	add("api", 0, "n2", 20) // reported with an older epoch
	add("gui", 0, "n1", 5)  // reported starting
	add("api-vip", 0, "n2", 7)
	add("orphan", 0, "n1", 3) // assigned but not in the spec
	return st
}

func testReports() map[string][]api.ActiveInstance {
	return map[string][]api.ActiveInstance{
		"n1": {{Resource: "web", Slot: 0, Epoch: 10, State: "running"}, {Resource: "gui", Slot: 0, Epoch: 5, State: "starting"}, {Resource: "orphan", Slot: 0, Epoch: 3, State: "running"}},
		"n2": {{Resource: "web", Slot: 1, Epoch: 11, State: "running"}, {Resource: "api", Slot: 0, Epoch: 19, State: "running"}, {Resource: "api-vip", Slot: 0, Epoch: 7, State: "running"}},
		"n3": {{Resource: "web", Slot: 2, Epoch: 10, State: "running"}, {Resource: "idle", Slot: -1, State: "running", Probed: true}},
		"n4": {{Resource: "web", Slot: 3, Epoch: 10, State: "running"}},
	}
}

func TestFromState(t *testing.T) {
	snap := FromState(testState(), testReports(), Options{})
	healthy := func(res string) map[string]bool {
		out := map[string]bool{}
		for _, ep := range snap.Services[res] {
			out[ep.Node] = ep.Healthy
		}
		return out
	}
	if got := healthy("web"); !got["n1"] || !got["n2"] || !got["n3"] || got["n4"] || len(got) != 4 {
		t.Fatalf("web health %v", got)
	}
	if got := healthy("api"); got["n2"] || len(got) != 1 {
		t.Fatalf("api (stale epoch) %v", got)
	}
	if got := healthy("gui"); got["n1"] {
		t.Fatalf("gui (starting) %v", got)
	}
	if got := healthy("orphan"); !got["n1"] {
		t.Fatalf("orphan %v", got)
	}
	if eps, ok := snap.Services["idle"]; !ok || len(eps) != 0 {
		t.Fatalf("idle: %v %v (want present, empty; probed instances do not count)", eps, ok)
	}
	web := snap.Services["web"]
	if web[0].Node != "n1" || web[0].Addr != netip.MustParseAddr("10.0.0.1") || web[0].Port != 8080 || web[2].Addr != netip.MustParseAddr("2001:db8::3") {
		t.Fatalf("web endpoints %+v", web)
	}
	if p := snap.Services["api"][0].Port; p != 5000 {
		t.Fatalf("api port from tcp health %d", p)
	}
	if p := snap.Services["gui"][0].Port; p != 9090 {
		t.Fatalf("gui port from http health %d", p)
	}
	if _, ok := snap.Nodes["n5"]; ok {
		t.Fatalf("unspecified address kept: %v", snap.Nodes)
	}
	if v := snap.VIPs["api-vip"]; len(v.Addrs) != 1 || v.Addrs[0] != netip.MustParseAddr("192.0.2.10") || v.Holder != "n2" {
		t.Fatalf("api-vip %+v", v)
	}
	if v := snap.VIPs["api-vip6"]; len(v.Addrs) != 1 || v.Addrs[0] != netip.MustParseAddr("2001:db8::10") || v.Holder != "" {
		t.Fatalf("api-vip6 %+v", v)
	}
	if _, ok := snap.VIPs["bad-vip"]; ok {
		t.Fatal("bad-vip present")
	}
}

func TestFromStateOptions(t *testing.T) {
	snap := FromState(testState(), testReports(), Options{
		Ports:     map[string]uint16{"web": 443, "idle": 1},
		NodeAddrs: map[string]netip.Addr{"n1": netip.MustParseAddr("::ffff:192.0.2.1"), "n9": netip.MustParseAddr("192.0.2.9")},
	})
	if ep := snap.Services["web"][0]; ep.Port != 443 || ep.Addr != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("override: %+v", ep)
	}
	if snap.Nodes["n9"] != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("extra node address %v", snap.Nodes)
	}
}

func TestFromStateVersion(t *testing.T) {
	a := FromState(testState(), testReports(), Options{})
	b := FromState(testState(), testReports(), Options{})
	if a.Version != b.Version {
		t.Fatal("same input, different versions")
	}
	rep := testReports()
	rep["n3"][0].State = "stopping"
	c := FromState(testState(), rep, Options{})
	if c.Version == a.Version {
		t.Fatal("health change kept the version")
	}
	for _, ep := range c.Services["web"] {
		if ep.Node == "n3" && ep.Healthy {
			t.Fatal("stopping counted healthy")
		}
	}
	st := testState()
	st.Nodes["n1"].Online = false
	if d := FromState(st, testReports(), Options{}); d.Version == a.Version {
		t.Fatal("offline change kept the version")
	}
	e := FromState(nil, nil, Options{})
	if len(e.Services) != 0 || e.Version == 0 {
		t.Fatalf("nil state %+v", e)
	}
}

func TestHolder(t *testing.T) {
	var h Holder
	if h.Snapshot() != nil {
		t.Fatal("zero holder not empty")
	}
	a := FromState(testState(), testReports(), Options{})
	b := FromState(testState(), testReports(), Options{})
	if !h.Set(a) || h.Set(b) || h.Snapshot() != a {
		t.Fatal("Set of an equal version replaced the snapshot")
	}
	c := FromState(nil, nil, Options{})
	if !h.Set(c) || h.Snapshot() != c {
		t.Fatal("Set of a new version ignored")
	}
}

func TestActiveFromStates(t *testing.T) {
	rep := ActiveFromStates(map[string]map[string]string{
		"n1": {"web:0": "running", "bad": "running", "x:y": "running"},
		"n2": {"web:1": "starting"},
		"n3": {"web:2": "running"},
	})
	snap := FromState(testState(), rep, Options{})
	var healthy []string
	for _, ep := range snap.Services["web"] {
		if ep.Healthy {
			healthy = append(healthy, ep.Node)
		}
	}
	if len(healthy) != 2 || healthy[0] != "n1" || healthy[1] != "n3" || len(rep["n1"]) != 1 {
		t.Fatalf("healthy %v, reports %v", healthy, rep)
	}
}
