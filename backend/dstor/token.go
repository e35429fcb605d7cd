package dstor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// timeNow is the clock; tests replace it.
var timeNow = time.Now

// verifyTokenLifetime is how long the token minted by Verify lives, as the
// reference suggests: long enough to arrive, too short to matter.
const verifyTokenLifetime = 60 * time.Second

// tokenPath is appended to base_url, which already ends in /v1.
const tokenPath = "/dev/temp-token"

// Ref keys stored in the lease's internal data; none of them is a secret.
const (
	refSubject   = "sub"
	refIssuedAt  = "issued_at"
	refExpiresAt = "expires_at"
)

// connection is one dStor API key. It caches nothing: every token is minted
// for one lease with that lease's expiry.
type connection struct {
	client provider.Client
	apiKey string
}

func newConnection(cfg provider.ConnectionConfig) *connection {
	return &connection{
		client: provider.Client{Provider: Name, BaseURL: cfg.BaseURL, HTTP: cfg.HTTPClient, Logger: cfg.Logger, Gate: &provider.RateGate{}, Observer: cfg.Observer},
		apiKey: cfg.Values.String(fieldAPIKey),
	}
}

// Close implements provider.Connection; there is no session to release.
func (c *connection) Close() {}

// Verify implements provider.Connection by minting a token that expires a
// minute later.
func (c *connection) Verify(ctx context.Context) error {
	_, err := c.mintToken(ctx, "mint a verification token", timeNow().Add(verifyTokenLifetime))
	return err
}

// Issue implements provider.Connection. The token is minted to expire at the
// lease's latest end, and the lease is capped at the token's own exp.
func (c *connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	token, err := c.mintToken(ctx, "mint access token "+req.Name, req.ExpiresAt)
	if err != nil {
		return nil, err
	}
	claims := readClaims(token)
	expiresAt := tokenExpiry(claims, req.ExpiresAt)
	if !expiresAt.After(timeNow()) {
		return nil, &provider.UpstreamError{Provider: Name, Op: "mint access token " + req.Name, Status: http.StatusOK,
			Message: "dStor returned a token that expired at " + provider.Timestamp(expiresAt)}
	}
	return &provider.Credential{
		Data: map[string]any{
			"access_token": token,
			"expires_at":   provider.Timestamp(expiresAt),
		},
		Ref:       claims.ref(expiresAt),
		ExpiresAt: expiresAt,
		Warnings: []string{fmt.Sprintf("dStor has no revocation API: revoking this lease does not invalidate the token, "+
			"which stays valid until expires_at (%s)", provider.Timestamp(expiresAt))},
	}, nil
}

// mintToken asks dStor for a token expiring at expiresAt. A GET that mints a stateless token is safe to retry: a
// token lost in a failed exchange reached no one and dies at the same expiry.
func (c *connection) mintToken(ctx context.Context, op string, expiresAt time.Time) (string, error) {
	// x-expiration is absolute unix seconds, an integer as dStor's docs show.
	header := http.Header{
		"Api-Key":      {c.apiKey},
		"X-Expiration": {strconv.FormatInt(expiresAt.Unix(), 10)},
	}
	req := provider.Request{Op: op, Method: http.MethodGet, Path: tokenPath, Header: header, Idempotent: true}
	resp, err := c.client.Do(ctx, req)
	if err != nil {
		return "", err
	}
	if resp.Status != http.StatusOK {
		return "", statusError(op, resp)
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := provider.DecodeJSON(Name, op, resp, &body); err != nil {
		return "", err
	}
	if body.AccessToken == "" {
		return "", &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: "the response has no access_token"}
	}
	return body.AccessToken, nil
}

// statusError explains a non-200 answer. Every dStor call authenticates with
// the API key alone, so 401 and 403 mean dStor refused the root credential.
func statusError(op string, resp *provider.Response) *provider.UpstreamError {
	ue := upstreamError(op, resp)
	switch resp.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		ue.Err = provider.ErrRootRejected
	case http.StatusNotFound:
		ue.Err = errors.New("check that base_url is dStor's API address including /v1, e.g. https://api.dstor.cloud/v1")
	}
	return ue
}

// upstreamError reads dStor's error bodies, which are undocumented: JSON with
// "message" (a string or a list of strings) or "error", or plain text.
func upstreamError(op string, resp *provider.Response) *provider.UpstreamError {
	ue := &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: errorMessage(resp)}
	if resp.Status == http.StatusTooManyRequests {
		ue.RetryAfter = provider.RetryAfter(resp.Header, timeNow())
	}
	return ue
}

func errorMessage(resp *provider.Response) string {
	var body struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(resp.Body, &body); err == nil {
		return provider.CleanMessage(firstNonEmpty(jsonText(body.Message), jsonText(body.Error)))
	}
	if ct := resp.Header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "text/plain") {
		return provider.CleanMessage(string(resp.Body))
	}
	return ""
}

// jsonText turns a JSON string or list of strings into text; other shapes
// (objects, numbers) carry nothing an operator can read.
func jsonText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, "; ")
	}
	return ""
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// Revoke implements provider.Connection. dStor cannot revoke a token, so
// there is nothing to call: the token dies at its exp, which caps the lease.
func (c *connection) Revoke(context.Context, provider.Ref) error { return nil }

// Rollback implements provider.Connection. A token minted by an interrupted
// Issue is no object that could be found and deleted; it expires at the
// lease's latest end like every token.
func (c *connection) Rollback(context.Context, provider.RollbackRequest) error { return nil }

// RotateRoot implements provider.Connection.
func (c *connection) RotateRoot(context.Context, func(provider.Values) error) (provider.Values, error) {
	return nil, fmt.Errorf("%w: dStor API keys are created and deleted only in the dStor console", provider.ErrRotationUnsupported)
}

// claims are the parts of a dStor JWT payload the plugin reads. The token is
// not verified: dStor signs it for its own use, and the plugin only needs to
// know when it ends.
type claims struct {
	Subject   string   `json:"sub"`
	IssuedAt  *float64 `json:"iat"`
	ExpiresAt *float64 `json:"exp"`
}

// readClaims decodes the payload of a JWT; anything else yields no claims.
func readClaims(token string) claims {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c
	}
	if json.Unmarshal(payload, &c) != nil {
		return claims{}
	}
	return c
}

// tokenExpiry is the exp claim, else the expiry asked for (x-expiration
// carried whole seconds).
func tokenExpiry(c claims, requested time.Time) time.Time {
	if c.ExpiresAt != nil {
		return unixTime(*c.ExpiresAt)
	}
	return time.Unix(requested.Unix(), 0).UTC()
}

// ref describes the token for the lease without the token itself.
func (c claims) ref(expiresAt time.Time) provider.Ref {
	ref := provider.Ref{refExpiresAt: provider.Timestamp(expiresAt)}
	if c.Subject != "" {
		ref[refSubject] = c.Subject
	}
	if c.IssuedAt != nil {
		ref[refIssuedAt] = provider.Timestamp(unixTime(*c.IssuedAt))
	}
	return ref
}

func unixTime(secs float64) time.Time {
	return time.Unix(int64(secs), 0).UTC()
}
