package storyden

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// timeNow is the clock; tests replace it.
var timeNow = time.Now

// Ref keys stored in the lease's internal data.
const (
	refID      = "access_key_id"
	refName    = "name"
	refAccount = "account"
)

// accessKey is an access key as Storyden lists or issues it. The create
// response always says enabled:false (a Storyden quirk), so enabled is read
// only from the list.
type accessKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Enabled   bool       `json:"enabled"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expires_at"`
	Secret    string     `json:"secret"`
}

// newAccessKey is the body of a create.
type newAccessKey struct {
	Name      string `json:"name"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// createdAccessKey is what an issue reads of a create's answer.
type createdAccessKey struct {
	ID        string     `json:"id"`
	ExpiresAt *time.Time `json:"expires_at"`
	Secret    string     `json:"secret"`
}

// Verify implements provider.Connection: the session must sign in, see its own
// account and be allowed to list (and so to create) personal access keys.
func (c *connection) Verify(ctx context.Context) error {
	if err := c.expectOK(ctx, provider.Request{Op: "read the signed-in account", Method: http.MethodGet, Path: "/api/accounts", Idempotent: true}); err != nil {
		return err
	}
	_, err := c.listKeys(ctx)
	if provider.StatusOf(err) == http.StatusForbidden {
		return fmt.Errorf("%w; grant the account the USE_PERSONAL_ACCESS_KEYS permission (or make it an admin)", err)
	}
	return err
}

func (c *connection) expectOK(ctx context.Context, req provider.Request) error {
	resp, err := c.authed(ctx, req)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return upstreamError(req.Op, resp)
	}
	return nil
}

// Issue implements provider.Connection.
func (c *connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	expiresAt := req.ExpiresAt.UTC().Truncate(time.Second)
	body := newAccessKey{Name: req.Name}
	if !expiresAt.IsZero() {
		body.ExpiresAt = expiresAt.Format(time.RFC3339)
	}
	httpReq, err := provider.JSONRequest("create access key "+req.Name, http.MethodPost, "/api/auth/access-keys", body)
	if err != nil {
		return nil, err
	}
	resp, err := c.authed(ctx, httpReq)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
		return nil, upstreamError(httpReq.Op, resp)
	}
	var key createdAccessKey
	if err := provider.DecodeJSON(Name, httpReq.Op, resp, &key); err != nil {
		return nil, err
	}
	if key.ID == "" || key.Secret == "" {
		return nil, &provider.UpstreamError{Provider: Name, Op: httpReq.Op, Status: resp.Status, Message: "the response has no id or secret"}
	}
	if key.ExpiresAt != nil {
		expiresAt = key.ExpiresAt.UTC()
	}
	if !expiresAt.IsZero() && !expiresAt.After(timeNow()) {
		// The engine's rollback deletes the key by name.
		return nil, &provider.UpstreamError{Provider: Name, Op: httpReq.Op, Status: resp.Status,
			Message: "Storyden returned an access key that expired at " + provider.Timestamp(expiresAt) + "; check the clocks of Vault and Storyden"}
	}
	return &provider.Credential{
		Data: map[string]any{
			"access_key":    key.Secret,
			"access_key_id": key.ID,
			"expires_at":    provider.Timestamp(expiresAt),
		},
		Ref:       provider.Ref{refID: key.ID, refName: req.Name, refAccount: c.username},
		ObjectID:  key.ID,
		ExpiresAt: expiresAt,
	}, nil
}

// ListObjects implements provider.Lister: the account's keys that still
// authenticate (enabled and not expired).
func (c *connection) ListObjects(ctx context.Context, _ []provider.Values) ([]provider.UpstreamObject, error) {
	keys, err := c.listKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := timeNow()
	var out []provider.UpstreamObject
	for _, key := range keys {
		if !key.Enabled || (key.ExpiresAt != nil && !key.ExpiresAt.After(now)) {
			continue
		}
		out = append(out, provider.UpstreamObject{
			Name: key.Name, ID: key.ID, CreatedAt: key.CreatedAt,
			Ref: provider.Ref{refID: key.ID, refName: key.Name, refAccount: c.username},
		})
	}
	return out, nil
}

// Revoke implements provider.Connection. Storyden disables the key (204), and
// answers 404 "authentication not found" for a key that is not there: both
// mean it can no longer be used.
// Storyden also answers 404 for another account's key, so a key made under a
// different username is revoked through the admin route instead.
func (c *connection) Revoke(ctx context.Context, ref provider.Ref) error {
	id := ref[refID]
	if id == "" {
		return fmt.Errorf("storyden: the lease records no access key id, so there is nothing to revoke upstream")
	}
	path := "/api/auth/access-keys/" + url.PathEscape(id)
	if account := ref[refAccount]; account != "" && account != c.username {
		path = "/api/admin/access-keys/" + url.PathEscape(id)
	}
	return c.deleteKey(ctx, path, "revoke access key "+id)
}

func (c *connection) deleteKey(ctx context.Context, path, op string) error {
	resp, err := c.authed(ctx, provider.Request{Op: op, Method: http.MethodDelete, Path: path, Idempotent: true})
	if err != nil {
		return err
	}
	switch {
	case resp.Status == http.StatusNoContent, resp.Status == http.StatusOK:
		return nil
	case resp.Status == http.StatusNotFound && keyNotFound(resp.Body):
		return nil
	}
	return upstreamError(op, resp)
}

// keyNotFoundDetail is the internal error Storyden answers a revoke of an
// access key it does not have with: ent's miss on the authentication record
// that holds the key, in the problem's "detail" (v1.26.10 and later) or the
// legacy body's "error".
const keyNotFoundDetail = "authentication not found"

// keyNotFound tells Storyden's "no such access key" from any other 404: an
// unknown route, or a base_url that reaches another server, which would
// otherwise pass for a key already gone while it lives.
func keyNotFound(body []byte) bool {
	var problem struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		Error  string `json:"error"`
	}
	if json.Unmarshal(body, &problem) != nil {
		return false
	}
	if problem.Type != "" && problem.Type != "urn:storyden:problem:not-found" {
		return false
	}
	return strings.Contains(problem.Detail, keyNotFoundDetail) || strings.Contains(problem.Error, keyNotFoundDetail)
}

// Rollback implements provider.Connection: it disables every enabled key
// named req.Name, which an interrupted Issue may have created.
func (c *connection) Rollback(ctx context.Context, req provider.RollbackRequest) error {
	keys, err := c.listKeys(ctx)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if key.Name != req.Name || !key.Enabled {
			continue
		}
		if err := c.deleteKey(ctx, "/api/auth/access-keys/"+url.PathEscape(key.ID), "roll back access key "+key.ID); err != nil {
			return err
		}
	}
	return nil
}

func (c *connection) listKeys(ctx context.Context) ([]accessKey, error) {
	req := provider.Request{Op: "list access keys", Method: http.MethodGet, Path: "/api/auth/access-keys", Idempotent: true}
	resp, err := c.authed(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, upstreamError(req.Op, resp)
	}
	var list struct {
		Keys []accessKey `json:"keys"`
	}
	if err := provider.DecodeJSON(Name, req.Op, resp, &list); err != nil {
		return nil, err
	}
	return list.Keys, nil
}

// RotateRoot implements provider.Connection. The new password is staged in
// Vault before Storyden is asked to change it, so a crash between the two
// never loses the only working password.
func (c *connection) RotateRoot(ctx context.Context, stage func(provider.Values) error) (provider.Values, error) {
	newPassword, err := randomPassword()
	if err != nil {
		return nil, err
	}
	next := provider.Values{fieldPassword: newPassword}
	if err := stage(next); err != nil {
		return nil, err
	}
	c.mu.Lock()
	oldPassword := c.password
	c.mu.Unlock()
	req, err := provider.JSONRequest("change the password of "+c.username, http.MethodPatch, "/api/auth/password",
		map[string]string{"old": oldPassword, "new": newPassword})
	if err != nil {
		return nil, err
	}
	resp, err := c.authed(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, upstreamError(req.Op, resp)
	}
	c.mu.Lock()
	c.password = newPassword
	if session := provider.CookieValue(resp.Header, sessionCookie); session != "" {
		c.session = session
	}
	c.mu.Unlock()
	return next, nil
}

// passwordAlphabet avoids symbols so the password survives any form or shell.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomPassword returns 40 characters from a 62-letter alphabet (~238 bits).
func randomPassword() (string, error) {
	return provider.RandomString(40, passwordAlphabet)
}
