package backend

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

func TestRoles_WriteReadList(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{"key_name_prefix": "ci"})
	resp := env.mustOK(logical.ReadOperation, "roles/app", nil)
	want := map[string]any{"connection": "main", "ttl": int64(600), "max_ttl": int64(3600), "key_name_prefix": "ci"}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("%s = %#v, want %#v", k, resp.Data[k], v)
		}
	}
	env.mustOK(logical.UpdateOperation, "roles/app", map[string]any{"ttl": "5m"})
	resp = env.mustOK(logical.ReadOperation, "roles/app", nil)
	if resp.Data["key_name_prefix"] != "ci" || resp.Data["max_ttl"] != int64(3600) {
		t.Errorf("update lost omitted fields: %v", resp.Data)
	}
	list := env.mustOK(logical.ListOperation, "roles/", nil)
	if keys := list.Data["keys"].([]string); len(keys) != 1 || keys[0] != "app" {
		t.Fatalf("list = %v", keys)
	}
}

func TestRoles_DefaultPrefixNamesKeysVault(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	objects := env.upstream.Objects()
	if len(objects) != 1 {
		t.Fatalf("objects = %v", objects)
	}
	name := objects[0].Name
	if len(name) != len("vault-app-")+uniqueLen || name[:len("vault-app-")] != "vault-app-" {
		t.Fatalf("key name %q is not vault-app-<unique>", name)
	}
	if objects[0].ID != resp.Data["access_key_id"] {
		t.Fatalf("access_key_id %v is not the upstream id %s", resp.Data["access_key_id"], objects[0].ID)
	}
}

func TestRoles_BadInputIs400AndStoresNothing(t *testing.T) {
	cases := []struct {
		name string
		path string
		data map[string]any
		want string
	}{
		{"no connection", "roles/r", map[string]any{"ttl": "1m"}, "connection is required"},
		{"missing connection", "roles/r", map[string]any{"connection": "nope"}, `connection "nope" does not exist`},
		{"ttl above max_ttl", "roles/r", map[string]any{"connection": "main", "ttl": "2h", "max_ttl": "1h"}, "ttl (2h0m0s) is longer than max_ttl (1h0m0s)"},
		{"unknown field", "roles/r", map[string]any{"connection": "main", "colour": "a"}, "colour is not a known field"},
		{"field of another provider", "roles/r", map[string]any{"connection": "main", "buckets": "a"}, "buckets is a field of provider storj/storx, not storyden"},
		{"bad prefix", "roles/r", map[string]any{"connection": "main", "key_name_prefix": "has space"}, "key_name_prefix"},
		{"bad name", "roles/r!", map[string]any{"connection": "main"}, `role name "r!" is not valid`},
		{"not allowed", "roles/other", map[string]any{"connection": "main"}, `does not allow role "other"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"allowed_roles": "r"}))
			env.mustBadRequest(logical.CreateOperation, tc.path, tc.data, tc.want)
			if keys, _ := env.storage.List(context.Background(), "roles/"); len(keys) != 0 {
				t.Fatalf("a failed write stored %v", keys)
			}
		})
	}
}

func TestRoles_AllowedRolesCheckedAgainAtIssue(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "someone-else"})
	env.mustBadRequest(logical.ReadOperation, "creds/app", nil, `connection "main" no longer allows role "app"`)
	if n := len(env.upstream.Objects()); n != 0 {
		t.Fatalf("a refused issue created %d keys upstream", n)
	}
}

func TestCreds_UnknownRoleIs400(t *testing.T) {
	env := newTestEnv(t)
	env.mustBadRequest(logical.ReadOperation, "creds/ghost", nil, `role "ghost" does not exist`)
}

// A provider whose credentials cannot be revoked never issues past a bound
// the operator set deliberately: a role without max_ttl is warned at write
// and capped at 24 h (or the mount's maximum if lower) at issue and renew.
func TestRoles_IrrevocableCredentialsAreCappedWithoutMaxTTL(t *testing.T) {
	const dstorKey = "rolesDstorKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO"
	const clientID, clientSecret, apiKey = "roles-client", "roles-storable-client-secret", "rolesStorableApiKey0123456789abcdefghijk"
	cases := []struct {
		name     string
		provider string
		maxTTL   string
		mountMax time.Duration
		// wantMax is the lease's max TTL; 0 for a Storable lease, which ends
		// with the shared token.
		wantMax  time.Duration
		wantWarn bool
	}{
		{"dstor without max_ttl", "dstor", "", 768 * time.Hour, 24 * time.Hour, true},
		{"dstor without max_ttl, mount lower", "dstor", "", 2 * time.Hour, 2 * time.Hour, true},
		{"dstor with a deliberate max_ttl", "dstor", "72h", 768 * time.Hour, 72 * time.Hour, false},
		{"storable without max_ttl", "storable", "", 768 * time.Hour, 0, true},
		{"storyden (revocable) without max_ttl", "storyden", "", 768 * time.Hour, 768 * time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.b.System().(*testSystemView).setMountMax(tc.mountMax)
			config := env.storydenConfig(nil)
			switch tc.provider {
			case "dstor":
				srv := testutil.StartEmulator(t, dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: dstorKey}}}))
				config = map[string]any{"provider": "dstor", "base_url": srv.URL() + "/v1", "allow_http": true, "api_key": dstorKey}
			case "storable":
				srv := testutil.StartEmulator(t, storableemu.New(storableemu.Options{
					Clients: []storableemu.Client{{ID: clientID, Secret: clientSecret, APIKey: apiKey}},
				}))
				config = map[string]any{"provider": "storable", "base_url": srv.URL(), "allow_http": true, "client_id": clientID, "client_secret": clientSecret, "api_key": apiKey}
			}
			env.mustOK(logical.CreateOperation, "config/main", config)
			role := map[string]any{"connection": "main", "ttl": "1h"}
			if tc.maxTTL != "" {
				role["max_ttl"] = tc.maxTTL
			}
			written := env.mustOK(logical.CreateOperation, "roles/app", role)
			warned := written != nil && slices.ContainsFunc(written.Warnings, func(w string) bool {
				return strings.Contains(w, "cannot revoke") && strings.Contains(w, "24h")
			})
			if warned != tc.wantWarn {
				t.Errorf("role write warned %v, want %v: %v", warned, tc.wantWarn, written)
			}

			issued := time.Now()
			lease := env.issue()
			if tc.wantMax == 0 {
				tc.wantMax = time.Until(leaseExpiry(t, lease)).Truncate(time.Second)
				if tc.wantMax > 24*time.Hour || tc.wantMax <= 0 {
					t.Fatalf("the Storable lease ends in %s", tc.wantMax)
				}
			}
			if got := lease.Secret.MaxTTL; got > tc.wantMax || got < tc.wantMax-2*time.Second {
				t.Errorf("lease max TTL %s, want %s", got, tc.wantMax)
			}
			if end := leaseExpiry(t, lease); tc.provider == "dstor" && end.After(issued.Add(tc.wantMax).Add(time.Second)) {
				t.Errorf("the dStor token lives until %s, past the lease's bound %s", end, tc.wantMax)
			}
			renewed, err := env.renew(lease, issued, 1000*time.Hour)
			if err != nil || renewed.IsError() {
				t.Fatalf("renew: %v %v", err, respError(renewed))
			}
			// What Vault makes of the answer: with an increment it ignores the
			// answered TTL and caps at the answered max TTL.
			if end := vaultRenewedEnd(t, env, renewed, issued, 1000*time.Hour); end.After(issued.Add(tc.wantMax).Add(time.Second)) {
				t.Errorf("renewed until %s, past the bound %s after the issue", end.Sub(issued).Round(time.Second), tc.wantMax)
			}
		})
	}
}

// leaseExpiry is the credential's upstream end recorded in the lease, or
// the zero time when it has none.
func leaseExpiry(t *testing.T, lease *logical.Response) time.Time {
	t.Helper()
	l, err := leaseInternalFrom(roundTrip(t, lease.Secret).InternalData)
	if err != nil {
		t.Fatal(err)
	}
	return l.ExpiresAt
}
