package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The engine asks Vault for a mount's lease TTLs only alongside the upstream
// create, planning with the answer Vault gave last (see backend/leasettls.go).
// These tests tune mounts with the real CLI between reads and check that
// every credential issued after a tune ends where the tuned mount says, both
// upstream and in Vault's lease.

// issueWindow is the wall-clock span around one creds read: the engine's
// issue time lies within it, so every bound on an expiry is taken against
// both ends and none depends on how long the read took.
type issueWindow struct{ before, after time.Time }

// readCredsTimed reads path through the CLI and returns the secret and the window.
func readCredsTimed(t *testing.T, path string) (*api.Secret, issueWindow) {
	t.Helper()
	before := time.Now()
	secret := cliJSON(t, "read", path)
	return secret, issueWindow{before: before, after: time.Now()}
}

// wantExpiryAfter fails unless got is d after the issue: upstreams keep
// whole seconds, so the lower bound is truncated.
func wantExpiryAfter(t *testing.T, what string, got time.Time, w issueWindow, d time.Duration) {
	t.Helper()
	if got.Before(w.before.Add(d).Truncate(time.Second)) || got.After(w.after.Add(d)) {
		t.Fatalf("%s is %s, want %s after the issue (%s to %s)", what, got.UTC().Format(time.RFC3339), d,
			w.before.UTC().Format(time.RFC3339Nano), w.after.UTC().Format(time.RFC3339Nano))
	}
}

// expiresField parses the expires_at field of a creds response.
func expiresField(t *testing.T, secret *api.Secret) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, fmt.Sprint(secret.Data["expires_at"]))
	if err != nil {
		t.Fatalf("expires_at %v: %v", secret.Data["expires_at"], err)
	}
	return at
}

// tuneMaxLeaseTTL tunes the mount's max_lease_ttl through the real CLI.
func tuneMaxLeaseTTL(t *testing.T, mount, max string) {
	t.Helper()
	mustCLI(t, "", "secrets", "tune", "-max-lease-ttl="+max, mount)
	tune := cliJSON(t, "read", "sys/mounts/"+mount+"/tune")
	want, err := time.ParseDuration(max)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tune.Data["max_lease_ttl"]); got != fmt.Sprint(int(want.Seconds())) {
		t.Fatalf("after tuning %s to max_lease_ttl=%s, Vault reports %s", mount, max, got)
	}
}

// renewWithin renews the lease with increment through the CLI and fails
// unless the lease's end, as Vault records it, stays within limit of its
// issue. Vault counts in whole seconds from the truncated issue time, so the
// end may pass the exact bound by under a second.
func renewWithin(t *testing.T, leaseID, increment string, limit time.Duration) *api.Secret {
	t.Helper()
	renewed := cliJSON(t, "lease", "renew", "-increment="+increment, leaseID)
	if lease := time.Duration(renewed.LeaseDuration) * time.Second; lease > limit {
		t.Fatalf("a renew with increment %s gave %s, past the mount's max_lease_ttl of %s", increment, lease, limit)
	}
	lookup := cliJSON(t, "lease", "lookup", leaseID)
	issued, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(lookup.Data["issue_time"]))
	expires, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(lookup.Data["expire_time"]))
	if err1 != nil || err2 != nil {
		t.Fatalf("lease lookup of %s: issue_time %v, expire_time %v", leaseID, lookup.Data["issue_time"], lookup.Data["expire_time"])
	}
	if expires.After(issued.Add(limit + time.Second)) {
		t.Fatalf("after a renew with increment %s the lease ends at %s, %s after its issue at %s: past the mount's max_lease_ttl of %s",
			increment, expires, expires.Sub(issued), issued, limit)
	}
	return renewed
}

// storydenKeyExpiry is the expiry the Storyden emulator stores for the key with id.
func storydenKeyExpiry(t *testing.T, f *storydenFixture, id string) time.Time {
	t.Helper()
	for _, o := range f.upstream.Objects() {
		if o.ID == id {
			if o.ExpiresAt == nil {
				t.Fatalf("key %s has no expiry upstream", id)
			}
			return *o.ExpiresAt
		}
	}
	t.Fatalf("no key %s upstream", id)
	return time.Time{}
}

// TestTune_StorydenCredentialFollowsTheMountDownAndUp: after the plugin
// has seen the mount's TTLs, a tune of max_lease_ttl below the role's
// max_ttl bounds the next key upstream and its lease, with no key issued
// under the old maximum left live; a tune back up lets the next key reach
// the role's max_ttl again.
func TestTune_StorydenCredentialFollowsTheMountDownAndUp(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	f.configure()
	mustCLI(t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=10m", "max_ttl=2h")
	creds := f.mount + "/creds/app"

	first, w := readCredsTimed(t, creds)
	wantExpiryAfter(t, "the expiry of the key issued before any tune", expiresField(t, first), w, 2*time.Hour)

	tuneMaxLeaseTTL(t, f.mount, "30m")
	known := map[string]bool{}
	for _, o := range f.upstream.Objects() {
		known[o.ID] = true
	}
	down, w := readCredsTimed(t, creds)
	id := fmt.Sprint(down.Data["access_key_id"])
	if lease := time.Duration(down.LeaseDuration) * time.Second; lease <= 0 || lease > 30*time.Minute {
		t.Fatalf("lease of %s under a mount tuned to max_lease_ttl=30m", lease)
	}
	wantExpiryAfter(t, "expires_at of the key issued after the tune down", expiresField(t, down), w, 30*time.Minute)
	wantExpiryAfter(t, "the upstream expiry of the key issued after the tune down", storydenKeyExpiry(t, f, id), w, 30*time.Minute)
	discarded := 0
	for _, o := range f.upstream.Objects() {
		if known[o.ID] || o.ID == id {
			continue
		}
		discarded++
		if o.Live {
			t.Fatalf("key %s, created during the read after the tune and not returned, is live upstream (expires %v)", o.ID, o.ExpiresAt)
		}
	}
	t.Logf("the read after the tune down created %d key(s) upstream besides the one returned, none live", discarded)
	renewWithin(t, down.LeaseID, "2h", 30*time.Minute)

	tuneMaxLeaseTTL(t, f.mount, "2h")
	up, w := readCredsTimed(t, creds)
	wantExpiryAfter(t, "expires_at of the key issued after the tune back up", expiresField(t, up), w, 2*time.Hour)
	wantExpiryAfter(t, "the upstream expiry of the key issued after the tune back up",
		storydenKeyExpiry(t, f, fmt.Sprint(up.Data["access_key_id"])), w, 2*time.Hour)

	for _, s := range []*api.Secret{first, down, up} {
		mustCLI(t, "", "lease", "revoke", "-sync", s.LeaseID)
	}
	if n := f.liveKeys(); n != 0 {
		t.Fatalf("%d keys live upstream after revoking every lease", n)
	}
}

// jwtExpiry reads the exp claim of a JWT, without checking its signature.
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("the token is not a JWT (%d parts)", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("the token's payload: %v", err)
	}
	var claims struct {
		Exp *int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		t.Fatalf("the token carries no exp claim: %v", err)
	}
	return time.Unix(*claims.Exp, 0)
}

// TestTune_DstorTokenFollowsTheMountDown: a dStor token issued after a
// tune of max_lease_ttl below the role's max_ttl expires, in its own exp
// claim and in expires_at, at the tuned maximum.
func TestTune_DstorTokenFollowsTheMountDown(t *testing.T) {
	t.Parallel()
	mount, _ := newDstorMount(t, "ttl=10m", "max_ttl=2h")
	creds := mount + "/creds/app"

	first, w := readCredsTimed(t, creds)
	registerSecret("an issued dstor token", fmt.Sprint(first.Data["access_token"]))
	wantExpiryAfter(t, "the exp claim of the token issued before any tune", jwtExpiry(t, fmt.Sprint(first.Data["access_token"])), w, 2*time.Hour)

	tuneMaxLeaseTTL(t, mount, "30m")
	down, w := readCredsTimed(t, creds)
	token := fmt.Sprint(down.Data["access_token"])
	registerSecret("an issued dstor token", token)
	if lease := time.Duration(down.LeaseDuration) * time.Second; lease <= 0 || lease > 30*time.Minute {
		t.Fatalf("lease of %s under a mount tuned to max_lease_ttl=30m", lease)
	}
	wantExpiryAfter(t, "expires_at of the token issued after the tune down", expiresField(t, down), w, 30*time.Minute)
	wantExpiryAfter(t, "the exp claim of the token issued after the tune down", jwtExpiry(t, token), w, 30*time.Minute)
	renewWithin(t, down.LeaseID, "2h", 30*time.Minute)
}

// katapultCapWarning is the start of the warning Vault 1.21 adds when it
// caps a lease at the mount's maximum (framework.CalculateTTL, called by
// vault/request_handling.go when it registers the lease).
const katapultCapWarning = `TTL of "1h" exceeded the effective max_ttl of "20m"`

// TestTune_KatapultLeaseCappedByVault: Katapult keys carry no expiry, so
// for a role with a ttl the engine asks Vault nothing and leaves the cap at
// the mount's max_lease_ttl to Vault, at registration and at each renewal.
func TestTune_KatapultLeaseCappedByVault(t *testing.T) {
	t.Parallel()
	f := newKatapult(t)
	mustCLI(t, "", "write", f.mount+"/roles/long", "connection=main", "ttl=1h", "read_buckets=shared", "write_buckets=shared")
	// Vault 1.21 tunes a max below the mount's default (here the system's
	// 768h) with no -default-lease-ttl: the default is not checked against it.
	tuneMaxLeaseTTL(t, f.mount, "20m")

	secret := cliJSON(t, "read", f.mount+"/creds/long")
	registerSecret("an issued katapult secret", fmt.Sprint(secret.Data["secret_access_key"]))
	// Vault counts from the truncated second at registration: a 1h ttl
	// capped at a 20m maximum is exactly 20m.
	if secret.LeaseDuration != 20*60 {
		t.Fatalf("lease of %ds for a 1h role on a mount tuned to max_lease_ttl=20m, want 1200s", secret.LeaseDuration)
	}
	if !hasWarning(secret, katapultCapWarning) {
		t.Fatalf("Vault capped the lease without its warning %q: %v", katapultCapWarning, secret.Warnings)
	}
	if !f.s3Works(secret) {
		t.Fatal("the issued S3 credentials do not work upstream")
	}
	renewed := renewWithin(t, secret.LeaseID, "1h", 20*time.Minute)
	t.Logf("renew with increment 1h: %ds, warnings %q", renewed.LeaseDuration, renewed.Warnings)
	if !hasWarning(renewed, `TTL of "1h" exceeded the effective max_ttl`) {
		t.Fatalf("the renew was capped without a warning: %v", renewed.Warnings)
	}
	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if f.s3Works(secret) {
		t.Fatal("the S3 credentials still work after revoke")
	}
}
