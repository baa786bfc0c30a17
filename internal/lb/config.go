package lb

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the whole load-balancer configuration. It is applied with New
// and replaced live with Update.
type Config struct {
	Frontends []Frontend `yaml:"frontends"`
	Backends  []Backend  `yaml:"backends"`
}

// Frontend is a listening address that forwards to one backend.
type Frontend struct {
	Name string `yaml:"name"`
	// Bind is host:port, e.g. "192.0.2.10:5000" (a VIP) or "127.0.0.1:0".
	Bind string `yaml:"bind"`
	// Mode is "tcp" (default) or "http".
	Mode    string `yaml:"mode"`
	Backend string `yaml:"backend"`
	// ClientTimeout is the client-side inactivity timeout (default 1m).
	ClientTimeout time.Duration `yaml:"client_timeout"`
	// TLS terminates TLS (http mode only); HTTP/2 is offered with ALPN.
	TLS *TLS `yaml:"tls"`
	// H2C accepts cleartext HTTP/2 (prior knowledge) in http mode.
	H2C bool `yaml:"h2c"`
}

// TLS names PEM certificate and key files.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Backend is a set of servers with a balancing algorithm.
type Backend struct {
	Name string `yaml:"name"`
	// Balance is roundrobin (default, weighted), leastconn, source or first.
	Balance string   `yaml:"balance"`
	Servers []Server `yaml:"servers"`
	// Failback: when false (default) and traffic moved to a backup server,
	// it stays there while that backup is up, even after an active server
	// comes back (the Galera pattern). When true, active servers win again.
	Failback bool `yaml:"failback"`
	// Stick is "" (none), "source" (client IP remembered in a stick table) or
	// "cookie" (http mode: a cookie named Cookie is inserted).
	Stick    string        `yaml:"stick"`
	Cookie   string        `yaml:"cookie"`
	StickTTL time.Duration `yaml:"stick_ttl"`
	// ConnectTimeout (default 10s), ServerTimeout (inactivity, default 1m),
	// QueueTimeout (how long a request waits for a free slot when every
	// server is at maxconn, default = ConnectTimeout).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	ServerTimeout  time.Duration `yaml:"server_timeout"`
	QueueTimeout   time.Duration `yaml:"queue_timeout"`
	// Retries after a failed connect (default 3 when nil); Redispatch picks
	// another server for a retry.
	Retries    *int `yaml:"retries"`
	Redispatch bool `yaml:"redispatch"`
	// ProxyProtocol sends a PROXY protocol header (1 or 2) to servers.
	ProxyProtocol int `yaml:"proxy_protocol"`
	// EjectAfter consecutive connection errors mark a server down
	// (passive ejection; default 3, -1 disables). Without active checks it
	// is tried again after EjectFor (default 10s).
	EjectAfter int           `yaml:"eject_after"`
	EjectFor   time.Duration `yaml:"eject_for"`
	Check      *Check        `yaml:"check"`
	// ShutdownOnDown closes established tcp sessions of a server marked
	// down (HAProxy on-marked-down shutdown-sessions; the Galera pattern).
	ShutdownOnDown bool `yaml:"shutdown_on_down"`
	// SlowStart ramps the weight of a server that comes back up from
	// 0 to its weight over this time (roundrobin and leastconn; 0 = off).
	SlowStart time.Duration `yaml:"slow_start"`
}

// Server is one backend server.
type Server struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"` // host:port; the host may be a name
	// Weight (default 1 when nil; 0 means no new traffic from balancing).
	Weight *int `yaml:"weight"`
	Backup bool `yaml:"backup"`
	// MaxConn limits concurrent connections (tcp) or requests (http); 0 = no limit.
	MaxConn int `yaml:"maxconn"`
	// Drain: no new connections, established ones finish.
	Drain bool `yaml:"drain"`
	// Maintenance: like Drain, and health checks stop; the server is down.
	Maintenance bool `yaml:"maintenance"`
}

// Check is an active health check.
type Check struct {
	// Type is tcp, http, exec or mysql-galera.
	Type     string        `yaml:"type"`
	Interval time.Duration `yaml:"interval"` // default 2s
	Timeout  time.Duration `yaml:"timeout"`  // default 1s
	Rise     int           `yaml:"rise"`     // default 2
	Fall     int           `yaml:"fall"`     // default 3
	// Port overrides the server's port for the check (e.g. clustercheck 9200).
	Port int `yaml:"port"`
	// http
	Method       string `yaml:"method"` // default GET
	Path         string `yaml:"path"`   // default /
	ExpectStatus int    `yaml:"expect_status"`
	ExpectBody   string `yaml:"expect_body"`
	// exec: argv; PACELINE_SERVER_ADDR, _HOST, _PORT, _NAME in the environment.
	Command []string `yaml:"command"`
	// mysql-galera
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

func (c *Config) clone() *Config {
	n := &Config{Frontends: append([]Frontend(nil), c.Frontends...)}
	for _, b := range c.Backends {
		b.Servers = append([]Server(nil), b.Servers...)
		n.Backends = append(n.Backends, b)
	}
	return n
}

// withDefaults returns a copy of c with every default filled in.
func (c *Config) withDefaults() *Config {
	n := c.clone()
	for i := range n.Frontends {
		f := &n.Frontends[i]
		if f.Mode == "" {
			f.Mode = "tcp"
		}
		if f.ClientTimeout == 0 {
			f.ClientTimeout = time.Minute
		}
	}
	for i := range n.Backends {
		b := &n.Backends[i]
		if b.Balance == "" {
			b.Balance = "roundrobin"
		}
		if b.ConnectTimeout == 0 {
			b.ConnectTimeout = 10 * time.Second
		}
		if b.ServerTimeout == 0 {
			b.ServerTimeout = time.Minute
		}
		if b.QueueTimeout == 0 {
			b.QueueTimeout = b.ConnectTimeout
		}
		if b.Retries == nil {
			r := 3
			b.Retries = &r
		}
		if b.EjectAfter == 0 {
			b.EjectAfter = 3
		}
		if b.EjectFor == 0 {
			b.EjectFor = 10 * time.Second
		}
		if b.StickTTL == 0 {
			b.StickTTL = 30 * time.Minute
		}
		if b.Stick == "cookie" && b.Cookie == "" {
			b.Cookie = "PACELINE_LB"
		}
		if b.Check != nil {
			ch := *b.Check
			if ch.Interval == 0 {
				ch.Interval = 2 * time.Second
			}
			if ch.Timeout == 0 {
				ch.Timeout = time.Second
			}
			if ch.Rise == 0 {
				ch.Rise = 2
			}
			if ch.Fall == 0 {
				ch.Fall = 3
			}
			if ch.Method == "" {
				ch.Method = "GET"
			}
			if ch.Path == "" {
				ch.Path = "/"
			}
			b.Check = &ch
		}
		for j := range b.Servers {
			if b.Servers[j].Weight == nil {
				w := 1
				b.Servers[j].Weight = &w
			}
		}
	}
	return n
}

// FieldError is a configuration error that names the field.
type FieldError struct {
	Field string // e.g. backends[0].servers[1].address
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	backends := map[string]*Backend{}
	for i := range c.Backends {
		b := &c.Backends[i]
		p := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			add(p+".name", "is empty")
		} else if backends[b.Name] != nil {
			add(p+".name", "%q is used twice", b.Name)
		}
		backends[b.Name] = b
		p = fmt.Sprintf("backends[%d](%s)", i, b.Name)
		switch b.Balance {
		case "", "roundrobin", "leastconn", "source", "first":
		default:
			add(p+".balance", "%q is not one of roundrobin, leastconn, source, first", b.Balance)
		}
		switch b.Stick {
		case "", "source", "cookie":
		default:
			add(p+".stick", "%q is not one of source, cookie", b.Stick)
		}
		if b.Cookie != "" && strings.ContainsAny(b.Cookie, " ;,=\t\r\n\"") {
			add(p+".cookie", "%q is not a valid cookie name", b.Cookie)
		}
		for _, d := range []struct {
			n string
			v time.Duration
		}{{"connect_timeout", b.ConnectTimeout}, {"server_timeout", b.ServerTimeout}, {"queue_timeout", b.QueueTimeout}, {"stick_ttl", b.StickTTL}, {"eject_for", b.EjectFor}, {"slow_start", b.SlowStart}} {
			if d.v < 0 {
				add(p+"."+d.n, "is negative (%s)", d.v)
			}
		}
		if b.Retries != nil && (*b.Retries < 0 || *b.Retries > 100) {
			add(p+".retries", "%d is outside 0..100", *b.Retries)
		}
		if b.ProxyProtocol != 0 && b.ProxyProtocol != 1 && b.ProxyProtocol != 2 {
			add(p+".proxy_protocol", "%d is not 0, 1 or 2", b.ProxyProtocol)
		}
		if b.EjectAfter < -1 {
			add(p+".eject_after", "%d: use -1 to disable, or a positive count", b.EjectAfter)
		}
		names := map[string]bool{}
		for j, s := range b.Servers {
			sp := fmt.Sprintf("%s.servers[%d]", p, j)
			if s.Name == "" {
				add(sp+".name", "is empty")
			} else if names[s.Name] {
				add(sp+".name", "%q is used twice in this backend", s.Name)
			}
			names[s.Name] = true
			if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
				add(sp+".address", "%q is not host:port", s.Address)
			}
			if s.Weight != nil && (*s.Weight < 0 || *s.Weight > 256) {
				add(sp+".weight", "%d is outside 0..256", *s.Weight)
			}
			if s.MaxConn < 0 {
				add(sp+".maxconn", "%d is negative", s.MaxConn)
			}
		}
		if ch := b.Check; ch != nil {
			cp := p + ".check"
			switch ch.Type {
			case "tcp", "http", "mysql-galera":
			case "exec":
				if len(ch.Command) == 0 {
					add(cp+".command", "is empty (exec checks need a command)")
				}
			default:
				add(cp+".type", "%q is not one of tcp, http, exec, mysql-galera", ch.Type)
			}
			if ch.Interval < 0 || ch.Timeout < 0 {
				add(cp+".interval", "interval and timeout must not be negative")
			}
			if ch.Rise < 0 {
				add(cp+".rise", "%d is negative", ch.Rise)
			}
			if ch.Fall < 0 {
				add(cp+".fall", "%d is negative", ch.Fall)
			}
			if ch.Port < 0 || ch.Port > 65535 {
				add(cp+".port", "%d is not a port", ch.Port)
			}
			if ch.ExpectStatus != 0 && (ch.ExpectStatus < 100 || ch.ExpectStatus > 599) {
				add(cp+".expect_status", "%d is not an HTTP status", ch.ExpectStatus)
			}
			if ch.Path != "" && !strings.HasPrefix(ch.Path, "/") {
				add(cp+".path", "%q must start with /", ch.Path)
			}
		}
	}
	binds := map[string]int{}
	fnames := map[string]bool{}
	for i, f := range c.Frontends {
		p := fmt.Sprintf("frontends[%d]", i)
		if f.Name == "" {
			add(p+".name", "is empty")
		} else if fnames[f.Name] {
			add(p+".name", "%q is used twice", f.Name)
		}
		fnames[f.Name] = true
		p = fmt.Sprintf("frontends[%d](%s)", i, f.Name)
		if _, _, err := net.SplitHostPort(f.Bind); err != nil {
			add(p+".bind", "%q is not host:port", f.Bind)
		} else if j, dup := binds[f.Bind]; dup && !strings.HasSuffix(f.Bind, ":0") {
			add(p+".bind", "%q is also bound by frontends[%d]", f.Bind, j)
		}
		binds[f.Bind] = i
		switch f.Mode {
		case "", "tcp", "http":
		default:
			add(p+".mode", "%q is not tcp or http", f.Mode)
		}
		if f.Backend == "" {
			add(p+".backend", "is empty")
		} else if b := backends[f.Backend]; b == nil {
			add(p+".backend", "%q is not a backend", f.Backend)
		} else if b.Stick == "cookie" && f.Mode != "http" {
			add(p+".mode", "backend %q uses cookie stickiness, which needs mode http", f.Backend)
		}
		if f.ClientTimeout < 0 {
			add(p+".client_timeout", "is negative")
		}
		if f.TLS != nil {
			if f.Mode != "http" {
				add(p+".tls", "TLS termination needs mode http")
			}
			if f.TLS.CertFile == "" {
				add(p+".tls.cert_file", "is empty")
			}
			if f.TLS.KeyFile == "" {
				add(p+".tls.key_file", "is empty")
			}
		}
		if f.H2C && f.Mode != "http" {
			add(p+".h2c", "needs mode http")
		}
	}
	return errors.Join(errs...)
}
