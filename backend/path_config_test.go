package backend

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfig_WriteReadNeverReturnsSecret(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"allowed_roles": "app,ops"}))

	resp := env.mustOK(logical.ReadOperation, "config/main", nil)
	if _, ok := resp.Data["password"]; ok {
		t.Fatal("config read returned the password")
	}
	for k, v := range resp.Data {
		if s, ok := v.(string); ok && strings.Contains(s, adminPassword) {
			t.Fatalf("config read field %s carries the password", k)
		}
	}
	want := map[string]any{"provider": "storyden", "base_url": env.upstream.URL(), "username": adminHandle}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("%s = %v, want %v", k, resp.Data[k], v)
		}
	}
	if roles := resp.Data["allowed_roles"].([]string); strings.Join(roles, ",") != "app,ops" {
		t.Errorf("allowed_roles = %v", roles)
	}
	if env.storedPassword("main") != adminPassword {
		t.Fatal("the password was not stored")
	}
	list := env.mustOK(logical.ListOperation, "config/", nil)
	if keys := list.Data["keys"].([]string); len(keys) != 1 || keys[0] != "main" {
		t.Fatalf("list = %v", keys)
	}
}

func TestConfig_SecretFieldsAreSensitiveAndSealWrapped(t *testing.T) {
	env := newTestEnv(t)
	fields := env.b.Route("config/x").Fields
	if !fields["password"].DisplayAttrs.Sensitive {
		t.Error("password is not marked Sensitive")
	}
	if fields["username"].DisplayAttrs.Sensitive {
		t.Error("username is marked Sensitive")
	}
	if got := env.b.SpecialPaths().SealWrapStorage; strings.Join(got, ",") != "config/,static-roles/" {
		t.Errorf("SealWrapStorage = %v, want [config/ static-roles/]", got)
	}
}

func TestConfig_BadInputIs400AndStoresNothing(t *testing.T) {
	cases := []struct {
		name  string
		path  string
		patch map[string]any
		drop  []string
		want  string
	}{
		{"no provider", "config/c", nil, []string{"provider"}, "provider is required"},
		{"unknown provider", "config/c", map[string]any{"provider": "nope"}, nil, `provider "nope" is not known`},
		{"unknown field", "config/c", map[string]any{"colour": "blue"}, nil, "colour is not a known field"},
		{"field of another provider", "config/c", map[string]any{"passphrase": "x"}, nil, "passphrase is a field of provider storx, not storyden"},
		{"missing password", "config/c", nil, []string{"password"}, "password is required"},
		{"short password", "config/c", map[string]any{"password": "short"}, nil, "at least 8 characters"},
		{"missing base_url", "config/c", nil, []string{"base_url"}, "base_url is required for provider storyden"},
		{"relative base_url", "config/c", map[string]any{"base_url": "forum.example.com"}, nil, "base_url is not valid"},
		{"ftp base_url", "config/c", map[string]any{"base_url": "ftp://forum.example.com"}, nil, "base_url is not valid"},
		{"base_url with query", "config/c", map[string]any{"base_url": "https://forum.example.com?x=1"}, nil, "must not have a query"},
		{"base_url with /api", "config/c", map[string]any{"base_url": "https://forum.example.com/api"}, nil, "without /api"},
		{"base_url with credentials", "config/c", map[string]any{"base_url": "https://u:p@forum.example.com"}, nil, "must not carry credentials"},
		{"bad name", "config/-bad-", nil, nil, "connection name \"-bad-\" is not valid"},
		{"bad allowed role", "config/c", map[string]any{"allowed_roles": "ok,bad name"}, nil, `allowed_roles entry "bad name"`},
		{"wrong password", "config/c", map[string]any{"password": "wrong-password-123"}, nil, "verify_connection failed"},
		{"unknown handle", "config/c", map[string]any{"username": "nobody"}, nil, "HTTP 404"},
		{"no key permission", "config/c", map[string]any{"username": memberHandle, "password": memberPass}, nil, "USE_PERSONAL_ACCESS_KEYS"},
		{"bad bool", "config/c", map[string]any{"verify_connection": "maybe"}, nil, "verify_connection must be true or false"},
		{"base_url ending in ?", "config/c", map[string]any{"base_url": "https://forum.example.com?"}, nil, "must not have a query"},
		{"password given twice", "config/c", map[string]any{"password": []any{"first-secret-1", "second-secret-2"}}, nil, "password must be a single string"},
		{"two bad values: the first by name", "config/c", map[string]any{"verify_connection": "maybe", "password": map[string]any{"k": "secret-3"}, "allowed_roles": map[string]any{"a": "b"}}, nil, "allowed_roles must be a list of strings"},
		{"bad duration", "config/c", map[string]any{"rotation_period": "soon"}, nil, "rotation_period must be a duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			data := env.storydenConfig(tc.patch)
			for _, k := range tc.drop {
				delete(data, k)
			}
			env.mustBadRequest(logical.CreateOperation, tc.path, data, tc.want)
			resp, _ := env.request(logical.CreateOperation, tc.path, data)
			if msg := respError(resp); strings.Contains(msg, "secret-") {
				t.Fatalf("the error quotes a secret: %s", msg)
			}
			if keys, _ := env.storage.List(context.Background(), "config/"); len(keys) != 0 {
				t.Fatalf("a failed write stored %v", keys)
			}
		})
	}
}

// Vault runs the existence check before a write; the framework's own field
// check there would quote the value.
func TestConfig_ExistenceCheckNeverQuotesValues(t *testing.T) {
	env := newTestEnv(t)
	_, _, err := env.b.HandleExistenceCheck(context.Background(), &logical.Request{
		Operation: logical.CreateOperation, Path: "config/c", Storage: env.storage,
		Data: map[string]any{"provider": "katapult", "api_token": []any{"secret-a", "secret-b"}},
	})
	var userErr errutil.UserError
	if !errors.As(err, &userErr) || !strings.Contains(err.Error(), "api_token must be a single string") || strings.Contains(err.Error(), "secret-") {
		t.Fatalf("existence check: %v", err)
	}
}

func TestConfig_UpdateKeepsOmittedFieldsAndProviderIsFixed(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(nil))
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "app"})
	if env.storedPassword("main") != adminPassword {
		t.Fatal("update without password lost the stored password")
	}
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{"provider": "dstor"}, "provider cannot change from storyden to dstor")
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{"password": "wrong-password-123"}, "verify_connection failed")
	if env.storedPassword("main") != adminPassword {
		t.Fatal("a failed update changed the stored password")
	}
}

func TestConfig_VerifyConnectionFalseStoresWithoutUpstreamCall(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"password": "wrong-password-123", "verify_connection": false}))
	if calls := env.upstream.Calls(); len(calls) != 0 {
		t.Fatalf("verify_connection=false made upstream calls: %v", calls)
	}
}

func TestConfig_StorageFailureStoresNothing(t *testing.T) {
	env := newTestEnv(t)
	env.storage.FailPut(true)
	resp, err := env.request(logical.CreateOperation, "config/main", env.storydenConfig(nil))
	if err == nil {
		t.Fatalf("want an error when storage fails, got %#v", resp)
	}
	if strings.Contains(err.Error(), adminPassword) {
		t.Fatal("the error carries the password")
	}
	env.storage.FailPut(false)
	if resp := env.mustOK(logical.ReadOperation, "config/main", nil); resp != nil {
		t.Fatalf("config exists after a failed write: %v", resp.Data)
	}
}

func TestConfig_DeleteAndInvalidateDropSession(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.issue()
	env.b.Invalidate(context.Background(), "config/main")
	env.issue()
	if got := env.upstream.Calls()["POST /api/auth/password/signin"]; got != 2 {
		t.Fatalf("sign-ins after Invalidate = %d, want 2 (config write, then after invalidation)", got)
	}
	env.mustOK(logical.DeleteOperation, "config/main", nil)
	env.mustBadRequest(logical.ReadOperation, "creds/app", nil, `connection "main", which does not exist`)
}

func TestConfig_UpdatesThatDoNotTouchTheUpstreamAreNotVerifiedAgain(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(nil))
	env.upstream.ResetCalls()
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "app"})
	if calls := env.upstream.Calls(); len(calls) != 0 {
		t.Fatalf("an allowed_roles update called the upstream: %v", calls)
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"username": adminHandle})
	if calls := env.upstream.Calls(); calls["POST /api/auth/password/signin"] != 1 {
		t.Fatalf("an update of a provider field was not verified: %v", calls)
	}
}
