// Package storj issues Storj DCS S3 credentials from one access grant: each
// lease gets a child grant derived locally (storjgrant), registered at the
// auth service, and revoked at the satellite when the lease ends.
//
// base_url is the auth service (default https://auth.storjshare.io): it is
// the only HTTP upstream; the satellite is whatever the grant names, reached
// over DRPC with TLS pinned to the node id in the grant.
package storj

import (
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storjgrant"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "storj"

// defaultAuthURL is Storj's hosted auth service.
const defaultAuthURL = "https://auth.storjshare.io"

// Provider is the Storj DCS provider.
type Provider struct{}

// New returns the Storj provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider: the auth service.
func (Provider) DefaultBaseURL() string { return defaultAuthURL }

// ConnectionFields implements provider.Provider.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: storjgrant.FieldAccessGrant, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Serialized access grant every credential is derived from, made once in the Storj console or with uplink; it should allow everything the roles may grant and have no expiry. Write-only."},
	}
}

// RoleFields implements provider.Provider.
func (Provider) RoleFields() []provider.Field { return storjgrant.ScopeFields() }

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(role provider.Values) error {
	return storjgrant.ValidateScope("Storj", role)
}

// CheckRoleForConnection implements provider.ConnectionRoleChecker.
func (Provider) CheckRoleForConnection(_, _ provider.Values, maxTTL time.Duration) error {
	return storjgrant.CheckMaxTTL(maxTTL)
}

// NothingToRollBack implements provider.RollbackFree: see
// storjgrant.Connection.NothingToRollBack.
func (Provider) NothingToRollBack() bool { return true }

// Connect implements provider.Provider.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	return storjgrant.Open(storjgrant.Config{
		Provider: Name, Product: "Storj", AuthURL: cfg.BaseURL, Grant: cfg.Values.String(storjgrant.FieldAccessGrant), Connection: cfg,
	})
}
