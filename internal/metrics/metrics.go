// Package metrics defines the agent's Prometheus metrics. Nothing is
// registered globally: New registers on the Registerer it is given, and
// the agent serves that registry at /metrics.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the agent's instruments.
type Metrics struct {
	Leader          prometheus.Gauge
	LeaseValid      prometheus.Gauge
	Renewals        *prometheus.CounterVec // result=ok|refused|error
	RenewLatency    prometheus.Histogram
	SelfFences      prometheus.Counter
	Instances       *prometheus.GaugeVec // state
	InstanceFails   prometheus.Counter
	Proposals       *prometheus.CounterVec // type, result
	PlanDuration    prometheus.Histogram
	NodesOnline     prometheus.Gauge
	Recoveries      prometheus.Counter
	RecoverySeconds prometheus.Histogram
}

// New creates and registers the metrics.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Leader:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "paceline_leader", Help: "1 if this agent is the raft leader."}),
		LeaseValid: prometheus.NewGauge(prometheus.GaugeOpts{Name: "paceline_lease_valid", Help: "1 while this node holds a valid hold lease."}),
		Renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paceline_lease_renewals_total", Help: "Lease renewals sent, by result."},
			[]string{"result"}),
		RenewLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "paceline_lease_renewal_seconds", Help: "Round trip of acknowledged renewals.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2}}),
		SelfFences: prometheus.NewCounter(prometheus.CounterOpts{Name: "paceline_self_fences_total", Help: "Times this node killed its exclusive resources because its lease ran out."}),
		Instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paceline_instances", Help: "Resource instances on this node, by state."},
			[]string{"state"}),
		InstanceFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "paceline_instance_failures_total", Help: "Instance failures seen on this node."}),
		Proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paceline_proposals_total", Help: "Raft proposals by the leader, by command type and result."},
			[]string{"type", "result"}),
		PlanDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "paceline_plan_seconds", Help: "Duration of a coordinator planning round.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		NodesOnline: prometheus.NewGauge(prometheus.GaugeOpts{Name: "paceline_nodes_online", Help: "Nodes online as the leader sees them."}),
		Recoveries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "paceline_recoveries_total", Help: "Exclusive resources recovered on another node after a node was lost."}),
		RecoverySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "paceline_recovery_seconds", Help: "From the provable end of the lost node's lease to the resource running elsewhere.",
			Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 2, 5, 10}}),
	}
	reg.MustRegister(m.Leader, m.LeaseValid, m.Renewals, m.RenewLatency, m.SelfFences, m.Instances, m.InstanceFails,
		m.Proposals, m.PlanDuration, m.NodesOnline, m.Recoveries, m.RecoverySeconds)
	return m
}
