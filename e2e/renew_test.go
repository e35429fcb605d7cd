package e2e

import (
	"fmt"
	"testing"
	"time"
)

// leaseExpireTime is the lease's end as Vault records it.
func leaseExpireTime(t *testing.T, leaseID string) time.Time {
	t.Helper()
	lookup := cliJSON(t, "lease", "lookup", leaseID)
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(lookup.Data["expire_time"]))
	if err != nil {
		t.Fatalf("lease lookup expire_time %v: %v", lookup.Data["expire_time"], err)
	}
	return at
}

// TestRenew_LeaseNeverOutlivesTheKeyUpstream: Vault computes a renewed
// lease's TTL again from the increment the client asked for and the
// response's max TTL, and ignores the TTL the plugin answered. So once the
// role's max_ttl and the mount's max_lease_ttl allow more than the key has
// left upstream, a renew asking for more must still end the lease no later
// than the key's expiry, whatever the increment.
func TestRenew_LeaseNeverOutlivesTheKeyUpstream(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	f.configure()
	role := f.mount + "/roles/app"
	mustCLI(t, "", "write", role, "connection=main", "ttl=10m", "max_ttl=30m")
	secret, w := readCredsTimed(t, f.mount+"/creds/app")
	expiry := storydenKeyExpiry(t, f, fmt.Sprint(secret.Data["access_key_id"]))
	wantExpiryAfter(t, "the key's expiry upstream", expiry, w, 30*time.Minute)

	mustCLI(t, "", "write", role, "connection=main", "ttl=10m", "max_ttl=2h")
	for _, increment := range []string{"2h", "0"} {
		renewed := cliJSON(t, "lease", "renew", "-increment="+increment, secret.LeaseID)
		end := leaseExpireTime(t, secret.LeaseID)
		t.Logf("renew -increment=%s: %ds, ends %s, key expires %s, warnings %q", increment, renewed.LeaseDuration,
			end.UTC().Format(time.RFC3339), expiry.UTC().Format(time.RFC3339), renewed.Warnings)
		if end.After(expiry) {
			t.Fatalf("after a renew with increment %s the lease ends at %s, after its key expires upstream at %s",
				increment, end.UTC().Format(time.RFC3339Nano), expiry.UTC().Format(time.RFC3339Nano))
		}
	}
}
