package spec

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/paceline/paceline/internal/lb"
)

// LBInstance is one node where a resource runs healthy: a server of every
// backend that lists {resource: NAME, port: N}.
type LBInstance struct {
	Node string
	Addr netip.Addr
}

// LBInputs is what building a load balancer's lb.Config needs beyond the
// spec: where things are right now.
type LBInputs struct {
	// VIP is the address of the load balancer's vip resource (invalid when
	// it has none): frontends written with port bind VIP:port.
	VIP netip.Addr
	// Instances returns the healthy instances of a resource, sorted by node.
	Instances func(resource string) []LBInstance
	// ReadFile reads a check's passwordFile; nil means os.ReadFile.
	ReadFile func(path string) ([]byte, error)
}

// LBConfig builds the configuration of internal/lb for this load
// balancer. Frontends written with port bind the VIP's address (every
// address when there is no VIP); a server {resource: R, port: P} becomes
// one server per healthy instance of R, named after its node (RESOURCE@NODE
// when the backend lists several resources or the node name is taken), at
// the node's address and port P. The returned errors are problems that do
// not stop the load balancer (an unreadable passwordFile: the check then
// uses no password and fails).
func (l *LoadBalancer) LBConfig(in LBInputs) (lb.Config, []error) {
	return l.lbConfig(in, false)
}

// lbPlaceholder is the address placeholder servers get for validation.
var lbPlaceholder = netip.MustParseAddr("192.0.2.1")

func (l *LoadBalancer) lbConfig(in LBInputs, placeholder bool) (lb.Config, []error) {
	var cfg lb.Config
	var warns []error
	readFile := in.ReadFile
	if readFile == nil {
		readFile = os.ReadFile
	}
	for _, f := range l.Frontends {
		fc := lb.Frontend{Name: f.Name, Bind: f.Bind, Mode: f.Mode, Backend: f.Backend,
			ClientTimeout: f.ClientTimeout.D(), H2C: f.H2C}
		if f.Port != 0 && f.Bind == "" {
			host := ""
			if in.VIP.IsValid() {
				host = in.VIP.String()
			}
			fc.Bind = net.JoinHostPort(host, strconv.Itoa(f.Port))
		}
		if f.TLS != nil {
			fc.TLS = &lb.TLS{CertFile: f.TLS.CertFile, KeyFile: f.TLS.KeyFile}
		}
		cfg.Frontends = append(cfg.Frontends, fc)
	}
	for i, b := range l.Backends {
		bc := lb.Backend{Name: b.Name, Balance: b.Balance, Failback: b.Failback, Stick: b.Stick, Cookie: b.Cookie,
			StickTTL: b.StickTTL.D(), ConnectTimeout: b.ConnectTimeout.D(), ServerTimeout: b.ServerTimeout.D(),
			QueueTimeout: b.QueueTimeout.D(), Retries: clonePtr(b.Retries), Redispatch: b.Redispatch,
			ProxyProtocol: b.ProxyProtocol, EjectAfter: b.EjectAfter, EjectFor: b.EjectFor.D(),
			ShutdownOnDown: b.ShutdownOnDown, SlowStart: b.SlowStart.D()}
		if c := b.Check; c != nil {
			bc.Check = &lb.Check{Type: c.Type, Interval: c.Interval.D(), Timeout: c.Timeout.D(), Rise: c.Rise, Fall: c.Fall,
				Port: c.Port, Method: c.Method, Path: c.Path, ExpectStatus: c.ExpectStatus, ExpectBody: c.ExpectBody,
				Command: append([]string(nil), c.Command...), User: c.User}
			if c.PasswordFile != "" && !placeholder {
				data, err := readFile(c.PasswordFile)
				if err != nil {
					warns = append(warns, fmt.Errorf("loadBalancers(%s).backends[%d](%s).check.passwordFile: %w (the check runs without a password and fails until the file is readable)", l.Name, i, b.Name, err))
				} else {
					bc.Check.Password = strings.TrimRight(string(data), "\r\n")
				}
			}
		}
		resources := 0
		static := map[string]bool{}
		for _, s := range b.Servers {
			if s.Resource != "" {
				resources++
			} else {
				static[s.Name] = true
			}
		}
		for j, s := range b.Servers {
			srv := lb.Server{Name: s.Name, Address: s.Address, Weight: clonePtr(s.Weight), Backup: s.Backup,
				MaxConn: s.MaxConn, Drain: s.Drain, Maintenance: s.Maintenance}
			if s.Resource == "" {
				bc.Servers = append(bc.Servers, srv)
				continue
			}
			port := strconv.Itoa(s.Port)
			if placeholder {
				srv.Name = fmt.Sprintf("%s@placeholder-%d", s.Resource, j)
				srv.Address = net.JoinHostPort(lbPlaceholder.String(), port)
				bc.Servers = append(bc.Servers, srv)
				continue
			}
			if in.Instances == nil {
				continue
			}
			seen := map[string]bool{}
			for _, inst := range in.Instances(s.Resource) {
				if seen[inst.Node] || !inst.Addr.IsValid() {
					continue
				}
				seen[inst.Node] = true
				x := srv
				x.Weight = clonePtr(s.Weight)
				x.Name = inst.Node
				if resources > 1 || static[inst.Node] {
					x.Name = s.Resource + "@" + inst.Node
				}
				x.Address = net.JoinHostPort(inst.Addr.String(), port)
				bc.Servers = append(bc.Servers, x)
			}
		}
		cfg.Backends = append(cfg.Backends, bc)
	}
	return cfg, warns
}

// validateLoadBalancers checks the loadBalancers section: names,
// references (vip → a vip resource, servers → resources), ports and
// their conflicts, and everything internal/lb checks, each mapped to the
// spec's field path.
func (v *validator) validateLoadBalancers(s *Spec) {
	res := map[string]*Resource{}
	var vipNames, resNames []string
	for i := range s.Resources {
		r := &s.Resources[i]
		if _, dup := res[r.Name]; dup || r.Name == "" {
			continue
		}
		res[r.Name] = r
		resNames = append(resNames, r.Name)
		if r.Info().Kind == KindVIP {
			vipNames = append(vipNames, r.Name)
		}
	}
	hint := func(name string, candidates []string) string {
		if s := suggest(name, candidates); s != "" {
			return " (did you mean " + s + "?)"
		}
		return ""
	}
	type bound struct {
		host string // "" = every address
		path string
	}
	binds := map[int][]bound{} // port → frontends binding it
	names := map[string]int{}
	for i := range s.LoadBalancers {
		l := &s.LoadBalancers[i]
		p := fmt.Sprintf("loadBalancers[%d]", i)
		if l.Name == "" {
			v.add(p+".name", "name is required (e.g. name: openstack-api)")
		} else if is := checkName(l.Name, "load balancer name"); is != nil {
			v.add(p+".name", "%s", is.msg)
		} else if j, dup := names[l.Name]; dup {
			v.add(p+".name", "duplicate load balancer name %s, also used by loadBalancers[%d]", quote(l.Name), j)
		} else {
			names[l.Name] = i
		}
		var vipAddr netip.Addr
		if l.VIP != "" {
			r := res[l.VIP]
			switch {
			case r == nil && len(vipNames) == 0:
				v.add(p+".vip", "%s is not a resource; declare a resource of class vip (docs/vip.md) or leave vip out to run on every node", quote(l.VIP))
			case r == nil:
				v.add(p+".vip", "%s is not a resource%s; vip resources: %s", quote(l.VIP), hint(l.VIP, vipNames), strings.Join(vipNames, ", "))
			case r.Info().Kind != KindVIP:
				v.add(p+".vip", "%s is a resource of class %s, not vip; name a resource of class vip", quote(l.VIP), r.Class)
			default:
				if vp, errs := ParseVIPParams(r.Params.Values); len(errs) == 0 {
					vipAddr = vp.Address.Addr()
				}
			}
		}
		if len(l.Frontends) == 0 {
			v.add(p+".frontends", "a load balancer needs at least one frontend (e.g. frontends: [{name: keystone, port: 5000, backend: keystone}])")
		}
		backends := map[string]bool{}
		for _, b := range l.Backends {
			backends[b.Name] = true
		}
		for j, f := range l.Frontends {
			fp := fmt.Sprintf("%s.frontends[%d]", p, j)
			if f.Name == "" {
				v.add(fp+".name", "name is required (e.g. name: keystone)")
			}
			switch {
			case f.Port != 0 && f.Bind != "":
				v.add(fp+".bind", "write either port (%s) or bind (a full host:port), not both", map[bool]string{true: "binds the VIP's address", false: "binds every address"}[l.VIP != ""])
				continue
			case f.Port == 0 && f.Bind == "" && v.written(fp+".port"):
				v.add(fp+".port", "0 is not a port: write a port from 1 to 65535 (or bind: 127.0.0.1:0 for any free port)")
				continue
			case f.Port == 0 && f.Bind == "":
				v.add(fp, "needs port (e.g. port: 5000; it binds %s) or bind (e.g. bind: 192.0.2.10:5000)", map[bool]string{true: "the VIP's address", false: "every address"}[l.VIP != ""])
				continue
			case f.Port < 0 || f.Port > 65535:
				v.add(fp+".port", "%d is not a port (1 to 65535)", f.Port)
				continue
			}
			var b bound
			var port int
			if f.Port != 0 {
				port, b.path = f.Port, fp+".port"
				if vipAddr.IsValid() {
					b.host = vipAddr.String()
				}
			} else {
				host, ps, err := net.SplitHostPort(f.Bind)
				n, perr := strconv.Atoi(ps)
				if err != nil || perr != nil || n < 0 || n > 65535 {
					v.add(fp+".bind", "%s is not host:port (e.g. 192.0.2.10:5000, [2001:db8::10]:5000, :5000 for every address)", quote(f.Bind))
					continue
				}
				port, b.path = n, fp+".bind"
				if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
					b.host = a.Unmap().String()
				} else if err != nil && host != "" {
					b.host = host
				}
			}
			if port == 0 {
				continue
			}
			for _, o := range binds[port] {
				if o.host == b.host || o.host == "" || b.host == "" {
					where := "every address"
					if b.host != "" {
						where = b.host
					}
					oline := ""
					if ln := v.line(o.path); ln > 0 {
						oline = fmt.Sprintf(" (line %d)", ln)
					}
					v.add(b.path, "port %d on %s is also bound by %s%s; two frontends cannot listen on the same port and address", port, where, o.path, oline)
					break
				}
			}
			binds[port] = append(binds[port], b)
		}
		for j, b := range l.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", p, j)
			if b.Name == "" {
				v.add(bp+".name", "name is required (e.g. name: keystone)")
			}
			if len(b.Servers) == 0 {
				v.add(bp+".servers", "a backend needs at least one server ({name: ctl1, address: 192.0.2.11:5000} or {resource: keystone, port: 5000})")
			}
			if c := b.Check; c != nil {
				if c.Type == "mysql-galera" && c.User == "" {
					v.add(bp+".check.user", "a mysql-galera check needs user (and passwordFile unless the user has no password)")
				}
				if c.PasswordFile != "" && c.Type != "mysql-galera" {
					v.add(bp+".check.passwordFile", "only mysql-galera checks use a password")
				}
			}
			listed := map[string]int{}
			for k, sv := range b.Servers {
				sp := fmt.Sprintf("%s.servers[%d]", bp, k)
				if sv.Resource != "" {
					if first, dup := listed[sv.Resource]; dup {
						v.add(sp+".resource", "%s is already listed as servers[%d]; list a resource once per backend", quote(sv.Resource), first)
					}
					listed[sv.Resource] = k
				}
				switch {
				case sv.Resource != "" && sv.Address != "":
					v.add(sp+".address", "write either address (a static server) or resource (one server per node where it runs), not both")
				case sv.Resource != "":
					if sv.Name != "" {
						v.add(sp+".name", "servers of a resource are named after their nodes; remove name")
					}
					if res[sv.Resource] == nil {
						v.add(sp+".resource", "%s is not a resource%s", quote(sv.Resource), hint(sv.Resource, resNames))
					}
					if sv.Port < 1 || sv.Port > 65535 {
						v.add(sp+".port", "a resource's servers need the port its instances listen on (1 to 65535, e.g. port: 5000)")
					}
				default:
					if sv.Port != 0 {
						v.add(sp+".port", "port goes with resource; a static server writes it in address (e.g. address: 192.0.2.11:5000)")
					}
					if sv.Name == "" {
						v.add(sp+".name", "name is required for a static server (e.g. {name: ctl1, address: 192.0.2.11:5000})")
					}
					if sv.Address == "" {
						v.add(sp+".address", "address is required: host:port of the server (or write resource: NAME, port: N to follow a resource)")
					}
				}
			}
		}
		// Everything else internal/lb checks, mapped to the spec's fields.
		cfg, _ := l.lbConfig(LBInputs{VIP: vipAddr}, true)
		err := cfg.Validate()
		var fes []*lb.FieldError
		for _, e := range unwrapAll(err) {
			if fe, ok := errors.AsType[*lb.FieldError](e); ok {
				fes = append(fes, fe)
			}
		}
		before := len(v.errs)
		for _, fe := range fes {
			path := p + "." + lbFieldPath(l, fe.Field)
			if v.hasErrorAt(path, before) {
				continue
			}
			v.add(path, "%s", fe.Msg)
		}
	}
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// hasErrorAt reports whether one of the first n errors is at path, above or below it.
func (v *validator) hasErrorAt(path string, n int) bool {
	for _, e := range v.errs[:n] {
		if within(path, e.Path) || within(e.Path, path) {
			return true
		}
	}
	return false
}

// lbFieldNames maps internal/lb's field names to the spec's.
var lbFieldNames = map[string]string{
	"client_timeout": "clientTimeout", "cert_file": "certFile", "key_file": "keyFile", "stick_ttl": "stickTTL",
	"connect_timeout": "connectTimeout", "server_timeout": "serverTimeout", "queue_timeout": "queueTimeout",
	"proxy_protocol": "proxyProtocol", "eject_after": "ejectAfter", "eject_for": "ejectFor",
	"shutdown_on_down": "shutdownOnDown", "slow_start": "slowStart", "expect_status": "expectStatus",
	"expect_body": "expectBody", "maxconn": "maxConn", "password": "passwordFile",
}

// lbFieldPath turns an lb.FieldError field ("frontends[0](ks).tls.cert_file")
// into the spec's path below the load balancer ("frontends[0].tls.certFile").
func lbFieldPath(l *LoadBalancer, field string) string {
	for i, f := range l.Frontends {
		pre := fmt.Sprintf("frontends[%d](%s)", i, f.Name)
		if rest, ok := strings.CutPrefix(field, pre); ok {
			field = fmt.Sprintf("frontends[%d]", i) + rest
			if rest == ".bind" && f.Bind == "" {
				field = fmt.Sprintf("frontends[%d].port", i)
			}
			break
		}
	}
	for i, b := range l.Backends {
		pre := fmt.Sprintf("backends[%d](%s)", i, b.Name)
		if rest, ok := strings.CutPrefix(field, pre); ok {
			field = fmt.Sprintf("backends[%d]", i) + rest
			break
		}
	}
	parts := strings.Split(field, ".")
	for i, s := range parts {
		if n, ok := lbFieldNames[s]; ok {
			parts[i] = n
		}
	}
	return strings.Join(parts, ".")
}
