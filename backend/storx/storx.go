// Package storx issues StorX S3 credentials. Vault keeps the developer's
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
	"regexp"
	"strings"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
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
	fieldBuckets        = "buckets"
	fieldPrefix         = "prefix"
	fieldPermissions    = "permissions"
	defaultBaseURL      = "https://storx.io"
	defaultAuthURL      = "https://auth.storx.io"
	permissionDownload  = "download"
	permissionUpload    = "upload"
	permissionList      = "list"
	permissionDelete    = "delete"
	allBucketsParameter = "all"
)

// allPermissions is every permission a grant can carry, the default.
var allPermissions = []string{permissionDelete, permissionDownload, permissionList, permissionUpload}

// bucketPattern is Storj's bucket naming rule: 3 to 63 lower-case letters,
// digits, '-' and '.', starting and ending with a letter or digit.
var bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

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
		{Name: fieldEmail, Type: provider.TypeString, Required: true, Account: true,
			Description: "Email of the StorX developer account that creates users and API keys."},
		{Name: fieldPassword, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Password of that developer account. Write-only. The account must not require MFA."},
		{Name: fieldPassphrase, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Encryption passphrase of every access grant the connection issues. Write-only. Keep it fixed: objects written under one passphrase cannot be read with credentials from another."},
		{Name: fieldAuthURL, Type: provider.TypeString, Default: defaultAuthURL, URL: true,
			Description: "Address of the StorX auth service that turns access grants into S3 credentials."},
	}
}

// RoleFields implements provider.Provider.
func (Provider) RoleFields() []provider.Field {
	return []provider.Field{
		{Name: fieldUserEmail, Type: provider.TypeString, Required: true,
			Description: "Email of the StorX user whose project holds the API keys; the user is created when missing."},
		{Name: fieldUserFullName, Type: provider.TypeString,
			Description: "Full name given to the StorX user if Vault creates it (default: the part of user_email before the @)."},
		{Name: fieldBuckets, Type: provider.TypeStringList,
			Description: "Buckets the credentials may reach; empty means every bucket of the project."},
		{Name: fieldPrefix, Type: provider.TypeString,
			Description: "Object key prefix the credentials are limited to; needs exactly one bucket."},
		{Name: fieldPermissions, Type: provider.TypeStringList, Default: allPermissions, Allowed: allPermissions,
			Description: "What the credentials may do: download, upload, list, delete (default all four)."},
	}
}

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(role provider.Values) error {
	if email := role.String(fieldUserEmail); email != "" && !looksLikeEmail(email) {
		return fmt.Errorf("%w: user_email=%q is not an email address; give the StorX user's email, e.g. app@example.com", provider.ErrInvalidInput, email)
	}
	buckets := role.Strings(fieldBuckets)
	for _, b := range buckets {
		if err := checkBucket(b); err != nil {
			return err
		}
	}
	if role.String(fieldPrefix) != "" && len(buckets) != 1 {
		return fmt.Errorf("%w: prefix needs exactly one bucket (StorX applies a prefix only to a single bucket); set buckets to one bucket or remove prefix", provider.ErrInvalidInput)
	}
	if _, set := role[fieldPermissions]; set && len(role.Strings(fieldPermissions)) == 0 {
		return fmt.Errorf("%w: permissions must name at least one of %s; a grant without any would be useless", provider.ErrInvalidInput, strings.Join(allPermissions, ", "))
	}
	return nil
}

func checkBucket(bucket string) error {
	switch {
	case bucket == allBucketsParameter:
		return fmt.Errorf("%w: buckets may not contain %q: StorX reads bucket=all as every bucket; leave buckets empty for that", provider.ErrInvalidInput, bucket)
	case !bucketPattern.MatchString(bucket):
		return fmt.Errorf("%w: bucket %q is not a valid bucket name: use 3 to 63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", provider.ErrInvalidInput, bucket)
	}
	return nil
}

func looksLikeEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(s, " \t\r\n,;")
}

// Connect implements provider.Provider.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	email := cfg.Values.String(fieldEmail)
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
