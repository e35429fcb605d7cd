package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storjsat"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// grantEnv is a backend with a satellite stand-in, its auth service double
// and a root grant.
type grantEnv struct {
	*testEnv
	sat  *storjsat.Satellite
	auth *storjsat.AuthService
	srv  *sandbox.Server
	root string
}

func newGrantEnv(t *testing.T) *grantEnv {
	t.Helper()
	sat, err := storjsat.Start(context.Background(), storjsat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sat.Close)
	auth := storjsat.NewAuthService(sat, "https://gateway.example")
	srv := testutil.StartEmulator(t, auth)
	root, err := sat.NewRootGrant("passphrase", storjsat.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &grantEnv{testEnv: newTestEnv(t), sat: sat, auth: auth, srv: srv, root: root}
}

// connections writes config/sj (provider storj) and config/sx (storx in
// access-grant mode), each with a role of the same name.
func (e *grantEnv) connections() {
	e.t.Helper()
	e.mustOK(logical.CreateOperation, "config/sj", map[string]any{
		"provider": "storj", "base_url": e.srv.URL(), "allow_http": true, "access_grant": e.root})
	e.mustOK(logical.CreateOperation, "config/sx", map[string]any{
		"provider": "storx", "auth_url": e.srv.URL(), "allow_http": true, "access_grant": e.root})
	for _, name := range []string{"sj", "sx"} {
		e.mustOK(logical.CreateOperation, "roles/"+name, map[string]any{"connection": name, "ttl": "10m", "max_ttl": "1h", "buckets": "photos"})
	}
}

func (e *grantEnv) inventoryOf(connection string) []*inventoryEntry {
	e.t.Helper()
	entries, err := listInventory(context.Background(), e.storage, connection)
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

func (e *grantEnv) authCalls() int { return e.srv.TotalCalls() }

func TestGrantMode_IssueRevoke(t *testing.T) {
	for _, name := range []string{"sj", "sx"} {
		t.Run(name, func(t *testing.T) {
			e := newGrantEnv(t)
			e.connections()
			before, walWrites := e.authCalls(), e.walCount()
			resp := e.mustOK(logical.ReadOperation, "creds/"+name, nil)
			if got := e.authCalls() - before; got != 1 {
				t.Fatalf("upstream calls per credential = %d, want 1", got)
			}
			if e.walCount() != walWrites {
				t.Fatal("a grant-mode issue left a WAL entry")
			}
			if got := e.inventoryOf(name); len(got) != 1 {
				t.Fatalf("inventory %v, want the child", got)
			}
			id := resp.Data["access_key_id"].(string)
			if _, ok := e.auth.S3Secret(id); !ok {
				t.Fatal("the credential does not resolve")
			}
			if err := e.revoke(resp); err != nil {
				t.Fatal(err)
			}
			if _, ok := e.auth.S3Secret(id); ok {
				t.Fatal("the credential resolves after revoke")
			}
			if got := e.inventoryOf(name); len(got) != 0 {
				t.Fatalf("inventory after revoke %v", got)
			}
		})
	}
}

// TestGrantMode_NoWALWrite: the engine writes no WAL entry for an issue of
// a rollback-free connection (StorX in grant mode), counted at the storage.
// TestGrantMode_OneStorageWritePerIssue: a grant-mode issue leaves nothing
// to roll back, so it writes no WAL and no pending entry: its one write is
// the live inventory entry after the create.
func TestGrantMode_OneStorageWritePerIssue(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	counting := &putCountingStorage{Storage: e.storage}
	for i := range 2 { // the first issue may also store the cluster's tag
		counting.puts = nil
		_, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/sx", Storage: counting, MountPoint: "apikeys/"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && (len(counting.puts) != 1 || !strings.HasPrefix(counting.puts[0], "inventory/sx/")) {
			t.Fatalf("storage writes of a grant-mode issue: %q, want only its inventory entry", counting.puts)
		}
	}
}

type putCountingStorage struct {
	logical.Storage
	puts []string
}

func (s *putCountingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.puts = append(s.puts, e.Key)
	return s.Storage.Put(ctx, e)
}

// TestGrantMode_PerformanceStandbyForwardsBeforeCreating: a grant-mode
// issue writes only after the create, so a performance standby must refuse
// with exactly logical.ErrReadOnly before it, or each forwarded read would
// register a child upstream for nothing.
func TestGrantMode_PerformanceStandbyForwardsBeforeCreating(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	e.mustOK(logical.ReadOperation, "creds/sj", nil) // stores the cluster's tag
	standby, view := e.otherCluster(consts.ReplicationPerformanceStandby, true)
	view.local = e.storage
	before := e.authCalls()
	resp, err := handle(standby, view, logical.ReadOperation, "creds/sj", nil)
	if err == nil || err.Error() != logical.ErrReadOnly.Error() {
		t.Fatalf("want exactly %v, got %v %v", logical.ErrReadOnly, resp, err)
	}
	if got := e.authCalls() - before; got != 0 {
		t.Fatalf("%d auth-service calls before the read-only error, want 0", got)
	}
}

func TestGrantMode_RoleRules(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	tests := []struct {
		path string
		data map[string]any
		want string
	}{
		{path: "roles/short", data: map[string]any{"connection": "sj", "max_ttl": "30s"}, want: "under a minute"},
		{path: "roles/short", data: map[string]any{"connection": "sx", "max_ttl": "59s"}, want: "under a minute"},
		{path: "roles/user", data: map[string]any{"connection": "sx", "user_email": "u@example.com"}, want: "user_email has no meaning"},
	}
	for _, tt := range tests {
		e.mustBadRequest(logical.CreateOperation, tt.path, tt.data, tt.want)
	}
}

func TestGrantMode_ConfigRefusals(t *testing.T) {
	e := newGrantEnv(t)
	e.mustBadRequest(logical.CreateOperation, "config/both", map[string]any{
		"provider": "storx", "auth_url": e.srv.URL(), "allow_http": true, "access_grant": e.root, "email": "d@example.com", "password": "pw123456"}, "not both")
	e.mustBadRequest(logical.CreateOperation, "config/pp", map[string]any{
		"provider": "storx", "auth_url": e.srv.URL(), "allow_http": true, "access_grant": e.root, "passphrase": "x"}, "passphrase has no meaning")
	e.mustBadRequest(logical.CreateOperation, "config/sj", map[string]any{
		"provider": "storj", "base_url": e.srv.URL(), "allow_http": true, "access_grant": "garbage"}, "not a serialized access grant")
	if n := e.authCalls(); n != 0 {
		t.Fatalf("refused configs made %d calls", n)
	}
}

func TestGrantMode_RotateRootIs400(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	for _, name := range []string{"sj", "sx"} {
		e.mustBadRequest(logical.UpdateOperation, "rotate-root/"+name, nil, "make a new grant")
	}
}

func TestGrantMode_Tidy(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	resp := e.mustOK(logical.ReadOperation, "creds/sj", nil)
	report := e.mustOK(logical.UpdateOperation, "tidy/sj", nil)
	if report.Data["upstream_listable"] != false {
		t.Fatalf("tidy report %v does not say the upstream is not listable", report.Data)
	}
	if live, _ := report.Data["live"].([]map[string]any); len(live) != 1 {
		t.Fatalf("live %v, want the child", report.Data["live"])
	}
	passInventoryTime(t, e.storage, "sj", 3*time.Hour)
	report = e.mustOK(logical.UpdateOperation, "tidy/sj", map[string]any{"dry_run": false})
	if deleted, _ := report.Data["deleted"].([]map[string]any); len(deleted) != 1 {
		t.Fatalf("deleted %v, want the child", report.Data)
	}
	if _, ok := e.auth.S3Secret(resp.Data["access_key_id"].(string)); ok {
		t.Fatal("tidy did not revoke the expired child")
	}
	if err := e.sat.CheckGrant(context.Background(), resp.Data["access_grant"].(string)); !errors.Is(err, storjsat.ErrRevoked) {
		t.Fatalf("child after tidy: %v", err)
	}
}

// TestGrantMode_TidyLeavesPendingEntriesToTheRollback: a pending entry
// (left by an issue of the connection's developer mode, before it switched
// to a grant) has no lease end yet; tidy must not take it for an expired
// child and delete it, which would lose what its rollback needs.
func TestGrantMode_TidyLeavesPendingEntriesToTheRollback(t *testing.T) {
	e := newGrantEnv(t)
	e.connections()
	pending := &inventoryEntry{Name: "vault-sx-pending", Role: "sx", Provider: "storx", CreatedAt: time.Now().Add(-time.Hour).UTC()}
	if err := e.b.putPending(context.Background(), e.storage, "sx", pending); err != nil {
		t.Fatal(err)
	}
	report := e.mustOK(logical.UpdateOperation, "tidy/sx", map[string]any{"dry_run": false})
	if expired, _ := report.Data["expired_present"].([]map[string]any); len(expired) != 0 {
		t.Fatalf("tidy took the pending entry for an expired child: %v", report.Data)
	}
	if got, err := getInventory(context.Background(), e.storage, "sx", pending.Name); err != nil || got == nil {
		t.Fatalf("pending entry after tidy: %v %v", got, err)
	}
}
