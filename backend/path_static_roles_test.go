package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const katapultToken = "unit-test-katapult-token"

// katapultEnv adds a Katapult emulator and connection "kat" to a testEnv.
type katapultEnv struct {
	*testEnv
	emu      *katapultemu.Emulator
	upstream *sandbox.Server
}

func newKatapultEnv(t *testing.T) *katapultEnv {
	t.Helper()
	env := newTestEnv(t)
	emu := katapultemu.New(katapultemu.Options{
		Organizations:     []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"data"}}},
		Tokens:            []katapultemu.Token{{Secret: katapultToken, Organization: "acme", User: "ops"}},
		ProvisioningDelay: -1,
	})
	srv := testutil.StartEmulator(t, emu)
	env.mustOK(logical.CreateOperation, "config/kat", map[string]any{
		"provider": "katapult", "base_url": srv.URL() + "/core/v1", "allow_http": true, "api_token": katapultToken, "organization": "acme",
	})
	return &katapultEnv{testEnv: env, emu: emu, upstream: srv}
}

// handmadeKey creates an access key the way an operator would, outside Vault.
func (k *katapultEnv) handmadeKey() string {
	k.t.Helper()
	id, err := katapultemu.ProbeCreateKey(k.upstream.URL(), katapultToken, "acme", "legacy-backup")
	if err != nil {
		k.t.Fatal(err)
	}
	return id
}

func (k *katapultEnv) staticCreds(name string) (id, secret string) {
	k.t.Helper()
	resp := k.mustOK(logical.ReadOperation, "static-creds/"+name, nil)
	id, _ = resp.Data["access_key_id"].(string)
	secret, _ = resp.Data["secret_access_key"].(string)
	if id == "" || secret == "" {
		k.t.Fatalf("static-creds/%s: %v", name, resp.Data)
	}
	return id, secret
}

func TestStaticRoles_BindRotateAndDelete(t *testing.T) {
	k := newKatapultEnv(t)
	clock := k.withClock()
	keyID := k.handmadeKey()
	k.mustOK(logical.CreateOperation, "static-roles/backup", map[string]any{"connection": "kat", "katapult_access_key_id": keyID, "rotation_period": "1h"})

	id1, secret1 := k.staticCreds("backup")
	if !k.emu.S3CredentialsLive(id1, secret1) {
		t.Fatal("the bound key's new secret does not work upstream")
	}
	resp := k.mustOK(logical.ReadOperation, "static-creds/backup", nil)
	if resp.Secret != nil || resp.Data["katapult_access_key_id"] != keyID || resp.Data["ttl"] != int64(3600) ||
		resp.Data["next_vault_rotation"] != "2026-11-22T13:00:00Z" || !strings.HasPrefix(resp.Data["endpoint"].(string), "https://") {
		t.Fatalf("static-creds: %v (lease %v)", resp.Data, resp.Secret)
	}
	read := k.mustOK(logical.ReadOperation, "static-roles/backup", nil)
	if _, ok := read.Data["secret_access_key"]; ok || read.Data["rotation_period"] != int64(3600) {
		t.Fatalf("static role read: %v", read.Data)
	}

	k.mustOK(logical.UpdateOperation, "rotate-role/backup", nil)
	id2, secret2 := k.staticCreds("backup")
	if k.emu.S3CredentialsLive(id1, secret1) || !k.emu.S3CredentialsLive(id2, secret2) {
		t.Fatal("rotate-role did not replace the secret upstream")
	}

	clock.Advance(30 * time.Minute)
	if err := k.tick(); err != nil {
		t.Fatal(err)
	}
	if id, secret := k.staticCreds("backup"); id != id2 || secret != secret2 {
		t.Fatal("rotated before the period ended")
	}
	clock.Advance(31 * time.Minute)
	if err := k.tick(); err != nil {
		t.Fatal(err)
	}
	id3, secret3 := k.staticCreds("backup")
	if secret3 == secret2 || !k.emu.S3CredentialsLive(id3, secret3) || k.emu.S3CredentialsLive(id2, secret2) {
		t.Fatal("the periodic rotation did not regenerate the secret")
	}

	k.mustOK(logical.DeleteOperation, "static-roles/backup", nil)
	if !k.emu.S3CredentialsLive(id3, secret3) {
		t.Fatal("deleting the static role touched the key upstream")
	}
	list := k.mustOK(logical.ListOperation, "static-roles/", nil)
	if len(list.Data) != 0 && len(list.Data["keys"].([]string)) != 0 {
		t.Fatalf("static roles left: %v", list.Data)
	}
}

func TestStaticRoles_FailedRotationIsVisibleAndRetried(t *testing.T) {
	k := newKatapultEnv(t)
	clock := k.withClock()
	k.mustOK(logical.CreateOperation, "static-roles/backup", map[string]any{"connection": "kat", "katapult_access_key_id": k.handmadeKey(), "rotation_period": "10m"})
	_, before := k.staticCreds("backup")
	k.upstream.AddFault(sandbox.Fault{Path: "/core/v1/object_storage/access_keys/access_key/generate_credentials", Status: http.StatusInternalServerError})
	clock.Advance(10 * time.Minute)
	if err := k.tick(); err == nil {
		t.Fatal("a failed static rotation was not reported")
	}
	read := k.mustOK(logical.ReadOperation, "static-roles/backup", nil)
	if !strings.Contains(read.Data["last_rotation_error"].(string), "HTTP 500") || read.Data["next_vault_rotation"] != "2026-11-22T12:11:00Z" {
		t.Fatalf("failure not visible: %v", read.Data)
	}
	if _, secret := k.staticCreds("backup"); secret != before {
		t.Fatal("a failed rotation changed the stored secret")
	}
	k.upstream.ClearFaults()
	clock.Advance(time.Minute)
	if err := k.tick(); err != nil {
		t.Fatal(err)
	}
	if id, secret := k.staticCreds("backup"); secret == before || !k.emu.S3CredentialsLive(id, secret) {
		t.Fatal("the retry did not rotate")
	}
}

func TestStaticRoles_BadInputIs400AndStoresNothing(t *testing.T) {
	k := newKatapultEnv(t)
	k.setup(nil) // a storyden connection "main"
	keyID := k.handmadeKey()
	cases := []struct {
		data map[string]any
		want string
	}{
		{map[string]any{"katapult_access_key_id": keyID, "rotation_period": "1h"}, "connection is required"},
		{map[string]any{"connection": "kat", "rotation_period": "1h"}, "katapult_access_key_id is required"},
		{map[string]any{"connection": "kat", "katapult_access_key_id": keyID}, "rotation_period is required"},
		{map[string]any{"connection": "kat", "katapult_access_key_id": keyID, "rotation_period": "30s"}, "1m0s or more"},
		{map[string]any{"connection": "kat", "katapult_access_key_id": "objkey_doesnotexist00", "rotation_period": "1h"}, "no such access key"},
		{map[string]any{"connection": "main", "katapult_access_key_id": keyID, "rotation_period": "1h"}, "provider storyden has no static roles"},
		{map[string]any{"connection": "ghost", "katapult_access_key_id": keyID, "rotation_period": "1h"}, `connection "ghost" does not exist`},
		{map[string]any{"connection": "kat", "katapult_access_key_id": keyID, "rotation_period": "1h", "ttl": "1h"}, "ttl is not a known field"},
	}
	for _, tc := range cases {
		k.mustBadRequest(logical.CreateOperation, "static-roles/backup", tc.data, tc.want)
	}
	if keys, _ := k.storage.List(context.Background(), staticRoleStoragePrefix); len(keys) != 0 {
		t.Fatalf("failed writes stored %v", keys)
	}
	k.mustBadRequest(logical.ReadOperation, "static-creds/ghost", nil, `static role "ghost" does not exist`)
	k.mustBadRequest(logical.UpdateOperation, "rotate-role/ghost", nil, `static role "ghost" does not exist`)
}
