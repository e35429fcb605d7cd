package backend

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Event types, under the plugin's name as Vault's own engines do
// (ldap/rotate-root, database/creds-create).
const (
	eventCredsCreate  = "apikeys/creds-create"
	eventCredsRevoke  = "apikeys/creds-revoke"
	eventRotateRoot   = "apikeys/rotate-root"
	eventRotateStatic = "apikeys/rotate-role"
)

// sendEvent publishes an event with string metadata pairs (never a secret).
// Vault without events enabled is normal and not worth a warning, and so is
// OpenBao, whose plugin host has no events service (gRPC Unimplemented): the
// event is dropped with a debug line.
func (b *backend) sendEvent(ctx context.Context, eventType string, metadataPairs ...string) {
	err := logical.SendEvent(ctx, b, eventType, metadataPairs...)
	if err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.Logger().Debug("could not send event", "event", eventType, "error", err)
	}
}
