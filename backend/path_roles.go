package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

const roleStoragePrefix = "roles/"

// Common role field names.
const (
	fieldConnection = "connection"
	fieldTTL        = "ttl"
	fieldMaxTTL     = "max_ttl"
)

var commonRoleFields = map[string]bool{fieldName: true, fieldConnection: true, fieldTTL: true, fieldMaxTTL: true, fieldMaxLiveCredentials: true}

// roleEntry is a stored role (roles/NAME).
type roleEntry struct {
	schemaHeader
	Connection string `json:"connection"`
	// Provider is the connection's provider when the role was written; the
	// role's values are that provider's fields.
	Provider string          `json:"provider"`
	TTL      time.Duration   `json:"ttl"`
	MaxTTL   time.Duration   `json:"max_ttl"`
	Values   provider.Values `json:"values"`
	// MaxLiveCredentials caps the role's live credentials; 0 is no cap.
	MaxLiveCredentials int `json:"max_live_credentials,omitempty"`
}

func roleFields(p provider.Provider) []provider.Field { return p.RoleFields() }

func getRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	return readStored[roleEntry](ctx, s, roleStoragePrefix+name, fmt.Sprintf("role %q", name))
}

func (b *backend) pathRoles() []*framework.Path {
	fields := b.providers.schema(roleFields)
	fields[fieldName] = &framework.FieldSchema{Type: framework.TypeString, Required: true, Description: "Name of the role."}
	fields[fieldConnection] = &framework.FieldSchema{Type: framework.TypeString,
		Description: "Connection (config/NAME) whose root credential issues this role's credentials. Required at create."}
	fields[fieldTTL] = &framework.FieldSchema{Type: framework.TypeDurationSecond,
		Description: "Default lease TTL. 0 uses the mount's, then the system's default."}
	fields[fieldMaxTTL] = &framework.FieldSchema{Type: framework.TypeDurationSecond,
		Description: "Maximum lease TTL; also the upstream expiry where the provider supports one. 0 uses the mount's, then the system's maximum, " +
			"but at most 24h for providers whose credentials cannot be revoked (dstor, storable)."}
	fields[fieldMaxLiveCredentials] = maxLiveFieldSchema("this role's credentials")

	return []*framework.Path{
		listPath(roleStoragePrefix, "roles", "role"),
		{
			Pattern:        "roles/" + framework.MatchAllRegex(fieldName),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "role"},
			Fields:         fields,
			ExistenceCheck: existsUnder(roleStoragePrefix),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: writeOperation(b.pathRoleWrite, "Create a role."),
				logical.UpdateOperation: writeOperation(b.pathRoleWrite, "Update a role; omitted fields keep their values."),
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathRoleRead, Summary: "Read a role."},
				logical.DeleteOperation: writeOperation(b.pathRoleDelete, "Delete a role. Its leases stay revocable."),
			},
			HelpSynopsis: "A role: which connection issues credentials, their TTLs, and the provider's role fields.",
			HelpDescription: `A role names a connection, the lease ttl and max_ttl, and the fields of
that connection's provider. Deleting a role does not revoke its leases, and
they stay revocable: everything revoke needs is kept in each lease.

dstor and storable credentials cannot be revoked upstream: they live until
their own expiry. A role of theirs without max_ttl is warned at write and
its leases are capped at 24h (or the mount's maximum lease TTL if lower); a
dStor token is minted to expire there too, while a Storable token keeps the
lifetime Storable gives it (90 minutes), which its lease never outlives.`,
		},
	}
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	role, err := getRole(ctx, req.Storage, name)
	if err != nil || role == nil {
		return nil, err
	}
	data := map[string]any{
		fieldConnection: role.Connection,
		fieldTTL:        int64(role.TTL.Seconds()),
		fieldMaxTTL:     int64(role.MaxTTL.Seconds()),
	}
	if b.countsLive(role.Provider) {
		data[fieldMaxLiveCredentials] = role.MaxLiveCredentials
		live, err := b.live.liveOf(ctx, req.Storage, role.Connection, name)
		if err != nil {
			return nil, err
		}
		data[fieldLiveCredentials] = live
	}
	if p, ok := b.providers.get(role.Provider); ok {
		for k, v := range publicValues(p.RoleFields(), role.Values) {
			data[k] = v
		}
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, req.Storage.Delete(ctx, roleStoragePrefix+name)
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	existing, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	msg, role, err := b.roleFromRequest(ctx, req, name, existing, d)
	if err != nil {
		return nil, err
	}
	if msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	return b.storeRole(ctx, req, name, role)
}

// roleFromRequest merges the request into the stored role (or a new one). A
// problem the caller must fix comes back as a message; a storage failure as
// an error.
func (b *backend) roleFromRequest(ctx context.Context, req *logical.Request, name string, existing *roleEntry, d *framework.FieldData) (string, *roleEntry, error) {
	creating := existing == nil
	role := &roleEntry{Values: provider.Values{}}
	if !creating {
		copied := *existing
		role = &copied
	}
	if raw, ok := d.GetOk(fieldConnection); ok {
		role.Connection = raw.(string)
	}
	if role.Connection == "" {
		return "connection is required: the name of a connection written to config/NAME", nil, nil
	}
	conn, err := getConnection(ctx, req.Storage, role.Connection)
	if err != nil {
		return "", nil, err
	}
	if conn == nil {
		return fmt.Sprintf("connection %q does not exist: write config/%s first, or name an existing connection", role.Connection, role.Connection), nil, nil
	}
	if !conn.allowsRole(name) {
		return fmt.Sprintf("connection %q does not allow role %q: add it to the connection's allowed_roles", role.Connection, name), nil, nil
	}
	p, ok := b.providers.get(conn.Provider)
	if !ok {
		return fmt.Sprintf("connection %q uses provider %q, which this plugin version does not have", role.Connection, conn.Provider), nil, nil
	}
	if role.Provider != conn.Provider {
		// The role now follows another provider: the old provider's values mean nothing there.
		creating, role.Provider, role.Values = true, conn.Provider, provider.Values{}
	}
	if err := checkFieldNames(req.Data, commonRoleFields, p.RoleFields(), b.providers.fieldOwners(roleFields), p.Name()); err != nil {
		return err.Error(), nil, nil
	}
	values, err := applyFields(p.RoleFields(), req.Data, role.Values, creating)
	if err == nil {
		err = p.ValidateRole(values)
	}
	if err != nil {
		return err.Error(), nil, nil
	}
	role.Values = values
	if msg := applyTTLs(role, d); msg != "" {
		return msg, nil, nil
	}
	if checker, ok := p.(provider.ConnectionRoleChecker); ok {
		if err := checker.CheckRoleForConnection(conn.Values, role.Values, role.MaxTTL); err != nil {
			return err.Error(), nil, nil
		}
	}
	if raw, ok := d.GetOk(fieldMaxLiveCredentials); ok {
		role.MaxLiveCredentials = raw.(int)
	}
	if msg := b.checkMaxLive(role.MaxLiveCredentials, role.Provider, fmt.Sprintf("role %q", name)); msg != "" {
		return msg, nil, nil
	}
	return "", role, nil
}

func applyTTLs(role *roleEntry, d *framework.FieldData) string {
	if raw, ok := d.GetOk(fieldTTL); ok {
		role.TTL = time.Duration(raw.(int)) * time.Second
	}
	if raw, ok := d.GetOk(fieldMaxTTL); ok {
		role.MaxTTL = time.Duration(raw.(int)) * time.Second
	}
	if role.TTL < 0 || role.MaxTTL < 0 {
		return "ttl and max_ttl must not be negative"
	}
	if role.MaxTTL > 0 && role.TTL > role.MaxTTL {
		return fmt.Sprintf("ttl (%s) is longer than max_ttl (%s): lower ttl or raise max_ttl", role.TTL, role.MaxTTL)
	}
	return ""
}

func (b *backend) storeRole(ctx context.Context, req *logical.Request, name string, role *roleEntry) (*logical.Response, error) {
	if err := writeStored(ctx, req.Storage, roleStoragePrefix+name, fmt.Sprintf("role %q", name), role); err != nil {
		return nil, err
	}
	var warnings []string
	if sysMax := b.System().MaxLeaseTTL(); role.MaxTTL > sysMax {
		warnings = append(warnings, fmt.Sprintf("max_ttl (%s) is above the mount's maximum lease TTL (%s); leases will be capped at %s", role.MaxTTL, sysMax, sysMax))
	}
	if role.MaxTTL == 0 && b.cannotRevoke(role.Provider) {
		warnings = append(warnings, fmt.Sprintf("provider %s cannot revoke its credentials upstream and the role sets no max_ttl, so its leases are capped at %s "+
			"(or the mount's maximum lease TTL if lower); set max_ttl to choose the bound", role.Provider, irrevocableMaxTTL))
	}
	if len(warnings) == 0 {
		return nil, nil
	}
	return &logical.Response{Warnings: warnings}, nil
}
