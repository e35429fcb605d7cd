package backend

import (
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// entryCache keeps decoded role and connection entries by storage key, so
// that an issue, renew or revoke reads them without a storage round trip
// to Vault. Every key has a version, bumped whenever the key may have
// changed: a write or delete of it through this node's storage (once the
// write returned) and Vault's Invalidate of it (performance standbys and
// secondaries, once their storage holds the change). A read snapshots the
// version before its storage Get and fills the cache only if the version is
// still the same afterwards, so a read racing a write can never put back an
// entry older than that write: the cache never serves an entry older than
// the last write this node has seen.
//
// Cached entries are shared: callers must treat them as read-only.
type entryCache struct {
	mu       sync.Mutex
	entries  map[string]any
	versions map[string]uint64
}

func newEntryCache() *entryCache {
	return &entryCache{entries: map[string]any{}, versions: map[string]uint64{}}
}

// cachedPrefixes are the storage prefixes whose entries the cache holds.
var cachedPrefixes = []string{roleStoragePrefix, configStoragePrefix}

func cachedKey(key string) bool {
	for _, p := range cachedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// lookup returns the cached entry of key, or the version a fill must match.
func (c *entryCache) lookup(key string) (value any, ok bool, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	value, ok = c.entries[key]
	return value, ok, c.versions[key]
}

// fill caches value (nil: no entry) unless key changed since version.
func (c *entryCache) fill(key string, version uint64, value any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.versions[key] == version {
		c.entries[key] = value
	}
}

// drop forgets key and bumps its version.
func (c *entryCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	c.versions[key]++
}

// dropAll forgets every entry, for a backend being torn down; the bumped
// versions keep reads in flight from filling it again.
func (c *entryCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.entries {
		delete(c.entries, key)
		c.versions[key]++
	}
}

// cachedRead returns key's entry from the cache, else reads it with read
// and caches it. An error is never cached.
func cachedRead[T any](c *entryCache, key string, read func() (*T, error)) (*T, error) {
	value, ok, version := c.lookup(key)
	if ok {
		return value.(*T), nil
	}
	entry, err := read()
	if err != nil {
		return nil, err
	}
	c.fill(key, version, entry)
	return entry, nil
}

// cachedRole is getRole through the cache; the entry is read-only.
func (b *backend) cachedRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	return cachedRead(b.entries, roleStoragePrefix+name, func() (*roleEntry, error) { return getRole(ctx, s, name) })
}

// cachedConnection is getConnection through the cache; the entry is read-only.
func (b *backend) cachedConnection(ctx context.Context, s logical.Storage, name string) (*connectionEntry, error) {
	return cachedRead(b.entries, configStoragePrefix+name, func() (*connectionEntry, error) {
		entry, err := getConnection(ctx, s, name)
		if entry != nil {
			if p, ok := b.providers.get(entry.Provider); ok {
				entry.account = newAccountMemo(p, entry)
			}
		}
		return entry, err
	})
}

// tracked returns s wrapped so that its writes keep the entry cache in step
// (s itself if it already is, nil if nil).
func (b *backend) tracked(s logical.Storage) logical.Storage {
	if _, ok := s.(invalidatingStorage); ok || s == nil {
		return s
	}
	return invalidatingStorage{Storage: s, cache: b.entries}
}

// invalidatingStorage is a request's storage that drops the cached entry of
// every key it writes or deletes, once the write returned (failed writes
// too: they may have landed).
type invalidatingStorage struct {
	logical.Storage
	cache *entryCache
}

// Put implements logical.Storage.
func (s invalidatingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	err := s.Storage.Put(ctx, e)
	if cachedKey(e.Key) {
		s.cache.drop(e.Key)
	}
	return err
}

// Delete implements logical.Storage.
func (s invalidatingStorage) Delete(ctx context.Context, key string) error {
	err := s.Storage.Delete(ctx, key)
	if cachedKey(key) {
		s.cache.drop(key)
	}
	return err
}
