package discovery

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func getJSON(t *testing.T, srv *httptest.Server, path string, status int, out any) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content type %q", path, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func TestHTTP(t *testing.T) {
	h := &Holder{}
	snap := FromState(testState(), testReports(), Options{})
	h.Set(snap)
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()

	var svc Service
	getJSON(t, srv, "/v1/discovery/services/web", 200, &svc)
	if svc.Name != "web" || svc.Version != snap.Version || len(svc.Instances) != 4 || svc.Healthy != 3 {
		t.Fatalf("web %+v", svc)
	}
	if in := svc.Instances[0]; in.Node != "n1" || in.Address != "10.0.0.1" || in.Port != 8080 || !in.Healthy {
		t.Fatalf("web[0] %+v", in)
	}
	if in := svc.Instances[3]; in.Node != "n4" || in.Healthy {
		t.Fatalf("web[3] %+v", in)
	}
	getJSON(t, srv, "/v1/discovery/services/WEB?healthy=true", 200, &svc)
	if len(svc.Instances) != 3 || svc.Healthy != 3 {
		t.Fatalf("web healthy only %+v", svc)
	}
	getJSON(t, srv, "/v1/discovery/services/idle", 200, &svc)
	if svc.Name != "idle" || svc.Instances == nil || len(svc.Instances) != 0 {
		t.Fatalf("idle %+v", svc)
	}
	var e ErrorBody
	getJSON(t, srv, "/v1/discovery/services/nope", 404, &e)
	if e.Status != 404 || !strings.Contains(e.Message, `no service "nope"`) {
		t.Fatalf("404 %+v", e)
	}
	var vip VIPInfo
	getJSON(t, srv, "/v1/discovery/vips/api-vip", 200, &vip)
	if vip.Name != "api-vip" || len(vip.Addresses) != 1 || vip.Addresses[0] != "192.0.2.10" || vip.Holder != "n2" {
		t.Fatalf("vip %+v", vip)
	}
	getJSON(t, srv, "/v1/discovery/vips/web", 404, &e)
	if !strings.Contains(e.Message, `no vip "web"`) {
		t.Fatalf("vip 404 %+v", e)
	}
	var sl ServiceList
	getJSON(t, srv, "/v1/discovery/services", 200, &sl)
	if len(sl.Services) != 8 || sl.Services[0].Name != "api" {
		t.Fatalf("list %+v", sl)
	}
	var vl VIPList
	getJSON(t, srv, "/v1/discovery/vips", 200, &vl)
	if len(vl.VIPs) != 2 || vl.VIPs[0].Name != "api-vip" || vl.VIPs[1].Addresses[0] != "2001:db8::10" {
		t.Fatalf("vip list %+v", vl)
	}
	resp, err := srv.Client().Post(srv.URL+"/v1/discovery/services/web", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}

	// A change is visible on the next request; an empty view lists nothing.
	rep := testReports()
	rep["n1"][0].State = "failed"
	h.Set(FromState(testState(), rep, Options{}))
	getJSON(t, srv, "/v1/discovery/services/web", 200, &svc)
	if svc.Healthy != 2 || svc.Instances[0].Healthy {
		t.Fatalf("after change %+v", svc)
	}
	empty := httptest.NewServer(Handler(&Holder{}))
	defer empty.Close()
	getJSON(t, empty, "/v1/discovery/services", 200, &sl)
	if len(sl.Services) != 0 || sl.Services == nil {
		t.Fatalf("empty list %+v", sl)
	}
	getJSON(t, empty, "/v1/discovery/vips/x", 404, &e)
}
