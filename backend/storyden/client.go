package storyden

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// sessionCookie is Storyden's session cookie. It is Secure, so a cookie jar
// would not replay it over http; the client sends the Cookie header itself.
const sessionCookie = "storyden-session"

// connection is one Storyden account, with its session cached and shared by
// every request on the connection.
type connection struct {
	client   provider.Client
	username string

	mu       sync.Mutex
	password string
	session  string
	signins  provider.SharedCalls
}

func newConnection(cfg provider.ConnectionConfig) *connection {
	return &connection{
		client: provider.Client{
			Provider: Name,
			BaseURL:  cfg.BaseURL,
			HTTP:     cfg.HTTPClient,
			Logger:   cfg.Logger,
			Gate:     &provider.RateGate{},
			Observer: cfg.Observer,
		},
		username: cfg.Values.String(fieldUsername),
		password: cfg.Values.String(fieldPassword),
		signins:  provider.SharedCalls{Provider: Name},
	}
}

// Close implements provider.Connection. The session is only forgotten, not
// logged out: other Vault nodes may share nothing with it, and logout would
// cost a call on every config change.
func (c *connection) Close() {
	c.mu.Lock()
	c.session = ""
	c.mu.Unlock()
}

// currentSession returns the cached session, signing in when there is none.
// Concurrent callers share one sign-in, which no single caller's
// cancellation stops.
func (c *connection) currentSession(ctx context.Context) (string, error) {
	c.mu.Lock()
	session := c.session
	c.mu.Unlock()
	if session != "" {
		return session, nil
	}
	v, err := c.signins.Do(ctx, "signin", "sign in as "+c.username, func(ctx context.Context) (any, error) {
		c.mu.Lock()
		password, cached := c.password, c.session
		c.mu.Unlock()
		if cached != "" {
			return cached, nil
		}
		fresh, err := c.signIn(ctx, password)
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		c.session = fresh
		c.mu.Unlock()
		return fresh, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// dropSession forgets session if it is still the cached one, so that a 401 seen
// by many requests at once leads to a single new sign-in.
func (c *connection) dropSession(session string) {
	c.mu.Lock()
	if c.session == session {
		c.session = ""
	}
	c.mu.Unlock()
}

func (c *connection) signIn(ctx context.Context, password string) (string, error) {
	req, err := provider.JSONRequest("sign in as "+c.username, http.MethodPost, "/api/auth/password/signin",
		map[string]string{"identifier": c.username, "token": password})
	if err != nil {
		return "", err
	}
	resp, err := c.client.Do(ctx, req)
	if err != nil {
		return "", err
	}
	switch {
	case resp.Status == http.StatusOK:
	case resp.Status == http.StatusBadRequest, resp.Status == http.StatusUnauthorized,
		resp.Status == http.StatusForbidden, resp.Status == http.StatusNotFound:
		ue := upstreamError(req.Op, resp)
		ue.Err = provider.ErrRootRejected
		return "", ue
	default:
		return "", upstreamError(req.Op, resp)
	}
	session := provider.CookieValue(resp.Header, sessionCookie)
	if session == "" {
		return "", &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the response set no " + sessionCookie + " cookie"}
	}
	return session, nil
}

// authed sends req with the session cookie. A 401 means the session ended
// (expired, logged out, password changed elsewhere); the request was refused,
// so it is sent once more after a fresh sign-in. Storyden releases before
// v1.26.10 answered 403 where newer ones answer 401, so a 403 gets the same
// single retry; a real permission problem then fails the same way twice.
func (c *connection) authed(ctx context.Context, req provider.Request) (*provider.Response, error) {
	for attempt := 0; ; attempt++ {
		session, err := c.currentSession(ctx)
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{"Cookie": {sessionCookie + "=" + session}}
		resp, err := c.client.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		refused := resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden
		if !refused || attempt > 0 {
			return resp, nil
		}
		c.client.Log().Debug("storyden session refused; signing in again", "username", c.username)
		c.dropSession(session)
	}
}

// upstreamError reads both of Storyden's error bodies: RFC 7807 problem
// details (v1.26.10 and later) and the older {"error","message"}, and the
// plain-text body of its rate limiter.
func upstreamError(op string, resp *provider.Response) *provider.UpstreamError {
	ue := &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status}
	var body struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(resp.Body, &body); err == nil {
		ue.Code = provider.CleanMessage(strings.TrimPrefix(body.Type, "urn:storyden:problem:"))
		ue.Message = provider.CleanMessage(firstNonEmpty(body.Title, body.Message, body.Error))
	} else if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/plain") {
		ue.Message = provider.CleanMessage(string(resp.Body))
	}
	if resp.Status == http.StatusTooManyRequests {
		ue.RetryAfter = provider.RetryAfter(resp.Header, timeNow())
	}
	return ue
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
