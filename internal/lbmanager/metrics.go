package lbmanager

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metrics of the load balancers running on a node, read from
// Status at each scrape (nothing is counted twice: the counters are the
// load balancers' own).
var (
	descServerUp = prometheus.NewDesc("paceline_lb_server_up",
		"1 if the load balancer sends new sessions to the server (state up), else 0; state is up, down, drain, maintenance or ejected.",
		[]string{"lb", "backend", "server", "state"}, nil)
	descServerActive = prometheus.NewDesc("paceline_lb_server_active_sessions",
		"Sessions (tcp) or requests (http) in progress to the server.", []string{"lb", "backend", "server"}, nil)
	descServerTotal = prometheus.NewDesc("paceline_lb_server_sessions_total",
		"Sessions or requests sent to the server since its load balancer started here.", []string{"lb", "backend", "server"}, nil)
	descServerFailed = prometheus.NewDesc("paceline_lb_server_failures_total",
		"Connection failures to the server since its load balancer started here.", []string{"lb", "backend", "server"}, nil)
	descFrontendUp = prometheus.NewDesc("paceline_lb_frontend_listening",
		"1 if the frontend listens, 0 if it could not bind (see paceline lb status).", []string{"lb", "frontend"}, nil)
)

// Collector exports the load balancers of the manager get returns (nil:
// none yet) as Prometheus metrics. Register it once; get is called at
// every scrape.
func Collector(get func() *Manager) prometheus.Collector { return collector{get} }

type collector struct{ get func() *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descServerUp, descServerActive, descServerTotal, descServerFailed, descFrontendUp} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.get()
	if m == nil {
		return
	}
	for _, lb := range m.Status() {
		for _, f := range lb.Frontends {
			ch <- prometheus.MustNewConstMetric(descFrontendUp, prometheus.GaugeValue, b2f(f.Addr != ""), lb.Name, f.Name)
		}
		for _, s := range lb.Servers {
			ch <- prometheus.MustNewConstMetric(descServerUp, prometheus.GaugeValue, b2f(s.State == "up"), lb.Name, s.Backend, s.Name, s.State)
			ch <- prometheus.MustNewConstMetric(descServerActive, prometheus.GaugeValue, float64(s.Active), lb.Name, s.Backend, s.Name)
			ch <- prometheus.MustNewConstMetric(descServerTotal, prometheus.CounterValue, float64(s.Total), lb.Name, s.Backend, s.Name)
			ch <- prometheus.MustNewConstMetric(descServerFailed, prometheus.CounterValue, float64(s.Failed), lb.Name, s.Backend, s.Name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
