package driver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/agents"
	"github.com/paceline/paceline/internal/spec"
)

// The vip class is driven through its built-in Invoker (internal/agents/vip;
// the namespace tests that add addresses are there).
func TestVIPClass(t *testing.T) {
	f := NewFactory(Options{Node: "n1", Cluster: "c1"})
	defer f.Close()
	res := withDefaults(spec.Resource{Name: "api-vip", Class: spec.KindVIP,
		Params: spec.Params{Values: map[string]string{"address": "192.0.2.10/24", "interface": "plnope0"}}})
	d, err := f.New(Target{Res: res})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Class() != "vip" || d.Kill() || d.Failed() != nil {
		t.Errorf("class %q, kill %v, failed %v", d.Class(), d.Kill(), d.Failed())
	}
	md, err := d.Metadata(context.Background())
	if err != nil || md.Name != "vip" {
		t.Fatalf("meta-data: %v %+v", err, md)
	}
	r := d.Run(context.Background(), Resolve(&res, agents.Start, "", 0, md))
	if r.Code != agents.OCFErrConfigured || r.Status != agents.StatusFatalError || !strings.Contains(r.Reason, "interface plnope0 does not exist") {
		t.Errorf("start on a missing interface: %+v", r)
	}
	if r := d.Run(context.Background(), Resolve(&res, agents.Monitor, "", 0, md)); r.Status != agents.StatusNotRunning {
		t.Errorf("probe: %+v", r)
	}
	if r := d.Run(context.Background(), FenceOp(&res, agents.Stop)); r.Status != agents.StatusSuccess {
		t.Errorf("stop: %+v", r)
	}
}

// A vip stop is one netlink request: its default timeout is small. The
// leader does not wait for it beyond a lost holder's lease expiry (the
// lease guard removes the address), whatever the stop timeout; a script
// class keeps its wait.
func TestVIPFenceWait(t *testing.T) {
	res := withDefaults(spec.Resource{Name: "api-vip", Class: spec.KindVIP,
		Params: spec.Params{Values: map[string]string{"address": "192.0.2.10/24", "interface": "eth0"}}})
	if w := FenceWait(&res); w != 0 {
		t.Errorf("FenceWait(vip) = %s, want 0 (guarded)", w)
	}
	f := NewFactory(Options{})
	defer f.Close()
	inv, err := f.Invoker(spec.KindVIP)
	if err != nil {
		t.Fatal(err)
	}
	md, err := f.metadata(context.Background(), spec.KindVIP, inv)
	if err != nil {
		t.Fatal(err)
	}
	if op := Resolve(&res, agents.Stop, "", 0, md); op.Timeout != VIPStopTimeout {
		t.Errorf("stop timeout with meta-data = %s, want %s", op.Timeout, VIPStopTimeout)
	}
	if op := Resolve(&res, agents.Start, "", 0, md); op.Timeout != 20*time.Second {
		t.Errorf("start timeout = %s, want the meta-data's 20s", op.Timeout)
	}
	stop3 := []spec.Operation{{Name: "stop", Timeout: spec.Duration(3 * time.Second)}}
	res.Operations = stop3
	if w := FenceWait(&res); w != 0 {
		t.Errorf("FenceWait(vip with stop timeout 3s) = %s, want 0", w)
	}
	ocfRes := withDefaults(spec.Resource{Name: "ip", Class: "ocf:heartbeat:IPaddr2", Operations: stop3})
	if w := FenceWait(&ocfRes); w != 3*time.Second {
		t.Errorf("FenceWait(ocf with stop timeout 3s) = %s, want 3s", w)
	}
	procRes := withDefaults(spec.Resource{Name: "p", Class: spec.ClassProcess, Operations: stop3})
	if w := FenceWait(&procRes); w != 0 {
		t.Errorf("FenceWait(process) = %s, want 0", w)
	}
}
