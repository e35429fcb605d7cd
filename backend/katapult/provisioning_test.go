package katapult

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// provisioningClock is a clock shared by the emulator and the package's waits
// (which advance it), so that provisioning takes no real time.
func provisioningClock(t *testing.T) (*testutil.Clock, *[]time.Duration) {
	t.Helper()
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	return clock, recordSleeps(t, clock)
}

func TestIssueWaitsOutProvisioning(t *testing.T) {
	const delay = 100 * time.Millisecond
	clock, waits := provisioningClock(t)
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay, o.Now = delay, clock.Now })
	cred := h.issue("vault-app-slow", provider.Values{fieldReadBuckets: []string{"assets"}})
	// Backing off from 10 ms (fastRetries) until the key is provisioned:
	// generate_credentials at 0, 10, 30, 70 and 110 ms.
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	if !slices.Equal(*waits, want) {
		t.Errorf("waits = %v, want %v", *waits, want)
	}
	var waited time.Duration
	for _, w := range *waits {
		waited += w
	}
	if waited < delay {
		t.Errorf("issue waited %s, less than the provisioning delay", waited)
	}
	if n := h.srv.Calls()[routeGenerate]; n != len(want)+1 {
		t.Errorf("generate_credentials called %d times, want %d: retries past the 422s", n, len(want)+1)
	}
	if !h.emu.S3CredentialsLive(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)) {
		t.Error("credentials do not work")
	}
}

func TestIssueGivesUpOnProvisioningAfterTheCap(t *testing.T) {
	clock, waits := provisioningClock(t)
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay, o.Now = time.Hour, clock.Now })
	provisioningTimeout = 100 * time.Millisecond
	_, err := h.conn.Issue(context.Background(), provider.IssueRequest{Name: "vault-app-never", Role: provider.Values{}})
	if codeOf(err) != codeProvisioning {
		t.Fatalf("err = %v, want the provisioning error", err)
	}
	// Tries at 0, 10, 30 and 70 ms; the next would start at 110 ms, past the cap.
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if !slices.Equal(*waits, want) {
		t.Errorf("waits = %v, want %v", *waits, want)
	}
	if calls := h.srv.Calls()[routeGenerate]; calls != len(want)+1 {
		t.Errorf("generate_credentials called %d times in 100ms of backoff, want %d", calls, len(want)+1)
	}
	if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-never"}); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
}

func TestIssueStopsWithTheContext(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The context ends during the first wait for provisioning.
	var waits []time.Duration
	saved := sleep
	sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		cancel()
		return ctx.Err()
	}
	t.Cleanup(func() { sleep = saved })
	_, err := h.conn.Issue(ctx, provider.IssueRequest{Name: "vault-app-cancelled", Role: provider.Values{}})
	if err == nil {
		t.Fatal("Issue succeeded after its context ended")
	}
	if len(waits) != 1 || h.srv.Calls()[routeGenerate] != 1 {
		t.Errorf("after the context ended: waits %v, %d generate_credentials calls; want the one wait and call", waits, h.srv.Calls()[routeGenerate])
	}
}

func TestConcurrentIssuesShareABucketACL(t *testing.T) {
	h := newHarness(t)
	// Slow ACL reads make interleaved read-modify-writes lose grants
	// unless they are serialized.
	h.srv.AddFault(sandboxLatency("GET", "/core/v1/object_storage/object_storage_cluster/buckets/bucket", 30))
	r := provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"assets"}}
	const n = 6
	creds := make([]*provider.Credential, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cred, err := h.conn.Issue(context.Background(), provider.IssueRequest{Role: r, Name: "vault-app-parallel-" + string(rune('a'+i))})
			if err != nil {
				t.Error(err)
			}
			creds[i] = cred
		})
	}
	wg.Wait()
	bucket, _ := h.object("bucket", "assets")
	if got := len(bucket.Extra["read_key_ids"].([]string)); got != n {
		t.Fatalf("read_key_ids has %d keys, want %d: %v", got, n, bucket.Extra)
	}
	if got := len(bucket.Extra["write_key_ids"].([]string)); got != n {
		t.Fatalf("write_key_ids has %d keys, want %d", got, n)
	}
	for _, cred := range creds {
		wg.Go(func() {
			if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	h.assertClean()
}
