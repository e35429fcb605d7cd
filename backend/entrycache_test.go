package backend

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// heldStorage holds the first Get of key: it reads the entry, signals
// arrived, and returns what it read only once release is closed, so a test
// can change the entry while a reader holds the old one.
type heldStorage struct {
	logical.Storage
	key       string
	taken     atomic.Bool
	arrived   chan struct{}
	release   chan struct{}
	getsOfKey atomic.Int64
}

func (s *heldStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := s.Storage.Get(ctx, key)
	if key == s.key {
		s.getsOfKey.Add(1)
		if s.taken.CompareAndSwap(false, true) {
			close(s.arrived)
			<-s.release
		}
	}
	return entry, err
}

func putTestRole(t *testing.T, s logical.Storage, ttl time.Duration) {
	t.Helper()
	if err := writeStored(context.Background(), s, roleStoragePrefix+"app", "role", &roleEntry{Connection: "main", Provider: "storyden", TTL: ttl}); err != nil {
		t.Fatal(err)
	}
}

// TestEntryCache_ChangeDuringReadIsNeverCached: a read that fetched an entry
// before a change lands must not cache it after the change, whether the
// change is a write on this node or another node's write that Vault
// announces with Invalidate. Without the version check the held read would
// fill the cache with the old role and every later issue would use it.
func TestEntryCache_ChangeDuringReadIsNeverCached(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(b *backend, s logical.Storage)
	}{
		{"local write", func(b *backend, s logical.Storage) { putTestRole(t, b.tracked(s), 2*time.Hour) }},
		{"local delete then write elsewhere", func(b *backend, s logical.Storage) {
			if err := b.tracked(s).Delete(ctx, roleStoragePrefix+"app"); err != nil {
				t.Fatal(err)
			}
			putTestRole(t, s, 2*time.Hour)
			b.invalidate(ctx, roleStoragePrefix+"app")
		}},
		{"invalidate from another node", func(b *backend, s logical.Storage) {
			putTestRole(t, s, 2*time.Hour)
			b.invalidate(ctx, roleStoragePrefix+"app")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(defaultRegistry())
			inner := &logical.InmemStorage{}
			putTestRole(t, inner, time.Hour)
			s := &heldStorage{Storage: inner, key: roleStoragePrefix + "app", arrived: make(chan struct{}), release: make(chan struct{})}
			done := make(chan *roleEntry, 1)
			go func() {
				role, err := b.cachedRole(ctx, s, "app")
				if err != nil {
					t.Error(err)
				}
				done <- role
			}()
			<-s.arrived
			tc.change(b, inner)
			close(s.release)
			if held := <-done; held == nil || held.TTL != time.Hour {
				t.Fatalf("the held read got %+v, want the role as it was when read", held)
			}
			role, err := b.cachedRole(ctx, s, "app")
			if err != nil {
				t.Fatal(err)
			}
			if role == nil || role.TTL != 2*time.Hour {
				t.Fatalf("after the change the cache serves %+v, want the changed role (ttl 2h)", role)
			}
		})
	}
}

// TestEntryCache_HitAndLocalWrite: a second read is served without a
// storage round trip, and a write through the request's storage is seen by
// the next read.
func TestEntryCache_HitAndLocalWrite(t *testing.T) {
	ctx := context.Background()
	b := newBackend(defaultRegistry())
	inner := &logical.InmemStorage{}
	putTestRole(t, inner, time.Hour)
	s := &heldStorage{Storage: inner, key: roleStoragePrefix + "app", arrived: make(chan struct{}), release: make(chan struct{})}
	s.taken.Store(true) // never hold
	for range 3 {
		if _, err := b.cachedRole(ctx, s, "app"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.getsOfKey.Load(); n != 1 {
		t.Fatalf("3 reads made %d storage reads, want 1", n)
	}
	putTestRole(t, b.tracked(s), 3*time.Hour)
	role, err := b.cachedRole(ctx, s, "app")
	if err != nil || role.TTL != 3*time.Hour {
		t.Fatalf("after a local write: %+v, %v; want ttl 3h", role, err)
	}
	b.clean(ctx)
	if _, err := b.cachedRole(ctx, s, "app"); err != nil {
		t.Fatal(err)
	}
	if n := s.getsOfKey.Load(); n != 3 {
		t.Fatalf("storage reads = %d, want 3 (first, after the write, after clean)", n)
	}
}
