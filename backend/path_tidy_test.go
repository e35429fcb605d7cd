package backend

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

func namesOf(items any) []string {
	var out []string
	list, _ := items.([]map[string]any)
	for _, item := range list {
		out = append(out, item["name"].(string))
	}
	return out
}

func (e *testEnv) inventoryNames() []string {
	e.t.Helper()
	resp := e.mustOK(logical.ListOperation, "inventory/main/", nil)
	if resp == nil || resp.Data["keys"] == nil {
		return nil
	}
	return resp.Data["keys"].([]string)
}

func TestInventory_FollowsIssueRenewAndRevoke(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	first, second := env.issue(), env.issue()
	if names := env.inventoryNames(); len(names) != 2 {
		t.Fatalf("inventory after two issues: %v", names)
	}
	read := env.mustOK(logical.ReadOperation, "inventory/main", nil)
	objects := read.Data["objects"].([]map[string]any)
	ids := map[any]bool{first.Data["access_key_id"]: true, second.Data["access_key_id"]: true}
	for _, o := range objects {
		if !ids[o["object_id"]] || o["role"] != "app" || !strings.HasPrefix(o["name"].(string), "vault-app-") {
			t.Fatalf("inventory object %v does not match an issued key", o)
		}
	}
	before := objects[0]["lease_expires_at"]
	if _, err := env.renew(first, time.Now(), 50*time.Minute); err != nil {
		t.Fatal(err)
	}
	entries, _ := listInventory(context.Background(), env.storage, "main")
	moved := false
	for _, e := range entries {
		if e.view()["lease_expires_at"] != before {
			moved = true
		}
	}
	if !moved {
		t.Fatal("a renew did not move the inventory's lease end")
	}
	if err := env.revoke(first); err != nil {
		t.Fatal(err)
	}
	if names := env.inventoryNames(); len(names) != 1 {
		t.Fatalf("inventory after a revoke: %v", names)
	}
}

func TestTidy_FindsAndRemovesLeftoversButNeverLiveCredentials(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	ctx := context.Background()
	live := env.issue()
	// Revoke never ran for this one: its lease ended an hour ago.
	expired := env.issue()
	expiredName := env.leaseName(expired)
	e, _ := getInventory(ctx, env.storage, "main", expiredName)
	e.LeaseExpiresAt = time.Now().Add(-time.Hour)
	_ = putInventory(ctx, env.storage, "main", e)
	// A lost WAL: the key exists upstream but no record knows it.
	lost := env.issue()
	_ = env.storage.Delete(ctx, inventoryKey("main", env.leaseName(lost)))
	// Deleted by hand upstream.
	gone := env.issue()
	adminDelete(t, env, gone.Data["access_key_id"].(string))
	// Made by hand: a copy of one of this connection's keys (its tag and this
	// cluster's), one named like another mount's keys on the same account,
	// one like another cluster's keys of this connection (performance
	// replication), and one unrelated.
	conn, _ := getConnection(ctx, env.storage, "main")
	cluster := env.b.cluster.tag
	copied := "vault-app-" + conn.Tag + cluster + "handmade"
	otherCluster := "vault-app-" + conn.Tag + map[bool]string{true: "zy", false: "zz"}[cluster == "zz"] + "handmade"
	for _, name := range []string{copied, "vault-app-otherm0unt0000", otherCluster, "ci-deploy-token"} {
		if _, err := storydenemu.ProbeCreateKey(env.upstream.URL(), adminHandle, adminPassword, name); err != nil {
			t.Fatal(err)
		}
	}

	report := env.mustOK(logical.UpdateOperation, "tidy/main", nil)
	if report.Data["dry_run"] != true || len(env.liveKeys()) != 7 {
		t.Fatalf("a dry run changed something upstream: %v", report.Data)
	}
	want := map[string][]string{
		"live":             {env.leaseName(live)},
		"expired_present":  {expiredName},
		"gone_upstream":    {env.leaseName(gone)},
		"unknown_upstream": {env.leaseName(lost), copied},
		"foreign_upstream": sortStrings([]string{"vault-app-otherm0unt0000", otherCluster}),
	}
	for field, names := range want {
		got := namesOf(report.Data[field])
		if strings.Join(sortStrings(got), ",") != strings.Join(sortStrings(names), ",") {
			t.Errorf("%s = %v, want %v", field, got, names)
		}
	}
	// With the default one-hour buffer only the long-expired lease goes;
	// the unknown keys are younger than the buffer.
	report = env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false})
	if got := namesOf(report.Data["deleted"]); len(got) != 1 || got[0] != expiredName {
		t.Fatalf("deleted with the default buffer: %v", got)
	}
	report = env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
	if got := namesOf(report.Data["deleted"]); len(got) != 2 {
		t.Fatalf("deleted with no buffer: %v", got)
	}
	if !env.keyWorks(live.Data["access_key"].(string)) {
		t.Fatal("tidy deleted a live credential")
	}
	var left []string
	for _, o := range env.liveKeys() {
		left = append(left, o.Name)
	}
	if strings.Join(sortStrings(left), ",") != strings.Join(sortStrings([]string{env.leaseName(live), "vault-app-otherm0unt0000", otherCluster, "ci-deploy-token"}), ",") {
		t.Fatalf("left upstream: %v", left)
	}
}

func TestTidy_NeverDeletesACredentialBeingIssued(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	var wg sync.WaitGroup
	issued := make(chan *logical.Response, 30)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := env.request(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var issuers sync.WaitGroup
	for i := 0; i < 30; i++ {
		issuers.Add(1)
		go func() {
			defer issuers.Done()
			resp, err := env.request(logical.ReadOperation, "creds/app", nil)
			if err != nil || resp.IsError() {
				t.Errorf("issue: %v %v", err, respError(resp))
				return
			}
			issued <- resp
		}()
	}
	issuers.Wait()
	close(stop)
	wg.Wait()
	close(issued)
	for resp := range issued {
		if !env.keyWorks(resp.Data["access_key"].(string)) {
			t.Fatal("tidy deleted a credential while it was being issued")
		}
	}
}

func TestTidy_ProviderThatCannotListIs400(t *testing.T) {
	env := newTestEnv(t)
	env.b.providers = newRegistry(fixedKeyProvider{})
	env.mustOK(logical.CreateOperation, "config/fixed", map[string]any{"provider": "fixedkey"})
	env.mustBadRequest(logical.UpdateOperation, "tidy/fixed", nil, "provider fixedkey cannot list or delete its credentials")
	env.mustBadRequest(logical.UpdateOperation, "tidy/ghost", nil, `connection "ghost" does not exist`)
}

// leaseName is the upstream object name recorded in a lease.
func (e *testEnv) leaseName(resp *logical.Response) string {
	return resp.Secret.InternalData[internalName].(string)
}

func sortStrings(s []string) []string { return slices.Sorted(slices.Values(s)) }

// A renewal Vault grants must be on record, or tidy later takes the renewed
// credential for one whose lease ended and deletes it.
func TestTidy_SparesACredentialWhoseRenewalCouldNotBeRecorded(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{"ttl": "10m", "max_ttl": "24h"})
	lease := env.issue()
	issued := time.Now()

	env.storage.FailPut(true)
	resp, err := env.renew(lease, issued, 5*time.Hour)
	env.storage.FailPut(false)
	if err == nil && !resp.IsError() {
		t.Errorf("a renew whose inventory write failed answered success, so Vault extended the lease while the inventory kept the old end")
	} else {
		// The client saw the failure and renews again.
		if _, err := env.renew(lease, issued, 5*time.Hour); err != nil {
			t.Fatalf("renew once storage recovered: %v", err)
		}
	}

	// Two hours on, the lease (renewed for 5 h) still runs.
	passInventoryTime(t, env.storage, "main", 2*time.Hour)
	report := env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false})
	if deleted := namesOf(report.Data["deleted"]); len(deleted) != 0 {
		t.Errorf("tidy deleted %v", deleted)
	}
	if !env.keyWorks(lease.Data["access_key"].(string)) {
		t.Fatal("tidy deleted a live, renewed credential")
	}
}

// A gone_upstream entry is dropped once its lease ended more than
// safety_buffer ago; until then its revoke (which finds nothing to delete)
// is what drops it.
func TestTidy_PrunesEntriesGoneUpstreamOnceTheirLeaseEnded(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	ended, running := env.issue(), env.issue()
	for _, lease := range []*logical.Response{ended, running} {
		adminDelete(t, env, lease.Data["access_key_id"].(string))
	}
	ctx := context.Background()
	e, _ := getInventory(ctx, env.storage, "main", env.leaseName(ended))
	e.LeaseExpiresAt = time.Now().Add(-2 * time.Hour)
	if err := putInventory(ctx, env.storage, "main", e); err != nil {
		t.Fatal(err)
	}

	report := env.mustOK(logical.UpdateOperation, "tidy/main", nil)
	if got := namesOf(report.Data["gone_upstream"]); len(got) != 2 || len(env.inventoryNames()) != 2 {
		t.Fatalf("dry run: gone_upstream %v, inventory %v", got, env.inventoryNames())
	}
	report = env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false})
	if got := namesOf(report.Data["pruned"]); len(got) != 1 || got[0] != env.leaseName(ended) {
		t.Errorf("pruned = %v, want the entry whose lease ended", got)
	}
	if got := env.inventoryNames(); len(got) != 1 || got[0] != env.leaseName(running) {
		t.Errorf("inventory after tidy: %v, want only the entry whose lease still runs", got)
	}
}

// listingMisses lists the upstream but leaves out one object, as a paged
// listing does when a concurrent delete shifts the pages.
type listingMisses struct {
	provider.Lister
	name string
}

func (l listingMisses) ListObjects(ctx context.Context, roles []provider.Values) ([]provider.UpstreamObject, error) {
	objects, err := l.Lister.ListObjects(ctx, roles)
	return slices.DeleteFunc(objects, func(o provider.UpstreamObject) bool { return o.Name == l.name }), err
}

// An object one listing missed is not dropped from the inventory while its
// lease runs: the next tidy would find it upstream, unknown, and delete it.
func TestTidy_KeepsTheEntryOfALiveCredentialOneListingMissed(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	lease := env.issue()
	ctx := context.Background()
	conn, entry, err := env.b.liveConnection(ctx, env.storage, "main")
	if err != nil {
		t.Fatal(err)
	}
	missing := listingMisses{Lister: conn.(provider.Lister), name: env.leaseName(lease)}
	if _, err := env.b.tidy(ctx, env.storage, "main", entry, missing, conn, false, 0); err != nil {
		t.Fatal(err)
	}
	env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
	if !env.keyWorks(lease.Data["access_key"].(string)) {
		t.Fatal("tidy deleted a live credential that one listing had missed")
	}
}
