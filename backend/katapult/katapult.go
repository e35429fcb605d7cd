// Package katapult issues Katapult object storage access keys: one key per
// lease, named after the lease, with S3 credentials generated for it and
// bucket grants applied through bucket ACLs. Revoke takes the key out of
// those ACLs and deletes it. Rotate-root regenerates the API token's secret.
//
// The root credential is a Katapult API token (organization or user token)
// with the object_storage scope, plus api_tokens for rotate-root.
package katapult

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Name is the provider's name in a connection's `provider` field.
const Name = "katapult"

// defaultRegion is the only object storage cluster Katapult has today.
const defaultRegion = "uk-lon-1"

// Field names.
const (
	fieldAPIToken        = "api_token"
	fieldOrganization    = "organization"
	fieldRegion          = "region"
	fieldAPITokenID      = "api_token_id"
	fieldAllBucketsRead  = "all_buckets_read"
	fieldAllObjectsRead  = "all_objects_read"
	fieldAllObjectsWrite = "all_objects_write"
	fieldReadBuckets     = "read_buckets"
	fieldWriteBuckets    = "write_buckets"
)

// orgIDPrefix tells an organization id from a sub-domain.
const orgIDPrefix = "org_"

var (
	orgIDPattern     = regexp.MustCompile(`^org_[A-Za-z0-9]+$`)
	subDomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	// Buckets are served at https://NAME.REGION.katapultobjects.com/, so
	// their names follow S3's DNS rules.
	bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// Provider is the Katapult provider.
type Provider struct{}

// New returns the Katapult provider.
func New() provider.Provider { return Provider{} }

// Name implements provider.Provider.
func (Provider) Name() string { return Name }

// DefaultBaseURL implements provider.Provider.
func (Provider) DefaultBaseURL() string { return "https://api.katapult.io/core/v1" }

// RotatesRoot implements provider.RootRotationCapable: the API token's
// secret is regenerated with POST /api_tokens/api_token/regenerate_secret.
func (Provider) RotatesRoot() bool { return true }

// ConnectionFields implements provider.Provider.
func (Provider) ConnectionFields() []provider.Field {
	return []provider.Field{
		{Name: fieldAPIToken, Type: provider.TypeString, Required: true, Secret: true,
			Description: "Katapult API token (sent as Bearer) with the object_storage scope, and api_tokens for rotate-root. Write-only."},
		{Name: fieldOrganization, Type: provider.TypeString, Required: true, Account: true,
			Description: "Organization that owns the access keys: its sub-domain, or its org_… id."},
		{Name: fieldRegion, Type: provider.TypeString, Default: defaultRegion,
			Description: "Object storage cluster region."},
		{Name: fieldAPITokenID, Type: provider.TypeString,
			Description: "Id of the API token itself, for rotate-root. Needed for organization tokens; user tokens find it through GET /users/current."},
	}
}

// RoleFields implements provider.Provider.
func (Provider) RoleFields() []provider.Field {
	return []provider.Field{
		{Name: fieldAllBucketsRead, Type: provider.TypeBool, Default: false,
			Description: "Let each key list and read every bucket of the organization."},
		{Name: fieldAllObjectsRead, Type: provider.TypeBool, Default: false,
			Description: "Let each key read every object of the organization."},
		{Name: fieldAllObjectsWrite, Type: provider.TypeBool, Default: false,
			Description: "Let each key write every object of the organization."},
		{Name: fieldReadBuckets, Type: provider.TypeStringList,
			Description: "Buckets whose ACL grants each key read access (read_key_ids)."},
		{Name: fieldWriteBuckets, Type: provider.TypeStringList,
			Description: "Buckets whose ACL grants each key write access (write_key_ids)."},
	}
}

// ValidateRole implements provider.Provider.
func (Provider) ValidateRole(role provider.Values) error {
	for _, field := range []string{fieldReadBuckets, fieldWriteBuckets} {
		for _, name := range role.Strings(field) {
			if !bucketPattern.MatchString(name) {
				return fmt.Errorf("%w: %s contains %q, which is not a bucket name: use 3 to 63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit", provider.ErrInvalidInput, field, name)
			}
		}
	}
	return nil
}

// SetsNoExpiry implements provider.ExpiryFree: Katapult's access keys have
// no expiry; revoke ends them.
func (Provider) SetsNoExpiry() bool { return true }

// Connect implements provider.Provider.
func (Provider) Connect(cfg provider.ConnectionConfig) (provider.Connection, error) {
	if cfg.Values.String(fieldAPIToken) == "" {
		return nil, fmt.Errorf("%w: api_token is required: a Katapult API token with the object_storage scope", provider.ErrInvalidInput)
	}
	org, err := parseOrganization(cfg.Values.String(fieldOrganization))
	if err != nil {
		return nil, err
	}
	return newConnection(cfg, org), nil
}

// orgLookup is how Katapult finds an organization: organization[id] for an
// org_… id, organization[sub_domain] otherwise.
type orgLookup struct {
	key, value string
}

func parseOrganization(org string) (orgLookup, error) {
	switch {
	case org == "":
		return orgLookup{}, fmt.Errorf("%w: organization is required: the organization's sub-domain or its org_… id", provider.ErrInvalidInput)
	case strings.HasPrefix(org, orgIDPrefix):
		if !orgIDPattern.MatchString(org) {
			return orgLookup{}, fmt.Errorf("%w: organization=%q looks like an id but is not one: use org_ followed by letters and digits, or the sub-domain", provider.ErrInvalidInput, org)
		}
		return orgLookup{key: "id", value: org}, nil
	case !subDomainPattern.MatchString(org):
		return orgLookup{}, fmt.Errorf("%w: organization=%q is not a sub-domain: use lower-case letters, digits and '-', or the org_… id", provider.ErrInvalidInput, org)
	}
	return orgLookup{key: "sub_domain", value: org}, nil
}
