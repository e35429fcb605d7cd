package storjgrant

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// pathAccess is the auth service's registration route.
const pathAccess = "/v1/access"

// s3Credentials is the auth service's answer.
type s3Credentials struct {
	AccessKeyID string `json:"access_key_id"`
	SecretKey   string `json:"secret_key"`
	Endpoint    string `json:"endpoint"`
}

// register trades a child grant for S3 credentials. The auth service keeps
// a record per call and has no delete, but a repeat is harmless: every
// record holds the same child and dies with it, so failures in flight are
// retried.
func (c *Connection) register(ctx context.Context, op, child string) (*s3Credentials, error) {
	req, err := provider.JSONRequest(op, http.MethodPost, pathAccess, map[string]any{"access_grant": child, "public": false})
	if err != nil {
		return nil, err
	}
	req.Idempotent = true
	resp, err := c.auth.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, c.authError(op, resp, child)
	}
	var creds s3Credentials
	if err := provider.DecodeJSON(c.cfg.Provider, op, resp, &creds); err != nil {
		return nil, err
	}
	if creds.AccessKeyID == "" || creds.SecretKey == "" || creds.Endpoint == "" {
		return nil, &provider.UpstreamError{Provider: c.cfg.Provider, Op: op, Status: resp.Status, Message: "the response lacks access_key_id, secret_key or endpoint"}
	}
	return &creds, nil
}

// authError reads the auth service's plain-text refusal and says what to do.
func (c *Connection) authError(op string, resp *provider.Response, child string) error {
	ue := &provider.UpstreamError{Provider: c.cfg.Provider, Op: op, Status: resp.Status,
		Message: redact(redact(string(resp.Body), child), c.cfg.Grant)}
	if resp.Status != http.StatusBadRequest {
		return ue
	}
	switch msg := ue.Message; {
	case strings.Contains(msg, "shorter than a minute"):
		return fmt.Errorf("%w: the auth service wants at least a minute left on every grant (is its clock ahead of Vault's?); raise the role's max_ttl: %w", provider.ErrInvalidInput, ue)
	case strings.Contains(msg, "disallowed satellite"):
		return fmt.Errorf("%w: the auth service at %s does not serve the satellite of access_grant (%s); point %s at that satellite's auth service, or use a grant of a satellite it serves: %w",
			provider.ErrInvalidInput, c.cfg.AuthURL, c.SatelliteAddress(), c.authField(), ue)
	}
	return fmt.Errorf("%w: the auth service refused the access grant; check that access_grant is a current grant of this satellite: %w", provider.ErrInvalidInput, ue)
}

// authField names the setting that holds the auth service's address.
func (c *Connection) authField() string {
	if c.cfg.AuthField != "" {
		return c.cfg.AuthField
	}
	return "base_url"
}
