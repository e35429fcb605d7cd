package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// fixtureDir holds what v0.1.0 (commit 0af98862) wrote, captured from that
// commit's own code: one folder per provider with every storage entry
// (file name = storage key with "/" as "__") and one lease's internal data.
// Sandbox addresses are written @@<server>_url@@ / @@<server>_host@@.
const fixtureDir = "testdata/v0.1.0"

// fixtureNow is before every time the fixtures hold, so that no schedule in
// them is due while a test reads them.
var fixtureNow = time.Date(2026, 12, 2, 17, 0, 0, 0, time.UTC)

// loadFixtures replaces the env's storage with the provider's v0.1.0 entries.
func loadFixtures(e *fmEnv) {
	e.t.Helper()
	ctx := context.Background()
	keys, err := logical.CollectKeys(ctx, e.storage)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range keys {
		if err := e.storage.Delete(ctx, k); err != nil {
			e.t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(fixtureDir, e.p.name, "storage", "*.json"))
	if err != nil || len(files) == 0 {
		e.t.Fatalf("no v0.1.0 fixtures for %s: %v", e.p.name, err)
	}
	for _, f := range files {
		key := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(f), ".json"), "__", "/")
		if err := e.storage.Put(ctx, &logical.StorageEntry{Key: key, Value: e.fixtureBytes(f)}); err != nil {
			e.t.Fatal(err)
		}
	}
	e.b.conns.dropAll()
}

// fixtureBytes reads a fixture with the sandbox's addresses filled in.
func (e *fmEnv) fixtureBytes(path string) []byte {
	e.t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	s := string(raw)
	for name, srv := range e.servers {
		s = strings.ReplaceAll(s, "@@"+name+"_url@@", srv.URL())
		s = strings.ReplaceAll(s, "@@"+name+"_host@@", strings.TrimPrefix(srv.URL(), "http://"))
	}
	for name, v := range e.fixtureVars {
		s = strings.ReplaceAll(s, "@@"+name+"@@", v)
	}
	return []byte(s)
}

// fixtureLease is v0.1.0's internal data of a lease, pointed at the upstream
// object of fresh: the fixture's key names with the live object's values.
func (e *fmEnv) fixtureLease(fresh *logical.Response) *logical.Response {
	e.t.Helper()
	var internal map[string]any
	if err := json.Unmarshal(e.fixtureBytes(filepath.Join(fixtureDir, e.p.name, "lease_internal.json")), &internal); err != nil {
		e.t.Fatal(err)
	}
	live := roundTrip(e.t, fresh.Secret).InternalData
	for _, k := range []string{internalName, internalExpiresAt} {
		if _, ok := internal[k]; ok {
			internal[k] = live[k]
		}
	}
	ref, liveRef := internal[internalRef].(map[string]any), live[internalRef].(map[string]any)
	for k := range ref {
		v, ok := liveRef[k]
		if !ok {
			e.t.Fatalf("a v0.1.0 lease's ref has %q, which this version no longer writes or reads", k)
		}
		ref[k] = v
	}
	secret := *fresh.Secret
	secret.InternalData = internal
	return &logical.Response{Secret: &secret, Data: fresh.Data}
}

// TestV010Fixtures proves that what v0.1.0 stored stays readable and that its
// leases renew and revoke upstream: connections (with a pending root and a
// self-kept schedule), roles, a static role, inventory and WAL entries.
func TestV010Fixtures(t *testing.T) {
	for _, p := range fmProviders() {
		t.Run(p.name, func(t *testing.T) {
			e := newFMEnv(t, p, fmColumn{name: "fixtures"})
			e.b.now = func() time.Time { return fixtureNow }
			if p.name == "katapult" {
				// The static role's key, made outside the plugin as an operator would.
				id := e.upstreamObject("legacy-backup").Ref["katapult_access_key_id"]
				e.fixtureVars = map[string]string{"static_key_id": id}
				// The static role accounts for the key as a lease would.
				e.live = append(e.live, &logical.Response{Data: map[string]any{"katapult_access_key_id": id}})
			}
			loadFixtures(e)
			if p.name == "storyden" {
				entry, err := getConnection(context.Background(), e.storage, "pending")
				if err != nil || entry == nil || entry.PendingRoot.String("password") != "staged-next-password-0123456789" {
					t.Fatalf("v0.1.0's pending root does not read back: %+v %v", entry, err)
				}
			}

			conf := e.must(logical.ReadOperation, "config/"+fmConn, nil)
			if conf.Data["provider"] != p.name || conf.Data["base_url"] == "" {
				t.Fatalf("config read: %v", conf.Data)
			}
			if p.name == "storyden" || p.name == "katapult" {
				if conf.Data["next_vault_rotation"] != "2026-12-03T16:33:04Z" && !strings.HasPrefix(conf.Data["next_vault_rotation"].(string), "2026-12-03") {
					t.Errorf("the self-kept schedule was lost: %v", conf.Data)
				}
			}
			if role := e.must(logical.ReadOperation, "roles/"+fmRole, nil); role.Data["connection"] != fmConn {
				t.Fatalf("role read: %v", role.Data)
			}

			fresh := e.mustIssue()
			old := e.fixtureLease(fresh)
			if resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.RenewOperation, Storage: e.storage, Secret: withIssueTime(old.Secret), Data: old.Data,
			}); e.failure(resp, err) != "" {
				t.Fatalf("renew of a v0.1.0 lease: %v %v", resp, err)
			}
			e.mustRevoke(old)
			e.live = slices.DeleteFunc(e.live, func(r *logical.Response) bool { return r == fresh })
			e.checkOrphans("after revoking a v0.1.0 lease")

			e.checkFixtureWALRollback()
			if p.name == "storyden" {
				entry, err := getConnection(context.Background(), e.storage, "pending")
				if err != nil || entry == nil || entry.PendingRoot != nil {
					t.Fatalf("v0.1.0's pending root was not resolved by the periodic check: %+v %v", entry, err)
				}
			}
			if p.name == "katapult" {
				creds := e.must(logical.ReadOperation, "static-creds/backup", nil)
				if creds.Data["access_key_id"] == "" || creds.Data["secret_access_key"] == "" {
					t.Fatalf("static creds of a v0.1.0 static role: %v", creds.Data)
				}
				e.must(logical.UpdateOperation, "rotate-role/backup", nil)
			}
		})
	}
}

// checkFixtureWALRollback creates upstream the object v0.1.0's pending WAL
// entry names, as a create that landed after a crash would, and requires the
// rollback to remove both.
func (e *fmEnv) checkFixtureWALRollback() {
	e.t.Helper()
	ctx := context.Background()
	names, err := e.storage.List(ctx, framework.WALPrefix)
	if err != nil || len(names) != 1 {
		e.t.Fatalf("want v0.1.0's one WAL entry, have %v %v", names, err)
	}
	raw, err := e.storage.Get(ctx, framework.WALPrefix+names[0])
	if err != nil {
		e.t.Fatal(err)
	}
	var wal map[string]any
	if err := json.Unmarshal(raw.Value, &wal); err != nil {
		e.t.Fatal(err)
	}
	// Fresh enough not to be given up on.
	wal["data"].(map[string]any)["created_at"] = time.Now().Unix()
	if raw, err = logical.StorageEntryJSON(raw.Key, wal); err != nil || e.storage.Put(ctx, raw) != nil {
		e.t.Fatal(err)
	}
	name := wal["data"].(map[string]any)["name"].(string)
	e.upstreamObject(name)
	e.must(logical.RollbackOperation, "", map[string]any{"immediate": true})
	if n := e.walCount(); n != 0 {
		e.t.Errorf("v0.1.0's WAL entry is still there after the rollback")
	}
	e.checkOrphans("after rolling back v0.1.0's WAL entry")
}

// upstreamObject creates an object of the role upstream, named name, through
// the provider alone: no lease, no inventory, no WAL entry.
func (e *fmEnv) upstreamObject(name string) *provider.Credential {
	e.t.Helper()
	ctx := context.Background()
	conn, entry, err := e.b.liveConnection(ctx, e.storage, fmConn)
	if err != nil || entry == nil {
		e.t.Fatal(err)
	}
	role, err := getRole(ctx, e.storage, fmRole)
	if err != nil || role == nil {
		e.t.Fatal(err)
	}
	cred, err := conn.Issue(ctx, provider.IssueRequest{RoleName: fmRole, Role: role.Values, Name: name, TTL: time.Hour, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		e.t.Fatal(err)
	}
	return cred
}

func withIssueTime(s *logical.Secret) *logical.Secret {
	copied := *s
	copied.IssueTime = time.Now()
	return &copied
}

// TestNewerSchemaRefused: data from a newer plugin is refused with both
// versions named, and nothing is overwritten.
func TestNewerSchemaRefused(t *testing.T) {
	e := newFMEnv(t, fmProviders()[0], fmColumn{name: "schema"})
	ctx := context.Background()
	lease := e.mustIssue()
	bump := func(key string) []byte {
		raw, err := e.storage.Get(ctx, key)
		if err != nil || raw == nil {
			t.Fatalf("%s: %v", key, err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw.Value, &m); err != nil {
			t.Fatal(err)
		}
		m["schema_version"] = currentSchemaVersion + 1
		m["from_the_future"] = "kept"
		raw, _ = logical.StorageEntryJSON(key, m)
		if err := e.storage.Put(ctx, raw); err != nil {
			t.Fatal(err)
		}
		return raw.Value
	}
	wantNewer := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema %d", currentSchemaVersion+1)) ||
			!strings.Contains(err.Error(), fmt.Sprintf("schemas 1 to %d", currentSchemaVersion)) {
			t.Errorf("%s: want a refusal naming both versions, got %v", what, err)
		}
	}
	for _, tc := range []struct {
		key   string
		write func() (*logical.Response, error)
	}{
		{"config/" + fmConn, func() (*logical.Response, error) {
			return e.request(logical.UpdateOperation, "config/"+fmConn, map[string]any{"allowed_roles": "app"})
		}},
		{"roles/" + fmRole, func() (*logical.Response, error) {
			return e.request(logical.UpdateOperation, "roles/"+fmRole, map[string]any{"ttl": "5m"})
		}},
	} {
		before := bump(tc.key)
		resp, err := tc.write()
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		wantNewer("write over "+tc.key, err)
		after, _ := e.storage.Get(ctx, tc.key)
		if string(after.Value) != string(before) {
			t.Errorf("%s was overwritten", tc.key)
		}
	}

	secret := roundTrip(t, lease.Secret)
	secret.InternalData["schema_version"] = float64(currentSchemaVersion + 1)
	_, err := leaseInternalFrom(secret.InternalData)
	wantNewer("lease internal data", err)

	_, err = decodeWAL(map[string]any{"connection": "c", "name": "x", "schema_version": currentSchemaVersion + 1})
	wantNewer("WAL entry", err)
	if err := e.b.walRollback(ctx, &logical.Request{Storage: e.storage}, walKindIssue, map[string]any{"connection": "c", "name": "x", "schema_version": currentSchemaVersion + 1}); err == nil {
		t.Error("a newer WAL entry was accepted, so Vault would delete it")
	}
}

// TestWritesStampSchema: everything written carries the current version.
func TestWritesStampSchema(t *testing.T) {
	e := newFMEnv(t, fmProviders()[0], fmColumn{name: "schema"})
	lease := e.mustIssue()
	ctx := context.Background()
	keys, err := logical.CollectKeys(ctx, e.storage)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, framework.WALPrefix) {
			continue
		}
		raw, _ := e.storage.Get(ctx, k)
		var m map[string]any
		if err := json.Unmarshal(raw.Value, &m); err != nil || m["schema_version"] != float64(currentSchemaVersion) {
			t.Errorf("%s has no schema_version %d: %v", k, currentSchemaVersion, m["schema_version"])
		}
	}
	internal := roundTrip(t, lease.Secret).InternalData
	if v := provider.Values(internal).Int("schema_version"); v != currentSchemaVersion {
		t.Errorf("lease internal data has schema_version %v", v)
	}
	// Optional within schema 2: what binds the lease to its account.
	entry := e.connection()
	prov, _ := e.b.providers.get(entry.Provider)
	if internal["connection_tag"] != entry.Tag || internal["account_fingerprint"] != accountFingerprint(prov, entry) {
		t.Errorf("lease internal data has connection_tag %v (want %s) and account_fingerprint %v", internal["connection_tag"], entry.Tag, internal["account_fingerprint"])
	}
}
