package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
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
		{"field of another provider", "roles/r", map[string]any{"connection": "main", "buckets": "a"}, "buckets is a field of provider storx, not storyden"},
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
