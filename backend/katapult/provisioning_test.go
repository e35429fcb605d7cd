package katapult

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
)

func TestIssueWaitsOutProvisioning(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay = 150 * time.Millisecond })
	start := time.Now()
	cred := h.issue("vault-app-slow", provider.Values{fieldReadBuckets: []string{"assets"}})
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("issue took %s, less than the provisioning delay", elapsed)
	}
	if n := h.srv.Calls()[routeGenerate]; n < 2 {
		t.Errorf("generate_credentials called %d times, want retries past the 422s", n)
	}
	if !h.emu.S3CredentialsLive(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)) {
		t.Error("credentials do not work")
	}
}

func TestIssueGivesUpOnProvisioningAfterTheCap(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay = time.Hour })
	provisioningTimeout = 100 * time.Millisecond
	_, err := h.conn.Issue(context.Background(), provider.IssueRequest{Name: "vault-app-never", Role: provider.Values{}})
	if codeOf(err) != codeProvisioning {
		t.Fatalf("err = %v, want the provisioning error", err)
	}
	calls := h.srv.Calls()[routeGenerate]
	if calls < 2 || calls > 10 {
		t.Errorf("generate_credentials called %d times in 100ms of backoff", calls)
	}
	if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-never"}); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
}

func TestIssueStopsWithTheContext(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.conn.Issue(ctx, provider.IssueRequest{Name: "vault-app-cancelled", Role: provider.Values{}})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
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

func TestBucketLockHonoursTheContext(t *testing.T) {
	locks := bucketLocks{locks: map[string]chan struct{}{}}
	unlock, err := locks.lock(context.Background(), "assets")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := locks.lock(ctx, "assets"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v", err)
	}
	if _, err := locks.lock(context.Background(), "logs"); err != nil {
		t.Fatalf("another bucket is blocked: %v", err)
	}
	unlock()
	if _, err := locks.lock(context.Background(), "assets"); err != nil {
		t.Fatal(err)
	}
}
