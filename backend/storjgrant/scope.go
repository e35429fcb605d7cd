// Package storjgrant issues S3 credentials on any Storj-based satellite
// (Storj DCS, StorX) from one access grant the operator made once: each
// lease gets a child grant derived locally with storj.io/uplink (Share:
// the role's permissions, buckets and prefix, NotAfter at the lease's
// latest end), which the auth service registers for S3 credentials (one
// HTTP call). Revoking the lease asks the satellite, over DRPC through
// uplink, to revoke the child's macaroon (Project.RevokeAccess); NotAfter
// is the backstop.
//
// The storx provider (its access_grant mode) and the storj provider share
// this code; neither imports the engine.
package storjgrant

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Field names shared by the providers that use access grants.
const (
	FieldAccessGrant = "access_grant"
	FieldBuckets     = "buckets"
	FieldPrefix      = "prefix"
	FieldPermissions = "permissions"
)

// Permission names a role may list.
const (
	PermissionDownload = "download"
	PermissionUpload   = "upload"
	PermissionList     = "list"
	PermissionDelete   = "delete"
)

// AllPermissions is every permission a grant can carry, the default.
var AllPermissions = []string{PermissionDelete, PermissionDownload, PermissionList, PermissionUpload}

// MinGrantLifetime is the auth service's floor: it refuses a grant that
// expires within a minute (authdb: "expiration cannot be shorter than a
// minute").
const MinGrantLifetime = time.Minute

// bucketPattern is Storj's bucket naming rule: 3 to 63 lower-case letters,
// digits, '-' and '.', starting and ending with a letter or digit.
var bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ScopeFields are the role fields that restrict a grant.
func ScopeFields() []provider.Field {
	return []provider.Field{
		{Name: FieldBuckets, Type: provider.TypeStringList,
			Description: "Buckets the credentials may reach; empty means every bucket of the project."},
		{Name: FieldPrefix, Type: provider.TypeString,
			Description: "Object key prefix the credentials are limited to; needs exactly one bucket."},
		{Name: FieldPermissions, Type: provider.TypeStringList, Default: AllPermissions, Allowed: AllPermissions,
			Description: "What the credentials may do: download, upload, list, delete (default all four)."},
	}
}

// Scope is a role's restriction of its grants.
type Scope struct {
	Buckets     []string
	Prefix      string
	Permissions []string
}

// ScopeFrom reads a role's scope; permissions default to all four.
func ScopeFrom(role provider.Values) Scope {
	s := Scope{Buckets: role.Strings(FieldBuckets), Prefix: role.String(FieldPrefix), Permissions: role.Strings(FieldPermissions)}
	if _, set := role[FieldPermissions]; !set {
		s.Permissions = AllPermissions
	}
	return s
}

// ValidateScope checks a role's buckets, prefix and permissions; product
// names the upstream in messages ("StorX", "Storj").
func ValidateScope(product string, role provider.Values) error {
	buckets := role.Strings(FieldBuckets)
	for _, b := range buckets {
		if !bucketPattern.MatchString(b) {
			return fmt.Errorf("%w: bucket %q is not a valid bucket name: use 3 to 63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", provider.ErrInvalidInput, b)
		}
	}
	if role.String(FieldPrefix) != "" && len(buckets) != 1 {
		return fmt.Errorf("%w: prefix needs exactly one bucket (%s applies a prefix only to a single bucket); set buckets to one bucket or remove prefix", provider.ErrInvalidInput, product)
	}
	if _, set := role[FieldPermissions]; set && len(role.Strings(FieldPermissions)) == 0 {
		return fmt.Errorf("%w: permissions must name at least one of %s; a grant without any would be useless", provider.ErrInvalidInput, strings.Join(AllPermissions, ", "))
	}
	return nil
}

// CheckMaxTTL refuses, at role write, a max_ttl under the auth service's
// one-minute floor: every lease of the role would be refused. 0 means the
// mount's maximum, which Issue checks.
func CheckMaxTTL(maxTTL time.Duration) error {
	if maxTTL == 0 || maxTTL >= MinGrantLifetime {
		return nil
	}
	return fmt.Errorf("%w: max_ttl %s is under a minute, and the auth service refuses access grants that expire within a minute (each lease's grant expires at the lease's max TTL); set max_ttl to 1m or more", provider.ErrInvalidInput, maxTTL)
}
