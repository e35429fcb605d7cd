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

// S3Credentials is the auth service's answer to a registered grant.
type S3Credentials struct {
	AccessKeyID string `json:"access_key_id"`
	SecretKey   string `json:"secret_key"`
	Endpoint    string `json:"endpoint"`
}

// PostAccess trades grant for S3 credentials at the auth service behind
// auth (POST /v1/access). The service keeps a record per call and has no
// delete, but a repeat is harmless: every record holds the same grant and
// dies with it, so failures in flight are retried. An answer other than 200
// goes to refused, which makes the caller's error of it (and masks its
// secrets, the grant among them).
func PostAccess(ctx context.Context, auth *provider.Client, providerName, op, grant string, refused func(*provider.Response) error) (*S3Credentials, error) {
	req, err := provider.JSONRequest(op, http.MethodPost, pathAccess, map[string]any{"access_grant": grant, "public": false})
	if err != nil {
		return nil, err
	}
	req.Idempotent = true
	resp, err := auth.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, refused(resp)
	}
	var creds S3Credentials
	if err := provider.DecodeJSON(providerName, op, resp, &creds); err != nil {
		return nil, err
	}
	if creds.AccessKeyID == "" || creds.SecretKey == "" || creds.Endpoint == "" {
		return nil, &provider.UpstreamError{Provider: providerName, Op: op, Status: resp.Status, Message: "the response lacks access_key_id, secret_key or endpoint"}
	}
	return &creds, nil
}

// register trades a child grant for S3 credentials.
func (c *Connection) register(ctx context.Context, op, child string) (*S3Credentials, error) {
	return PostAccess(ctx, &c.auth, c.cfg.Provider, op, child, func(resp *provider.Response) error {
		return c.authError(op, resp, child)
	})
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
