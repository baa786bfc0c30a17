package discovery

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Instance is one instance in a Service answer.
type Instance struct {
	Node string `json:"node"`
	// Address is the node's address, empty when unknown.
	Address string `json:"address,omitempty"`
	// Port is the service port, 0 (omitted) when none is known.
	Port    uint16 `json:"port,omitempty"`
	Healthy bool   `json:"healthy"`
	Slot    int    `json:"slot"`
	Role    string `json:"role,omitempty"`
}

// Service answers GET /v1/discovery/services/{name}.
type Service struct {
	Name string `json:"name"`
	// Version is the snapshot's version (changes with any discovery data).
	Version uint64 `json:"version"`
	// Instances are all assigned instances, healthy or not, sorted by
	// node and slot (only the healthy ones with ?healthy=true).
	Instances []Instance `json:"instances"`
	// Healthy counts the healthy instances.
	Healthy int `json:"healthy"`
}

// VIPInfo answers GET /v1/discovery/vips/{name}.
type VIPInfo struct {
	Name      string   `json:"name"`
	Version   uint64   `json:"version"`
	Addresses []string `json:"addresses"`
	// Holder is the node running the vip resource healthy, empty when none.
	Holder string `json:"holder,omitempty"`
}

// ServiceList answers GET /v1/discovery/services.
type ServiceList struct {
	Version  uint64    `json:"version"`
	Services []Service `json:"services"`
}

// VIPList answers GET /v1/discovery/vips.
type VIPList struct {
	Version uint64    `json:"version"`
	VIPs    []VIPInfo `json:"vips"`
}

// ErrorBody is the JSON body of an error (the shape of api.Error).
type ErrorBody struct {
	Status  int    `json:"status"`
	Message string `json:"error"`
}

// Handler returns the HTTP handler of
//
//	GET /v1/discovery/services            every service
//	GET /v1/discovery/services/{name}     one service (?healthy=true: healthy instances only)
//	GET /v1/discovery/vips                every VIP
//	GET /v1/discovery/vips/{name}         one VIP
//
// Names match case-insensitively, like DNS. Unknown names are 404 with a
// JSON ErrorBody.
func Handler(v View) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/discovery/services", func(w http.ResponseWriter, r *http.Request) {
		snap := snapOf(v)
		out := ServiceList{Version: snap.Version, Services: []Service{}}
		only := healthyOnly(r)
		for _, name := range sortedKeys(snap.Services) {
			out.Services = append(out.Services, serviceOf(snap, name, only))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/discovery/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		snap := snapOf(v)
		name, ok := lookup(snap.Services, r.PathValue("name"))
		if !ok {
			writeJSON(w, http.StatusNotFound, ErrorBody{Status: http.StatusNotFound,
				Message: fmt.Sprintf("no service %q: no resource of that name in the spec or the assignments (GET /v1/discovery/services lists them)", r.PathValue("name"))})
			return
		}
		writeJSON(w, http.StatusOK, serviceOf(snap, name, healthyOnly(r)))
	})
	mux.HandleFunc("GET /v1/discovery/vips", func(w http.ResponseWriter, r *http.Request) {
		snap := snapOf(v)
		out := VIPList{Version: snap.Version, VIPs: []VIPInfo{}}
		for _, name := range sortedKeys(snap.VIPs) {
			out.VIPs = append(out.VIPs, vipOf(snap, name))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/discovery/vips/{name}", func(w http.ResponseWriter, r *http.Request) {
		snap := snapOf(v)
		name, ok := lookup(snap.VIPs, r.PathValue("name"))
		if !ok {
			writeJSON(w, http.StatusNotFound, ErrorBody{Status: http.StatusNotFound,
				Message: fmt.Sprintf("no vip %q: no resource of class vip with that name and a valid params.address (GET /v1/discovery/vips lists them)", r.PathValue("name"))})
			return
		}
		writeJSON(w, http.StatusOK, vipOf(snap, name))
	})
	return mux
}

func snapOf(v View) *Snapshot {
	if s := v.Snapshot(); s != nil {
		return s
	}
	return &Snapshot{}
}

func healthyOnly(r *http.Request) bool {
	switch r.URL.Query().Get("healthy") {
	case "1", "true", "yes":
		return true
	}
	return false
}

// lookup finds name exactly, else case-insensitively (the first in byte
// order, as the DNS server does).
func lookup[V any](m map[string]V, name string) (string, bool) {
	if _, ok := m[name]; ok {
		return name, true
	}
	for _, k := range sortedKeys(m) {
		if strings.EqualFold(k, name) {
			return k, true
		}
	}
	return "", false
}

func serviceOf(snap *Snapshot, name string, healthyOnly bool) Service {
	out := Service{Name: name, Version: snap.Version, Instances: []Instance{}}
	for _, ep := range snap.Services[name] {
		if ep.Healthy {
			out.Healthy++
		} else if healthyOnly {
			continue
		}
		in := Instance{Node: ep.Node, Port: ep.Port, Healthy: ep.Healthy, Slot: ep.Slot, Role: ep.Role}
		if ep.Addr.IsValid() {
			in.Address = ep.Addr.String()
		}
		out.Instances = append(out.Instances, in)
	}
	return out
}

func vipOf(snap *Snapshot, name string) VIPInfo {
	v := snap.VIPs[name]
	out := VIPInfo{Name: name, Version: snap.Version, Addresses: []string{}, Holder: v.Holder}
	for _, a := range v.Addrs {
		out.Addresses = append(out.Addresses, a.String())
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
