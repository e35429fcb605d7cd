package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

func TestRotateRoot_NewPasswordStoredOldStopsWorking(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	before := env.issue()
	env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)

	newPassword := env.storedPassword("main")
	if newPassword == adminPassword || len(newPassword) < 32 {
		t.Fatalf("stored password was not replaced by a strong one (len %d)", len(newPassword))
	}
	if got := env.signInStatus(adminHandle, adminPassword); got != http.StatusUnauthorized {
		t.Fatalf("old password sign-in = %d, want 401", got)
	}
	if got := env.signInStatus(adminHandle, newPassword); got != http.StatusOK {
		t.Fatalf("new password sign-in = %d, want 200", got)
	}
	resp := env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := resp.Data["last_vault_rotation"]; !ok {
		t.Fatal("config read does not show last_vault_rotation")
	}
	// Everything keeps working with the new root: issue, and revoke of a
	// lease issued before the rotation, also after the session is dropped.
	env.issue()
	env.b.Invalidate(context.Background(), "config/main")
	if err := env.revoke(before); err != nil {
		t.Fatal(err)
	}
	env.issue()
}

func TestRotateRoot_ConcurrentCallsAreSerialized(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)
		}()
	}
	wg.Wait()
	if got := env.signInStatus(adminHandle, env.storedPassword("main")); got != http.StatusOK {
		t.Fatalf("after concurrent rotations the stored password signs in with %d", got)
	}
	if got := env.upstream.Calls()["PATCH /api/auth/password"]; got != 4 {
		t.Fatalf("password changes = %d, want 4", got)
	}
}

func TestRotateRoot_UnknownConnectionIs400(t *testing.T) {
	env := newTestEnv(t)
	env.mustBadRequest(logical.UpdateOperation, "rotate-root/ghost", nil, `connection "ghost" does not exist`)
}

func TestRotateRoot_FailedChangeKeepsWorkingRoot(t *testing.T) {
	for _, fault := range []sandbox.Fault{
		{Status: http.StatusInternalServerError},
		{Drop: true},
		{Malformed: true}, // the change happened upstream, the answer was lost
	} {
		env := newTestEnv(t)
		env.setup(nil)
		fault.Method, fault.Path = http.MethodPatch, "/api/auth/password"
		env.upstream.AddFault(fault)
		_, err := env.request(logical.UpdateOperation, "rotate-root/main", nil)
		if fault.Malformed && err == nil {
			// A malformed 200 still means the change was accepted.
		} else if err == nil {
			t.Fatalf("fault %+v: rotate-root reported success", fault)
		}
		env.upstream.ClearFaults()
		if err := env.b.periodic(context.Background(), &logical.Request{Storage: env.storage}); err != nil {
			t.Fatalf("fault %+v: recovery: %v", fault, err)
		}
		stored := env.storedPassword("main")
		if got := env.signInStatus(adminHandle, stored); got != http.StatusOK {
			t.Fatalf("fault %+v: the stored root no longer signs in (%d)", fault, got)
		}
		entry, _ := getConnection(context.Background(), env.storage, "main")
		if entry.PendingRoot != nil {
			t.Fatalf("fault %+v: pending root left after recovery", fault)
		}
		env.issue()
	}
}

func TestRotateRoot_StoreFailureAfterUpstreamChangeIsRecovered(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	// Let the staging write through, fail the final one.
	failing := &failNthPut{Storage: env.storage, failAt: 2}
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root/main", Storage: failing})
	if err == nil || !strings.Contains(err.Error(), "stays staged") {
		t.Fatalf("want the store failure reported, got %v", err)
	}
	if got := env.signInStatus(adminHandle, adminPassword); got != http.StatusUnauthorized {
		t.Fatalf("the upstream change did not happen (%d)", got)
	}
	if err := env.b.periodic(context.Background(), &logical.Request{Storage: env.storage}); err != nil {
		t.Fatal(err)
	}
	if got := env.signInStatus(adminHandle, env.storedPassword("main")); got != http.StatusOK {
		t.Fatalf("the staged root was not promoted (%d)", got)
	}
	env.b.Invalidate(context.Background(), "config/main")
	env.issue()
}

// failNthPut fails the failAt-th Put and passes every other call through.
type failNthPut struct {
	logical.Storage
	mu     sync.Mutex
	puts   int
	failAt int
}

func (f *failNthPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	f.puts++
	fail := f.puts == f.failAt
	f.mu.Unlock()
	if fail {
		return errors.New("injected storage failure")
	}
	return f.Storage.Put(ctx, e)
}

func TestWALRollback_RemovesOrphansAndGivesUpAfter24h(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	name := env.upstream.Objects()[0].Name

	// A crash between the create and the lease: the WAL entry survives.
	_, err := framework.PutWAL(context.Background(), env.storage, walKindIssue,
		walIssue{Connection: "main", Provider: "storyden", Role: "app", Name: name, CreatedAt: time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// A WAL entry for a create that never happened is cleared too.
	_, _ = framework.PutWAL(context.Background(), env.storage, walKindIssue,
		walIssue{Connection: "main", Provider: "storyden", Role: "app", Name: "vault-app-neverhappened", CreatedAt: time.Now().Unix()})
	// Too young for Vault's own tick.
	env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage})
	if env.walCount() != 2 || !env.keyWorks(resp.Data["access_key"].(string)) {
		t.Fatal("a WAL entry younger than WALRollbackMinAge was rolled back")
	}
	env.rollbackAll()
	if env.keyWorks(resp.Data["access_key"].(string)) || env.walCount() != 0 {
		t.Fatal("the rollback did not delete the orphan and clear its entries")
	}

	// An entry older than 24 h is dropped with a warning, even if the
	// connection is gone.
	_, _ = framework.PutWAL(context.Background(), env.storage, walKindIssue,
		walIssue{Connection: "gone", Provider: "storyden", Role: "app", Name: "vault-app-old", CreatedAt: time.Now().Add(-25 * time.Hour).Unix()})
	env.rollbackAll()
	if env.walCount() != 0 || !strings.Contains(env.logs.String(), "giving up") {
		t.Fatal("an entry older than 24h was not dropped with a warning")
	}
	// A young entry for a missing connection stays for a later try.
	_, _ = framework.PutWAL(context.Background(), env.storage, walKindIssue,
		walIssue{Connection: "gone", Provider: "storyden", Role: "app", Name: "vault-app-young", CreatedAt: time.Now().Unix()})
	env.rollbackAll()
	if env.walCount() != 1 {
		t.Fatal("an entry whose connection is missing was dropped before 24h")
	}
}

// rollbackAll runs Vault's rollback with immediate=true, as on unmount.
func (e *testEnv) rollbackAll() {
	e.t.Helper()
	e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation, Storage: e.storage, Data: map[string]any{"immediate": true},
	})
}
