package clustertest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The leader's /metrics shows it leads and holds a lease; without a token
// the endpoint refuses.
func TestMetricsEndpoint(t *testing.T) {
	c, _ := setup(t, Options{N: 3, TLS: true})
	l := c.WaitLeader()
	cl := c.Client(l)
	scheme := "https://"
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", scheme+l.APIAddr()+"/metrics", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := cl.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	var body string
	c.Wait("leader metrics", func() bool {
		code, b := get(c.OperatorToken())
		body = b
		return code == 200 && strings.Contains(b, "paceline_leader 1") && strings.Contains(b, "paceline_lease_valid 1")
	})
	for _, m := range []string{"paceline_lease_renewals_total{result=\"ok\"}", "paceline_plan_seconds_count", "go_goroutines"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}
