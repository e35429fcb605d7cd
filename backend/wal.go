package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// walKindIssue marks an upstream create in flight.
const walKindIssue = "issue"

// maxWALAge is how long a rollback keeps trying; after it the entry is
// dropped with a warning so a broken upstream cannot make Vault retry forever.
const maxWALAge = 24 * time.Hour

// walIssue was written before every upstream create by schemas 1 and 2 and
// deleted once the lease existed; schema 3 writes a pending inventory entry
// instead (see pending.go). One that survives (the create failed or Vault
// stopped mid-request) is still rolled back: the rollback deletes whatever
// carries Name upstream.
type walIssue struct {
	schemaHeader
	Connection string `json:"connection"`
	Provider   string `json:"provider"`
	Role       string `json:"role"`
	Name       string `json:"name"`
	// RoleValues are the role's provider fields at issue time (never secret).
	RoleValues provider.Values `json:"role_values,omitempty"`
	CreatedAt  int64           `json:"created_at"`
}

func (w walIssue) rollbackRequest() provider.RollbackRequest {
	return provider.RollbackRequest{Name: w.Name, RoleName: w.Role, Role: w.RoleValues}
}

// walRollback is called by Vault for WAL entries older than walRollbackMinAge.
// Returning nil deletes the entry.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data any) error {
	if kind != walKindIssue {
		b.Logger().Warn("dropping a WAL entry of unknown kind", "kind", kind)
		return nil
	}
	entry, err := decodeWAL(data)
	if errors.Is(err, errNewerSchema) {
		// Kept for the newer plugin, which knows how to roll it back.
		return err
	}
	if err != nil {
		b.Logger().Warn("dropping an unreadable WAL entry", "error", err)
		return nil
	}
	logger := b.Logger().With("connection", entry.Connection, "role", entry.Role, "object", entry.Name)
	if age := time.Since(time.Unix(entry.CreatedAt, 0)); age > maxWALAge {
		logger.Warn("giving up on removing an upstream object left by an interrupted issue; delete it upstream by hand if it still exists", "age", age.Round(time.Minute).String())
		return nil
	}
	conn, connEntry, err := b.liveConnection(ctx, req.Storage, entry.Connection)
	if err != nil {
		return err
	}
	if connEntry == nil || connEntry.Provider != entry.Provider {
		return fmt.Errorf("cannot roll back %s: connection %q is gone or changed provider; restore it, or the entry is dropped after %s", entry.Name, entry.Connection, maxWALAge)
	}
	err = conn.Rollback(ctx, entry.rollbackRequest())
	b.metrics.countErr(opRollback, entry.Connection, entry.Provider, entry.Role, err)
	if err != nil {
		return fmt.Errorf("roll back %s on connection %q: %w", entry.Name, entry.Connection, err)
	}
	b.forgetInventory(ctx, req.Storage, entry.Connection, entry.Name)
	logger.Info("removed what an interrupted issue left upstream")
	return nil
}

// decodeWAL reads an entry's data, which arrives as a generic map.
func decodeWAL(data any) (walIssue, error) {
	var entry walIssue
	raw, err := json.Marshal(data)
	if err == nil {
		err = json.Unmarshal(raw, &entry)
	}
	if err == nil {
		err = entry.checkSchema("a write-ahead log entry")
	}
	if err == nil && (entry.Connection == "" || entry.Name == "") {
		err = fmt.Errorf("the entry names no connection or object")
	}
	return entry, err
}
