package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one or more agents; it tries them in order until one answers.
type Client struct {
	// Addrs are agent API addresses (host:port or URLs).
	Addrs []string
	// Token is the bearer token (operator or read-only).
	Token string
	// JoinToken is sent on internal calls.
	JoinToken string
	TLS       *tls.Config
	HTTP      *http.Client
	// RetryBusy makes Do try other agents, and retry until the context's
	// deadline, when an agent answers 421 or 503 (no leader right now).
	RetryBusy bool
}

// NewClient returns a client with sane timeouts.
func NewClient(addrs []string, token string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext}
	return &Client{Addrs: addrs, Token: token, TLS: tlsConf, HTTP: &http.Client{Transport: tr}, RetryBusy: true}
}

func (c *Client) base(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimRight(addr, "/")
	}
	if c.TLS != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// ErrUnreachable means no agent answered.
var ErrUnreachable = errors.New("no agent answered")

// Do sends one request to the first agent that answers and decodes the JSON
// answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) error {
	var payload []byte
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		payload, ctype = b, "application/yaml"
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	// An agent that cannot serve this right now (421: not the leader and
	// cannot forward, 503: no leader known, e.g. during an election) is
	// not the last word: try the others, then again until ctx ends.
	for pass := 0; ; pass++ {
		var errs []error
		var busy error
		for _, a := range c.Addrs {
			err := c.doOne(ctx, a, method, path, payload, ctype, out)
			if err == nil {
				return nil
			}
			var ae *Error
			if errors.As(err, &ae) {
				if !c.RetryBusy || (ae.Status != http.StatusMisdirectedRequest && ae.Status != http.StatusServiceUnavailable) {
					return err
				}
				busy = err
				continue
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		if busy == nil {
			return fmt.Errorf("%w (tried %s): %w", ErrUnreachable, strings.Join(c.Addrs, ", "), errors.Join(errs...))
		}
		if _, ok := ctx.Deadline(); !ok || pass >= 40 {
			return busy
		}
		select {
		case <-ctx.Done():
			return busy
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Client) doOne(ctx context.Context, addr, method, path string, payload []byte, ctype string, out any) error {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base(addr)+path, rd)
	if err != nil {
		return err
	}
	if payload != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.JoinToken != "" {
		req.Header.Set("X-Paceline-Join", c.JoinToken)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ae := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Message = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		ae.Status = resp.StatusCode
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Status returns the cluster status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.Do(ctx, "GET", "/v1/status", nil, &s)
}

// Apply sends a YAML spec.
func (c *Client) Apply(ctx context.Context, yaml []byte, dryRun bool, comment string) (*ApplyResult, error) {
	q := url.Values{}
	if dryRun {
		q.Set("dryRun", "1")
	}
	if comment != "" {
		q.Set("comment", comment)
	}
	var r ApplyResult
	return &r, c.Do(ctx, "POST", "/v1/spec?"+q.Encode(), yaml, &r)
}

// Spec returns the current spec as YAML.
func (c *Client) Spec(ctx context.Context) (*SpecDocument, error) {
	var d SpecDocument
	return &d, c.Do(ctx, "GET", "/v1/spec", nil, &d)
}

// SpecVersionYAML returns an older spec version as YAML.
func (c *Client) SpecVersionYAML(ctx context.Context, version int) (*SpecDocument, error) {
	var d SpecDocument
	return &d, c.Do(ctx, "GET", "/v1/spec?version="+strconv.Itoa(version), nil, &d)
}

// Diff compares a YAML spec with the current one.
func (c *Client) Diff(ctx context.Context, yaml []byte) (*Diff, error) {
	var d Diff
	return &d, c.Do(ctx, "POST", "/v1/spec/diff", yaml, &d)
}

// History lists spec versions.
func (c *Client) History(ctx context.Context) ([]SpecVersion, error) {
	var h []SpecVersion
	return h, c.Do(ctx, "GET", "/v1/spec/history", nil, &h)
}

// Rollback re-applies an older version as a new version.
func (c *Client) Rollback(ctx context.Context, version int) (*ApplyResult, error) {
	var r ApplyResult
	return &r, c.Do(ctx, "POST", "/v1/spec/rollback", map[string]int{"version": version}, &r)
}

// Nodes lists nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var n []Node
	return n, c.Do(ctx, "GET", "/v1/nodes", nil, &n)
}

// NodeAction runs standby|unstandby|maintenance|unmaintenance on a node.
func (c *Client) NodeAction(ctx context.Context, node, action string) error {
	return c.Do(ctx, "POST", "/v1/nodes/"+url.PathEscape(node)+"/"+action, nil, nil)
}

// RemoveNode forgets a dead node (and removes it from the raft configuration).
func (c *Client) RemoveNode(ctx context.Context, node string) error {
	return c.Do(ctx, "DELETE", "/v1/nodes/"+url.PathEscape(node), nil, nil)
}

// Events returns events after seq; with wait > 0 it long-polls until at
// least one arrives or wait passes.
func (c *Client) Events(ctx context.Context, after uint64, wait time.Duration) ([]Event, error) {
	var ev []Event
	p := fmt.Sprintf("/v1/events?after=%d", after)
	if wait > 0 {
		p += "&wait=" + wait.String()
	}
	return ev, c.Do(ctx, "GET", p, nil, &ev)
}

// Cleanup clears fail counts of a resource (on one node or all when node is "").
func (c *Client) Cleanup(ctx context.Context, resource, node string) error {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	return c.Do(ctx, "POST", "/v1/resources/"+url.PathEscape(resource)+"/cleanup?"+q.Encode(), nil, nil)
}
