package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// An issue that may leave an object upstream writes the object's inventory
// entry before the upstream create, in state pending, carrying what a
// rollback needs (the role's values at issue time). Once the create
// succeeded it rewrites the same entry once as the live record. So an issue
// costs two storage writes where a WAL entry cost three (WAL put, inventory
// put, WAL delete), and the entry that survives a crash mid-create is the
// one Vault's rollback operation hands to rollbackPending: after
// walRollbackMinAge it deletes whatever carries the entry's name upstream,
// as the WAL rollback does for the framework's WAL entries, which v0.1.0 and
// schema 2 wrote and which walRollback still rolls back.

// statePending marks an inventory entry whose upstream create is (or was,
// when it crashed) in flight; live entries have no state.
const statePending = "pending"

// pendingIndex knows the keys of this node's pending inventory entries, so
// that the rollback operation reads those instead of the whole inventory.
// The first rollback after the backend starts scans the inventory once for
// what an earlier process left; from then on every pending entry is one
// this process wrote. Inventory is local storage, written only by the node
// that owns it, so no other node adds pending entries behind its back.
type pendingIndex struct {
	mu      sync.Mutex
	scanned bool
	keys    map[string]string // storage key → connection
}

func newPendingIndex() *pendingIndex { return &pendingIndex{keys: map[string]string{}} }

func (p *pendingIndex) add(connection, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[inventoryKey(connection, name)] = connection
}

func (p *pendingIndex) remove(connection, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, inventoryKey(connection, name))
}

// candidates returns the keys of every pending entry known, scanning the
// inventory the first time.
func (p *pendingIndex) candidates(ctx context.Context, s logical.Storage) (map[string]string, error) {
	p.mu.Lock()
	scanned := p.scanned
	p.mu.Unlock()
	if !scanned {
		found, err := scanPending(ctx, s)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		for key, conn := range found {
			p.keys[key] = conn
		}
		p.scanned = true
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.keys))
	for k, v := range p.keys {
		out[k] = v
	}
	return out, nil
}

// scanPending reads the whole inventory for pending entries.
func scanPending(ctx context.Context, s logical.Storage) (map[string]string, error) {
	conns, err := s.List(ctx, inventoryStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("list the inventory for interrupted issues: %w", err)
	}
	found := map[string]string{}
	for _, c := range conns {
		connection, ok := strings.CutSuffix(c, "/")
		if !ok {
			continue
		}
		entries, err := listInventory(ctx, s, connection)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.pending() {
				found[inventoryKey(connection, e.Name)] = connection
			}
		}
	}
	return found, nil
}

func (e *inventoryEntry) pending() bool { return e.State == statePending }

func (e *inventoryEntry) rollbackRequest() provider.RollbackRequest {
	return provider.RollbackRequest{Name: e.Name, RoleName: e.Role, Role: e.RoleValues}
}

// putPending records an issue about to create name upstream. The storage
// error comes back unwrapped when it is logical.ErrReadOnly: on a
// performance standby Vault recognizes it and forwards the request.
func (b *backend) putPending(ctx context.Context, s logical.Storage, connection string, e *inventoryEntry) error {
	e.State = statePending
	if err := putInventory(ctx, s, connection, e); err != nil {
		if errors.Is(err, logical.ErrReadOnly) {
			return logical.ErrReadOnly
		}
		return err
	}
	b.pending.add(connection, e.Name)
	return nil
}

// dropPending deletes the pending entry of an issue whose create is known
// not to have left anything upstream, or whose credential is recorded
// nowhere else.
func (b *backend) dropPending(ctx context.Context, s logical.Storage, connection, name string) error {
	if err := s.Delete(ctx, inventoryKey(connection, name)); err != nil {
		return err
	}
	b.pending.remove(connection, name)
	return nil
}

// rollbackPending runs on Vault's rollback operation beside the framework's
// WAL rollback: it rolls back every pending entry older than the WAL's
// minimum age (any age with the framework's "immediate"), with the WAL
// rollback's semantics. Only the node that owns the inventory (local
// storage) rolls back: not a performance standby, not a DR secondary.
func (b *backend) rollbackPending(ctx context.Context, req *logical.Request) error {
	state := b.System().ReplicationState()
	if state.HasState(consts.ReplicationPerformanceStandby) || state.HasState(consts.ReplicationDRSecondary) {
		return nil
	}
	keys, err := b.pending.candidates(ctx, req.Storage)
	if err != nil {
		return err
	}
	minAge := b.WALRollbackMinAge
	if _, ok := req.Data["immediate"]; ok {
		minAge = -time.Hour
	}
	var errs []error
	for key, connection := range keys {
		name := strings.TrimPrefix(key, inventoryStoragePrefix+connection+"/")
		errs = append(errs, b.rollbackOnePending(ctx, req.Storage, connection, name, minAge))
	}
	return errors.Join(errs...)
}

// rollbackOnePending rolls back one pending entry if it is old enough.
func (b *backend) rollbackOnePending(ctx context.Context, s logical.Storage, connection, name string, minAge time.Duration) error {
	e, err := getInventory(ctx, s, connection, name)
	if errors.Is(err, errNewerSchema) {
		return err
	}
	if err != nil {
		return fmt.Errorf("read the pending inventory entry %s/%s: %w", connection, name, err)
	}
	if e == nil || !e.pending() {
		// Gone (revoked, rolled back) or live now.
		b.pending.remove(connection, name)
		return nil
	}
	age := time.Since(e.CreatedAt)
	if age < minAge {
		return nil
	}
	logger := b.Logger().With("connection", connection, "role", e.Role, "object", name)
	if age > maxWALAge {
		logger.Warn("giving up on removing an upstream object left by an interrupted issue; delete it upstream by hand if it still exists", "age", age.Round(time.Minute).String())
		return b.dropPending(ctx, s, connection, name)
	}
	conn, connEntry, err := b.liveConnection(ctx, s, connection)
	if err != nil {
		return err
	}
	if connEntry == nil || connEntry.Provider != e.Provider {
		return fmt.Errorf("cannot roll back %s: connection %q is gone or changed provider; restore it, or the entry is dropped after %s", name, connection, maxWALAge)
	}
	err = conn.Rollback(ctx, e.rollbackRequest())
	b.metrics.countErr(opRollback, connection, e.Provider, e.Role, err)
	if err != nil {
		return fmt.Errorf("roll back %s on connection %q: %w", name, connection, err)
	}
	// Said as soon as it is true: the entry's delete is one more round trip.
	logger.Info("removed what an interrupted issue left upstream")
	if err := b.dropPending(ctx, s, connection, name); err != nil {
		return fmt.Errorf("drop the inventory entry of %s, rolled back on connection %q: %w", name, connection, err)
	}
	return nil
}
