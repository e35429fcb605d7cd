package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

func (b *backend) pathStaticCreds() []*framework.Path {
	nameField := map[string]*framework.FieldSchema{
		fieldName: {Type: framework.TypeString, Required: true, Description: "Name of the static role."},
	}
	return []*framework.Path{
		{
			Pattern:      "static-creds/" + framework.MatchAllRegex(fieldName),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "static-credentials"},
			Fields:       nameField,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathStaticCredsRead, Summary: "Read the current secret of a static role."},
			},
			HelpSynopsis:    "The current credential of a static role, with no lease.",
			HelpDescription: "Returns the credential as last regenerated, when it was, when it is regenerated next, and ttl: the seconds until then.",
		},
		{
			Pattern:      "rotate-role/" + framework.MatchAllRegex(fieldName),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "static-role"},
			Fields:       nameField,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOperation(b.pathRotateRoleWrite, "Regenerate a static role's secret now."),
			},
			HelpSynopsis:    "Regenerate a static role's secret now.",
			HelpDescription: "Regenerates the secret upstream, stores it and restarts the rotation period.",
		},
	}
}

func (b *backend) pathStaticCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	role, err := getStaticRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("static role %q does not exist: write static-roles/%s first", name, name), nil
	}
	data := map[string]any{}
	for k, v := range role.Credential {
		data[k] = v
	}
	data["last_vault_rotation"] = provider.Timestamp(role.LastRotation)
	data["next_vault_rotation"] = provider.Timestamp(role.NextRotation)
	data["ttl"] = max(int64(role.NextRotation.Sub(b.now()).Seconds()), 0)
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathRotateRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	if err := b.rotateStatic(ctx, req.Storage, name); err != nil {
		return errorResponseFor(err)
	}
	return nil, nil
}

func (b *backend) staticLock(name string) *locksutil.LockEntry {
	return locksutil.LockForKey(b.entryLocks, staticRoleStoragePrefix+name)
}

// rotateStatic regenerates a static role's secret and stores it at once: the
// old secret is dead from that moment, so the new one must not be lost.
func (b *backend) rotateStatic(ctx context.Context, s logical.Storage, name string) error {
	lock := b.staticLock(name)
	lock.Lock()
	defer lock.Unlock()
	role, err := getStaticRole(ctx, s, name)
	if err != nil {
		return err
	}
	if role == nil {
		return requestError(fmt.Sprintf("static role %q does not exist: write static-roles/%s first", name, name))
	}
	rotator, _, err := b.staticRotator(ctx, s, name, role.Connection)
	if err == nil {
		err = b.regenerateStatic(ctx, rotator, role)
	}
	if err != nil {
		b.metrics.count(opRotation, role.Connection, role.Provider, name, outcomeFailure)
		return b.recordStaticFailure(ctx, s, name, role, err)
	}
	err = putStaticRole(ctx, s, name, role)
	b.metrics.countErr(opRotation, role.Connection, role.Provider, name, err)
	if err != nil {
		return fmt.Errorf("the secret of %s was regenerated but storing it failed, so static-creds shows a dead secret until the next successful rotation; run rotate-role again: %w", role.CredentialID, err)
	}
	b.sendEvent(ctx, eventRotateStatic, "static_role", name, "connection", role.Connection, "provider", role.Provider)
	return nil
}

func (b *backend) recordStaticFailure(ctx context.Context, s logical.Storage, name string, role *staticRoleEntry, cause error) error {
	role.Failures++
	role.LastError = cause.Error()
	role.NextRotation = b.now().Add(min(time.Minute<<min(role.Failures-1, 6), role.RotationPeriod))
	return errors.Join(cause, putStaticRole(ctx, s, name, role))
}

// rotateDueStatics regenerates every static role whose time has come. A role
// whose last regeneration could not be stored is due at once, since its
// stored secret is dead.
func (b *backend) rotateDueStatics(ctx context.Context, s logical.Storage) error {
	names, err := s.List(ctx, staticRoleStoragePrefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		role, err := getStaticRole(ctx, s, name)
		if err != nil || role == nil || b.now().Before(role.NextRotation) {
			errs = append(errs, err)
			continue
		}
		err = b.withinItemBudget(ctx, fmt.Sprintf("static role %q", name), func(ctx context.Context) error {
			return b.rotateStatic(ctx, s, name)
		})
		if err != nil {
			b.Logger().Error("static role rotation failed", "static_role", name, "error", err)
			errs = append(errs, fmt.Errorf("static role %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
