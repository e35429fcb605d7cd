package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Retry limits shared by every provider. A request never outlives its context,
// which Vault bounds by its own request timeout.
const (
	defaultMaxAttempts  = 4
	defaultMaxRetryWait = 10 * time.Second
	firstBackoff        = 250 * time.Millisecond
	maxBackoff          = 5 * time.Second
	maxResponseBytes    = 1 << 20
	// DefaultRequestTimeout bounds one HTTP exchange.
	DefaultRequestTimeout = 30 * time.Second
	// MaxRetryAfter is the longest wait RetryAfter reports; an upstream
	// asking for more is asking for far longer than any lease waits anyway.
	MaxRetryAfter = 24 * time.Hour
)

// Client sends requests to one upstream with bounded, backed-off retries.
// Retry rules: a 429 is retried for any method after the Retry-After the
// upstream asked for (when that is short) or an exponential backoff; transport
// failures and 502/503/504 are retried only for idempotent requests, since a
// create that timed out may have happened; a refused connection never reached
// the upstream and is always retried.
//
// A redirect is never followed, whatever the HTTP client's own policy: the
// call fails with an error wrapping ErrRedirect. net/http would re-send the
// request's headers (x-api-key, api-key, and Authorization and Cookie on the
// same host name, even from https to http) and, on 307 and 308, its body
// (a sign-in's password) to wherever Location points; no upstream API the
// providers call redirects.
type Client struct {
	// Provider names the upstream in errors and logs.
	Provider string
	// BaseURL prefixes every request path.
	BaseURL string
	// HTTP is the transport; nil uses a client with DefaultRequestTimeout.
	HTTP *http.Client
	// Logger receives one trace line per call: method, path, status, duration
	// (durations as text, see ConnectionConfig.Logger).
	Logger hclog.Logger
	// MaxAttempts bounds tries per request (default 4).
	MaxAttempts int
	// MaxRetryWait is the longest Retry-After honoured (default 10s); a longer
	// one ends the retries and is reported to the caller.
	MaxRetryWait time.Duration
	// Gate, when set, is shared by every client of one upstream account: a
	// 429 with a Retry-After closes it for every call, and a call waiting at
	// it spends no attempt (see RateGate).
	Gate *RateGate
	// Sleep, for tests, replaces the package's Sleep for every wait of this
	// client (backoffs and the gate), so that a test can see the waits
	// asked for instead of spending them; nil uses Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// Observer, when set, sees every exchange and wait of the client, for
	// the engine's metrics (see ConnectionConfig.Observer).
	Observer Observer
}

// Observer is told what a Client's calls do, so the engine can count them
// without providers importing it. Its methods run on the caller's goroutine
// in the request's path, so they must be cheap and never block. op is
// OpKind of the request's Op: a fixed word, never an object name or id.
type Observer interface {
	// UpstreamCall reports one HTTP exchange: status 0 when no answer came.
	UpstreamCall(op string, status int, took time.Duration)
	// UpstreamRateLimited reports a wait the upstream asked for with a 429.
	UpstreamRateLimited(op string)
	// UpstreamRetry reports one more attempt after a failed one.
	UpstreamRetry(op string)
}

// opKinds are the words OpKind keeps; every Op the providers build starts
// with one of them.
var opKinds = map[string]bool{
	"create": true, "delete": true, "list": true, "read": true, "mint": true, "sign": true,
	"fetch": true, "rotate": true, "revoke": true, "update": true, "get": true, "find": true,
	"check": true, "verify": true, "set": true, "put": true, "add": true, "remove": true,
	"look": true, "exchange": true, "refresh": true, "issue": true, "request": true, "change": true,
	"log": true, "write": true, "grant": true, "attach": true, "detach": true, "generate": true,
	"regenerate": true,
}

// OpKind is the fixed verb that starts op ("create API key vault-x" is
// "create"), or "other": Ops name objects, and a metric label must not.
func OpKind(op string) string {
	verb, _, _ := strings.Cut(op, " ")
	verb = strings.ToLower(verb)
	if opKinds[verb] {
		return verb
	}
	return "other"
}

// maxGatedWaits bounds how often one request waits at a closed gate.
const maxGatedWaits = 30

// RateGate holds back every call through the clients that share it while
// an upstream's Retry-After runs. Without it, concurrent callers (Vault
// revoking hundreds of leases at once) each sleep out their own
// Retry-After, retry at the same instant into the same exhausted limit and
// use up their attempts doing so; with it they queue at the gate, and only
// the upstream's answers, not the number of callers, decide the pace.
type RateGate struct {
	mu   sync.Mutex
	open time.Time
}

// closeFor keeps the gate closed for at least d from now.
func (g *RateGate) closeFor(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := time.Now().Add(d); until.After(g.open) {
		g.open = until
	}
}

// pass waits (through sleep) until the gate is open, or ctx ends. A nil
// gate is always open.
func (g *RateGate) pass(ctx context.Context, sleep func(context.Context, time.Duration) error) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	d := time.Until(g.open)
	g.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return sleep(ctx, d)
}

// Request is one upstream call.
type Request struct {
	// Op says what the call does, for errors: "create access key".
	Op     string
	Method string
	// Path is appended to the client's BaseURL; it may carry no query.
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// ContentType of Body; empty sends none.
	ContentType string
	// Idempotent requests may be retried after transport failures and 5xx.
	Idempotent bool
}

// Response is an upstream answer of any status.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSONRequest builds a request whose body is v encoded as JSON.
func JSONRequest(op, method, path string, v any) (Request, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return Request{}, fmt.Errorf("encode %s request: %w", op, err)
	}
	return Request{Op: op, Method: method, Path: path, Body: body, ContentType: "application/json"}, nil
}

// Do sends r, retrying per the client's rules, and returns the last response
// whatever its status. It returns an *UpstreamError only when no response
// arrived at all.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = defaultMaxAttempts
	}
	backoff := firstBackoff
	for attempt, gated := 1, 0; ; attempt++ {
		if err := c.Gate.pass(ctx, c.sleep); err != nil {
			return nil, &UpstreamError{Provider: c.Provider, Op: r.Op, Err: err}
		}
		resp, err := c.send(ctx, r)
		if after := c.gateWait(resp); after > 0 && gated < maxGatedWaits {
			gated++
			attempt-- // the upstream refused it unseen: not a failed attempt
			c.observeRateLimited(r.Op)
			c.Gate.closeFor(after)
			c.Log().Debug("upstream rate limit: holding calls back", "provider", c.Provider, "op", r.Op, "wait", after.String())
			continue
		}
		wait, retry := c.retryDecision(ctx, r, resp, err, backoff)
		if !retry || attempt >= attempts {
			if err != nil {
				return nil, &UpstreamError{Provider: c.Provider, Op: r.Op, Status: redirectStatus(err), Err: err}
			}
			return resp, nil
		}
		c.Log().Debug("retrying upstream call", "provider", c.Provider, "op", r.Op, "attempt", attempt, "wait", wait.String())
		if resp != nil && resp.Status == http.StatusTooManyRequests {
			c.observeRateLimited(r.Op)
		}
		if c.Observer != nil {
			c.Observer.UpstreamRetry(OpKind(r.Op))
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, &UpstreamError{Provider: c.Provider, Op: r.Op, Err: err}
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// gateWait is how long to close the gate after resp: the Retry-After of a
// 429 when the client has a gate and the wait is one it honours, else 0.
func (c *Client) gateWait(resp *Response) time.Duration {
	if c.Gate == nil || resp == nil || resp.Status != http.StatusTooManyRequests {
		return 0
	}
	if after := RetryAfter(resp.Header, time.Now()); after <= c.maxRetryWait() {
		return after
	}
	return 0
}

// retryDecision says whether to try again and after how long.
func (c *Client) retryDecision(ctx context.Context, r Request, resp *Response, err error, backoff time.Duration) (time.Duration, bool) {
	jittered := backoff/2 + rand.N(backoff/2+1)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrRedirect) {
			// The caller gave up (a timeout of one attempt is a transport
			// failure like any other), or the upstream redirects, which
			// it will do again.
			return 0, false
		}
		return jittered, r.Idempotent || errors.Is(err, syscall.ECONNREFUSED)
	}
	switch resp.Status {
	case http.StatusTooManyRequests:
		after := RetryAfter(resp.Header, time.Now())
		if after == 0 {
			return jittered, true
		}
		return after, after <= c.maxRetryWait()
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return jittered, r.Idempotent
	}
	return 0, false
}

func (c *Client) send(ctx context.Context, r Request) (*Response, error) {
	u := c.BaseURL + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, bytes.NewReader(r.Body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", stripURL(err))
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	req.Header.Set("User-Agent", "vault-plugin-secrets-apikeys")
	start := time.Now()
	httpResp, err := c.httpClient().Do(req)
	if err != nil {
		c.recordCall(ctx, r, 0, time.Since(start))
		return nil, stripURL(err)
	}
	defer httpResp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(httpResp.Body, maxResponseBytes))
	c.recordCall(ctx, r, httpResp.StatusCode, time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("read response (HTTP %d): %w", httpResp.StatusCode, stripURL(err))
	}
	return &Response{Status: httpResp.StatusCode, Header: httpResp.Header, Body: body}, nil
}

// recordCall counts one exchange (status 0: no answer) and logs it: in the
// context's CallLog if it has one, else as a trace line.
func (c *Client) recordCall(ctx context.Context, r Request, status int, took time.Duration) {
	c.observeCall(r.Op, status, took)
	call := loggedCall{method: r.Method, path: r.Path, status: status, duration: took}
	if log := callLogFrom(ctx); log != nil {
		log.add(call)
		return
	}
	traceCall(c.Log(), c.Provider, call)
}

// stripURL drops the URL from net/http errors: query strings may carry
// secrets (StorX puts the API key and passphrase there).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// httpClient is the client's HTTP client with redirects refused. The copy
// is a few words; it leaves the caller's client, shared by every provider
// client of a connection, untouched.
func (c *Client) httpClient() *http.Client {
	hc := defaultHTTPClient
	if c.HTTP != nil {
		hc = c.HTTP
	}
	noRedirects := *hc
	noRedirects.CheckRedirect = refuseRedirect
	return &noRedirects
}

// refuseRedirect is a CheckRedirect that ends the call at the first
// redirect, before anything is sent to its target.
func refuseRedirect(next *http.Request, _ []*http.Request) error {
	status := 0
	if next.Response != nil {
		status = next.Response.StatusCode
	}
	return &redirectError{status: status, location: redactLocation(next.URL)}
}

// redirectError is a refused redirect. Its text names where the upstream
// pointed, so the operator can tell a moved API from a hijacked one; the
// UpstreamError around it names the status.
type redirectError struct {
	status   int
	location string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("a redirect to %s: %v, since they would carry the credentials there; if the API has moved, set the connection's address to the new one",
		e.location, ErrRedirect)
}

// redirectStatus is the status of a refused redirect, 0 for any other
// error: a redirect is an answer, so the call is over upstream.
func redirectStatus(err error) int {
	var re *redirectError
	if errors.As(err, &re) {
		return re.status
	}
	return 0
}

// Unwrap makes the error match ErrRedirect.
func (e *redirectError) Unwrap() error { return ErrRedirect }

// redactLocation shows a redirect target without user info, query or
// fragment, where an upstream could echo a secret it was sent.
func redactLocation(u *url.URL) string {
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	out := shown.String()
	if u.RawQuery != "" || u.Fragment != "" {
		out += "?…"
	}
	return CleanMessage(out)
}

var defaultHTTPClient = &http.Client{Timeout: DefaultRequestTimeout}

func (c *Client) observeCall(op string, status int, took time.Duration) {
	if c.Observer != nil {
		c.Observer.UpstreamCall(OpKind(op), status, took)
	}
}

func (c *Client) observeRateLimited(op string) {
	if c.Observer != nil {
		c.Observer.UpstreamRateLimited(OpKind(op))
	}
}

// Log returns the client's logger, a null one when none was set.
func (c *Client) Log() hclog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return hclog.NewNullLogger()
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	return Sleep(ctx, d)
}

func (c *Client) maxRetryWait() time.Duration {
	if c.MaxRetryWait > 0 {
		return c.MaxRetryWait
	}
	return defaultMaxRetryWait
}

// RetryAfter parses a Retry-After header in seconds or HTTP-date form; 0 when
// absent or unparsable, at most MaxRetryAfter.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		// Compare in seconds: a huge value would overflow a Duration and
		// read as negative, which is an immediate retry.
		if secs >= int(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

// Sleep waits d, or less if ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// DecodeJSON decodes a success body whatever its Content-Type claims (several
// upstreams send JSON as text/plain).
func DecodeJSON(provider, op string, resp *Response, v any) error {
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return &UpstreamError{Provider: provider, Op: op, Status: resp.Status, Message: "the response body is not the JSON expected", Err: errMalformed}
	}
	return nil
}

var errMalformed = errors.New("malformed response")

// CookieValue is the value of the named cookie in a response's Set-Cookie
// headers, "" when it is missing or empty. net/http's parser has already
// dropped values that could not be sent back in a Cookie header.
func CookieValue(h http.Header, name string) string {
	for _, ck := range (&http.Response{Header: h}).Cookies() {
		if ck.Name == name && ck.Value != "" {
			return ck.Value
		}
	}
	return ""
}
