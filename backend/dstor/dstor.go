// Package dstor mints dStor temporary access tokens (JWTs) from an account API
// key with GET {base_url}/dev/temp-token.
//
// dStor has no revocation API: a token is a stateless JWT that stays valid
// until its exp claim. Each token is therefore minted to expire at the lease's
// latest end (x-expiration), and the lease is capped at the token's exp.
// Revoke and Rollback have nothing to delete upstream.
package dstor

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "dstor"

// fieldAPIKey is the connection's only provider field.
const fieldAPIKey = "api_key"

// Provider is the dStor provider.
type Provider struct{}

// New returns the dStor provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider. It already ends in /v1: the
// plugin appends /dev/temp-token.
func (Provider) DefaultBaseURL() string { return "https://api.dstor.cloud/v1" }

// ConnectionFields implements provider.Provider. No field is marked
// Account: the API key is the account's only identity and a secret, which is
// never hashed into a lease; dStor tokens cannot be revoked anyway.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: fieldAPIKey, Type: provider.TypeString, Required: true, Secret: true,
			Description: "dStor account API key (64 characters, from Account → API Keys in the dStor console). Write-only."},
	}
}

// RoleFields implements provider.Provider: a dStor token carries the whole
// account's rights, so there is nothing to choose per role.
func (Provider) RoleFields() []provider.Field { return nil }

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(provider.Values) error { return nil }

// NothingToRollBack implements provider.RollbackFree: a minted token is no
// object that could be found and deleted.
func (Provider) NothingToRollBack() bool { return true }

// CannotRevoke implements provider.Irrevocable: a token is a stateless JWT
// that stays valid until its exp claim.
func (Provider) CannotRevoke() bool { return true }

// Connect implements provider.Provider. The key's length is not enforced:
// dStor documents 64 characters but older keys may differ, and dStor itself
// is the judge at verify time.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	key := cfg.Values.String(fieldAPIKey)
	if key == "" {
		return nil, fmt.Errorf("%w: api_key is required: the 64-character API key from the dStor console", provider.ErrInvalidInput)
	}
	if strings.ContainsFunc(key, unicode.IsSpace) || strings.ContainsFunc(key, unicode.IsControl) {
		return nil, fmt.Errorf("%w: api_key must not contain spaces or control characters; paste the key exactly as the dStor console shows it", provider.ErrInvalidInput)
	}
	return newConnection(cfg), nil
}
