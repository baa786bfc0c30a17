package cib

import (
	"slices"
	"strings"
	"testing"
)

const sample = `<?xml version="1.0"?>
<cib validate-with="pacemaker-3.7" epoch="5" admin_epoch="0" num_updates="1">
 <configuration>
  <crm_config>
   <cluster_property_set id="opts">
    <nvpair id="o1" name="no-quorum-policy" value="freeze"/>
    <nvpair id="o2" name="stonith-enabled" value="false"/>
    <nvpair id="o3" name="placement-strategy" value="balanced"/>
   </cluster_property_set>
  </crm_config>
  <rsc_defaults><meta_attributes id="rd"><nvpair id="rd1" name="resource-stickiness" value="100"/></meta_attributes></rsc_defaults>
  <op_defaults><meta_attributes id="od"><nvpair id="od1" name="timeout" value="30s"/></meta_attributes></op_defaults>
  <nodes>
   <node id="1" uname="n1" type="member">
    <instance_attributes id="n1-ia"><nvpair id="n1-s" name="standby" value="on"/></instance_attributes>
    <utilization id="n1-u"><nvpair id="n1-cpu" name="cpu" value="4"/></utilization>
   </node>
   <node id="2" uname="n2"/>
  </nodes>
  <resources>
   <template id="tpl" class="ocf" provider="heartbeat" type="Dummy">
    <meta_attributes id="tpl-m"><nvpair id="tpl-m1" name="target-role" value="Stopped"/></meta_attributes>
    <operations><op id="tpl-mon" name="monitor" interval="20s"/></operations>
   </template>
   <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2">
    <instance_attributes id="ip-ia"><nvpair id="ip-ip" name="ip" value="10.0.0.1"/></instance_attributes>
    <meta_attributes id="ip-m"><nvpair id="ip-m1" name="migration-threshold" value="3"/></meta_attributes>
    <operations>
     <op id="ip-mon" name="monitor" interval="10s" timeout="20s" on-fail="restart" start-delay="1s">
      <meta_attributes id="ip-mon-m"><nvpair id="ip-mon-m1" name="record-pending" value="true"/></meta_attributes>
     </op>
     <op id="ip-start" name="start" interval="0" timeout="40s"/>
    </operations>
   </primitive>
   <primitive id="fromtpl" template="tpl">
    <meta_attributes id="ft-m"><nvpair id="ft-m1" name="target-role" value="Started"/></meta_attributes>
   </primitive>
   <group id="g">
    <meta_attributes id="g-m"><nvpair id="g-m1" name="target-role" value="Started"/></meta_attributes>
    <primitive id="a" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes id-ref="ip-m"/></primitive>
    <primitive id="b" class="systemd" type="nginx"/>
   </group>
   <clone id="c">
    <meta_attributes id="c-m">
     <nvpair id="c1" name="clone-max" value="2"/><nvpair id="c2" name="interleave" value="true"/>
    </meta_attributes>
    <group id="cg"><primitive id="cg1" class="ocf" provider="pacemaker" type="Dummy"/></group>
   </clone>
   <clone id="pc">
    <meta_attributes id="pc-m"><nvpair id="pc1" name="promotable" value="true"/><nvpair id="pc2" name="promoted-max" value="1"/></meta_attributes>
    <primitive id="db" class="ocf" provider="pacemaker" type="Stateful">
     <operations><op id="db-mon" name="monitor" interval="11s" role="Promoted"/></operations>
    </primitive>
   </clone>
   <master id="ms"><primitive id="old" class="ocf" provider="pacemaker" type="Stateful"/></master>
   <bundle id="bun"><docker image="x"/><primitive id="inbun" class="ocf" provider="heartbeat" type="apache"/></bundle>
   <frobnicate id="weird"/>
  </resources>
  <constraints>
   <rsc_location id="l1" rsc="ip" node="n1" score="+INFINITY"/>
   <rsc_location id="l2" rsc="g" resource-discovery="never">
    <rule id="r1" score="-INFINITY" boolean-op="or">
     <expression id="e1" attribute="#uname" operation="eq" value="n2"/>
     <expression id="e2" attribute="pingd" operation="lt" value="1" type="number"/>
     <rule id="r1a" score="0"><date_expression id="d1" operation="date_spec"><date_spec id="ds" hours="9-17"/></date_expression></rule>
    </rule>
   </rsc_location>
   <rsc_location id="l3" rsc="ip"><rule id="r3" score-attribute="pingd"><expression id="e3" attribute="pingd" operation="defined"/></rule></rsc_location>
   <rsc_colocation id="col1" rsc="ip" with-rsc="pc" score="INFINITY" rsc-role="Started" with-rsc-role="Promoted"/>
   <rsc_colocation id="col2" score="-500">
    <resource_set id="s1" sequential="false"><resource_ref id="a"/><resource_ref id="b"/></resource_set>
    <resource_set id="s2" role="Master"><resource_ref id="ms"/></resource_set>
   </rsc_colocation>
   <rsc_order id="o1" first="pc" first-action="promote" then="ip" then-action="start" kind="Serialize" symmetrical="false"/>
   <rsc_order id="o2" score="0"><resource_set id="os" require-all="false"><resource_ref id="a"/></resource_set></rsc_order>
   <rsc_ticket id="t1" rsc="ip" ticket="T" loss-policy="fence"/>
  </constraints>
  <fencing-topology><fencing-level id="fl" target="n1" index="1" devices="x"/></fencing-topology>
 </configuration>
 <status>
  <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member">
   <transient_attributes id="1"><instance_attributes id="st-1"><nvpair id="st-1-s" name="standby" value="off"/></instance_attributes></transient_attributes>
   <lrm id="1"><lrm_resources><lrm_resource id="ip" class="ocf" provider="heartbeat" type="IPaddr2">
    <lrm_rsc_op id="ip_last_0" operation="start" call-id="3" rc-code="0" op-status="0" interval="0"/>
   </lrm_resource></lrm_resources></lrm>
  </node_state>
  <node_state id="2" uname="n2" in_ccm="false" crmd="offline"/>
 </status>
</cib>`

func mustParse(t *testing.T, s string) *Model {
	t.Helper()
	m, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScores(t *testing.T) {
	for in, want := range map[string]Score{"INFINITY": Infinity, "+INFINITY": Infinity, "-INFINITY": -Infinity,
		"infinity": Infinity, "0": 0, "-50": -50, "+7": 7, "5000000": Infinity, "-5000000": -Infinity} {
		got, err := ParseScore(in)
		if err != nil || got != want {
			t.Errorf("ParseScore(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "inf", "1.5", "red"} {
		if _, err := ParseScore(bad); err == nil {
			t.Errorf("ParseScore(%q) succeeded", bad)
		}
	}
	if Infinity.String() != "INFINITY" || (-Infinity).String() != "-INFINITY" || Score(3).String() != "3" {
		t.Error("Score.String")
	}
}

func TestPropertiesNodesDefaults(t *testing.T) {
	m := mustParse(t, sample)
	if m.CIB["validate-with"] != "pacemaker-3.7" {
		t.Errorf("cib attrs %v", m.CIB)
	}
	for k, want := range map[string]string{"no-quorum-policy": "freeze", "stonith-enabled": "false", "placement-strategy": "balanced"} {
		if v, ok := m.Property(k); !ok || v != want {
			t.Errorf("property %s = %q", k, v)
		}
	}
	if _, ok := m.Property("maintenance-mode"); ok {
		t.Error("absent property found")
	}
	if v, _ := m.RscDefaults.Get("resource-stickiness"); v != "100" {
		t.Error("rsc_defaults")
	}
	if v, _ := m.OpDefaults.Get("timeout"); v != "30s" {
		t.Error("op_defaults")
	}
	if len(m.Nodes) != 2 || m.Nodes[0].Uname != "n1" || m.Nodes[0].Type != "member" {
		t.Fatalf("nodes %+v", m.Nodes)
	}
	if v, _ := m.Nodes[0].Utilization.Get("cpu"); v != "4" {
		t.Error("utilization")
	}
	if !m.Standby("n1") || m.Standby("n2") {
		t.Error("standby")
	}
	if len(m.NodeStates) != 2 || !m.NodeStates[0].Online() || m.NodeStates[1].Online() {
		t.Errorf("node states %+v", m.NodeStates)
	}
	lrm := m.NodeStates[0].LRM
	if len(lrm) != 1 || lrm[0].ID != "ip" || lrm[0].Ops[0].Operation != "start" || lrm[0].Ops[0].RCCode != "0" {
		t.Errorf("lrm %+v", lrm)
	}
}

func TestResources(t *testing.T) {
	m := mustParse(t, sample)
	var ids []string
	for _, r := range m.Resources {
		ids = append(ids, r.ID)
	}
	if want := []string{"ip", "fromtpl", "g", "c", "pc", "ms", "bun"}; !slices.Equal(ids, want) {
		t.Fatalf("top-level resources %v, want %v", ids, want)
	}
	ip := m.Resource("ip")
	if ip.Class != "ocf" || ip.Provider != "heartbeat" || ip.Type != "IPaddr2" {
		t.Errorf("agent %+v", ip)
	}
	if v, _ := ip.Instance.Get("ip"); v != "10.0.0.1" {
		t.Error("instance")
	}
	if len(ip.Ops) != 2 {
		t.Fatalf("ops %+v", ip.Ops)
	}
	mon := ip.Ops[0]
	if mon.Name != "monitor" || mon.Interval != "10s" || mon.Timeout != "20s" || mon.OnFail != "restart" || mon.Attrs["start-delay"] != "1s" {
		t.Errorf("op %+v", mon)
	}
	if v, _ := mon.Meta.Get("record-pending"); v != "true" {
		t.Error("op meta")
	}
	ft := m.Resource("fromtpl")
	if ft.Type != "Dummy" || ft.Template != "tpl" || len(ft.Ops) != 1 || ft.Ops[0].Interval != "20s" {
		t.Errorf("template not applied: %+v", ft)
	}
	if v, _ := ft.MetaValue("target-role"); v != "Started" {
		t.Errorf("primitive meta must override template meta, got %q", v)
	}
	if m.Templates["tpl"] == nil {
		t.Error("template not recorded")
	}
	g := m.Resource("g")
	if g.Kind != KindGroup || len(g.Children) != 2 || g.Children[0].ID != "a" || g.Children[1].ID != "b" {
		t.Errorf("group %+v", g)
	}
	if v, _ := m.Resource("a").MetaValue("migration-threshold"); v != "3" {
		t.Error("id-ref meta_attributes not resolved")
	}
	c := m.Resource("c")
	if c.Kind != KindClone || c.Promotable() || len(c.Children) != 1 || c.Children[0].Kind != KindGroup {
		t.Errorf("clone %+v", c)
	}
	if v, _ := c.MetaValue("clone-max"); v != "2" {
		t.Error("clone-max")
	}
	pc := m.Resource("pc")
	if !pc.Promotable() || pc.Children[0].Ops[0].Role != "Promoted" {
		t.Errorf("promotable %+v", pc)
	}
	if ms := m.Resource("ms"); ms.Kind != KindMaster || !ms.Promotable() {
		t.Error("master")
	}
	if b := m.Resource("bun"); b.Kind != KindBundle || !b.Unsupported || len(b.Children) != 1 {
		t.Errorf("bundle %+v", b)
	}
}

func TestConstraints(t *testing.T) {
	m := mustParse(t, sample)
	if len(m.Locations) != 3 || len(m.Colocations) != 2 || len(m.Orders) != 2 || len(m.Tickets) != 1 {
		t.Fatalf("constraint counts %d %d %d %d", len(m.Locations), len(m.Colocations), len(m.Orders), len(m.Tickets))
	}
	l1 := m.Locations[0]
	if l1.Rsc != "ip" || l1.Node != "n1" || l1.Score == nil || *l1.Score != Infinity {
		t.Errorf("l1 %+v", l1)
	}
	l2 := m.Locations[1]
	if l2.Score != nil || l2.ResourceDiscovery != "never" || len(l2.Rules) != 1 {
		t.Fatalf("l2 %+v", l2)
	}
	r := l2.Rules[0]
	if r.BooleanOp != "or" || *r.Score != -Infinity || len(r.Expressions) != 2 || len(r.Rules) != 1 {
		t.Fatalf("rule %+v", r)
	}
	if e := r.Expressions[1]; e.Attribute != "pingd" || e.Operation != "lt" || e.Value != "1" || e.Type != "number" {
		t.Errorf("expr %+v", e)
	}
	sub := r.Rules[0]
	if sub.BooleanOp != "and" || sub.Expressions[0].Kind != "date_expression" || sub.Expressions[0].DateSpec["hours"] != "9-17" {
		t.Errorf("sub rule %+v", sub)
	}
	if m.Locations[2].Rules[0].ScoreAttribute != "pingd" {
		t.Error("score-attribute")
	}
	c1 := m.Colocations[0]
	if c1.Rsc != "ip" || c1.WithRsc != "pc" || *c1.Score != Infinity || c1.RscRole != "Started" || c1.WithRscRole != "Promoted" {
		t.Errorf("col1 %+v", c1)
	}
	c2 := m.Colocations[1]
	if *c2.Score != -500 || len(c2.Sets) != 2 || c2.Sets[0].Sequential != "false" || !slices.Equal(c2.Sets[0].Resources, []string{"a", "b"}) || c2.Sets[1].Role != "Master" {
		t.Errorf("col2 %+v", c2)
	}
	o1 := m.Orders[0]
	if o1.First != "pc" || o1.FirstAction != "promote" || o1.Then != "ip" || o1.ThenAction != "start" || o1.Kind != "Serialize" || o1.Symmetrical != "false" {
		t.Errorf("o1 %+v", o1)
	}
	if o2 := m.Orders[1]; *o2.Score != 0 || o2.Sets[0].RequireAll != "false" {
		t.Errorf("o2 %+v", o2)
	}
	if tk := m.Tickets[0]; tk.Ticket != "T" || tk.LossPolicy != "fence" {
		t.Errorf("ticket %+v", tk)
	}
}

func TestUnsupportedAndNotes(t *testing.T) {
	m := mustParse(t, sample)
	want := []string{
		"/cib/configuration/resources/bundle[@id=bun]: bundle",
		"/cib/configuration/resources/frobnicate[@id=weird]: unknown element",
		"/cib/configuration/constraints/rsc_ticket[@id=t1]: tickets",
		"/cib/configuration/fencing-topology: fencing topology",
	}
	for _, w := range want {
		if !slices.ContainsFunc(m.Unsupported, func(u string) bool { return strings.HasPrefix(u, w) }) {
			t.Errorf("missing unsupported %q in %q", w, m.Unsupported)
		}
	}
	if len(m.Unsupported) != len(want) {
		t.Errorf("unexpected unsupported entries: %q", m.Unsupported)
	}
	if !slices.ContainsFunc(m.Notes, func(n string) bool { return strings.Contains(n, "id-ref resolved") }) {
		t.Errorf("notes %q", m.Notes)
	}
}

func TestNVSetRuleAndDanglingRef(t *testing.T) {
	m := mustParse(t, `<cib><configuration><crm_config>
<cluster_property_set id="a" score="10"><rule id="r" boolean-op="and"><date_expression id="d" operation="lt" end="2030-01-01"/></rule>
 <nvpair id="a1" name="maintenance-mode" value="true"/></cluster_property_set>
<cluster_property_set id-ref="nope"/>
<cluster_property_set id="b"><nvpair id="b1" name="maintenance-mode" value="false"/><nvpair id="b2" name="symmetric-cluster" value="false"/></cluster_property_set>
</crm_config></configuration></cib>`)
	if v, _ := m.Property("maintenance-mode"); v != "true" {
		t.Errorf("first set wins, got %q", v)
	}
	if v, _ := m.Property("symmetric-cluster"); v != "false" {
		t.Error("second set")
	}
	if m.Properties[0].Rule == nil || *m.Properties[0].Score != 10 || m.Properties[0].Rule.Expressions[0].Attrs["end"] != "2030-01-01" {
		t.Errorf("set %+v", m.Properties[0])
	}
	if len(m.Notes) != 1 || !strings.Contains(m.Notes[0], "rule") {
		t.Errorf("notes %q", m.Notes)
	}
	if len(m.Unsupported) != 1 || !strings.Contains(m.Unsupported[0], "dangling id-ref nope") {
		t.Errorf("unsupported %q", m.Unsupported)
	}
}

func TestErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":        "",
		"not cib":      "<foo/>",
		"unclosed":     "<cib>\n<configuration>\n",
		"mismatched":   "<cib>\n<configuration></resources></cib>",
		"bad score":    `<cib><configuration><constraints><rsc_location id="x" rsc="a" node="n" score="lots"/></constraints></configuration></cib>`,
		"two roots":    "<cib/><cib/>",
		"text outside": "<cib/>junk",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	_, err := Parse(strings.NewReader("<cib>\n<configuration>\n<nodes>\n</configuration></cib>"))
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("want the line in %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("<cib/>")
	f.Add(`<cib><configuration><resources><primitive id="a" template="t"/><template id="t"/></resources></configuration></cib>`)
	f.Add(`<cib><configuration><crm_config><cluster_property_set id-ref="x"/></crm_config></configuration></cib>`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(strings.NewReader(s))
		if err == nil && m == nil {
			t.Fatal("nil model without error")
		}
	})
}

func TestRuleRefCycle(t *testing.T) {
	m := mustParse(t, `<cib><configuration><constraints><rsc_location id="l" rsc="a">
<rule id="r" score="1"><rule id-ref="r"/><expression id="e" attribute="x" operation="defined"/></rule>
</rsc_location></constraints></configuration></cib>`)
	if len(m.Locations[0].Rules) != 1 || len(m.Locations[0].Rules[0].Rules) != 0 || len(m.Unsupported) != 1 {
		t.Errorf("rules %+v unsupported %q", m.Locations[0].Rules, m.Unsupported)
	}
}
