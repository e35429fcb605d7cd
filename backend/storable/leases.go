package storable

import (
	"context"
	"fmt"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Ref keys stored in the lease's internal data; none of them is a secret.
const (
	refTokenID   = "token_fingerprint"
	refCreatedAt = "token_created_at"
	refExpiresAt = "expires_at"
)

// Verify implements provider.Connection with one token request. The token is
// cached, so the first Issue after a config write costs no further call.
func (c *connection) Verify(ctx context.Context) error {
	_, err := c.refresh(ctx, c.currentToken())
	return err
}

// Issue implements provider.Connection. It hands out the cached token when it
// lives long enough for the lease, else a fresh one; either way the lease is
// capped where the token's usable life ends.
func (c *connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	t, err := c.tokenFor(ctx, req.TTL)
	if err != nil {
		return nil, err
	}
	until := t.usableUntil()
	warnings := []string{fmt.Sprintf("Storable has no revocation API: this access token is shared by every lease of connection %q "+
		"and stays valid until it expires upstream, %s after expires_at (%s), even if the lease is revoked first",
		c.name, safetyMargin, provider.Timestamp(until))}
	if t.assumedLifetime {
		warnings = append(warnings, fmt.Sprintf("Storable's token response had no usable x-token-lifetime-seconds header; "+
			"the token is assumed to live the documented %s from its creation", defaultLifetime))
	}
	return &provider.Credential{
		Data: map[string]any{
			"access_token": t.value,
			"token_type":   t.tokenType,
			"expires_at":   provider.Timestamp(until),
		},
		Ref: provider.Ref{
			refTokenID:   t.fingerprint(),
			refCreatedAt: provider.Timestamp(t.createdAt),
			refExpiresAt: provider.Timestamp(until),
		},
		ExpiresAt: until,
		Warnings:  warnings,
	}, nil
}

// Revoke implements provider.Connection. Storable cannot revoke a token, and
// the token stays cached: other leases share it.
func (c *connection) Revoke(context.Context, provider.Ref) error { return nil }

// Rollback implements provider.Connection. An interrupted Issue created no
// object upstream; at most it cached a token that other leases may use.
func (c *connection) Rollback(context.Context, provider.RollbackRequest) error { return nil }

// RotateRoot implements provider.Connection.
func (c *connection) RotateRoot(context.Context, func(provider.Values) error) (provider.Values, error) {
	return nil, fmt.Errorf("%w: Storable issues client credentials through its API Integration team", provider.ErrRotationUnsupported)
}
