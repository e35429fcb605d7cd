package katapult

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// maxRateLimitRetries bounds how often one call waits out a 429.
const maxRateLimitRetries = 2

// connection is one Katapult organization reached with one API token. It is
// shared by every request on the Vault connection.
type connection struct {
	name   string
	client provider.Client
	org    orgLookup
	region string
	budget *rateBudget
	// acls group-commits the changes to bucket ACLs.
	acls *aclBatcher

	mu sync.Mutex
	// token is the API token's secret; rotate-root replaces it.
	token string
	// tokenID is api_token_id, or what GET /users/current said it is.
	tokenID string
}

func newConnection(cfg provider.ConnectionConfig, org orgLookup) *connection {
	region := cfg.Values.String(fieldRegion)
	if region == "" {
		region = defaultRegion
	}
	budget := &rateBudget{}
	c := &connection{
		name: cfg.Name,
		client: provider.Client{
			Provider: Name,
			BaseURL:  cfg.BaseURL,
			HTTP:     budget.wrap(cfg.HTTPClient),
			Logger:   cfg.Logger,
			// Every 429 comes back to send, which waits for the token's
			// next minute instead of the client's short backoff.
			MaxRetryWait: time.Nanosecond,
			Observer:     cfg.Observer,
		},
		org:     org,
		region:  region,
		budget:  budget,
		token:   cfg.Values.String(fieldAPIToken),
		tokenID: cfg.Values.String(fieldAPITokenID),
	}
	c.acls = newACLBatcher(c.readACL, c.writeACL)
	return c
}

// Close implements provider.Connection. Nothing is cached that needs ending.
func (c *connection) Close() {}

func (c *connection) currentToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// send makes one API call with the token, within the token's rate budget. A
// 429 means the call was refused, so whatever the method it is sent again
// once the budget allows, when that is within the context's deadline.
func (c *connection) send(ctx context.Context, req provider.Request) (*provider.Response, error) {
	for attempt := 0; ; attempt++ {
		if err := c.budget.wait(ctx, req.Op); err != nil {
			return nil, err
		}
		req.Header = http.Header{"Authorization": {"Bearer " + c.currentToken()}, "Accept": {"application/json"}}
		resp, err := c.client.Do(ctx, req)
		if err != nil || resp.Status != http.StatusTooManyRequests || attempt == maxRateLimitRetries || !c.budget.resumesBefore(ctx) {
			return resp, err
		}
		c.client.Log().Debug("katapult rate limit reached; waiting for the next window", "op", req.Op)
	}
}

// expect sends req and decodes a success answer into out. Any 2xx is a
// success: Katapult answers 201 to creates and 200 otherwise.
func (c *connection) expect(ctx context.Context, req provider.Request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	if !succeeded(resp) {
		return upstreamError(req.Op, resp)
	}
	return provider.DecodeJSON(Name, req.Op, resp, out)
}

func succeeded(resp *provider.Response) bool { return resp.Status >= 200 && resp.Status < 300 }

func jsonRequest(op, method, path string, body any, idempotent bool) (provider.Request, error) {
	req, err := provider.JSONRequest(op, method, path, body)
	req.Idempotent = idempotent
	return req, err
}

func getRequest(op, path string, query url.Values) provider.Request {
	return provider.Request{Op: op, Method: http.MethodGet, Path: path, Query: query, Idempotent: true}
}

func (c *connection) orgQuery() url.Values {
	return url.Values{"organization[" + c.org.key + "]": {c.org.value}}
}

func (c *connection) orgBody() map[string]string {
	return map[string]string{c.org.key: c.org.value}
}

// Error codes that mean the API token itself is refused.
var rootRejectedCodes = map[string]bool{
	"missing_api_token": true,
	"invalid_api_token": true,
	"scope_not_granted": true,
}

// apiError is Katapult's error object.
type apiError struct {
	Code        string          `json:"code"`
	Description string          `json:"description"`
	Detail      json.RawMessage `json:"detail"`
}

// parseError reads Katapult's error body. Production wraps it as
// {"error":{code,description,detail}}; the OpenAPI document (and clients
// generated from it) has the fields at the top level. Both are accepted,
// the wrapped form first.
func parseError(body []byte) apiError {
	var wrapped struct {
		Error json.RawMessage `json:"error"`
	}
	var e apiError
	if json.Unmarshal(body, &wrapped) == nil && json.Unmarshal(wrapped.Error, &e) == nil && e.Code != "" {
		return e
	}
	e = apiError{}
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return e
	}
	return apiError{}
}

// message is the description plus what the detail adds for the operator:
// validation errors and the task queue's details.
func (e apiError) message() string {
	var detail struct {
		Errors  []string `json:"errors"`
		Details string   `json:"details"`
	}
	_ = json.Unmarshal(e.Detail, &detail)
	parts := []string{strings.TrimSpace(e.Description)}
	parts = append(parts, detail.Errors...)
	if detail.Details != "" {
		parts = append(parts, detail.Details)
	}
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return provider.CleanMessage(strings.Join(kept, ": "))
}

// upstreamError turns a failed answer into an error, decided by its status;
// the body only adds the code and the upstream's words.
func upstreamError(op string, resp *provider.Response) *provider.UpstreamError {
	body := parseError(resp.Body)
	ue := &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Code: provider.CleanMessage(body.Code), Message: body.message()}
	if rootRejectedCodes[ue.Code] {
		ue.Err = provider.ErrRootRejected
	}
	if resp.Status == http.StatusTooManyRequests {
		ue.RetryAfter = provider.RetryAfter(resp.Header, timeNow())
	}
	return ue
}

// codeOf returns the upstream error code of err, "" if it has none.
func codeOf(err error) string {
	if ue, ok := asUpstream(err); ok {
		return ue.Code
	}
	return ""
}

func asUpstream(err error) (*provider.UpstreamError, bool) {
	var ue *provider.UpstreamError
	ok := errors.As(err, &ue)
	return ue, ok
}
