package cibimport

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paceline/paceline/internal/cib"
	"github.com/paceline/paceline/internal/spec"
)

const sampleCIB = `<?xml version="1.0"?>
<cib validate-with="pacemaker-3.7" epoch="5" admin_epoch="0" num_updates="1">
 <configuration>
  <crm_config>
   <cluster_property_set id="opts">
    <nvpair id="o0" name="cluster-name" value="Prod_Cluster"/>
    <nvpair id="o1" name="symmetric-cluster" value="false"/>
    <nvpair id="o2" name="stonith-enabled" value="true"/>
    <nvpair id="o3" name="placement-strategy" value="balanced"/>
    <nvpair id="o4" name="start-failure-is-fatal" value="false"/>
    <nvpair id="o5" name="maintenance-mode" value="false"/>
   </cluster_property_set>
  </crm_config>
  <rsc_defaults><meta_attributes id="rd"><nvpair id="rd1" name="resource-stickiness" value="200"/></meta_attributes></rsc_defaults>
  <op_defaults><meta_attributes id="od"><nvpair id="od1" name="timeout" value="30s"/></meta_attributes></op_defaults>
  <nodes>
   <node id="1" uname="Node1" type="member">
    <instance_attributes id="n1-ia"><nvpair id="n1-rack" name="rack" value="a"/><nvpair id="n1-s" name="standby" value="on"/></instance_attributes>
    <utilization id="n1-u"><nvpair id="n1-cpu" name="cpu" value="4"/></utilization>
   </node>
   <node id="2" uname="node2"/>
  </nodes>
  <resources>
   <primitive id="fence1" class="stonith" type="fence_ipmilan"/>
   <primitive id="VIP_1" class="ocf" provider="heartbeat" type="IPaddr2">
    <instance_attributes id="ip-ia"><nvpair id="ip-ip" name="ip" value="10.0.0.1"/></instance_attributes>
    <meta_attributes id="ip-m">
     <nvpair id="ip-m1" name="migration-threshold" value="3"/>
     <nvpair id="ip-m2" name="failure-timeout" value="60"/>
     <nvpair id="ip-m3" name="allow-migrate" value="true"/>
     <nvpair id="ip-m4" name="priority" value="10"/>
    </meta_attributes>
    <utilization id="ip-u"><nvpair id="ip-u1" name="cpu" value="1"/></utilization>
    <operations>
     <op id="ip-mon" name="monitor" interval="10s" timeout="20s" on-fail="restart"/>
     <op id="ip-start" name="start" interval="0" timeout="40s"/>
     <op id="ip-stop" name="stop" interval="0" on-fail="fence"/>
     <op id="ip-probe" name="monitor" interval="0" timeout="5s"/>
    </operations>
   </primitive>
   <group id="web">
    <meta_attributes id="g-m"><nvpair id="g-m1" name="target-role" value="Stopped"/><nvpair id="g-m2" name="is-managed" value="false"/></meta_attributes>
    <primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem"/>
    <primitive id="httpd" class="systemd" type="httpd">
     <instance_attributes id="h-ia"><nvpair id="h-p" name="port" value="80"/></instance_attributes>
    </primitive>
   </group>
   <clone id="ping-clone">
    <meta_attributes id="pc-m"><nvpair id="pc1" name="clone-max" value="2"/><nvpair id="pc2" name="interleave" value="true"/></meta_attributes>
    <primitive id="ping" class="ocf" provider="pacemaker" type="ping"/>
   </clone>
   <master id="db-ms">
    <meta_attributes id="ms-m"><nvpair id="ms1" name="master-max" value="1"/><nvpair id="ms2" name="notify" value="true"/></meta_attributes>
    <primitive id="db" class="ocf" provider="pacemaker" type="Stateful">
     <operations>
      <op id="db-mon1" name="monitor" interval="11s" role="Master"/>
      <op id="db-mon2" name="monitor" interval="13s" role="Slave"/>
      <op id="db-prom" name="promote" interval="0" timeout="90s"/>
     </operations>
    </primitive>
   </master>
   <clone id="cg">
    <group id="cgg"><primitive id="cg1" class="ocf" provider="pacemaker" type="Dummy"/></group>
   </clone>
  </resources>
  <constraints>
   <rsc_location id="l1" rsc="VIP_1" node="Node1" score="100"/>
   <rsc_location id="l2" rsc="web">
    <rule id="r1" score="-INFINITY" boolean-op="or">
     <expression id="e1" attribute="#uname" operation="eq" value="Node1"/>
     <expression id="e2" attribute="pingd" operation="lt" value="1"/>
    </rule>
   </rsc_location>
   <rsc_location id="l3" rsc="VIP_1"><rule id="r3" score-attribute="pingd"><expression id="e3" attribute="pingd" operation="defined"/></rule></rsc_location>
   <rsc_location id="l4" rsc="db-ms"><rule id="r4" role="Master" score="50"><expression id="e4" attribute="rack" operation="eq" value="a"/></rule></rsc_location>
   <rsc_location id="l5" rsc="VIP_1"><rule id="r5" score="10"><date_expression id="d5" operation="gt" start="2020-01-01"/></rule></rsc_location>
   <rsc_location id="l6" rsc="fence1" node="Node1" score="-INFINITY"/>
   <rsc_colocation id="col1" rsc="VIP_1" with-rsc="db" score="INFINITY" rsc-role="Started" with-rsc-role="Master"/>
   <rsc_colocation id="col2" score="INFINITY">
    <resource_set id="s1"><resource_ref id="fs"/></resource_set>
    <resource_set id="s2"><resource_ref id="ping-clone"/></resource_set>
   </rsc_colocation>
   <rsc_colocation id="col3" rsc="VIP_1" with-rsc="cg" score="100"/>
   <rsc_order id="o1" first="db-ms" first-action="promote" then="VIP_1" then-action="start" kind="Optional" symmetrical="false"/>
   <rsc_order id="o2" kind="Mandatory">
    <resource_set id="os1" sequential="false" require-all="false"><resource_ref id="ping-clone"/><resource_ref id="db-ms"/></resource_set>
    <resource_set id="os2"><resource_ref id="web"/></resource_set>
   </rsc_order>
   <rsc_order id="o3" first="web" then="VIP_1"/>
   <rsc_order id="o4" first="VIP_1" then="web"/>
  </constraints>
 </configuration>
 <status/>
</cib>`

func convertSample(t *testing.T) (*spec.Spec, Report) {
	t.Helper()
	m, err := cib.Parse(strings.NewReader(sampleCIB))
	if err != nil {
		t.Fatal(err)
	}
	sp, rep := Convert(m)
	if err := sp.Validate(); err != nil {
		t.Fatalf("converted spec does not validate: %v\n%s", err, sp.YAML())
	}
	return sp, rep
}

func findItem(rep Report, elem, id, whyPart string) *Item {
	for i, it := range rep.Items {
		if it.Element == elem && it.ID == id && strings.Contains(it.Why+" "+it.What, whyPart) {
			return &rep.Items[i]
		}
	}
	return nil
}

func resource(sp *spec.Spec, name string) *spec.Resource {
	for i := range sp.Resources {
		if sp.Resources[i].Name == name {
			return &sp.Resources[i]
		}
	}
	return nil
}

func TestConvertClusterAndNodes(t *testing.T) {
	sp, rep := convertSample(t)
	c := sp.Cluster
	if c.Name != "prod-cluster" || c.Symmetric == nil || *c.Symmetric || c.PlacementStrategy != "balanced" ||
		c.StartFailureIsFatal == nil || *c.StartFailureIsFatal || c.Stickiness == nil || *c.Stickiness != 200 {
		t.Errorf("cluster %+v", c)
	}
	if findItem(rep, "nvpair", "o2", "fencing") == nil {
		t.Error("stonith-enabled=true not reported")
	}
	if rep.Nodes["Node1"] != "node1" || !slices.Contains(rep.Renames, Rename{Kind: "node", From: "Node1", To: "node1"}) {
		t.Errorf("node rename: %v %v", rep.Nodes, rep.Renames)
	}
	if len(sp.Nodes) != 2 || sp.Nodes[0].Name != "node1" || sp.Nodes[0].Attributes["rack"] != "a" || sp.Nodes[0].Capacity["cpu"] != 4 {
		t.Errorf("nodes %+v", sp.Nodes)
	}
	if _, ok := sp.Nodes[0].Attributes["standby"]; ok {
		t.Error("standby became a node attribute")
	}
	if it := findItem(rep, "nvpair", "n1-s", "standby"); it == nil || it.Category != CatNodeState {
		t.Errorf("standby=on not reported as node state: %+v", it)
	}
}

func TestConvertResources(t *testing.T) {
	sp, rep := convertSample(t)
	if resource(sp, "fence1") != nil {
		t.Error("stonith device became a resource")
	}
	if it := findItem(rep, "primitive", "fence1", "fencing device, not converted (fencing comes with the fencing issue)"); it == nil || it.Placement {
		t.Errorf("fencing item %+v", it)
	}
	vip := resource(sp, "vip-1")
	if vip == nil {
		t.Fatalf("VIP_1 not converted: %s", sp.YAML())
	}
	if rep.Resources["VIP_1"] != "vip-1" || !slices.Contains(rep.Renames, Rename{Kind: "resource", From: "VIP_1", To: "vip-1"}) {
		t.Errorf("rename %v", rep.Renames)
	}
	if vip.Class != "ocf:heartbeat:IPaddr2" || vip.Params.Values["ip"] != "10.0.0.1" || *vip.MigrationThreshold != 3 ||
		vip.FailureTimeout.D() != time.Minute || vip.Priority != 10 || vip.Utilization["cpu"] != 1 || vip.Stickiness != nil {
		t.Errorf("vip %+v", vip)
	}
	var names []string
	for _, o := range vip.Operations {
		names = append(names, o.Name+"/"+o.Interval.String()+"/"+o.Timeout.String()+"/"+o.OnFail)
	}
	if want := []string{"monitor/10s/20s/restart", "start/0s/40s/", "stop/0s/30s/"}; !slices.Equal(names, want) {
		t.Errorf("operations %v, want %v", names, want)
	}
	for _, want := range []struct{ elem, id, part string }{
		{"nvpair", "ip-m3", "live migration"},
		{"op", "ip-stop", "on-fail=fence"},
		{"op", "ip-probe", "probes"},
	} {
		if findItem(rep, want.elem, want.id, want.part) == nil {
			t.Errorf("no item %v", want)
		}
	}
	// Group meta applies to members; systemd takes no params. The clone of
	// group cgg becomes a group of clones.
	if len(sp.Groups) != 2 || sp.Groups[0].Name != "web" || !slices.Equal(sp.Groups[0].Members, []string{"fs", "httpd"}) ||
		sp.Groups[1].Name != "cgg" || !slices.Equal(sp.Groups[1].Members, []string{"cg1"}) {
		t.Errorf("groups %+v", sp.Groups)
	}
	for _, n := range []string{"fs", "httpd"} {
		r := resource(sp, n)
		if r.TargetRole != spec.RoleStopped || r.Managed == nil || *r.Managed {
			t.Errorf("%s did not get the group meta: %+v", n, r)
		}
	}
	if resource(sp, "httpd").Params.Values != nil || findItem(rep, "nvpair", "h-p", "takes no parameters") == nil {
		t.Error("systemd params")
	}
	// Clone: named after the clone, stickiness 1 is not applied since rsc_defaults sets one.
	pc := resource(sp, "ping-clone")
	if pc == nil || pc.Mode != spec.ModeClone || pc.Replicas != 2 || !pc.Interleave || rep.Resources["ping"] != "ping-clone" {
		t.Errorf("clone %+v", pc)
	}
	db := resource(sp, "db-ms")
	if db == nil || db.Mode != spec.ModePromotable || db.PromotedMax != 1 || !db.Notify {
		t.Fatalf("promotable %+v", db)
	}
	var roles []string
	for _, o := range db.Operations {
		roles = append(roles, o.Name+":"+o.Role)
	}
	if want := []string{"monitor:promoted", "monitor:unpromoted", "promote:", "start:", "stop:", "demote:"}; !slices.Equal(roles, want) {
		t.Errorf("db operations %v, want %v", roles, want)
	}
	if cg1 := resource(sp, "cg1"); cg1 == nil || cg1.Mode != spec.ModeClone || rep.Resources["cg"] != "cgg" || rep.Resources["cgg"] != "cgg" {
		t.Errorf("clone of group: member %+v, cg → %q", cg1, rep.Resources["cg"])
	}
}

func TestConvertConstraints(t *testing.T) {
	sp, rep := convertSample(t)
	cons := sp.Constraints
	if cons == nil {
		t.Fatal("no constraints")
	}
	var locs []string
	for _, l := range cons.Location {
		s := l.Resource + " " + l.Role + " " + l.Node
		for _, r := range l.Rules {
			s += " [" + r.Score.String() + " " + r.Match
			for _, e := range r.Expressions {
				s += " " + e.Attribute + " " + e.Op + " " + e.Value + " " + e.Type
			}
			s += "]"
		}
		locs = append(locs, s)
	}
	want := []string{
		"vip-1  node1",
		"web   [-INFINITY any #uname eq node1  pingd lt 1 number]",
		"db-ms promoted  [50  rack eq a ]",
	}
	if !slices.Equal(locs, want) {
		t.Errorf("locations\n%q\nwant\n%q", locs, want)
	}
	for _, w := range []struct{ elem, id, part, cat string }{
		{"rsc_location", "l3", "score-attribute", CatRule},
		{"rsc_location", "l5", "date", CatDateRule},
		{"rsc_location", "l6", "fencing device", CatFencing},
	} {
		it := findItem(rep, w.elem, w.id, w.part)
		if it == nil || it.Category != w.cat {
			t.Errorf("no %s item for %s %s: %+v", w.cat, w.elem, w.id, it)
		}
	}
	if it := findItem(rep, "rsc_location", "l6", "fencing device"); it != nil && it.Placement {
		t.Error("a location of a fencing device cannot change placement of resources")
	}
	if len(cons.Colocation) != 3 || cons.Colocation[2].With != "cgg" {
		t.Fatalf("colocations %+v", cons.Colocation)
	}
	c0 := cons.Colocation[0]
	if c0.Resource != "vip-1" || c0.With != "db-ms" || c0.Role != "" || c0.WithRole != spec.RolePromoted || c0.Score != spec.Infinity {
		t.Errorf("colocation %+v", c0)
	}
	// Pacemaker: set s1 (fs) is placed with set s2 (ping-clone); paceline
	// places each set with the one before it, so the order is reversed.
	c1 := cons.Colocation[1]
	if len(c1.Sets) != 2 || c1.Sets[0].Resources[0] != "ping-clone" || c1.Sets[1].Resources[0] != "fs" {
		t.Errorf("colocation sets %+v", c1.Sets)
	}
	rel := sp.Relations()
	found := false
	for _, c := range rel.Colocations {
		if c.Dep == "fs" && c.Primary == "ping-clone" {
			found = true
		}
	}
	if !found {
		t.Errorf("fs must follow ping-clone: %+v", rel.Colocations)
	}
	// Orders: o3 and o4 form a cycle; paceline refuses it and the later one is dropped.
	var ords []string
	for _, o := range cons.Order {
		ords = append(ords, describeOrder(o)+" "+o.Kind)
	}
	if want := []string{"promote db-ms then start vip-1 optional", "sets [ping-clone db-ms] [web] ", "start web then start vip-1 "}; !slices.Equal(ords, want) {
		t.Errorf("orders %q, want %q", ords, want)
	}
	if it := findItem(rep, "rsc_order", "o4", "cycle"); it == nil || !it.Placement {
		t.Errorf("order cycle not reported: %+v\n%s", it, rep.String())
	}
	if o := cons.Order[1]; o.Sets[0].RequireAll == nil || *o.Sets[0].RequireAll || o.Sets[0].Sequential == nil || *o.Sets[0].Sequential {
		t.Errorf("order set %+v", o.Sets[0])
	}
}

func TestConvertYAMLRoundTrip(t *testing.T) {
	sp, _ := convertSample(t)
	back, err := spec.Parse(sp.YAML())
	if err != nil {
		t.Fatalf("%v\n%s", err, sp.YAML())
	}
	if string(back.YAML()) != string(sp.YAML()) {
		t.Errorf("YAML not stable:\n%s\n---\n%s", sp.YAML(), back.YAML())
	}
}

func TestConvertDeterministicAndNames(t *testing.T) {
	a, ra := convertSample(t)
	b, rb := convertSample(t)
	if string(a.YAML()) != string(b.YAML()) || ra.String() != rb.String() {
		t.Error("conversion is not deterministic")
	}
	m, err := cib.Parse(strings.NewReader(`<cib><configuration><resources>
<primitive id="Web_A" class="ocf" provider="p" type="T"/><primitive id="web-a" class="ocf" provider="p" type="T"/>
<primitive id="web.a" class="ocf" provider="p" type="T"/><group id="WEB_A"><primitive id="m" class="ocf" provider="p" type="T"/></group>
</resources><constraints><rsc_order id="o" first="Web_A" then="web.a"/></constraints></configuration></cib>`))
	if err != nil {
		t.Fatal(err)
	}
	sp, rep := Convert(m)
	if err := sp.Validate(); err != nil {
		t.Fatal(err)
	}
	got := []string{rep.Resources["Web_A"], rep.Resources["web-a"], rep.Resources["web.a"], rep.Resources["WEB_A"]}
	if want := []string{"web-a-2", "web-a", "web-a-3", "web-a-4"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v (valid ids keep theirs, the rest get suffixes in document order)", got, want)
	}
	if o := sp.Constraints.Order[0]; o.First != "web-a-2" || o.Then != "web-a-3" {
		t.Errorf("order refers to renamed resources: %+v", o)
	}
}

func TestConvertNothing(t *testing.T) {
	sp, rep := Convert(nil)
	if err := sp.Validate(); err != nil || !rep.Complete() {
		t.Errorf("nil model: %v %v", err, rep)
	}
	m, _ := cib.Parse(strings.NewReader(`<cib/>`))
	sp, rep = Convert(m)
	if err := sp.Validate(); err != nil || sp.Cluster.Name != DefaultClusterName || !rep.Complete() {
		t.Errorf("empty CIB: %v %+v", err, rep)
	}
}

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "10s": 10 * time.Second, "90000ms": 90 * time.Second,
		"2min": 2 * time.Minute, "1h": time.Hour, "PT1M30S": 90 * time.Second, "P1D": 24 * time.Hour, "P10S": 10 * time.Second, " 5m ": 5 * time.Minute} {
		got, err := parseInterval(in)
		if err != nil || got.D() != want {
			t.Errorf("parseInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "5 parsecs", "-5s", "P", "1e400"} {
		if _, err := parseInterval(bad); err == nil {
			t.Errorf("parseInterval(%q) succeeded", bad)
		}
	}
	for in, want := range map[string]int{"INFINITY": 1000000, "-infinity": -1000000, "1.0": 1, "+5": 5, "99999999999999": 1000000} {
		if got, err := scoreInt(in); err != nil || got != want {
			t.Errorf("scoreInt(%q) = %v, %v", in, got, err)
		}
	}
}

func TestSummaryParser(t *testing.T) {
	s := parseSummary(`Current cluster status:
  * Node List:
    * Online: [ n1 n2 ]

Transition Summary:
  * Fence (reboot) n3 'peer is no longer part of the cluster'

Revised Cluster Status:
  * Node List:
    * Online: [ n1 n2 ]

  * Full List of Resources:
    * r1	(ocf:heartbeat:Dummy):	 Started n1
    * r2	(ocf:heartbeat:Dummy):	 Stopped (disabled)
    * Clone Set: ms [db] (promotable):
      * Promoted: [ n1 ]
      * Unpromoted: [ n2 ]
    * Clone Set: c [x]:
      * x	(ocf:pacemaker:Dummy):	 FAILED n2 (blocked)
      * Started: [ n1 ]
      * Stopped: [ n3 ]
    * Master/Slave Set: old [y]:
      * Masters: [ n2 ]
      * Slaves: [ n1 ]
    * Resource Group: g:
      * m1	(ocf:heartbeat:Dummy):	 Started n2
    * r3	(ocf:heartbeat:apache):	 Started [ n1 n2 ]
    * Container bundle set: b [img]:
      * b-0	(ocf:heartbeat:apache):	 Started n1
`)
	if !s.fencing || len(s.unparsed) > 0 {
		t.Errorf("fencing %v unparsed %v", s.fencing, s.unparsed)
	}
	got := map[string]string{}
	for id, p := range s.revised {
		got[id] = placementString(p)
	}
	want := map[string]string{"r1": "n1:started", "ms": "n1:promoted n2:unpromoted", "c": "n1:started n2:started",
		"old": "n1:unpromoted n2:promoted", "m1": "n2:started", "r3": "n1:started n2:started"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q want %q", k, got[k], v)
		}
	}
	if _, ok := got["r2"]; ok {
		t.Error("stopped resource counted")
	}
	if _, ok := got["b-0"]; ok {
		t.Error("bundle replica counted")
	}
}

func TestConvertTagsInColocationAndOrder(t *testing.T) {
	m, err := cib.Parse(strings.NewReader(`<cib><configuration><resources>
<primitive id="a" class="ocf" provider="p" type="T"/><primitive id="b" class="ocf" provider="p" type="T"/><primitive id="c" class="ocf" provider="p" type="T"/>
</resources><constraints>
<rsc_colocation id="co" rsc="t" with-rsc="c" score="INFINITY"/>
<rsc_order id="or" first="c" then="t" first-action="start"/>
</constraints><tags><tag id="t"><obj_ref id="a"/><obj_ref id="b"/></tag></tags></configuration></cib>`))
	if err != nil {
		t.Fatal(err)
	}
	sp, rep := Convert(m)
	if err := sp.Validate(); err != nil || !rep.Complete() {
		t.Fatalf("%v\n%s", err, rep.String())
	}
	rel := sp.Relations()
	var got []string
	for _, c := range rel.Colocations {
		got = append(got, c.Dep+" with "+c.Primary)
	}
	for _, o := range rel.Orders {
		got = append(got, o.First+" "+o.FirstAction+" then "+o.Then+" "+o.ThenAction)
	}
	slices.Sort(got)
	want := []string{"a with c", "b with c", "c start then a start", "c start then b start"}
	if !slices.Equal(got, want) {
		t.Errorf("relations %q, want %q", got, want)
	}
}

func TestSummaryParserOldFormat(t *testing.T) {
	s := parseSummary(`Current cluster status:
Online: [ node1 node2 ]

 rsc1	(ocf::heartbeat:apache):	Stopped 

Transition Summary:
 * Start   rsc1	(node1)

Revised cluster status:
Online: [ node1 node2 ]

 rsc1	(ocf::heartbeat:apache):	Started node1
 Master/Slave Set: ms1 [child]
     Masters: [ node1 ]
     Slaves: [ node2 ]
 Clone Set: c1 [x]
     Started: [ node1 node2 ]
 Resource Group: g1
     m1	(ocf::heartbeat:IPaddr):	Started node2
     m2	(ocf::heartbeat:IPaddr):	Stopped 
`)
	if s.fencing || s.remote || len(s.unparsed) > 0 {
		t.Fatalf("%+v", s)
	}
	got := map[string]string{}
	for id, p := range s.revised {
		got[id] = placementString(p)
	}
	want := map[string]string{"rsc1": "node1:started", "ms1": "node1:promoted node2:unpromoted", "c1": "node1:started node2:started", "m1": "node2:started"}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q want %q", k, got[k], v)
		}
	}
}
