package backend

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

func TestCreds_IssueRenewRevoke(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	// The expiry is read against the times around the issue, so that no
	// bound depends on how long the issue took.
	before := time.Now()
	resp := env.issue()
	after := time.Now()

	key, _ := resp.Data["access_key"].(string)
	if !strings.HasPrefix(key, "sdpak_") || !env.keyWorks(key) {
		t.Fatalf("issued key %.8s… does not authenticate upstream", key)
	}
	expires, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	// Storyden keeps whole seconds.
	if expires.Before(before.Add(time.Hour).Truncate(time.Second)) || expires.After(after.Add(time.Hour)) {
		t.Fatalf("upstream expires_at %s is not the lease's max end, an hour after the issue (%s to %s)", expires, before, after)
	}
	// The lease ends with the key: at most an hour, and no sooner than the
	// key's end as seen after the issue.
	if resp.Secret.TTL != 10*time.Minute || resp.Secret.MaxTTL > time.Hour || resp.Secret.MaxTTL < expires.Sub(after).Truncate(time.Second) {
		t.Fatalf("lease ttl=%s max=%s, want 10m and the %s left of the key's hour", resp.Secret.TTL, resp.Secret.MaxTTL, expires.Sub(after))
	}
	if obj := env.upstream.Objects()[0]; obj.ExpiresAt == nil || !obj.ExpiresAt.Equal(expires) {
		t.Fatalf("upstream key expiry %v, want %s", obj.ExpiresAt, expires)
	}
	if _, ok := resp.Secret.InternalData["ref"]; !ok {
		t.Fatal("the lease carries no revoke reference")
	}
	if env.walCount() != 0 {
		t.Fatal("a WAL entry survived a successful issue")
	}

	renewed, err := env.renew(resp, time.Now(), 20*time.Minute)
	if err != nil || renewed.IsError() {
		t.Fatalf("renew: %v %v", err, respError(renewed))
	}
	if renewed.Secret.TTL != 20*time.Minute {
		t.Fatalf("renewed ttl = %s, want 20m", renewed.Secret.TTL)
	}

	if err := env.revoke(resp); err != nil {
		t.Fatal(err)
	}
	if env.keyWorks(key) {
		t.Fatal("the key still authenticates after revoke")
	}
	if err := env.revoke(resp); err != nil {
		t.Fatalf("a second revoke must succeed (idempotent): %v", err)
	}
}

// vaultRenewedEnd is the lease end Vault sets after the plugin answered a
// renewal (vault/expiration.go, Renew): the TTL computed again from the
// increment and the answer's max TTL, counted from the issue time, with the
// answer's TTL used only when no increment was asked.
func vaultRenewedEnd(t *testing.T, env *testEnv, renewed *logical.Response, issued time.Time, increment time.Duration) time.Time {
	t.Helper()
	ttl, _, err := framework.CalculateTTL(env.b.System(), increment, renewed.Secret.TTL, 0, renewed.Secret.MaxTTL, 0, issued)
	if err != nil {
		t.Fatalf("Vault's computation of the renewed TTL: %v", err)
	}
	return time.Now().Add(ttl)
}

// The lease never ends after the credential's upstream expiry, with or
// without an increment, also once the role allows more than the credential
// has: Vault ignores the TTL the plugin answers when the client asks for an
// increment, so the answer's max TTL must carry the bound.
func TestCreds_RenewNeverPassesUpstreamExpiry(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	// Pretend Vault issued this lease 55 minutes ago: 5 minutes remain upstream.
	expiresAt := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	resp.Secret.InternalData[internalExpiresAt] = expiresAt.Unix()
	issued := time.Now().Add(-55 * time.Minute)
	env.mustOK(logical.UpdateOperation, "roles/app", map[string]any{"max_ttl": "3h"})
	for _, increment := range []time.Duration{0, time.Hour, 3 * time.Hour} {
		renewed, err := env.renew(resp, issued, increment)
		if err != nil || renewed.IsError() {
			t.Fatalf("renew with increment %s: %v %v", increment, err, respError(renewed))
		}
		if end := vaultRenewedEnd(t, env, renewed, issued, increment); end.After(expiresAt) {
			t.Errorf("renew with increment %s: the lease ends %s after the upstream expiry", increment, end.Sub(expiresAt))
		}
		if increment > 0 && (len(renewed.Warnings) != 1 || !strings.Contains(renewed.Warnings[0], "expires upstream")) {
			t.Errorf("renew with increment %s: warnings %q, want only the upstream expiry's (Vault adds its own cap warning)", increment, renewed.Warnings)
		}
	}
	resp.Secret.InternalData[internalExpiresAt] = time.Now().Add(-time.Second).Unix()
	expired, err := env.renew(resp, time.Now().Add(-30*time.Minute), time.Hour)
	if err != nil || !expired.IsError() || !strings.Contains(respError(expired), "expired upstream") {
		t.Fatalf("renew after the upstream expiry: %v %v", err, respError(expired))
	}
}

// A max_ttl of 1s makes Storyden's key expire at the next whole second,
// under a second away: the lease would get a TTL of 0, which Vault reads as
// its default TTL, so the engine refuses the key and deletes it.
func TestCreds_RefusesCredentialExpiringWithinASecond(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{"ttl": "1s", "max_ttl": "1s"})
	_, err := env.request(logical.ReadOperation, "creds/app", nil)
	if err == nil || !strings.Contains(err.Error(), "too soon for a lease") {
		t.Fatalf("creds with a key expiring within a second: %v", err)
	}
	if n := len(env.liveKeys()); n != 0 {
		t.Fatalf("%d keys left upstream", n)
	}
	if n := env.walCount(); n != 0 {
		t.Fatalf("%d WAL entries left", n)
	}
}

func TestCreds_RevokeAfterRoleDeletedAndAfterManualDelete(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	first, second := env.issue(), env.issue()
	env.mustOK(logical.DeleteOperation, "roles/app", nil)
	if err := env.revoke(first); err != nil {
		t.Fatalf("revoke after the role was deleted: %v", err)
	}
	if env.keyWorks(first.Data["access_key"].(string)) {
		t.Fatal("key still works")
	}
	// Someone disabled the second key upstream by hand: revoke still succeeds.
	adminDelete(t, env, second.Data["access_key_id"].(string))
	if err := env.revoke(second); err != nil {
		t.Fatalf("revoke of a key already gone upstream: %v", err)
	}
	if n := len(env.liveKeys()); n != 0 {
		t.Fatalf("%d keys still live", n)
	}
}

// adminDelete revokes a key directly at the emulator, as an operator would.
func adminDelete(t *testing.T, env *testEnv, id string) {
	t.Helper()
	status, err := storydenemu.ProbeRevoke(env.upstream.URL(), adminHandle, adminPassword, id)
	if err != nil || status != http.StatusNoContent {
		t.Fatalf("manual delete: %d %v", status, err)
	}
}

func TestCreds_FailingRevokeReturnsErrorUntilUpstreamRecovers(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: "/api/auth/access-keys/", Status: http.StatusInternalServerError})
	err := env.revoke(resp)
	if err == nil {
		t.Fatal("revoke swallowed an upstream 500")
	}
	if !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("revoke error does not say what failed: %v", err)
	}
	if !env.keyWorks(resp.Data["access_key"].(string)) {
		t.Fatal("the key should still be live while revoke fails")
	}
	env.upstream.ClearFaults()
	if err := env.revoke(resp); err != nil {
		t.Fatalf("revoke after recovery: %v", err)
	}
	if env.keyWorks(resp.Data["access_key"].(string)) {
		t.Fatal("the key still works after recovery and revoke")
	}
}

func TestCreds_RevokeRetriesTransientFaults(t *testing.T) {
	for _, fault := range []sandbox.Fault{
		{Status: http.StatusServiceUnavailable, Times: 2},
		{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1},
		{Status: http.StatusTooManyRequests, Times: 1},
		{Drop: true, Times: 1},
	} {
		env := newTestEnv(t)
		env.setup(nil)
		resp := env.issue()
		fault.Method, fault.Path = http.MethodDelete, "/api/auth/access-keys/"
		env.upstream.AddFault(fault)
		if err := env.revoke(resp); err != nil {
			t.Fatalf("fault %+v: revoke should retry and succeed: %v", fault, err)
		}
		if env.keyWorks(resp.Data["access_key"].(string)) {
			t.Fatalf("fault %+v: key still works", fault)
		}
	}
}

func TestCreds_HundredReadsCostOneSignIn(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.upstream.ResetCalls()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.request(logical.ReadOperation, "creds/app", nil)
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls := env.upstream.Calls()
	if calls["POST /api/auth/access-keys"] != 100 || calls["POST /api/auth/password/signin"] > 1 {
		t.Fatalf("100 reads cost %v; want 100 creates and at most one sign-in", calls)
	}
	t.Logf("100 concurrent creds reads: %d creates, %d sign-ins", calls["POST /api/auth/access-keys"], calls["POST /api/auth/password/signin"])
}

func TestCreds_ExpiredSessionSignsInAgainOnce(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.upstream.ResetCalls()
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", Status: http.StatusUnauthorized, Times: 1})
	env.issue()
	calls := env.upstream.Calls()
	if calls["POST /api/auth/password/signin"] != 1 {
		t.Fatalf("calls %v: want exactly one new sign-in after a 401", calls)
	}
}

func TestCreds_UpstreamFaultsGiveClearErrorsAndNoOrphans(t *testing.T) {
	cases := []struct {
		name  string
		fault sandbox.Fault
		want  string
	}{
		{"500", sandbox.Fault{Status: 500}, "HTTP 500"},
		{"503 (not retried for a create)", sandbox.Fault{Status: 503}, "HTTP 503"},
		{"429 with a long Retry-After", sandbox.Fault{Status: 429, RetryAfter: "3600"}, "retry after 1h0m0s"},
		{"dropped connection", sandbox.Fault{Drop: true}, "create access key"},
		{"malformed body after the key was created", sandbox.Fault{Malformed: true}, "not the JSON expected"},
		// The client gives up after 1 s; the upstream would answer only
		// after a minute: before creating the key, or after.
		{"timeout before the create", sandbox.Fault{LatencyMS: 60_000}, "create access key"},
		{"timeout after the create landed", sandbox.Fault{LatencyAfterMS: 60_000}, "create access key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.b.httpClient.Timeout = time.Second
			env.setup(nil)
			tc.fault.Method, tc.fault.Path = http.MethodPost, "/api/auth/access-keys"
			env.upstream.AddFault(tc.fault)
			resp, err := env.request(logical.ReadOperation, "creds/app", nil)
			if err == nil {
				t.Fatalf("want an error, got %#v", resp)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), adminPassword) || strings.Contains(err.Error(), "sdpak_") {
				t.Fatal("the error carries a secret")
			}
			ambiguous := tc.fault.Drop || tc.fault.LatencyMS > 0 || tc.fault.LatencyAfterMS > 0
			if !ambiguous && env.walCount() != 0 {
				t.Fatal("the upstream answered, yet the WAL entry was kept")
			}
			if ambiguous {
				// The create may have landed upstream although no answer
				// came (in the latency-after case it did), so the entry
				// stays for Vault's WAL rollback.
				if env.walCount() != 1 {
					t.Fatal("an ambiguous failure cleared its WAL entry")
				}
				if tc.fault.LatencyAfterMS > 0 && len(env.upstream.Objects()) != 1 {
					t.Fatalf("the create did not land before its answer was held: %+v", env.upstream.Objects())
				}
				env.rollbackAll()
			}
			if live := env.liveKeys(); len(live) != 0 {
				t.Fatalf("orphaned upstream keys: %v", live)
			}
			if env.walCount() != 0 {
				t.Fatalf("WAL entries left: %d", env.walCount())
			}
		})
	}
}

func TestCreds_StorageFaults(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.storage.FailPut(true)
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); err == nil {
		t.Fatal("issue succeeded without a pending inventory entry")
	}
	env.storage.FailPut(false)
	if n := len(env.upstream.Objects()); n != 0 {
		t.Fatalf("an issue that could not write its pending entry created %d keys", n)
	}
	env.storage.FailGet(true)
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); err == nil {
		t.Fatal("issue succeeded while storage reads fail")
	}
	env.storage.FailGet(false)
	// A pending entry that cannot become the live one would delete the live
	// key later, so the key goes at once and the read fails.
	second := &nthInventoryPutFails{Storage: env.storage, n: 2}
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/app", Storage: second}); err == nil {
		t.Fatal("issue succeeded although its pending entry could not become the live one")
	}
	if live := env.liveKeys(); len(live) != 0 {
		t.Fatalf("live keys after a failed live write: %v", live)
	}
	if second.puts.Load() != 2 {
		t.Fatalf("%d inventory writes, want the pending one and the failed live one", second.puts.Load())
	}
}

func TestCreds_LegacyErrorBodiesAreRead(t *testing.T) {
	env := newTestEnv(t, func(o *storydenemu.Options) { o.LegacyErrors = true })
	env.mustBadRequest(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"password": "wrong-password-123"}), "HTTP 401")
	resp, _ := env.request(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"password": "wrong-password-123"}))
	if msg := respError(resp); !strings.Contains(msg, "): ") && !strings.Contains(msg, "Unauthorized: ") {
		t.Fatalf("the legacy error message was not surfaced: %q", msg)
	}
}

// readOnlyStorage behaves like a performance standby's storage.
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }

func TestCreds_PerformanceStandbyForwardsToActive(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: "creds/app", Storage: readOnlyStorage{env.storage},
	})
	// Vault forwards a request whose error is exactly ErrReadOnly.
	if err == nil || err.Error() != logical.ErrReadOnly.Error() {
		t.Fatalf("err = %v, want exactly %v", err, logical.ErrReadOnly)
	}
	if n := len(env.upstream.Objects()); n != 0 {
		t.Fatalf("a standby created %d keys upstream before forwarding", n)
	}
}

// nthInventoryPutFails fails the nth write under inventory/ and lets every
// other one through.
type nthInventoryPutFails struct {
	logical.Storage
	n    int64
	puts atomic.Int64
}

// Put implements logical.Storage.
func (s *nthInventoryPutFails) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, inventoryStoragePrefix) && s.puts.Add(1) == s.n {
		return errInjectedStorage
	}
	return s.Storage.Put(ctx, e)
}
