package backend

// Issue 18, first bullet: max_live_credentials on roles and connections.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// keyCreates is the call count of Storyden's access-key create.
const keyCreates = "POST /api/auth/access-keys"

// issueOutcome is a creds read's lease, or its error.
type issueOutcome struct {
	resp *logical.Response
	err  error
}

// issueAtOnce reads creds/role from n goroutines released together.
func (e *testEnv) issueAtOnce(role string, n int) []issueOutcome {
	e.t.Helper()
	out := make([]issueOutcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.ReadOperation, Path: "creds/" + role, Storage: e.storage, MountPoint: "apikeys/"})
			if err == nil && resp != nil && resp.IsError() {
				err = resp.Error()
			}
			out[i] = issueOutcome{resp, err}
		})
	}
	close(start)
	wg.Wait()
	return out
}

// capStatus is the HTTP status of an error, 0 when it carries none.
func capStatus(err error) int {
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		return coded.Code()
	}
	return 0
}

// splitOutcomes returns the leases issued and fails the test on any error
// but a 429 containing want.
func splitOutcomes(t *testing.T, outcomes []issueOutcome, want string) []*logical.Response {
	t.Helper()
	var issued []*logical.Response
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			issued = append(issued, o.resp)
		case capStatus(o.err) != http.StatusTooManyRequests:
			t.Fatalf("want a lease or a 429, got %v", o.err)
		case !strings.Contains(o.err.Error(), want):
			t.Fatalf("error %q does not contain %q", o.err, want)
		}
	}
	return issued
}

func (e *testEnv) liveCount(path string) int {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, path, nil)
	n, ok := resp.Data[fieldLiveCredentials].(int)
	if !ok {
		e.t.Fatalf("%s shows no %s: %v", path, fieldLiveCredentials, resp.Data)
	}
	return n
}

// TestLiveCapConcurrentReaders: 32 readers at once against a cap of 10, in
// rounds that revoke a few leases between them: each round issues exactly as
// many credentials as slots are free, the upstream never holds more than 10
// live keys, and the refused reads create nothing upstream.
func TestLiveCapConcurrentReaders(t *testing.T) {
	const readers, limit = 32, 10
	env := newTestEnv(t)
	env.setup(map[string]any{fieldMaxLiveCredentials: limit})
	var live []*logical.Response
	// Leases revoked before each round: the first starts from none.
	for round, revoke := range []int{0, 1, 4, limit, 1} {
		for _, resp := range live[:revoke] {
			if err := env.revoke(resp); err != nil {
				t.Fatal(err)
			}
		}
		live = live[revoke:]
		free := limit - len(live)
		createsBefore := env.upstream.Calls()[keyCreates]
		issued := splitOutcomes(t, env.issueAtOnce("app", readers),
			fmt.Sprintf(`of its max_live_credentials=%d on this cluster`, limit))
		if len(issued) != free {
			t.Fatalf("round %d: %d slots were free, %d reads succeeded", round, free, len(issued))
		}
		if creates := env.upstream.Calls()[keyCreates] - createsBefore; creates != free {
			t.Fatalf("round %d: %d keys created upstream for %d free slots", round, creates, free)
		}
		live = append(live, issued...)
		if n := len(env.liveKeys()); n != limit {
			t.Fatalf("round %d: %d keys live upstream, cap %d", round, n, limit)
		}
		if n := env.liveCount("roles/app"); n != limit {
			t.Fatalf("round %d: roles/app shows %d live, want %d", round, n, limit)
		}
	}
}

// TestLiveCapErrorText: the refusal names the role, the cap and the live
// count, says nothing was created, and comes as 429; a role read shows both
// fields.
func TestLiveCapErrorText(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{fieldMaxLiveCredentials: 2})
	env.issue()
	env.issue()
	role := env.mustOK(logical.ReadOperation, "roles/app", nil).Data
	if role[fieldMaxLiveCredentials] != 2 || role[fieldLiveCredentials] != 2 {
		t.Fatalf("roles/app: %s=%v %s=%v, want 2 and 2", fieldMaxLiveCredentials, role[fieldMaxLiveCredentials], fieldLiveCredentials, role[fieldLiveCredentials])
	}
	_, err := env.request(logical.ReadOperation, "creds/app", nil)
	if capStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("want a 429, got %v", err)
	}
	want := `no credential issued for role "app", nothing was created upstream: role "app" has 2 live of its max_live_credentials=2 on this cluster; ` +
		`retry once a lease of it is revoked or expires, or raise max_live_credentials (roles/app or config/main)`
	if err.Error() != want {
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
}

// TestLiveCapConnection: a connection's cap holds across its roles, and a
// revoke of either role frees a slot for the other.
func TestLiveCapConnection(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{fieldMaxLiveCredentials: 3}))
	for _, role := range []string{"app", "other"} {
		env.mustOK(logical.CreateOperation, "roles/"+role, map[string]any{"connection": "main", "ttl": "10m"})
	}
	a := splitOutcomes(t, env.issueAtOnce("app", 8), "")
	b := splitOutcomes(t, env.issueAtOnce("other", 8),
		`of its max_live_credentials=3 across all its roles`)
	if len(a) != 3 || len(b) != 0 {
		t.Fatalf("issued %d for app and %d for other under a connection cap of 3", len(a), len(b))
	}
	if err := env.revoke(a[0]); err != nil {
		t.Fatal(err)
	}
	if b = splitOutcomes(t, env.issueAtOnce("other", 8), "across all its roles"); len(b) != 1 {
		t.Fatalf("one revoke freed %d slots", len(b))
	}
	if n := env.liveCount("config/main"); n != 3 {
		t.Fatalf("config/main shows %d live, want 3", n)
	}
	if n := env.liveCount("roles/other"); n != 1 {
		t.Fatalf("roles/other shows %d live, want 1", n)
	}
	// Both caps reached: the error names both.
	env.mustOK(logical.UpdateOperation, "roles/other", map[string]any{fieldMaxLiveCredentials: 1})
	_, err := env.request(logical.ReadOperation, "creds/other", nil)
	if want := `role "other" has 1 live of its max_live_credentials=1, and connection "main" has 3 live`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v does not contain %q", err, want)
	}
}

// TestLiveCapFailedIssueFreesSlot: an issue whose upstream create fails
// gives its slot back, and so does one whose inventory write fails.
func TestLiveCapFailedIssueFreesSlot(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{fieldMaxLiveCredentials: 1})
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", Status: http.StatusInternalServerError, Times: 1})
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); capStatus(err) != http.StatusBadGateway {
		t.Fatalf("want the create's failure as a 502, got %v", err)
	}
	faulty := &inventoryFaultStorage{Storage: env.storage}
	faulty.fail(true)
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/app", Storage: faulty, MountPoint: "apikeys/"})
	if err == nil || !errors.Is(err, errInjectedStorage) {
		t.Fatalf("want the inventory write's failure, got %v %v", resp, err)
	}
	faulty.fail(false)
	lease := env.issue()
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); capStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("want a 429 once the one slot is taken, got %v", err)
	}
	if err := env.revoke(lease); err != nil {
		t.Fatal(err)
	}
	env.issue()
	if n := len(env.liveKeys()); n != 1 {
		t.Fatalf("%d keys live upstream, cap 1", n)
	}
}

// TestLiveCapFollowsInventory: the count is loaded from the inventory a new
// backend finds, reloaded when another node changed it, and follows tidy,
// which prunes an entry gone upstream and deletes a key whose lease ended.
func TestLiveCapFollowsInventory(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{fieldMaxLiveCredentials: 2})
	env.issue()
	env.issue()
	// What a restarted node sees: nothing in memory, two entries stored.
	env.b.clean(context.Background())
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); capStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("after a reload: want a 429, got %v", err)
	}
	// Another node's write of the inventory invalidates what is loaded.
	entries, err := listInventory(context.Background(), env.storage, "main")
	if err != nil || len(entries) != 2 {
		t.Fatalf("inventory: %v %v", entries, err)
	}
	if err := env.storage.Delete(context.Background(), inventoryKey("main", entries[0].Name)); err != nil {
		t.Fatal(err)
	}
	env.b.invalidate(context.Background(), inventoryKey("main", entries[0].Name))
	if n := env.liveCount("roles/app"); n != 1 {
		t.Fatalf("after an invalidation: roles/app shows %d live, want 1", n)
	}
	env.issue()
	// One key deleted behind the plugin's back, and every lease ended.
	entries, err = listInventory(context.Background(), env.storage, "main")
	if err != nil || len(entries) != 2 {
		t.Fatalf("inventory: %v %v", entries, err)
	}
	if status, err := storydenemu.ProbeRevoke(env.upstream.URL(), adminHandle, adminPassword, entries[0].ObjectID); err != nil || status >= 300 {
		t.Fatalf("revoke upstream: %d %v", status, err)
	}
	passInventoryTime(t, env.storage, "main", 2*time.Hour)
	env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
	if n := env.liveCount("roles/app"); n != 0 {
		t.Fatalf("after tidy: roles/app shows %d live, want 0", n)
	}
	env.issue()
	env.issue()
}

// TestLiveCapRefused: bad values and providers whose credentials cannot be
// counted get a 400, and nothing is stored.
func TestLiveCapRefused(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.mustBadRequest(logical.UpdateOperation, "roles/app", map[string]any{fieldMaxLiveCredentials: -1}, "must be 0 (no cap) or a positive number")
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{fieldMaxLiveCredentials: -1}, "must be 0 (no cap) or a positive number")
	for _, p := range []string{"dstor", "storable"} {
		conn := map[string]any{"provider": p, "base_url": "https://127.0.0.1:1", "verify_connection": false,
			"api_key": "uncountedApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL", "client_id": "c", "client_secret": "s"}
		if p == "dstor" {
			delete(conn, "client_id")
			delete(conn, "client_secret")
		}
		capped := map[string]any{fieldMaxLiveCredentials: 5}
		for k, v := range conn {
			capped[k] = v
		}
		want := "provider " + p + " creates nothing upstream that the plugin records, so it cannot count its live credentials"
		env.mustBadRequest(logical.CreateOperation, "config/"+p, capped, want)
		env.mustOK(logical.CreateOperation, "config/"+p, conn)
		env.mustBadRequest(logical.CreateOperation, "roles/"+p, map[string]any{"connection": p, fieldMaxLiveCredentials: 5}, want)
		if entry, _ := getRole(context.Background(), env.storage, p); entry != nil {
			t.Fatalf("role %s was stored", p)
		}
		// A counted role moved onto such a connection keeps its cap: refused.
		env.mustOK(logical.UpdateOperation, "roles/app", map[string]any{fieldMaxLiveCredentials: 5})
		env.mustBadRequest(logical.UpdateOperation, "roles/app", map[string]any{"connection": p}, want)
		env.mustOK(logical.UpdateOperation, "roles/app", map[string]any{fieldMaxLiveCredentials: 0})
	}
}

// TestLiveCapPerCluster: the count is each cluster's, as the inventory is
// local storage: a performance secondary has its own slots, and a
// performance standby leaves the decision to its active node (it answers
// logical.ErrReadOnly, which Vault forwards, not a 429 from its own view).
func TestLiveCapPerCluster(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{fieldMaxLiveCredentials: 1})
	env.issue()
	secondary, view := env.otherCluster(consts.ReplicationPerformanceSecondary, false)
	if resp, err := handle(secondary, view, logical.ReadOperation, "creds/app", nil); err != nil || resp.IsError() {
		t.Fatalf("the secondary's first issue: %v %v", resp, err)
	}
	if _, err := handle(secondary, view, logical.ReadOperation, "creds/app", nil); capStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("the secondary's second issue: want a 429, got %v", err)
	}
	standby, standbyView := env.otherCluster(consts.ReplicationPerformanceStandby, true)
	standbyView.local = env.storage
	if _, err := handle(standby, standbyView, logical.ReadOperation, "creds/app", nil); !errors.Is(err, logical.ErrReadOnly) {
		t.Fatalf("the standby: want %v, got %v", logical.ErrReadOnly, err)
	}
	if n := len(env.liveKeys()); n != 2 {
		t.Fatalf("%d keys live upstream, want one per cluster", n)
	}
}
