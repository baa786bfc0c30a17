package spec

import (
	"maps"
	"slices"

	"gopkg.in/yaml.v3"
)

// LoadBalancer is one entry of the loadBalancers section: frontends and
// backends of paceline's built-in load balancer (internal/lb, docs/lb.md).
// With VIP set, its frontends listen on the address of that vip resource
// and it runs only on the node that holds the VIP, so the two fail over
// together; without it, it runs on every node.
type LoadBalancer struct {
	Name string `json:"name" yaml:"name"`
	// VIP names a resource of class vip (optional).
	VIP       string       `json:"vip,omitempty" yaml:"vip"`
	Frontends []LBFrontend `json:"frontends,omitempty" yaml:"frontends"`
	Backends  []LBBackend  `json:"backends,omitempty" yaml:"backends"`
}

// LBFrontend is a listening address (HAProxy frontend/bind) forwarding to
// one backend. Exactly one of Port (the VIP's address, or every address
// without a VIP) and Bind (host:port) is set.
type LBFrontend struct {
	Name    string `json:"name" yaml:"name"`
	Port    int    `json:"port,omitempty" yaml:"port"`
	Bind    string `json:"bind,omitempty" yaml:"bind"`
	Mode    string `json:"mode,omitempty" yaml:"mode"` // tcp (default) or http
	Backend string `json:"backend" yaml:"backend"`
	// ClientTimeout is the client-side inactivity timeout (default 1m).
	ClientTimeout Duration `json:"clientTimeout,omitempty" yaml:"clientTimeout"`
	TLS           *LBTLS   `json:"tls,omitempty" yaml:"tls"`
	H2C           bool     `json:"h2c,omitempty" yaml:"h2c"`
}

// LBTLS names the PEM files of a TLS-terminating frontend (on every node
// that may run the load balancer).
type LBTLS struct {
	CertFile string `json:"certFile" yaml:"certFile"`
	KeyFile  string `json:"keyFile" yaml:"keyFile"`
}

// LBBackend is a set of servers with a balancing algorithm (HAProxy backend).
type LBBackend struct {
	Name           string     `json:"name" yaml:"name"`
	Balance        string     `json:"balance,omitempty" yaml:"balance"`
	Stick          string     `json:"stick,omitempty" yaml:"stick"`
	Cookie         string     `json:"cookie,omitempty" yaml:"cookie"`
	StickTTL       Duration   `json:"stickTTL,omitempty" yaml:"stickTTL"`
	Failback       bool       `json:"failback,omitempty" yaml:"failback"`
	ConnectTimeout Duration   `json:"connectTimeout,omitempty" yaml:"connectTimeout"`
	ServerTimeout  Duration   `json:"serverTimeout,omitempty" yaml:"serverTimeout"`
	QueueTimeout   Duration   `json:"queueTimeout,omitempty" yaml:"queueTimeout"`
	Retries        *int       `json:"retries,omitempty" yaml:"retries"`
	Redispatch     bool       `json:"redispatch,omitempty" yaml:"redispatch"`
	ProxyProtocol  int        `json:"proxyProtocol,omitempty" yaml:"proxyProtocol"`
	EjectAfter     int        `json:"ejectAfter,omitempty" yaml:"ejectAfter"`
	EjectFor       Duration   `json:"ejectFor,omitempty" yaml:"ejectFor"`
	ShutdownOnDown bool       `json:"shutdownOnDown,omitempty" yaml:"shutdownOnDown"`
	SlowStart      Duration   `json:"slowStart,omitempty" yaml:"slowStart"`
	Check          *LBCheck   `json:"check,omitempty" yaml:"check"`
	Servers        []LBServer `json:"servers,omitempty" yaml:"servers"`
}

// LBServer is either a static server (Name and Address) or a resource
// (Resource and Port): one server per node where the resource runs
// healthy, named after the node, following placement.
type LBServer struct {
	Name     string `json:"name,omitempty" yaml:"name"`
	Address  string `json:"address,omitempty" yaml:"address"`
	Resource string `json:"resource,omitempty" yaml:"resource"`
	Port     int    `json:"port,omitempty" yaml:"port"`
	// Weight is 0..256 (default 1).
	Weight      *int `json:"weight,omitempty" yaml:"weight"`
	Backup      bool `json:"backup,omitempty" yaml:"backup"`
	MaxConn     int  `json:"maxConn,omitempty" yaml:"maxConn"`
	Drain       bool `json:"drain,omitempty" yaml:"drain"`
	Maintenance bool `json:"maintenance,omitempty" yaml:"maintenance"`
}

// LBCheck is an active health check of a backend's servers.
type LBCheck struct {
	Type         string   `json:"type" yaml:"type"` // tcp, http, exec or mysql-galera
	Interval     Duration `json:"interval,omitempty" yaml:"interval"`
	Timeout      Duration `json:"timeout,omitempty" yaml:"timeout"`
	Rise         int      `json:"rise,omitempty" yaml:"rise"`
	Fall         int      `json:"fall,omitempty" yaml:"fall"`
	Port         int      `json:"port,omitempty" yaml:"port"`
	Method       string   `json:"method,omitempty" yaml:"method"`
	Path         string   `json:"path,omitempty" yaml:"path"`
	ExpectStatus int      `json:"expectStatus,omitempty" yaml:"expectStatus"`
	ExpectBody   string   `json:"expectBody,omitempty" yaml:"expectBody"`
	Command      []string `json:"command,omitempty" yaml:"command"`
	User         string   `json:"user,omitempty" yaml:"user"`
	// PasswordFile holds the mysql-galera check password (read on the node
	// that runs the check; the password itself never enters the spec).
	PasswordFile string `json:"passwordFile,omitempty" yaml:"passwordFile"`
}

// decoding

func (d *decoder) loadBalancer(n *yaml.Node, path string, l *LoadBalancer) {
	d.object(n, path, "{name: api, vip: api-vip, frontends: [...], backends: [...]}", []field{
		{"name", func(v *yaml.Node, p string) { l.Name = d.str(v, p) }},
		{"vip", func(v *yaml.Node, p string) { l.VIP = d.str(v, p) }},
		{"frontends", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: keystone, port: 5000, mode: http, backend: keystone}]", func(v *yaml.Node, p string) {
				l.Frontends = append(l.Frontends, LBFrontend{})
				d.lbFrontend(v, p, &l.Frontends[len(l.Frontends)-1])
			})
		}},
		{"backends", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: keystone, servers: [{resource: keystone, port: 5000}]}]", func(v *yaml.Node, p string) {
				l.Backends = append(l.Backends, LBBackend{})
				d.lbBackend(v, p, &l.Backends[len(l.Backends)-1])
			})
		}},
	}, nil)
}

func (d *decoder) lbFrontend(n *yaml.Node, path string, f *LBFrontend) {
	d.object(n, path, "{name: keystone, port: 5000, mode: http, backend: keystone}", []field{
		{"name", func(v *yaml.Node, p string) { f.Name = d.str(v, p) }},
		{"port", func(v *yaml.Node, p string) { f.Port = d.integer(v, p) }},
		{"bind", func(v *yaml.Node, p string) { f.Bind = d.str(v, p) }},
		{"mode", func(v *yaml.Node, p string) { f.Mode = d.str(v, p) }},
		{"backend", func(v *yaml.Node, p string) { f.Backend = d.str(v, p) }},
		{"clientTimeout", func(v *yaml.Node, p string) { f.ClientTimeout = d.duration(v, p) }},
		{"tls", func(v *yaml.Node, p string) {
			f.TLS = &LBTLS{}
			d.object(v, p, "{certFile: /etc/paceline/tls/api.pem, keyFile: /etc/paceline/tls/api.key}", []field{
				{"certFile", func(v *yaml.Node, p string) { f.TLS.CertFile = d.str(v, p) }},
				{"keyFile", func(v *yaml.Node, p string) { f.TLS.KeyFile = d.str(v, p) }},
			}, nil)
		}},
		{"h2c", func(v *yaml.Node, p string) { f.H2C = d.boolean(v, p) }},
	}, nil)
}

func (d *decoder) lbBackend(n *yaml.Node, path string, b *LBBackend) {
	d.object(n, path, "{name: keystone, balance: roundrobin, servers: [{resource: keystone, port: 5000}]}", []field{
		{"name", func(v *yaml.Node, p string) { b.Name = d.str(v, p) }},
		{"balance", func(v *yaml.Node, p string) { b.Balance = d.str(v, p) }},
		{"stick", func(v *yaml.Node, p string) { b.Stick = d.str(v, p) }},
		{"cookie", func(v *yaml.Node, p string) { b.Cookie = d.str(v, p) }},
		{"stickTTL", func(v *yaml.Node, p string) { b.StickTTL = d.duration(v, p) }},
		{"failback", func(v *yaml.Node, p string) { b.Failback = d.boolean(v, p) }},
		{"connectTimeout", func(v *yaml.Node, p string) { b.ConnectTimeout = d.duration(v, p) }},
		{"serverTimeout", func(v *yaml.Node, p string) { b.ServerTimeout = d.duration(v, p) }},
		{"queueTimeout", func(v *yaml.Node, p string) { b.QueueTimeout = d.duration(v, p) }},
		{"retries", func(v *yaml.Node, p string) { b.Retries = d.intPtr(v, p) }},
		{"redispatch", func(v *yaml.Node, p string) { b.Redispatch = d.boolean(v, p) }},
		{"proxyProtocol", func(v *yaml.Node, p string) { b.ProxyProtocol = d.integer(v, p) }},
		{"ejectAfter", func(v *yaml.Node, p string) { b.EjectAfter = d.integer(v, p) }},
		{"ejectFor", func(v *yaml.Node, p string) { b.EjectFor = d.duration(v, p) }},
		{"shutdownOnDown", func(v *yaml.Node, p string) { b.ShutdownOnDown = d.boolean(v, p) }},
		{"slowStart", func(v *yaml.Node, p string) { b.SlowStart = d.duration(v, p) }},
		{"check", func(v *yaml.Node, p string) {
			b.Check = &LBCheck{}
			d.lbCheck(v, p, b.Check)
		}},
		{"servers", func(v *yaml.Node, p string) {
			d.list(v, p, "[{name: ctl1, address: 192.0.2.11:5000}, {resource: keystone, port: 5000}]", func(v *yaml.Node, p string) {
				b.Servers = append(b.Servers, LBServer{})
				d.lbServer(v, p, &b.Servers[len(b.Servers)-1])
			})
		}},
	}, nil)
}

func (d *decoder) lbServer(n *yaml.Node, path string, s *LBServer) {
	d.object(n, path, "{name: ctl1, address: 192.0.2.11:5000} or {resource: keystone, port: 5000}", []field{
		{"name", func(v *yaml.Node, p string) { s.Name = d.str(v, p) }},
		{"address", func(v *yaml.Node, p string) { s.Address = d.str(v, p) }},
		{"resource", func(v *yaml.Node, p string) { s.Resource = d.str(v, p) }},
		{"port", func(v *yaml.Node, p string) { s.Port = d.integer(v, p) }},
		{"weight", func(v *yaml.Node, p string) { s.Weight = d.intPtr(v, p) }},
		{"backup", func(v *yaml.Node, p string) { s.Backup = d.boolean(v, p) }},
		{"maxConn", func(v *yaml.Node, p string) { s.MaxConn = d.integer(v, p) }},
		{"drain", func(v *yaml.Node, p string) { s.Drain = d.boolean(v, p) }},
		{"maintenance", func(v *yaml.Node, p string) { s.Maintenance = d.boolean(v, p) }},
	}, nil)
}

func (d *decoder) lbCheck(n *yaml.Node, path string, c *LBCheck) {
	d.object(n, path, "{type: http, path: /healthcheck, interval: 2s}", []field{
		{"type", func(v *yaml.Node, p string) { c.Type = d.str(v, p) }},
		{"interval", func(v *yaml.Node, p string) { c.Interval = d.duration(v, p) }},
		{"timeout", func(v *yaml.Node, p string) { c.Timeout = d.duration(v, p) }},
		{"rise", func(v *yaml.Node, p string) { c.Rise = d.integer(v, p) }},
		{"fall", func(v *yaml.Node, p string) { c.Fall = d.integer(v, p) }},
		{"port", func(v *yaml.Node, p string) { c.Port = d.integer(v, p) }},
		{"method", func(v *yaml.Node, p string) { c.Method = d.str(v, p) }},
		{"path", func(v *yaml.Node, p string) { c.Path = d.str(v, p) }},
		{"expectStatus", func(v *yaml.Node, p string) { c.ExpectStatus = d.integer(v, p) }},
		{"expectBody", func(v *yaml.Node, p string) { c.ExpectBody = d.str(v, p) }},
		{"command", func(v *yaml.Node, p string) { c.Command = d.strings(v, p, "[/usr/local/bin/check]") }},
		{"user", func(v *yaml.Node, p string) { c.User = d.str(v, p) }},
		{"passwordFile", func(v *yaml.Node, p string) { c.PasswordFile = d.str(v, p) }},
	}, nil)
}

// encoding: the yaml* mirrors leave out unset fields.

type (
	yamlLoadBalancer struct {
		Name      string       `yaml:"name"`
		VIP       string       `yaml:"vip,omitempty"`
		Frontends []LBFrontend `yaml:"frontends,omitempty"`
		Backends  []LBBackend  `yaml:"backends,omitempty"`
	}
	yamlLBFrontend struct {
		Name          string   `yaml:"name"`
		Port          int      `yaml:"port,omitempty"`
		Bind          string   `yaml:"bind,omitempty"`
		Mode          string   `yaml:"mode,omitempty"`
		Backend       string   `yaml:"backend"`
		ClientTimeout Duration `yaml:"clientTimeout,omitempty"`
		TLS           *LBTLS   `yaml:"tls,omitempty"`
		H2C           bool     `yaml:"h2c,omitempty"`
	}
	yamlLBBackend struct {
		Name           string     `yaml:"name"`
		Balance        string     `yaml:"balance,omitempty"`
		Stick          string     `yaml:"stick,omitempty"`
		Cookie         string     `yaml:"cookie,omitempty"`
		StickTTL       Duration   `yaml:"stickTTL,omitempty"`
		Failback       bool       `yaml:"failback,omitempty"`
		ConnectTimeout Duration   `yaml:"connectTimeout,omitempty"`
		ServerTimeout  Duration   `yaml:"serverTimeout,omitempty"`
		QueueTimeout   Duration   `yaml:"queueTimeout,omitempty"`
		Retries        *int       `yaml:"retries,omitempty"`
		Redispatch     bool       `yaml:"redispatch,omitempty"`
		ProxyProtocol  int        `yaml:"proxyProtocol,omitempty"`
		EjectAfter     int        `yaml:"ejectAfter,omitempty"`
		EjectFor       Duration   `yaml:"ejectFor,omitempty"`
		ShutdownOnDown bool       `yaml:"shutdownOnDown,omitempty"`
		SlowStart      Duration   `yaml:"slowStart,omitempty"`
		Check          *LBCheck   `yaml:"check,omitempty"`
		Servers        []LBServer `yaml:"servers,omitempty"`
	}
	yamlLBServer struct {
		Name        string `yaml:"name,omitempty"`
		Address     string `yaml:"address,omitempty"`
		Resource    string `yaml:"resource,omitempty"`
		Port        int    `yaml:"port,omitempty"`
		Weight      *int   `yaml:"weight,omitempty"`
		Backup      bool   `yaml:"backup,omitempty"`
		MaxConn     int    `yaml:"maxConn,omitempty"`
		Drain       bool   `yaml:"drain,omitempty"`
		Maintenance bool   `yaml:"maintenance,omitempty"`
	}
	yamlLBCheck struct {
		Type         string   `yaml:"type"`
		Interval     Duration `yaml:"interval,omitempty"`
		Timeout      Duration `yaml:"timeout,omitempty"`
		Rise         int      `yaml:"rise,omitempty"`
		Fall         int      `yaml:"fall,omitempty"`
		Port         int      `yaml:"port,omitempty"`
		Method       string   `yaml:"method,omitempty"`
		Path         string   `yaml:"path,omitempty"`
		ExpectStatus int      `yaml:"expectStatus,omitempty"`
		ExpectBody   string   `yaml:"expectBody,omitempty"`
		Command      []string `yaml:"command,flow,omitempty"`
		User         string   `yaml:"user,omitempty"`
		PasswordFile string   `yaml:"passwordFile,omitempty"`
	}
)

// MarshalYAML leaves out unset fields.
func (l LoadBalancer) MarshalYAML() (any, error) { return yamlLoadBalancer(l), nil }

// MarshalYAML leaves out unset fields.
func (f LBFrontend) MarshalYAML() (any, error) { return yamlLBFrontend(f), nil }

// MarshalYAML leaves out unset fields.
func (b LBBackend) MarshalYAML() (any, error) { return yamlLBBackend(b), nil }

// MarshalYAML leaves out unset fields.
func (s LBServer) MarshalYAML() (any, error) { return yamlLBServer(s), nil }

// MarshalYAML leaves out unset fields.
func (c LBCheck) MarshalYAML() (any, error) { return yamlLBCheck(c), nil }

// clone deep-copies a load balancer.
func (l LoadBalancer) clone() LoadBalancer {
	l.Frontends = cloneEach(l.Frontends, func(f LBFrontend) LBFrontend { f.TLS = clonePtr(f.TLS); return f })
	l.Backends = cloneEach(l.Backends, func(b LBBackend) LBBackend {
		b.Retries = clonePtr(b.Retries)
		if b.Check != nil {
			c := *b.Check
			c.Command = slices.Clone(c.Command)
			b.Check = &c
		}
		b.Servers = cloneEach(b.Servers, func(s LBServer) LBServer { s.Weight = clonePtr(s.Weight); return s })
		return b
	})
	return l
}

// lbChanges reports added, removed and changed load balancers; a changed
// one lists what changed as NAME.vip, NAME.frontends.FRONTEND or
// NAME.backends.BACKEND.
func lbChanges(old, new *Spec) []Change {
	index := func(s *Spec) map[string]*LoadBalancer {
		m := map[string]*LoadBalancer{}
		for i := range s.LoadBalancers {
			if _, dup := m[s.LoadBalancers[i].Name]; !dup {
				m[s.LoadBalancers[i].Name] = &s.LoadBalancers[i]
			}
		}
		return m
	}
	a, b := index(old), index(new)
	names := slices.Sorted(maps.Keys(a))
	for n := range b {
		if a[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []Change
	for _, n := range names {
		o, nw := a[n], b[n]
		switch {
		case o == nil:
			out = append(out, Change{Kind: ChangeAdded, Section: "loadBalancers", Fields: []string{n}})
		case nw == nil:
			out = append(out, Change{Kind: ChangeRemoved, Section: "loadBalancers", Fields: []string{n}})
		default:
			var fields []string
			if o.VIP != nw.VIP {
				fields = append(fields, n+".vip")
			}
			fe := func(l *LoadBalancer) map[string]any {
				m := map[string]any{}
				for _, f := range l.Frontends {
					m[f.Name] = f
				}
				return m
			}
			be := func(l *LoadBalancer) map[string]any {
				m := map[string]any{}
				for _, x := range l.Backends {
					m[x.Name] = x
				}
				return m
			}
			fields = append(fields, namedDiff(n+".frontends.", fe(o), fe(nw))...)
			fields = append(fields, namedDiff(n+".backends.", be(o), be(nw))...)
			if len(fields) == 0 && !sameJSON(o, nw) { // e.g. only the order of entries
				fields = append(fields, n)
			}
			if len(fields) > 0 {
				out = append(out, Change{Kind: ChangeChanged, Section: "loadBalancers", Fields: fields})
			}
		}
	}
	return out
}

// namedDiff lists prefix+name for every entry added, removed or changed.
func namedDiff(prefix string, a, b map[string]any) []string {
	var out []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || !sameJSON(av, bv) {
			out = append(out, prefix+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, prefix+k)
		}
	}
	slices.Sort(out)
	return out
}
