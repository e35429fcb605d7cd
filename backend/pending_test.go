package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// interruptIssue leaves what a crash mid-create leaves: the key exists
// upstream, the answer never came, and the pending inventory entry stays.
func interruptIssue(t *testing.T, env *testEnv) {
	t.Helper()
	env.b.httpClient.Timeout = time.Second
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", LatencyAfterMS: 60_000, Times: 1})
	// The issue's immediate rollback fails too, as it never runs in a crash.
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodGet, Path: "/api/auth/access-keys", Status: http.StatusForbidden})
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); err == nil {
		t.Fatal("the issue succeeded although its answer never came")
	}
	env.upstream.ClearFaults()
	if len(env.liveKeys()) != 1 || env.walCount() != 1 {
		t.Fatalf("want the created key and its pending entry, have %d keys and %d entries", len(env.liveKeys()), env.walCount())
	}
}

// rollback runs Vault's rollback operation as its rollback manager does,
// without "immediate".
func rollback(t *testing.T, b *backend, s logical.Storage) error {
	t.Helper()
	_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: s})
	return err
}

// TestPending_RolledBackAfterARestartOnceOldEnough: a backend that starts on
// storage holding a pending entry (the plugin crashed mid-create) leaves it
// alone while it is younger than the WAL's minimum age, then deletes the key
// upstream and drops the entry; tidy meanwhile never touches it.
func TestPending_RolledBackAfterARestartOnceOldEnough(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	interruptIssue(t, env)

	restarted := newBackend(defaultRegistry())
	config := logical.TestBackendConfig()
	config.StorageView = env.storage
	config.System = env.b.System()
	if err := restarted.Setup(context.Background(), config); err != nil {
		t.Fatal(err)
	}
	defer restarted.Cleanup(context.Background())
	if err := rollback(t, restarted, env.storage); err != nil {
		t.Fatal(err)
	}
	if len(env.liveKeys()) != 1 || env.walCount() != 1 {
		t.Fatal("a pending entry younger than the minimum age was rolled back: its create may still be in flight")
	}
	report := env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
	if len(namesOf(report.Data["unknown_upstream"])) != 0 || len(namesOf(report.Data["deleted"])) != 0 || len(namesOf(report.Data["live"])) != 0 {
		t.Fatalf("tidy took the key of an issue in flight for its own: %v", report.Data)
	}
	passInventoryTime(t, env.storage, "main", defaultWALRollbackMinAge+time.Minute)
	if err := rollback(t, restarted, env.storage); err != nil {
		t.Fatal(err)
	}
	if live := env.liveKeys(); len(live) != 0 {
		t.Fatalf("the key of the interrupted issue is still live upstream: %v", live)
	}
	if n := env.walCount(); n != 0 {
		t.Fatalf("%d pending entries left after the rollback", n)
	}
}

// TestPending_GivenUpAfterMaxAge: a pending entry whose rollback keeps
// failing is dropped with a warning after maxWALAge, like a WAL entry.
func TestPending_GivenUpAfterMaxAge(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	interruptIssue(t, env)
	env.mustOK(logical.DeleteOperation, "config/main", nil)
	passInventoryTime(t, env.storage, "main", time.Hour)
	if err := rollback(t, env.b, env.storage); err == nil || env.walCount() != 1 {
		t.Fatalf("a rollback whose connection is gone succeeded (%v) or dropped the entry", err)
	}
	passInventoryTime(t, env.storage, "main", maxWALAge)
	if err := rollback(t, env.b, env.storage); err != nil {
		t.Fatal(err)
	}
	if env.walCount() != 0 || len(env.logLines("giving up")) != 1 {
		t.Fatalf("after %s the entry is still there (%d) or no warning was logged", maxWALAge, env.walCount())
	}
}

// TestPending_Schema3Fixture pins the stored shape of a pending entry:
// what this version writes is the fixture, and the fixture reads back as a
// pending entry the rollback finds, with what a rollback needs.
func TestPending_Schema3Fixture(t *testing.T) {
	ctx := context.Background()
	fixture, err := os.ReadFile("testdata/v3/pending_inventory.json")
	if err != nil {
		t.Fatal(err)
	}
	s := &logical.InmemStorage{}
	b := newBackend(defaultRegistry())
	created, _ := time.Parse(time.RFC3339, "2026-12-02T21:30:00Z")
	e := &inventoryEntry{Name: "vault-app-ab12cdxyz789", Role: "app", Provider: "storyden", RoleValues: provider.Values{"key_name_prefix": "vault"}, CreatedAt: created}
	if err := b.putPending(ctx, s, "main", e); err != nil {
		t.Fatal(err)
	}
	raw, err := s.Get(ctx, inventoryKey("main", e.Name))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if json.Unmarshal(raw.Value, &got) != nil || json.Unmarshal(fixture, &want) != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("a pending entry is stored as\n%s\nnot as the schema 3 fixture\n%s", raw.Value, fixture)
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: inventoryKey("other", e.Name), Value: fixture}); err != nil {
		t.Fatal(err)
	}
	found, err := scanPending(ctx, s)
	if err != nil || found[inventoryKey("other", e.Name)] != "other" {
		t.Fatalf("the rollback's scan does not find the fixture: %v %v", found, err)
	}
	read, err := getInventory(ctx, s, "other", e.Name)
	if err != nil || !read.pending() || read.rollbackRequest().Role.String("key_name_prefix") != "vault" || read.Role != "app" {
		t.Fatalf("the fixture reads back as %+v, %v", read, err)
	}
}
