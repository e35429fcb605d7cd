// Package storx issues StorX S3 credentials in one of two modes, chosen by
// the connection's fields.
//
// Access-grant mode (access_grant set): Vault keeps one broad access grant
// made in the StorX console (or by its OAuth2 flow) and derives a child per
// lease locally, as every Storj-based satellite allows; see storjgrant. One
// upstream call per credential. This is the mode today's StorX serves.
//
// Developer mode (email, password, passphrase): Vault keeps the developer's
// email, password and the project's grant passphrase; each lease gets its
// own satellite API key (named after the lease), an access grant restricted
// to the role's buckets and permissions that expires with the lease, and the
// S3 credentials the auth service mints from that grant. Revoking the lease
// deletes the API key, which kills the grant and the S3 credentials with it.
//
// StorX is a Storj satellite fork; the flow is the "Storx Access Creation"
// postman collection (shared/reference/upstream-apis.md section 1):
// developer login → create-user (or find the existing user's project) →
// user-token → create API key → access grant → POST {auth_url}/v1/access.
// Both sessions live in cookies only, and the three developer auth endpoints
// share a tight per-IP rate limit, so every session is cached.
package storx

import (
	"fmt"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storjgrant"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "storx"

// Field names.
const (
	fieldEmail          = "email"
	fieldPassword       = "password"
	fieldPassphrase     = "passphrase"
	fieldAuthURL        = "auth_url"
	fieldUserEmail      = "user_email"
	fieldUserFullName   = "user_full_name"
	fieldBuckets        = storjgrant.FieldBuckets
	fieldPrefix         = storjgrant.FieldPrefix
	fieldPermissions    = storjgrant.FieldPermissions
	defaultBaseURL      = "https://storx.io"
	defaultAuthURL      = "https://auth.storx.io"
	allBucketsParameter = "all"
)

// allPermissions is every permission a grant can carry, the default.
var allPermissions = storjgrant.AllPermissions

// Provider is the StorX provider.
type Provider struct{}

// New returns the StorX provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider: the satellite console API.
func (Provider) DefaultBaseURL() string { return defaultBaseURL }

// ConnectionFields implements provider.Provider.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: fieldEmail, Type: provider.TypeString, Account: true,
			Description: "Developer mode: email of the StorX developer account that creates users and API keys. Required unless access_grant is set."},
		{Name: fieldPassword, Type: provider.TypeString, Secret: true,
			Description: "Developer mode: password of that developer account. Write-only. The account must not require MFA. Required unless access_grant is set."},
		{Name: fieldPassphrase, Type: provider.TypeString, Secret: true,
			Description: "Developer mode: encryption passphrase of every access grant the connection issues. Write-only. Keep it fixed: objects written under one passphrase cannot be read with credentials from another. Required unless access_grant is set."},
		{Name: storjgrant.FieldAccessGrant, Type: provider.TypeString, Secret: true,
			Description: "Access-grant mode: a serialized access grant with broad permissions, made once in the StorX console or by its OAuth2 flow; each lease gets a child derived from it. Write-only. Give either this or email and password."},
		{Name: fieldAuthURL, Type: provider.TypeString, Default: defaultAuthURL, URL: true,
			Description: "Address of the StorX auth service that turns access grants into S3 credentials."},
	}
}

// RoleFields implements provider.Provider.
func (Provider) RoleFields() []provider.Field {
	return append([]provider.Field{
		{Name: fieldUserEmail, Type: provider.TypeString,
			Description: "Developer mode: email of the StorX user whose project holds the API keys; the user is created when missing. Required for developer connections, refused for access-grant ones."},
		{Name: fieldUserFullName, Type: provider.TypeString,
			Description: "Developer mode: full name given to the StorX user if Vault creates it (default: the part of user_email before the @)."},
	}, storjgrant.ScopeFields()...)
}

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(role provider.Values) error {
	if email := role.String(fieldUserEmail); email != "" && !looksLikeEmail(email) {
		return fmt.Errorf("%w: user_email=%q is not an email address; give the StorX user's email, e.g. app@example.com", provider.ErrInvalidInput, email)
	}
	for _, b := range role.Strings(fieldBuckets) {
		if b == allBucketsParameter {
			return fmt.Errorf("%w: buckets may not contain %q: StorX reads bucket=all as every bucket; leave buckets empty for that", provider.ErrInvalidInput, b)
		}
	}
	return storjgrant.ValidateScope("StorX", role)
}

// CheckRoleForConnection implements provider.ConnectionRoleChecker: a
// developer connection needs the role's user; an access-grant connection
// has no users, and its grants must outlive the auth service's one-minute
// floor.
func (Provider) CheckRoleForConnection(conn, role provider.Values, maxTTL time.Duration) error {
	if conn.String(storjgrant.FieldAccessGrant) == "" {
		if role.String(fieldUserEmail) == "" {
			return fmt.Errorf("%w: user_email is required: the connection uses StorX developer credentials, which issue keys in a StorX user's project; give that user's email", provider.ErrInvalidInput)
		}
		return nil
	}
	for _, f := range []string{fieldUserEmail, fieldUserFullName} {
		if role.String(f) != "" {
			return fmt.Errorf("%w: %s has no meaning for a connection in access-grant mode (its credentials come from the connection's grant, not a StorX user); remove it with %s=\"\"", provider.ErrInvalidInput, f, f)
		}
	}
	return storjgrant.CheckMaxTTL(maxTTL)
}

func looksLikeEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(s, " \t\r\n,;")
}

// Connect implements provider.Provider: access-grant mode when
// access_grant is set, else developer mode.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	if cfg.Values.String(storjgrant.FieldAccessGrant) != "" {
		return connectGrant(cfg)
	}
	email := cfg.Values.String(fieldEmail)
	if email == "" && cfg.Values.String(fieldPassword) == "" {
		return nil, fmt.Errorf("%w: give access_grant (access-grant mode: a grant made in the StorX console) or email, password and passphrase (developer mode: a StorX developer account)", provider.ErrInvalidInput)
	}
	if !looksLikeEmail(email) {
		return nil, fmt.Errorf("%w: email=%q is not an email address; give the StorX developer account's email", provider.ErrInvalidInput, email)
	}
	for _, secret := range []string{fieldPassword, fieldPassphrase} {
		if cfg.Values.String(secret) == "" {
			return nil, fmt.Errorf("%w: %s is required", provider.ErrInvalidInput, secret)
		}
	}
	authURL, err := normalizeAuthURL(cfg.Values.String(fieldAuthURL))
	if err != nil {
		return nil, err
	}
	csrfToken, err := provider.RandomString(32, csrfAlphabet)
	if err != nil {
		return nil, err
	}
	return newConnection(cfg, authURL, csrfToken), nil
}

// connectGrant opens an access-grant connection; the developer fields
// would be ignored there, so they are refused rather than kept unused.
func connectGrant(cfg provider.ConnectionConfig) (provider.Connection, error) {
	var developer []string
	for _, f := range []string{fieldEmail, fieldPassword} {
		if cfg.Values.String(f) != "" {
			developer = append(developer, f)
		}
	}
	if len(developer) > 0 {
		clear := strings.Join(developer, `="" `) + `=""`
		return nil, fmt.Errorf("%w: give either access_grant (access-grant mode) or email and password (developer mode), not both: for access-grant mode drop %s (write %s); for developer mode drop access_grant (write access_grant=\"\")", provider.ErrInvalidInput, strings.Join(developer, " and "), clear)
	}
	if cfg.Values.String(fieldPassphrase) != "" {
		return nil, fmt.Errorf("%w: passphrase has no meaning in access-grant mode: the grant carries its own encryption key; remove it (write passphrase=\"\")", provider.ErrInvalidInput)
	}
	authURL, err := normalizeAuthURL(cfg.Values.String(fieldAuthURL))
	if err != nil {
		return nil, err
	}
	return storjgrant.Open(storjgrant.Config{Provider: Name, Product: "StorX", AuthURL: authURL, AuthField: fieldAuthURL, Grant: cfg.Values.String(storjgrant.FieldAccessGrant), Connection: cfg})
}

// csrfAlphabet makes a CSRF token that needs no escaping in a cookie.
const csrfAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// normalizeAuthURL applies base_url's rules to auth_url; empty means the
// default.
func normalizeAuthURL(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return defaultAuthURL, nil
	}
	return provider.NormalizeURL(fieldAuthURL, defaultAuthURL, raw)
}
