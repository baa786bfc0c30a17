package fencing

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// RedfishDevice is the built-in Redfish client: power off/on/reset with
// POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset (ResetType
// ForceOff, On, ForceRestart) and status from the system's PowerState.
// It reports the fence-agent exit codes (0 ok / on, 2 off, 1 failure).
type RedfishDevice struct {
	name string
	cfg  RedfishConfig
	base *url.URL
	tr   *http.Transport
}

// NewRedfishDevice returns the device of cfg (cfg.Redfish set). The CA
// file is read here; the password file at every call.
func NewRedfishDevice(cfg DeviceConfig) (*RedfishDevice, error) {
	if errs := cfg.validate("device"); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Redfish == nil {
		return nil, fieldErr("device.redfish", "is required")
	}
	r := *cfg.Redfish
	base, _ := url.Parse(strings.TrimRight(r.Address, "/"))
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: r.Insecure} //nolint:gosec // operator's explicit choice
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fieldErr("redfish.caFile", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fieldErr("redfish.caFile", "no PEM certificate in %s", r.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	return &RedfishDevice{name: cfg.Name, cfg: r, base: base, tr: tr}, nil
}

// Name returns the device name.
func (d *RedfishDevice) Name() string { return d.name }

// String shows the device without secrets.
func (d *RedfishDevice) String() string {
	s := fmt.Sprintf("%s(redfish %s", d.name, d.base)
	if d.cfg.Username != "" {
		s += " username=" + d.cfg.Username
	}
	if d.cfg.PasswordFile != "" {
		s += " password=<file " + d.cfg.PasswordFile + ">"
	}
	return s + ")"
}

// MarshalJSON shows the configuration (file paths, no secrets).
func (d *RedfishDevice) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string        `json:"name"`
		Redfish RedfishConfig `json:"redfish"`
	}{d.name, d.cfg})
}

// Close releases idle connections.
func (d *RedfishDevice) Close() { d.tr.CloseIdleConnections() }

func (d *RedfishDevice) systemURL(t Target) (string, error) {
	id := d.cfg.SystemID
	if t.Port != "" && t.Port != t.Node {
		id = t.Port // hostMap: the port is the system ID
	}
	if id == "" {
		id = "1"
	}
	if strings.ContainsAny(id, "/?#") {
		return "", fmt.Errorf("invalid system id %q", id)
	}
	return d.base.String() + "/redfish/v1/Systems/" + url.PathEscape(id), nil
}

// Exec runs action once within timeout (<= 0: DefaultTimeout).
func (d *RedfishDevice) Exec(ctx context.Context, action Action, t Target, timeout time.Duration) Outcome {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	o := d.exec(ctx, action, t)
	o.Duration = time.Since(begin)
	if o.Err != "" {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			o.TimedOut = true
			o.Err = fmt.Sprintf("redfish %s: timed out after %s (%s)", action, timeout, o.Err)
		} else {
			o.Err = fmt.Sprintf("redfish %s: %s", action, o.Err)
		}
		o.ExitCode = ExitFailed
	}
	return o
}

func (d *RedfishDevice) exec(ctx context.Context, action Action, t Target) Outcome {
	var pw string
	if d.cfg.PasswordFile != "" {
		var err error
		if pw, err = readSecret("redfish.passwordFile", d.cfg.PasswordFile); err != nil {
			return Outcome{Err: err.Error()}
		}
	}
	fail := func(err error) Outcome { return Outcome{Err: redact(err.Error(), []string{pw})} }
	sys, err := d.systemURL(t)
	if err != nil {
		return fail(err)
	}
	switch action {
	case Status, Monitor:
		var st struct{ PowerState string }
		if err := d.do(ctx, http.MethodGet, sys, nil, pw, &st); err != nil {
			return fail(err)
		}
		if action == Monitor {
			return Outcome{}
		}
		switch st.PowerState {
		case "On", "PoweringOff", "PoweringOn", "Paused":
			// Only "Off" confirms an off: a system powering on or off
			// may still run.
			return Outcome{Power: PowerOn, Output: "Status: ON (" + st.PowerState + ")\n"}
		case "Off":
			return Outcome{ExitCode: ExitOff, Power: PowerOff, Output: "Status: OFF\n"}
		default:
			return fail(fmt.Errorf("unknown PowerState %q", st.PowerState))
		}
	case Off, On, Reboot:
		rt := map[Action]string{Off: "ForceOff", On: "On", Reboot: "ForceRestart"}[action]
		body, _ := json.Marshal(map[string]string{"ResetType": rt})
		if err := d.do(ctx, http.MethodPost, sys+"/Actions/ComputerSystem.Reset", body, pw, nil); err != nil {
			return fail(err)
		}
		return Outcome{}
	case List:
		if err := d.do(ctx, http.MethodGet, d.base.String()+"/redfish/v1/Systems", nil, pw, nil); err != nil {
			return fail(err)
		}
		return Outcome{}
	case Metadata:
		return Outcome{Output: "redfish (built in)"}
	}
	return fail(fmt.Errorf("unsupported action %q", action))
}

func (d *RedfishDevice) do(ctx context.Context, method, u string, body []byte, pw string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if d.cfg.Username != "" {
		req.SetBasicAuth(d.cfg.Username, pw)
	}
	resp, err := (&http.Client{Transport: d.tr}).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %v", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := redfishMessage(b)
		if resp.StatusCode == http.StatusUnauthorized {
			msg = "authentication failed (check username and passwordFile)"
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, req.URL.Path, resp.StatusCode, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: invalid JSON: %v", method, req.URL.Path, err)
		}
	}
	return nil
}

// redfishMessage extracts error.message from a Redfish error body.
func redfishMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" {
		s = "no body"
	}
	return s
}
