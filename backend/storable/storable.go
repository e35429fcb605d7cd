// Package storable leases Storable API access tokens, which POST
// {base_url}/auth/token issues to a client id + secret (Basic auth) and a
// client API key.
//
// Storable has no revocation API and asks clients to cache tokens and reuse
// them until they expire, since its token endpoint is rate limited. So every
// lease of a connection shares one cached token while it lives long enough
// for the lease, each lease is capped at the token's end, and revoke has
// nothing to do upstream.
package storable

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "storable"

// Field names.
const (
	fieldClientID     = "client_id"
	fieldClientSecret = "client_secret"
	fieldAPIKey       = "api_key"
)

// Provider is the Storable provider.
type Provider struct{}

// New returns the Storable provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider.
func (Provider) DefaultBaseURL() string { return "https://api.storable.io" }

// ConnectionFields implements provider.Provider.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: fieldClientID, Type: provider.TypeString, Required: true, Account: true,
			Description: "Client Id from the Storable API Integration team (the Basic auth user of the token endpoint)."},
		{Name: fieldClientSecret, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Client Secret from the Storable API Integration team. Write-only."},
		{Name: fieldAPIKey, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Client API Key, sent as x-api-key on every Storable call. Write-only."},
	}
}

// RoleFields implements provider.Provider: every lease shares the
// connection's token, so there is nothing to choose per role.
func (Provider) RoleFields() []provider.Field { return nil }

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(provider.Values) error { return nil }

// NothingToRollBack implements provider.RollbackFree: an issue creates
// nothing upstream, at most it caches the shared token.
func (Provider) NothingToRollBack() bool { return true }

// CannotRevoke implements provider.Irrevocable: Storable has no revocation
// API, and a token lives as long as Storable says.
func (Provider) CannotRevoke() bool { return true }

// SetsNoExpiry implements provider.ExpiryFree: the shared token expires when
// Storable says, whatever the lease.
func (Provider) SetsNoExpiry() bool { return true }

// Connect implements provider.Provider.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	for _, name := range []string{fieldClientID, fieldClientSecret, fieldAPIKey} {
		value := cfg.Values.String(name)
		if value == "" {
			return nil, fmt.Errorf("%w: %s is required: use the credentials from the Storable API Integration team", provider.ErrInvalidInput, name)
		}
		if strings.ContainsFunc(value, unicode.IsControl) || (name != fieldClientSecret && strings.ContainsFunc(value, unicode.IsSpace)) {
			return nil, fmt.Errorf("%w: %s must not contain spaces or control characters; paste it exactly as Storable sent it", provider.ErrInvalidInput, name)
		}
	}
	if strings.Contains(cfg.Values.String(fieldClientID), ":") {
		return nil, fmt.Errorf("%w: client_id must not contain ':', which Basic authentication cannot carry in a user name", provider.ErrInvalidInput)
	}
	return newConnection(cfg), nil
}
