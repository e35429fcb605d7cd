package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// inventoryStoragePrefix holds one entry per upstream object the plugin
// created and has not yet seen deleted: inventory/<connection>/<name>. It
// holds no secret.
const inventoryStoragePrefix = "inventory/"

// inventoryEntry records an upstream object the plugin created, or, in
// state pending, one it is creating (see pending.go).
type inventoryEntry struct {
	schemaHeader
	// State is statePending while the create is in flight; live entries
	// have none.
	State    string       `json:"state,omitempty"`
	Name     string       `json:"name"`
	ObjectID string       `json:"object_id"`
	Role     string       `json:"role"`
	Provider string       `json:"provider"`
	Ref      provider.Ref `json:"ref"`
	// CreatedAt is when the plugin created the object.
	CreatedAt time.Time `json:"created_at"`
	// LeaseExpiresAt is when the object's lease ends as far as the plugin
	// knows: the TTL at issue, moved on by every renew.
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	// RoleValues are the role's provider fields at issue time (never
	// secret), which a rollback of a pending entry needs.
	RoleValues provider.Values `json:"role_values,omitempty"`
}

func inventoryKey(connection, name string) string {
	return inventoryStoragePrefix + connection + "/" + name
}

func putInventory(ctx context.Context, s logical.Storage, connection string, e *inventoryEntry) error {
	return writeStored(ctx, s, inventoryKey(connection, e.Name), fmt.Sprintf("inventory entry %s/%s", connection, e.Name), e)
}

func getInventory(ctx context.Context, s logical.Storage, connection, name string) (*inventoryEntry, error) {
	return readStored[inventoryEntry](ctx, s, inventoryKey(connection, name), fmt.Sprintf("inventory entry %s/%s", connection, name))
}

// listInventory reads every inventory entry of a connection.
func listInventory(ctx context.Context, s logical.Storage, connection string) ([]*inventoryEntry, error) {
	names, err := s.List(ctx, inventoryStoragePrefix+connection+"/")
	if err != nil {
		return nil, err
	}
	out := make([]*inventoryEntry, 0, len(names))
	for _, name := range names {
		e, err := getInventory(ctx, s, connection, name)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// forgetInventory drops an entry once its object is gone upstream. A
// failure only leaves a stale entry, which tidy reports as gone upstream and
// drops once its lease ended.
func (b *backend) forgetInventory(ctx context.Context, s logical.Storage, connection, name string) {
	if name == "" {
		return
	}
	if err := s.Delete(ctx, inventoryKey(connection, name)); err != nil {
		b.Logger().Warn("could not drop an inventory entry", "connection", connection, "object", name, "error", err)
		return
	}
	b.live.forget(connection, name)
}

// renewInventory records a lease's new end. Its error must fail the renew:
// a lease Vault extends while the inventory keeps the old end is one tidy
// later takes for ended, and it would delete the live credential.
func renewInventory(ctx context.Context, s logical.Storage, connection, name string, ttl time.Duration) error {
	e, err := getInventory(ctx, s, connection, name)
	if err != nil || e == nil || e.pending() {
		// No entry: the provider records nothing, or revoke already dropped
		// it. A pending entry belongs to no lease.
		return err
	}
	e.LeaseExpiresAt = time.Now().Add(ttl).UTC()
	return putInventory(ctx, s, connection, e)
}

func (e *inventoryEntry) view() map[string]any {
	state := "live"
	if e.pending() {
		state = statePending
	}
	return map[string]any{
		"state":            state,
		"name":             e.Name,
		"object_id":        e.ObjectID,
		"role":             e.Role,
		"created_at":       provider.Timestamp(e.CreatedAt),
		"lease_expires_at": provider.Timestamp(e.LeaseExpiresAt),
	}
}
