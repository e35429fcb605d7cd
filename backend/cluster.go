package backend

import (
	"context"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Performance replication (Vault Enterprise). Connections and roles are
// replicated; a performance secondary issues and revokes its own leases. So
// everything the issue and revoke paths write is local storage (the WAL, the
// inventory, the cluster's tag), and every upstream object name carries the
// tag of the cluster that made it: tidy on one cluster claims only its own
// objects and never deletes another cluster's live credentials, though the
// connection's tag is the same everywhere.

// clusterStoragePrefix is local storage, never replicated.
const clusterStoragePrefix = "local/"

// clusterTagKey holds this cluster's tag, made at its first issue or tidy.
const clusterTagKey = clusterStoragePrefix + "cluster"

// clusterTagLen is the length of a cluster's tag in object names.
const clusterTagLen = 2

// clusterRecord is the stored tag.
type clusterRecord struct {
	schemaHeader
	Tag string `json:"tag"`
}

// clusterTagCache keeps the tag once known: it never changes.
type clusterTagCache struct {
	mu  sync.Mutex
	tag string
}

// clusterTag returns this cluster's tag, making and storing it the first
// time. A storage error is returned unwrapped: on a performance standby it is
// logical.ErrReadOnly, which Vault answers by forwarding the request.
func (b *backend) clusterTag(ctx context.Context, s logical.Storage) (string, error) {
	c := &b.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tag != "" {
		return c.tag, nil
	}
	stored, err := readStored[clusterRecord](ctx, s, clusterTagKey, "the cluster's tag")
	if err != nil {
		return "", err
	}
	if stored == nil {
		tag, err := provider.RandomString(clusterTagLen, uniqueAlphabet)
		if err != nil {
			return "", err
		}
		stored = &clusterRecord{schemaHeader: schemaHeader{SchemaVersion: currentSchemaVersion}, Tag: tag}
		entry, err := logical.StorageEntryJSON(clusterTagKey, stored)
		if err != nil {
			return "", err
		}
		if err := s.Put(ctx, entry); err != nil {
			return "", err
		}
	}
	c.tag = stored.Tag
	return c.tag, nil
}
