// Package storyden mints Storyden personal access keys (sdpak_…) from a
// password session, revokes them with DELETE /api/auth/access-keys/{id} and
// rotates the account password with PATCH /api/auth/password.
//
// An access key cannot create access keys (the API accepts only a browser
// session there), so the root credential is always handle + password. Every
// key carries the full permissions of that account: use a dedicated account
// that holds USE_PERSONAL_ACCESS_KEYS and nothing more than the apps need.
package storyden

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "storyden"

// Field names.
const (
	fieldUsername      = "username"
	fieldPassword      = "password"
	fieldKeyNamePrefix = "key_name_prefix"
)

// minPasswordLen is Storyden's own minimum; shorter passwords can never sign in.
const minPasswordLen = 8

var keyNamePrefixPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// Provider is the Storyden provider.
type Provider struct{}

// New returns the Storyden provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider: every Storyden instance has its
// own address, so base_url is required.
func (Provider) DefaultBaseURL() string { return "" }

// ConnectionFields implements provider.Provider.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: fieldUsername, Type: provider.TypeString, Required: true, Account: true,
			Description: "Handle of the Storyden account that owns the issued keys; it needs USE_PERSONAL_ACCESS_KEYS (admins have it)."},
		{Name: fieldPassword, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Password of that account (8 characters or more). Write-only."},
	}
}

// RoleFields implements provider.Provider.
func (Provider) RoleFields() []provider.Field {
	return []provider.Field{
		{Name: fieldKeyNamePrefix, Type: provider.TypeString, Default: "vault", NamePrefix: true,
			Description: "Start of each access key's name, followed by the role name and a unique suffix."},
	}
}

// RotatesRoot implements provider.RootRotationCapable: PATCH /api/auth/password.
func (Provider) RotatesRoot() bool { return true }

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(role provider.Values) error {
	prefix := role.String(fieldKeyNamePrefix)
	if prefix != "" && !keyNamePrefixPattern.MatchString(prefix) {
		return fmt.Errorf("%w: key_name_prefix=%q must be 1 to 32 letters, digits, '-' or '_', starting with a letter or digit", provider.ErrInvalidInput, prefix)
	}
	return nil
}

// Connect implements provider.Provider.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	if strings.HasSuffix(cfg.BaseURL, "/api") {
		return nil, fmt.Errorf("%w: base_url must be the instance's API address without /api (the plugin appends /api/...); use %q", provider.ErrInvalidInput, strings.TrimSuffix(cfg.BaseURL, "/api"))
	}
	username := cfg.Values.String(fieldUsername)
	if username == "" {
		return nil, fmt.Errorf("%w: username is required: the handle of the Storyden account that owns the keys", provider.ErrInvalidInput)
	}
	if len(cfg.Values.String(fieldPassword)) < minPasswordLen {
		return nil, fmt.Errorf("%w: password must be at least %d characters (Storyden refuses shorter ones)", provider.ErrInvalidInput, minPasswordLen)
	}
	return newConnection(cfg), nil
}
