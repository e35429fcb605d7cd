package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// staticRoleStoragePrefix holds static roles with their current secret; it
// is seal-wrapped.
const staticRoleStoragePrefix = "static-roles/"

const (
	fieldStaticCredentialID = "katapult_access_key_id"
	fieldRotationPeriod     = "rotation_period"
)

var commonStaticRoleFields = map[string]bool{fieldName: true, fieldConnection: true, fieldStaticCredentialID: true, fieldRotationPeriod: true}

// staticRoleEntry is a stored static role: an existing upstream credential
// whose secret the plugin regenerates on a schedule.
type staticRoleEntry struct {
	schemaHeader
	Connection     string        `json:"connection"`
	Provider       string        `json:"provider"`
	CredentialID   string        `json:"credential_id"`
	RotationPeriod time.Duration `json:"rotation_period"`
	// Credential is the data of the last regeneration, secret included.
	Credential   map[string]any `json:"credential"`
	LastRotation time.Time      `json:"last_rotation"`
	NextRotation time.Time      `json:"next_rotation"`
	Failures     int            `json:"rotation_failures,omitempty"`
	LastError    string         `json:"last_rotation_error,omitempty"`
}

func getStaticRole(ctx context.Context, s logical.Storage, name string) (*staticRoleEntry, error) {
	return readStored[staticRoleEntry](ctx, s, staticRoleStoragePrefix+name, fmt.Sprintf("static role %q", name))
}

func putStaticRole(ctx context.Context, s logical.Storage, name string, role *staticRoleEntry) error {
	return writeStored(ctx, s, staticRoleStoragePrefix+name, fmt.Sprintf("static role %q", name), role)
}

func (b *backend) pathStaticRoles() []*framework.Path {
	return []*framework.Path{
		listPath(staticRoleStoragePrefix, "static-roles", "static role"),
		{
			Pattern:      "static-roles/" + framework.MatchAllRegex(fieldName),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "static-role"},
			Fields: map[string]*framework.FieldSchema{
				fieldName:       {Type: framework.TypeString, Required: true, Description: "Name of the static role."},
				fieldConnection: {Type: framework.TypeString, Description: "Connection whose root credential manages the access key. Required at create."},
				fieldStaticCredentialID: {Type: framework.TypeString,
					Description: "(katapult) Id (objkey_…) of an existing object-storage access key. Binding it regenerates its S3 secret at once, since an existing secret cannot be read back."},
				fieldRotationPeriod: {Type: framework.TypeDurationSecond, Description: "How often the secret is regenerated; 1m or more. Required at create."},
			},
			ExistenceCheck: existsUnder(staticRoleStoragePrefix),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: writeOperation(b.pathStaticRoleWrite, "Bind an existing upstream credential."),
				logical.UpdateOperation: writeOperation(b.pathStaticRoleWrite, "Update a static role."),
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathStaticRoleRead, Summary: "Read a static role (never its secret)."},
				logical.DeleteOperation: writeOperation(b.pathStaticRoleDelete, "Delete a static role; the upstream credential is left as it is."),
			},
			HelpSynopsis: "A static role: an existing upstream credential whose secret Vault regenerates on a schedule.",
			HelpDescription: `Binds an existing credential (katapult: an object-storage access key) and
regenerates its secret every rotation_period; static-creds/NAME returns the
current secret, rotate-role/NAME regenerates it now. Deleting the static role
leaves the credential upstream untouched.`,
		},
	}
}

func (b *backend) pathStaticRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("static role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	role, err := getStaticRole(ctx, req.Storage, name)
	if err != nil || role == nil {
		return nil, err
	}
	data := map[string]any{
		fieldConnection:         role.Connection,
		fieldStaticCredentialID: role.CredentialID,
		fieldRotationPeriod:     int64(role.RotationPeriod.Seconds()),
		"last_vault_rotation":   provider.Timestamp(role.LastRotation),
		"next_vault_rotation":   provider.Timestamp(role.NextRotation),
	}
	if role.LastError != "" {
		data["last_rotation_error"] = role.LastError
		data["rotation_failures"] = role.Failures
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathStaticRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("static role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	lock := b.staticLock(name)
	lock.Lock()
	defer lock.Unlock()
	return nil, req.Storage.Delete(ctx, staticRoleStoragePrefix+name)
}

// pathStaticRoleWrite validates the request, and when a credential is bound
// (or re-bound) regenerates its secret before storing the role.
func (b *backend) pathStaticRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("static role", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	lock := b.staticLock(name)
	lock.Lock()
	defer lock.Unlock()
	existing, err := getStaticRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	role, rebind, err := staticRoleFromRequest(existing, req.Data, d)
	if err != nil {
		return errorResponseFor(err)
	}
	rotator, entry, err := b.staticRotator(ctx, req.Storage, name, role.Connection)
	if err != nil {
		return errorResponseFor(err)
	}
	role.Provider = entry.Provider
	if rebind {
		if err := rotator.LookupAccessKey(ctx, role.CredentialID); err != nil {
			return errorResponseFor(err)
		}
		if err := b.regenerateStatic(ctx, rotator, role); err != nil {
			return errorResponseFor(err)
		}
	} else if _, ok := d.GetOk(fieldRotationPeriod); ok {
		role.NextRotation = role.LastRotation.Add(role.RotationPeriod)
	}
	if err := putStaticRole(ctx, req.Storage, name, role); err != nil {
		return nil, fmt.Errorf("the secret of %s was regenerated but storing it failed; write the static role again: %w", role.CredentialID, err)
	}
	return nil, nil
}

// staticRoleFromRequest merges the request into the stored static role. It
// reports whether the credential is newly bound, which regenerates its secret.
func staticRoleFromRequest(existing *staticRoleEntry, data map[string]any, d *framework.FieldData) (*staticRoleEntry, bool, error) {
	for _, key := range sortedKeys(data) {
		if !commonStaticRoleFields[key] {
			return nil, false, requestError(fmt.Sprintf("%s is not a known field; the fields of a static role are: connection, katapult_access_key_id, rotation_period", key))
		}
	}
	role := &staticRoleEntry{}
	if existing != nil {
		copied := *existing
		role = &copied
	}
	if raw, ok := d.GetOk(fieldConnection); ok {
		role.Connection = raw.(string)
	}
	rebind := existing == nil
	if raw, ok := d.GetOk(fieldStaticCredentialID); ok && raw.(string) != role.CredentialID {
		role.CredentialID, rebind = raw.(string), true
	}
	if raw, ok := d.GetOk(fieldRotationPeriod); ok {
		role.RotationPeriod = time.Duration(raw.(int)) * time.Second
	}
	switch {
	case role.Connection == "":
		return nil, false, requestError("connection is required: the name of a connection written to config/NAME")
	case role.CredentialID == "":
		return nil, false, requestError("katapult_access_key_id is required: the id (objkey_…) of an existing access key")
	case role.RotationPeriod < minRotationPeriod:
		return nil, false, requestError(fmt.Sprintf("rotation_period is required and must be %s or more", minRotationPeriod))
	}
	return role, rebind, nil
}

// staticRotator loads the connection and checks it may serve this static role.
func (b *backend) staticRotator(ctx context.Context, s logical.Storage, roleName, connName string) (provider.StaticRotator, *connectionEntry, error) {
	conn, entry, err := b.liveConnection(ctx, s, connName)
	if err != nil {
		return nil, nil, err
	}
	if entry == nil {
		return nil, nil, requestError(fmt.Sprintf("connection %q does not exist: write config/%s first", connName, connName))
	}
	if !entry.allowsRole(roleName) {
		return nil, nil, requestError(fmt.Sprintf("connection %q does not allow role %q: add it to the connection's allowed_roles", connName, roleName))
	}
	rotator, ok := conn.(provider.StaticRotator)
	if !ok {
		return nil, nil, requestError(fmt.Sprintf("provider %s has no static roles: its API cannot regenerate an existing credential's secret", entry.Provider))
	}
	return rotator, entry, nil
}

// regenerateStatic replaces the secret upstream and records it in role.
func (b *backend) regenerateStatic(ctx context.Context, rotator provider.StaticRotator, role *staticRoleEntry) error {
	credential, err := rotator.RegenerateCredentials(ctx, role.CredentialID)
	if err != nil {
		return err
	}
	now := b.now().UTC()
	role.Credential, role.LastRotation, role.NextRotation = credential, now, now.Add(role.RotationPeriod)
	role.Failures, role.LastError = 0, ""
	return nil
}
