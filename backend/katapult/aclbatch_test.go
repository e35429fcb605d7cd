package katapult

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// aclSeedEnv overrides the seed of TestACLStaysExactUnderConcurrentChanges,
// to replay a failure or try other interleavings.
const aclSeedEnv = "KATAPULT_ACL_SEED"

// TestACLStaysExactUnderConcurrentChanges runs seeded rounds of concurrent
// issues and revokes on two buckets; in some rounds one ACL write fails,
// and the failed issues are rolled back and the failed revokes retried, as
// the engine and Vault do. After each round, with nothing in flight, each
// bucket's lists must hold exactly the keys of the live credentials whose
// role grants it, once each.
func TestACLStaysExactUnderConcurrentChanges(t *testing.T) {
	seed := uint64(21)
	if s := os.Getenv(aclSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", aclSeedEnv, s, err)
		}
	}
	t.Logf("seed %d (set %s to replay another)", seed, aclSeedEnv)
	rng := rand.New(rand.NewPCG(seed, seed))
	h := newHarness(t, func(o *katapult.Options) { o.RateLimit = 1 << 20 })
	// A little latency on the ACL calls lets more changes meet in one
	// update; what the test checks does not depend on how many do.
	latency := func() {
		h.srv.AddFault(sandboxLatency(http.MethodGet, pathBucketFault, 2))
		h.srv.AddFault(sandboxLatency(http.MethodPatch, pathBucketFault, 2))
	}
	latency()
	roles := []provider.Values{
		{fieldReadBuckets: []string{"assets"}},
		{fieldWriteBuckets: []string{"logs"}},
		{fieldReadBuckets: []string{"assets", "logs"}},
		{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"logs"}},
		{fieldReadBuckets: []string{"logs"}, fieldWriteBuckets: []string{"assets", "logs"}},
	}
	type lease struct {
		cred *provider.Credential
		role provider.Values
	}
	var live []lease
	const minOps = 240
	failed := 0
	for ops, round := 0, 0; ops < minOps; round++ {
		var (
			mu            sync.Mutex
			wg            sync.WaitGroup
			issued        []lease
			failedIssues  []string
			failedRevokes []lease
			errs          []error
		)
		if rng.IntN(4) == 0 {
			// Ahead of the latency faults: the sandbox applies the first
			// one that matches.
			h.srv.ClearFaults()
			h.srv.AddFault(sandbox.Fault{Method: http.MethodPatch, Path: pathBucketFault, Status: http.StatusInternalServerError, Times: 1})
			latency()
		}
		// failure records an error: the injected 500 is expected, anything
		// else fails the test.
		failure := func(err error) bool {
			if provider.StatusOf(err) != http.StatusInternalServerError {
				errs = append(errs, err)
				return false
			}
			failed++
			return true
		}
		for range 1 + rng.IntN(8) {
			ops++
			if len(live) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(live))
				l := live[i]
				live = slices.Delete(live, i, i+1)
				wg.Go(func() {
					err := h.conn.Revoke(context.Background(), l.cred.Ref)
					mu.Lock()
					defer mu.Unlock()
					if err != nil && failure(err) {
						failedRevokes = append(failedRevokes, l)
					}
				})
				continue
			}
			role := roles[rng.IntN(len(roles))]
			name := fmt.Sprintf("vault-app-r%d-op%d", round, ops)
			wg.Go(func() {
				cred, err := h.conn.Issue(context.Background(), provider.IssueRequest{RoleName: "app", Role: role, Name: name})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					issued = append(issued, lease{cred, role})
				case failure(err):
					failedIssues = append(failedIssues, name)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %v", round, errors.Join(errs...))
		}
		h.srv.ClearFaults()
		latency()
		for _, name := range failedIssues {
			if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: name}); err != nil {
				t.Fatalf("round %d: rollback of %s: %v", round, name, err)
			}
		}
		for _, l := range failedRevokes {
			if err := h.conn.Revoke(context.Background(), l.cred.Ref); err != nil {
				t.Fatalf("round %d: revoke again: %v", round, err)
			}
		}
		live = append(live, issued...)
		want := map[string][]string{}
		for _, l := range live {
			id := l.cred.Ref[refKeyID]
			for _, bucket := range l.role.Strings(fieldReadBuckets) {
				want[bucket+" read_key_ids"] = append(want[bucket+" read_key_ids"], id)
			}
			for _, bucket := range l.role.Strings(fieldWriteBuckets) {
				want[bucket+" write_key_ids"] = append(want[bucket+" write_key_ids"], id)
			}
		}
		for _, bucket := range []string{"assets", "logs"} {
			o, _ := h.object("bucket", bucket)
			for _, list := range []string{"read_key_ids", "write_key_ids"} {
				got := slices.Sorted(slices.Values(o.Extra[list].([]string)))
				w := slices.Sorted(slices.Values(want[bucket+" "+list]))
				if !slices.Equal(got, w) {
					t.Fatalf("round %d (after %d operations): bucket %s's %s = %v, want %v", round, ops, bucket, list, got, w)
				}
			}
		}
		if n := len(h.liveKeys()); n != len(live) {
			t.Fatalf("round %d: %d live keys, want %d", round, n, len(live))
		}
	}
	for _, l := range live {
		if err := h.conn.Revoke(context.Background(), l.cred.Ref); err != nil {
			t.Fatal(err)
		}
	}
	h.assertClean()
	t.Logf("ACL calls: %d GETs and %d PATCHes; %d issues and revokes failed on an injected ACL write failure", h.srv.Calls()[routeGetBucket], h.srv.Calls()[routePatchBkt], failed)
}

// bucketReads is a Hold of the ACL reads (GET of a bucket) once armed.
func bucketReads(armed *atomic.Bool) *testutil.Hold {
	return testutil.NewHold(func(r *http.Request) bool {
		return armed.Load() && r.Method == http.MethodGet && r.URL.Path == pathBucketFault
	})
}

// startIssues issues one key per name at once, with role, and sends each
// result to results.
func startIssues(h *harness, role provider.Values, results chan<- error, names ...string) {
	for _, name := range names {
		go func() {
			_, err := h.conn.Issue(context.Background(), provider.IssueRequest{RoleName: "app", Role: role, Name: name})
			results <- err
		}()
	}
}

// result receives one result, failing the test if none comes within
// testutil.Failsafe.
func result(t *testing.T, results <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-results:
		return err
	case <-time.After(testutil.Failsafe):
		t.Fatalf("waited %s for %s", testutil.Failsafe, what)
		return nil
	}
}

// countQueued makes the connection's batcher signal each change it queues.
func countQueued(h *harness) <-chan struct{} {
	queued := make(chan struct{}, 1024)
	h.conn.acls.queued = func(string) { queued <- struct{}{} }
	return queued
}

// TestACLChangesAreCoalesced holds the first ACL read of a bucket so that
// the grants of the other issues queue while it is in flight: they must all
// ride on its PATCH, not make an update each.
func TestACLChangesAreCoalesced(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	reads := bucketReads(&armed)
	h := newHookedHarness(t, reads.Before)
	queued := countQueued(h)
	role := provider.Values{fieldReadBuckets: []string{"assets"}}
	const n = 8
	results := make(chan error, n)
	startIssues(h, role, results, "vault-app-0")
	testutil.Await(t, reads.Arrived(), 1, "the first ACL read")
	var names []string
	for i := 1; i < n; i++ {
		names = append(names, fmt.Sprintf("vault-app-%d", i))
	}
	startIssues(h, role, results, names...)
	testutil.Await(t, queued, n, "every grant queued")
	reads.Release()
	for range n {
		if err := result(t, results, "an issue"); err != nil {
			t.Fatal(err)
		}
	}
	calls := h.srv.Calls()
	if calls[routeGetBucket] != 1 || calls[routePatchBkt] != 1 {
		t.Errorf("%d issues made %d ACL reads and %d ACL writes, want one of each: the grants queued during the read ride on its write",
			n, calls[routeGetBucket], calls[routePatchBkt])
	}
	o, _ := h.object("bucket", "assets")
	if got := len(o.Extra["read_key_ids"].([]string)); got != n {
		t.Errorf("read_key_ids holds %d keys, want %d", got, n)
	}
}

// TestCoalescedACLWriteFailureReachesEveryCaller fails the ACL write of an
// update that carries four grants and two ungrants: each of the six callers
// must see the failure, no key may be left granted without a lease,
// and the provider's usual recovery (rollback of the failed issues, a later
// revoke) must leave nothing behind.
func TestCoalescedACLWriteFailureReachesEveryCaller(t *testing.T) {
	var armed atomic.Bool
	reads := bucketReads(&armed)
	h := newHookedHarness(t, reads.Before)
	role := provider.Values{fieldReadBuckets: []string{"assets"}}
	kept := []*provider.Credential{h.issue("vault-app-kept-1", role), h.issue("vault-app-kept-2", role)}
	keptIDs := []string{kept[0].Ref[refKeyID], kept[1].Ref[refKeyID]}
	queued := countQueued(h)
	h.srv.ResetCalls()
	armed.Store(true)

	first := make(chan error, 1)
	startIssues(h, role, first, "vault-app-first")
	testutil.Await(t, reads.Arrived(), 1, "the first ACL read")
	testutil.Await(t, queued, 1, "the first grant queued")
	h.srv.AddFault(sandbox.Fault{Method: http.MethodPatch, Path: pathBucketFault, Status: http.StatusInternalServerError})
	failing := []string{"vault-app-a", "vault-app-b", "vault-app-c"}
	issues := make(chan error, len(failing))
	startIssues(h, role, issues, failing...)
	revokes := make(chan error, len(kept))
	for _, cred := range kept {
		go func() { revokes <- h.conn.Revoke(context.Background(), cred.Ref) }()
	}
	testutil.Await(t, queued, len(failing)+len(kept), "the coalesced changes queued")
	reads.Release()

	if err := result(t, first, "the first issue"); provider.StatusOf(err) != http.StatusInternalServerError {
		t.Errorf("first issue: %v, want the 500", err)
	}
	for range failing {
		if err := result(t, issues, "a coalesced issue"); provider.StatusOf(err) != http.StatusInternalServerError {
			t.Errorf("coalesced issue: %v, want the 500", err)
		}
	}
	for range kept {
		if err := result(t, revokes, "a coalesced revoke"); provider.StatusOf(err) != http.StatusInternalServerError {
			t.Errorf("coalesced revoke: %v, want the 500", err)
		}
	}
	if n := h.srv.Calls()[routePatchBkt]; n != 1 {
		t.Errorf("%d ACL writes, want one carrying all six changes", n)
	}
	if n := h.srv.Calls()[routeDelete]; n != 0 {
		t.Errorf("%d key deletes: a revoke whose ungrant failed must keep the key", n)
	}
	o, _ := h.object("bucket", "assets")
	if got := slices.Sorted(slices.Values(o.Extra["read_key_ids"].([]string))); !slices.Equal(got, slices.Sorted(slices.Values(keptIDs))) {
		t.Errorf("read_key_ids = %v, want only the keys whose leases live: %v", got, keptIDs)
	}

	// What the engine does next: roll the failed issues back by name, and
	// Vault retries the revokes.
	h.srv.ClearFaults()
	for _, name := range append(failing, "vault-app-first") {
		if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: name, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	for _, cred := range kept {
		if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
			t.Fatal(err)
		}
	}
	h.assertClean()
}

// fakeACL is one bucket's ACL whose reads answer at once and whose writes
// wait for the test to end them, with the result the test gives.
type fakeACL struct {
	mu     sync.Mutex
	acl    bucketACL
	writes int
	// started signals each write as it starts; finish gives its result.
	started chan struct{}
	finish  chan error
	// cancelled signals each write whose context ended before finish.
	cancelled chan struct{}
}

func newFakeACL() *fakeACL {
	return &fakeACL{started: make(chan struct{}, 64), finish: make(chan error), cancelled: make(chan struct{}, 64)}
}

func (f *fakeACL) read(context.Context, string) (bucketACL, error) {
	acl, _ := f.state()
	return acl, nil
}

func (f *fakeACL) write(ctx context.Context, _ string, acl bucketACL) error {
	f.mu.Lock()
	f.writes++
	f.mu.Unlock()
	f.started <- struct{}{}
	select {
	case err := <-f.finish:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		f.cancelled <- struct{}{}
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acl = acl
	return nil
}

// state returns a copy of the ACL and how many writes were made.
func (f *fakeACL) state() (bucketACL, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bucketACL{ReadKeyIDs: slices.Clone(f.acl.ReadKeyIDs), WriteKeyIDs: slices.Clone(f.acl.WriteKeyIDs)}, f.writes
}

// batcherTest is a batcher in front of a fakeACL, with helpers to start
// changes and wait until they are queued.
type batcherTest struct {
	t      *testing.T
	fake   *fakeACL
	b      *aclBatcher
	queued chan struct{}
}

func newBatcherTest(t *testing.T) *batcherTest {
	bt := &batcherTest{t: t, fake: newFakeACL(), queued: make(chan struct{}, 64)}
	bt.b = newACLBatcher(bt.fake.read, bt.fake.write)
	bt.b.queued = func(string) { bt.queued <- struct{}{} }
	return bt
}

// start asks for ch in the background and returns where its result goes,
// once the change is queued.
func (bt *batcherTest) start(ctx context.Context, ch aclChange) <-chan error {
	bt.t.Helper()
	done := make(chan error, 1)
	go func() { done <- bt.b.change(ctx, "assets", ch) }()
	testutil.Await(bt.t, bt.queued, 1, "the change queued")
	return done
}

// finishUpdate waits for the next write to start and ends it with err.
func (bt *batcherTest) finishUpdate(err error) {
	bt.t.Helper()
	testutil.Await(bt.t, bt.fake.started, 1, "an ACL write")
	bt.fake.finish <- err
}

// finishUntil lets every update succeed until done has the result.
func (bt *batcherTest) finishUntil(done <-chan error) error {
	bt.t.Helper()
	failsafe := time.After(testutil.Failsafe)
	for {
		select {
		case <-bt.fake.started:
			bt.fake.finish <- nil
		case err := <-done:
			return err
		case <-failsafe:
			bt.t.Fatalf("waited %s for a change to be confirmed", testutil.Failsafe)
		}
	}
}

func TestACLBatchKeepsTheOrderOfChanges(t *testing.T) {
	bt := newBatcherTest(t)
	first := bt.start(context.Background(), aclChange{keyID: "k0", read: true})
	testutil.Await(t, bt.fake.started, 1, "the first write")
	// Queued while the first write is in flight: all four ride on the next
	// update, and each key ends as its last change says.
	changes := []aclChange{
		{keyID: "k1", read: true, write: true},
		{keyID: "k1", remove: true},
		{keyID: "k2", remove: true},
		{keyID: "k2", write: true},
	}
	var results []<-chan error
	for _, ch := range changes {
		results = append(results, bt.start(context.Background(), ch))
	}
	bt.fake.finish <- nil
	bt.finishUpdate(nil)
	for _, done := range append(results, first) {
		if err := result(t, done, "a change"); err != nil {
			t.Fatal(err)
		}
	}
	acl, writes := bt.fake.state()
	if writes != 2 {
		t.Errorf("%d writes, want 2: the first change's, then one for the four that waited", writes)
	}
	if !slices.Equal(acl.ReadKeyIDs, []string{"k0"}) || !slices.Equal(acl.WriteKeyIDs, []string{"k2"}) {
		t.Errorf("ACL = %+v, want read [k0] and write [k2]: each key as its last change says", acl)
	}
}

func TestACLBatchFailureReachesEveryChangeItCarried(t *testing.T) {
	bt := newBatcherTest(t)
	first := bt.start(context.Background(), aclChange{keyID: "k0", read: true})
	testutil.Await(t, bt.fake.started, 1, "the first write")
	carried := []<-chan error{
		bt.start(context.Background(), aclChange{keyID: "k1", read: true}),
		bt.start(context.Background(), aclChange{keyID: "k0", remove: true}),
	}
	bt.fake.finish <- nil
	failure := errors.New("PATCH failed")
	bt.finishUpdate(failure)
	if err := result(t, first, "the first change"); err != nil {
		t.Errorf("the first change, in an update of its own: %v", err)
	}
	for _, done := range carried {
		if err := result(t, done, "a carried change"); !errors.Is(err, failure) {
			t.Errorf("carried change: %v, want the failure of its update", err)
		}
	}
}

// TestACLBatchWithdrawsTheChangesOfCallersThatLeft covers a caller whose
// context ends: a change still queued is never sent, an add already in
// flight is undone by the next update, and an update nobody waits for any
// more is cancelled.
func TestACLBatchWithdrawsTheChangesOfCallersThatLeft(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		bt := newBatcherTest(t)
		first := bt.start(context.Background(), aclChange{keyID: "k0", read: true})
		testutil.Await(t, bt.fake.started, 1, "the first write")
		ctx, cancel := context.WithCancel(context.Background())
		left := bt.start(ctx, aclChange{keyID: "k1", read: true})
		stays := bt.start(context.Background(), aclChange{keyID: "k2", read: true})
		cancel()
		if err := result(t, left, "the change whose caller left"); !errors.Is(err, context.Canceled) {
			t.Fatalf("left: %v", err)
		}
		bt.fake.finish <- nil
		bt.finishUpdate(nil)
		for _, done := range []<-chan error{first, stays} {
			if err := result(t, done, "a change"); err != nil {
				t.Fatal(err)
			}
		}
		if acl, _ := bt.fake.state(); !slices.Equal(acl.ReadKeyIDs, []string{"k0", "k2"}) {
			t.Errorf("ACL %+v: k1 was written although its caller had left", acl)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		bt := newBatcherTest(t)
		first := bt.start(context.Background(), aclChange{keyID: "k0", read: true})
		testutil.Await(t, bt.fake.started, 1, "the first write")
		ctx, cancel := context.WithCancel(context.Background())
		left := bt.start(ctx, aclChange{keyID: "k1", read: true})
		stays := bt.start(context.Background(), aclChange{keyID: "k2", read: true})
		bt.fake.finish <- nil
		testutil.Await(t, bt.fake.started, 1, "the write carrying k1 and k2")
		cancel()
		if err := result(t, left, "the change whose caller left"); !errors.Is(err, context.Canceled) {
			t.Fatalf("left: %v", err)
		}
		// The update lands k1 anyway, as a PATCH already sent would.
		bt.fake.finish <- nil
		for _, done := range []<-chan error{first, stays} {
			if err := result(t, done, "a change"); err != nil {
				t.Fatal(err)
			}
		}
		// A later change rides on or behind the undo, so once it is
		// confirmed the undo has been made.
		later := bt.start(context.Background(), aclChange{keyID: "k3", read: true})
		if err := bt.finishUntil(later); err != nil {
			t.Fatal(err)
		}
		if acl, _ := bt.fake.state(); !slices.Equal(acl.ReadKeyIDs, []string{"k0", "k2", "k3"}) {
			t.Errorf("ACL %+v, want k1, whose caller left, taken out again", acl)
		}
	})
	t.Run("every caller left", func(t *testing.T) {
		bt := newBatcherTest(t)
		ctx, cancel := context.WithCancel(context.Background())
		left := bt.start(ctx, aclChange{keyID: "k1", read: true})
		testutil.Await(t, bt.fake.started, 1, "the write")
		cancel()
		if err := result(t, left, "the change whose caller left"); !errors.Is(err, context.Canceled) {
			t.Fatalf("left: %v", err)
		}
		testutil.Await(t, bt.fake.cancelled, 1, "the write cancelled")
	})
}
