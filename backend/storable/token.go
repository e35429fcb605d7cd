package storable

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// timeNow is the clock; tests replace it.
var timeNow = time.Now

// tokenWaiter, for tests, is told of every caller that starts waiting for a
// shared token request, so that a test can hold the request until all of
// its callers share it; nil in production.
var tokenWaiter func()

const (
	tokenPath = "/auth/token"
	// safetyMargin is cut from the end of every token: leases end this long
	// before their token does, so clock skew and a slow client never meet a
	// dead token.
	safetyMargin = 60 * time.Second
	// defaultLifetime is Storable's documented 90 minutes, assumed when the
	// x-token-lifetime-seconds header is missing.
	defaultLifetime = 5400 * time.Second
	// maxLifetime bounds what x-token-lifetime-seconds can claim: more is
	// no longer a token lifetime, and unbounded it overflows a Duration.
	maxLifetime = 30 * 24 * time.Hour
	// fetchTimeout bounds one shared token request, retries included. It runs
	// apart from the request that started it, which other requests may share.
	fetchTimeout = 2 * time.Minute
	// missingRouteMessage is API Gateway's answer for a path it has no route for.
	missingRouteMessage = "Missing Authentication Token"
)

// token is one Storable access token and what its response headers said.
type token struct {
	value     string
	tokenType string
	createdAt time.Time
	lifetime  time.Duration
	// assumedLifetime is set when Storable did not say how long it lives.
	assumedLifetime bool
}

// usableUntil is when leases of the token end: its expiry less the margin.
func (t *token) usableUntil() time.Time {
	return t.createdAt.Add(t.lifetime - safetyMargin)
}

// covers reports whether the token still lives long enough for a lease of
// ttl. A TTL near or beyond a whole token lifetime is counted as nine tenths
// of a fresh token's usable life: a fresh token would give such a lease
// little more, and fetching one for every read of a long-TTL role would spend
// the token endpoint's rate limit, which Storable asks clients to spare.
func (t *token) covers(now time.Time, ttl time.Duration) bool {
	need := min(ttl, (t.lifetime-safetyMargin)*9/10)
	return now.Add(need).Before(t.usableUntil())
}

// fingerprint names the token in lease data without revealing it.
func (t *token) fingerprint() string {
	sum := sha256.Sum256([]byte(t.value))
	return hex.EncodeToString(sum[:8])
}

// newToken reads the token's life from Storable's response headers. The
// creation time is never taken as later than the answer's arrival, so a
// Storable clock running ahead of Vault's cannot stretch a lease.
func newToken(value, tokenType string, h http.Header, receivedAt time.Time) *token {
	t := &token{value: value, tokenType: tokenType, createdAt: receivedAt.Truncate(time.Second), lifetime: defaultLifetime, assumedLifetime: true}
	if created, err := http.ParseTime(h.Get("X-Token-Created-At")); err == nil && created.Before(t.createdAt) {
		t.createdAt = created
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Token-Lifetime-Seconds"))); err == nil && secs > 0 {
		t.lifetime, t.assumedLifetime = maxLifetime, false
		if secs < int(maxLifetime/time.Second) {
			t.lifetime = time.Duration(secs) * time.Second
		}
	}
	if t.tokenType == "" {
		t.tokenType = "bearer"
	}
	return t
}

// connection is one Storable client. Its token is cached and shared by every
// lease until it no longer lives long enough.
type connection struct {
	name         string
	client       provider.Client
	clientID     string
	clientSecret string
	apiKey       string

	mu      sync.Mutex
	cached  *token
	fetches singleflight.Group
}

func newConnection(cfg provider.ConnectionConfig) *connection {
	return &connection{
		name:         cfg.Name,
		client:       provider.Client{Provider: Name, BaseURL: cfg.BaseURL, HTTP: cfg.HTTPClient, Logger: cfg.Logger, Gate: &provider.RateGate{}, Observer: cfg.Observer},
		clientID:     cfg.Values.String(fieldClientID),
		clientSecret: cfg.Values.String(fieldClientSecret),
		apiKey:       cfg.Values.String(fieldAPIKey),
	}
}

// Close implements provider.Connection: it forgets the cached token.
func (c *connection) Close() {
	c.mu.Lock()
	c.cached = nil
	c.mu.Unlock()
}

func (c *connection) currentToken() *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cached
}

// tokenFor returns the cached token if it covers a lease of ttl, else a fresh one.
func (c *connection) tokenFor(ctx context.Context, ttl time.Duration) (*token, error) {
	seen := c.currentToken()
	if seen != nil && seen.covers(timeNow(), ttl) {
		return seen, nil
	}
	return c.refresh(ctx, seen)
}

// refresh replaces seen, the token the caller found wanting, with a fresh
// one. Concurrent callers share one token request; one that finds a token
// cached since it looked takes that instead of asking again. The request
// runs detached from ctx, so one caller giving up does not fail the others.
func (c *connection) refresh(ctx context.Context, seen *token) (*token, error) {
	results := c.fetches.DoChan("token", func() (any, error) {
		if current := c.currentToken(); current != nil && current != seen {
			return current, nil
		}
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		fresh, err := c.fetchToken(fetchCtx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.cached = fresh
		c.mu.Unlock()
		return fresh, nil
	})
	if tokenWaiter != nil {
		tokenWaiter()
	}
	select {
	case res := <-results:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*token), nil
	case <-ctx.Done():
		return nil, &provider.UpstreamError{Provider: Name, Op: c.fetchOp(), Err: ctx.Err()}
	}
}

func (c *connection) fetchOp() string { return "request an access token for client_id " + c.clientID }

// fetchToken asks Storable for a token. A token request creates nothing that
// could be orphaned (a token lost in a failed exchange reached no one and
// expires by itself), so it is retried like an idempotent call.
func (c *connection) fetchToken(ctx context.Context) (*token, error) {
	basic := base64.StdEncoding.EncodeToString([]byte(c.clientID + ":" + c.clientSecret))
	req := provider.Request{
		Op: c.fetchOp(), Method: http.MethodPost, Path: tokenPath, Idempotent: true,
		Header: http.Header{"Authorization": {"Basic " + basic}, "X-Api-Key": {c.apiKey}},
	}
	resp, err := c.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, statusError(req.Op, resp)
	}
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := provider.DecodeJSON(Name, req.Op, resp, &body); err != nil {
		return nil, err
	}
	if body.AccessToken == "" {
		return nil, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the response has no access_token"}
	}
	fresh := newToken(body.AccessToken, body.TokenType, resp.Header, timeNow())
	if !fresh.usableUntil().After(timeNow()) {
		return nil, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status,
			Message: fmt.Sprintf("the token Storable returned ends at %s, too soon to lease", provider.Timestamp(fresh.createdAt.Add(fresh.lifetime)))}
	}
	return fresh, nil
}

// statusError explains a non-200 answer of the token endpoint. API Gateway
// answers 403 both for a bad API key and, with its own message, for a path
// it has no route for; only the first is the root credential's fault.
func statusError(op string, resp *provider.Response) *provider.UpstreamError {
	ue := upstreamError(op, resp)
	switch {
	case resp.Status == http.StatusForbidden && ue.Message == missingRouteMessage:
		ue.Err = errors.New("no such route: check base_url (default https://api.storable.io; the plugin appends /auth/token)")
	case resp.Status == http.StatusForbidden:
		ue.Err = fmt.Errorf("%w: check api_key", provider.ErrRootRejected)
	case resp.Status == http.StatusUnauthorized:
		ue.Err = fmt.Errorf("%w: check client_id and client_secret", provider.ErrRootRejected)
	}
	return ue
}

// upstreamError reads API Gateway's error bodies, {"message":…} (or
// "Message" from AWS's own layers), its x-amzn-ErrorType header, and plain
// text from anything in front of it.
func upstreamError(op string, resp *provider.Response) *provider.UpstreamError {
	errorType, _, _ := strings.Cut(resp.Header.Get("X-Amzn-ErrorType"), ":")
	ue := &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Code: provider.CleanMessage(errorType), Message: errorMessage(resp)}
	if resp.Status == http.StatusTooManyRequests {
		ue.RetryAfter = provider.RetryAfter(resp.Header, timeNow())
	}
	return ue
}

func errorMessage(resp *provider.Response) string {
	// encoding/json matches "message" and "Message" alike.
	var body struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(resp.Body, &body); err == nil {
		return provider.CleanMessage(body.Message)
	}
	if ct := resp.Header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "text/plain") {
		return provider.CleanMessage(string(resp.Body))
	}
	return ""
}
