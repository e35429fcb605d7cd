package backend

// Issue "Reliability", item 3: many creds reads and revokes at once, across
// every provider, through the real engine (b.HandleRequest, in-memory
// storage) against the emulators on loopback. Run it under the race
// detector: go test -race -run Concurrency ./backend/
//
// One backend holds a connection per provider. 1,000 creds reads (200 per
// provider; StorX's split between two users) are shuffled and fed to a fixed
// pool of workers; every lease a read returns is queued for revocation at
// once, and the same workers take reads and revokes in random order, so
// revokes run while reads are still under way. When all are done:
//
//   - reads and revokes overlapped: the first Katapult key create is held at
//     the emulator until a revoke's key delete arrives there;
//   - no request failed (and the race detector saw nothing);
//   - no orphan: no emulator holds a live object, except the tokens of dStor
//     and Storable, which have no revocation API; Katapult's bucket ACL holds
//     no key (the emulator keeps deleted keys in ACLs, so only the plugin's
//     own cleaning can empty it);
//   - each read created exactly one object upstream and each revoke deleted
//     exactly one;
//   - the caches held (no connection is verified, so nothing is cached when
//     the reads start): one Storyden sign-in at most for the whole run; one
//     StorX developer login at most, and at most one create-user and one
//     user-token per StorX user; a handful of Storable token requests for 200
//     reads, all leases sharing the cached token; dStor minted exactly one
//     token per read (it caches nothing by design);
//   - the write-ahead log and the inventory are empty.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	storxemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	// ccReadsPerProvider times five providers is the run's read count; every
	// read is revoked, so the run makes twice as many requests.
	ccReadsPerProvider = 200
	// ccWorkers is the fixed pool that runs every read and revoke.
	ccWorkers = 32
	// ccRequestTimeout stands for Vault's deadline on every request.
	ccRequestTimeout = 60 * time.Second

	ccStorxEmail      = "dev@example.com"
	ccStorxPassword   = "concurrency-storx-developer-password"
	ccStorxPassphrase = "concurrency storx grant passphrase"
	ccStorxUserA      = "app-a@example.com"
	ccStorxUserB      = "app-b@example.com"

	ccKatapultToken = "concurrency-katapult-token-secret-0123"

	ccDstorKey = "concurrencyDstorKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"

	ccStorableClientID = "concurrency-client"
	ccStorableSecret   = "concurrency-storable-client-secret"
	ccStorableAPIKey   = "concurrencyStorableApiKey0123456789abcde"
)

// ccRole is one role of the run and how many reads it gets.
type ccRole struct {
	name, provider string
	reads          int
}

var ccRoles = []ccRole{
	{name: "sd", provider: "storyden", reads: ccReadsPerProvider},
	{name: "sx-a", provider: "storx", reads: ccReadsPerProvider / 2},
	{name: "sx-b", provider: "storx", reads: ccReadsPerProvider - ccReadsPerProvider/2},
	{name: "kat", provider: "katapult", reads: ccReadsPerProvider},
	{name: "ds", provider: "dstor", reads: ccReadsPerProvider},
	{name: "st", provider: "storable", reads: ccReadsPerProvider},
}

// ccEnv is the backend of newTestEnv (its Storyden emulator is the storyden
// provider's) plus an emulator and a connection for every other provider.
type ccEnv struct {
	*testEnv
	// servers by provider; StorX has two, "storx" and "storx-auth".
	servers    map[string]*sandbox.Server
	storxUsers *storxUserCounter
	overlap    *ccOverlap
}

func newCCEnv(t *testing.T) *ccEnv {
	t.Helper()
	env := newTestEnv(t)
	// The create held by ccOverlap waits for a revoke; only the request's
	// deadline may end it.
	env.b.httpClient.Timeout = ccRequestTimeout
	c := &ccEnv{testEnv: env, servers: map[string]*sandbox.Server{"storyden": env.upstream}, overlap: newCCOverlap()}

	sat := storxemu.New(storxemu.Options{
		Developers: []storxemu.Developer{{Email: ccStorxEmail, Password: ccStorxPassword}},
		// Far above what the caches should need, so that a cache miss shows
		// as a count below rather than as a 429.
		RateBurst: 1000,
	})
	c.storxUsers = &storxUserCounter{Satellite: sat, counts: map[string]int{}}
	c.servers["storx"] = testutil.StartEmulator(t, c.storxUsers)
	c.servers["storx-auth"] = testutil.StartEmulator(t, storxemu.NewAuthService(sat, storxemu.AuthOptions{}))
	c.servers["katapult"] = testutil.StartEmulator(t, testutil.Hooked{Before: c.overlap.before, Emulator: katapultemu.New(katapultemu.Options{
		Organizations:     []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"data"}}},
		Tokens:            []katapultemu.Token{{Secret: ccKatapultToken, Organization: "acme", User: "vault"}},
		ProvisioningDelay: -1,
		// Only the plugin's own cleaning can leave the bucket's ACL empty.
		DeletedKeysStayInACLs: true,
		// The run makes about 1,400 Katapult calls in well under a minute;
		// at the default 1,000 a minute the plugin would rightly wait for
		// the next window.
		RateLimit: 1_000_000,
	})})
	c.servers["dstor"] = testutil.StartEmulator(t, dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: ccDstorKey}}}))
	c.servers["storable"] = testutil.StartEmulator(t, storableemu.New(storableemu.Options{
		Clients: []storableemu.Client{{ID: ccStorableClientID, Secret: ccStorableSecret, APIKey: ccStorableAPIKey}},
	}))

	// Unverified, so that no session or token is cached before the run:
	// the first concurrent reads race to sign in, and must share one.
	connection := func(name string, data map[string]any) {
		data["verify_connection"] = false
		data["allow_http"] = true
		env.mustOK(logical.CreateOperation, "config/"+name, data)
	}
	connection("sd", env.storydenConfig(nil))
	connection("sx", map[string]any{
		"provider": "storx", "base_url": c.servers["storx"].URL(), "auth_url": c.servers["storx-auth"].URL(),
		"email": ccStorxEmail, "password": ccStorxPassword, "passphrase": ccStorxPassphrase,
	})
	connection("kat", map[string]any{
		"provider": "katapult", "base_url": c.servers["katapult"].URL() + "/core/v1", "api_token": ccKatapultToken, "organization": "acme",
	})
	connection("ds", map[string]any{
		"provider": "dstor", "base_url": c.servers["dstor"].URL() + "/v1", "api_key": ccDstorKey,
	})
	connection("st", map[string]any{
		"provider": "storable", "base_url": c.servers["storable"].URL(),
		"client_id": ccStorableClientID, "client_secret": ccStorableSecret, "api_key": ccStorableAPIKey,
	})
	for name, srv := range c.servers {
		if n := len(srv.Calls()); n != 0 {
			t.Fatalf("%s was called before the run: %v", name, srv.Calls())
		}
	}

	ttls := map[string]any{"ttl": "10m", "max_ttl": "1h"}
	role := func(name, conn string, extra map[string]any) {
		data := map[string]any{"connection": conn}
		for k, v := range ttls {
			data[k] = v
		}
		for k, v := range extra {
			data[k] = v
		}
		env.mustOK(logical.CreateOperation, "roles/"+name, data)
	}
	role("sd", "sd", nil)
	role("sx-a", "sx", map[string]any{"user_email": ccStorxUserA})
	role("sx-b", "sx", map[string]any{"user_email": ccStorxUserB})
	role("kat", "kat", map[string]any{"read_buckets": "data"})
	role("ds", "ds", nil)
	role("st", "st", nil)
	return c
}

// storxUserCounter is the StorX satellite with a count, per user email, of
// the developer calls made for one user (create-user and user-token), which
// the sandbox's per-route count cannot tell apart.
type storxUserCounter struct {
	*storxemu.Satellite
	mu     sync.Mutex
	counts map[string]int
}

// Handler implements sandbox.Emulator.
func (s *storxUserCounter) Handler() http.Handler {
	return storxCountingMux{s: s, mux: s.Satellite.Handler().(*http.ServeMux)}
}

func (s *storxUserCounter) count(route, email string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[route+" "+strings.ToLower(email)]
}

// storxCountingMux keeps the satellite's route names for the sandbox's call
// count by looking routes up in its mux.
type storxCountingMux struct {
	s   *storxUserCounter
	mux *http.ServeMux
}

func (m storxCountingMux) Handler(r *http.Request) (http.Handler, string) { return m.mux.Handler(r) }

func (m storxCountingMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && (r.URL.Path == pathStorxCreateUser || r.URL.Path == pathStorxUserToken) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil {
			var req struct {
				Email string `json:"email"`
			}
			_ = json.Unmarshal(body, &req)
			m.s.mu.Lock()
			m.s.counts[r.URL.Path+" "+strings.ToLower(req.Email)]++
			m.s.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	m.mux.ServeHTTP(w, r)
}

const (
	pathStorxCreateUser = "/api/v0/developer/auth/create-user"
	pathStorxUserToken  = "/api/v0/developer/auth/user-token"
)

// ccOverlap proves that reads and revokes run at the same time, whatever
// the scheduling: it holds the first Katapult key create at the emulator
// until a key delete, which only a revoke sends, arrives there. The read
// and the revoke are then both in flight. Should no delete come, the held
// create ends with its request's deadline and the read fails.
type ccOverlap struct {
	mu      sync.Mutex
	holding bool
	deleted chan struct{}
	once    sync.Once
	// seen is set when the held create was let go by a delete.
	seen atomic.Bool
}

func newCCOverlap() *ccOverlap { return &ccOverlap{deleted: make(chan struct{})} }

func (o *ccOverlap) before(r *http.Request) {
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/object_storage_cluster/access_keys"):
		o.mu.Lock()
		first := !o.holding
		o.holding = true
		o.mu.Unlock()
		if !first {
			return
		}
		select {
		case <-o.deleted:
		case <-r.Context().Done():
		}
		if r.Context().Err() != nil {
			panic(http.ErrAbortHandler)
		}
		o.seen.Store(true)
	case r.Method == http.MethodDelete:
		o.once.Do(func() { close(o.deleted) })
	}
}

// ccLease is one issued credential on its way to revocation.
type ccLease struct {
	role   ccRole
	secret *logical.Secret
	data   map[string]any
}

// ccRun records what the workers did.
type ccRun struct {
	mu     sync.Mutex
	errors []string
	// objects maps provider to the ids of the objects its reads created.
	objects map[string][]string
	// storableTokens counts the leases of each Storable token.
	storableTokens map[string]int

	issued, revoked atomic.Int64
	// revokesBeforeLastRead counts revokes that finished while reads were
	// still left, for the log.
	revokesBeforeLastRead atomic.Int64
}

func (r *ccRun) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestConcurrency_ReadsAndRevokesAcrossProviders(t *testing.T) {
	started := time.Now()
	c := newCCEnv(t)

	var reads []ccRole
	for _, r := range ccRoles {
		for range r.reads {
			reads = append(reads, r)
		}
	}
	rand.Shuffle(len(reads), func(i, j int) { reads[i], reads[j] = reads[j], reads[i] })
	total := len(reads)

	readCh := make(chan ccRole, total)
	for _, r := range reads {
		readCh <- r
	}
	close(readCh)
	revokeCh := make(chan *ccLease, total)
	allDone := make(chan struct{})
	var finished atomic.Int64 // reads that failed plus revokes that ran
	var readsLeft atomic.Int64
	readsLeft.Store(int64(total))
	finish := func() {
		if finished.Add(1) == int64(total) {
			close(allDone)
		}
	}

	run := &ccRun{objects: map[string][]string{}, storableTokens: map[string]int{}}
	opsStart := time.Now()
	var wg sync.WaitGroup
	for range ccWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reads := readCh
			for {
				select {
				case role, ok := <-reads:
					if !ok {
						reads = nil
						continue
					}
					lease := c.ccIssue(run, role)
					readsLeft.Add(-1)
					if lease == nil {
						finish()
						continue
					}
					revokeCh <- lease
				case lease := <-revokeCh:
					c.ccRevoke(run, lease)
					if readsLeft.Load() > 0 {
						run.revokesBeforeLastRead.Add(1)
					}
					finish()
				case <-allDone:
					return
				}
			}
		}()
	}
	wg.Wait()
	opsTime := time.Since(opsStart)

	t.Logf("%d reads and %d revokes by %d workers in %s (%d revokes finished while reads were still left)",
		run.issued.Load(), run.revoked.Load(), ccWorkers, opsTime.Round(time.Millisecond), run.revokesBeforeLastRead.Load())
	if n := len(run.errors); n > 0 {
		t.Errorf("%d of %d requests failed; the first ones:\n%s", n, 2*total, strings.Join(run.errors[:min(n, 10)], "\n"))
	}
	if run.issued.Load() != int64(total) || run.revoked.Load() != int64(total) {
		t.Errorf("%d reads and %d revokes succeeded, want %d of each", run.issued.Load(), run.revoked.Load(), total)
	}
	if !c.overlap.seen.Load() {
		t.Errorf("reads and revokes did not overlap: no revoke reached Katapult while the first key create was held there")
	}

	c.checkUniqueObjects(run)
	c.checkNoOrphans()
	c.checkCalls(run)
	c.checkStorage()
	t.Logf("whole test, emulators and setup included: %s", time.Since(started).Round(time.Millisecond))
}

// ccIssue reads creds for role and returns the lease as Vault would store
// it, or nil after recording the failure.
func (c *ccEnv) ccIssue(run *ccRun, role ccRole) *ccLease {
	ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
	defer cancel()
	resp, err := c.b.HandleRequest(ctx, &logical.Request{
		Operation: logical.ReadOperation, Path: "creds/" + role.name, Storage: c.storage, MountPoint: "apikeys/",
	})
	if msg := ccFailure(resp, err); msg != "" {
		run.fail("read creds/%s: %s", role.name, msg)
		return nil
	}
	if resp == nil || resp.Secret == nil {
		run.fail("read creds/%s returned no lease: %#v", role.name, resp)
		return nil
	}
	secret, err := ccRoundTrip(resp.Secret)
	if err != nil {
		run.fail("creds/%s: the lease's internal data does not survive JSON: %v", role.name, err)
		return nil
	}
	run.issued.Add(1)
	run.mu.Lock()
	switch role.provider {
	case "storable":
		token, _ := resp.Data["access_token"].(string)
		run.storableTokens[token]++
	case "dstor":
	default:
		id, _ := secret.InternalData[internalRef].(map[string]any)
		run.objects[role.provider] = append(run.objects[role.provider], fmt.Sprint(id))
	}
	run.mu.Unlock()
	return &ccLease{role: role, secret: secret, data: resp.Data}
}

// ccRevoke revokes a lease as Vault's expiration manager does.
func (c *ccEnv) ccRevoke(run *ccRun, lease *ccLease) {
	ctx, cancel := context.WithTimeout(context.Background(), ccRequestTimeout)
	defer cancel()
	resp, err := c.b.HandleRequest(ctx, &logical.Request{
		Operation: logical.RevokeOperation, Storage: c.storage, Secret: lease.secret, Data: lease.data,
	})
	if msg := ccFailure(resp, err); msg != "" {
		run.fail("revoke a lease of role %s: %s", lease.role.name, msg)
		return
	}
	run.revoked.Add(1)
}

func ccFailure(resp *logical.Response, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case resp != nil && resp.IsError():
		return resp.Error().Error()
	}
	return ""
}

// ccRoundTrip passes a lease's internal data through JSON, as Vault's lease
// store does; unlike roundTrip it is safe off the test's goroutine.
func ccRoundTrip(s *logical.Secret) (*logical.Secret, error) {
	raw, err := json.Marshal(s.InternalData)
	if err != nil {
		return nil, err
	}
	var internal map[string]any
	if err := json.Unmarshal(raw, &internal); err != nil {
		return nil, err
	}
	copied := *s
	copied.InternalData = internal
	return &copied, nil
}

// checkUniqueObjects requires that no two leases share an upstream object,
// except Storable's, which share the cached token by design.
func (c *ccEnv) checkUniqueObjects(run *ccRun) {
	t := c.t
	for provider, refs := range run.objects {
		if n := len(slices.Compact(slices.Sorted(slices.Values(refs)))); n != len(refs) {
			t.Errorf("%s: %d leases but only %d distinct upstream objects", provider, len(refs), n)
		}
	}
}

// checkNoOrphans requires every emulator to hold no live object, except
// the tokens of providers without revocation and the Katapult bucket, whose
// ACL must hold no key.
func (c *ccEnv) checkNoOrphans() {
	t := c.t
	for name, srv := range c.servers {
		objects := srv.Objects()
		live, tokens, buckets := 0, 0, 0
		for _, o := range objects {
			if !o.Live {
				continue
			}
			switch {
			case name == "dstor" || name == "storable":
				// No revocation API: the tokens live until their expiry.
				tokens++
				continue
			case name == "katapult" && o.Kind == "bucket":
				buckets++
				for _, acl := range []string{"read_key_ids", "write_key_ids"} {
					if ids, _ := o.Extra[acl].([]string); len(ids) > 0 {
						t.Errorf("katapult: after every revoke bucket %s's %s still holds %d keys, e.g. %s", o.Name, acl, len(ids), ids[0])
					}
				}
				continue
			}
			live++
			if live <= 5 {
				t.Errorf("%s: orphan after every lease was revoked: %s %q (id %s, state %s)", name, o.Kind, o.Name, o.ID, o.State)
			}
		}
		if live > 5 {
			t.Errorf("%s: %d orphans in all", name, live)
		}
		t.Logf("%s: %d upstream objects (%d buckets), %d live besides buckets (%d of them tokens without a revocation API)", name, len(objects), buckets, live+tokens, tokens)
	}
}

// checkCalls checks the upstream call counts: one create and one delete per
// lease, and the caches.
func (c *ccEnv) checkCalls(run *ccRun) {
	t := c.t
	reads := map[string]int{}
	for _, r := range ccRoles {
		reads[r.provider] += r.reads
	}
	calls := func(server string) map[string]int { return c.servers[server].Calls() }
	exactly := func(what string, got, want int) {
		if got != want {
			t.Errorf("%s: %d calls, want %d", what, got, want)
		}
	}
	atMost := func(what string, got, limit int) {
		if got > limit {
			t.Errorf("%s: %d calls, want at most %d", what, got, limit)
		}
	}

	sd := calls("storyden")
	exactly("storyden creates", sd["POST /api/auth/access-keys"], reads["storyden"])
	exactly("storyden deletes", sd["DELETE /api/auth/access-keys/{id}"], reads["storyden"])
	atMost("storyden sign-ins over the whole run", sd["POST /api/auth/password/signin"], 1)

	sx := calls("storx")
	exactly("storx API key creates", sx["POST /api/v0/api-keys/create/{projectID}"], reads["storx"])
	exactly("storx API key deletes", sx["DELETE /api/v0/api-keys/delete-by-name"], reads["storx"])
	atMost("storx developer logins over the whole run", sx["POST /api/v0/developer/auth/token"], 1)
	for _, user := range []string{ccStorxUserA, ccStorxUserB} {
		atMost("storx create-user for "+user, c.storxUsers.count(pathStorxCreateUser, user), 1)
		atMost("storx user-token for "+user, c.storxUsers.count(pathStorxUserToken, user), 1)
	}
	exactly("storx auth service credentials", calls("storx-auth")["POST /v1/access"], reads["storx"])

	kat := calls("katapult")
	exactly("katapult key creates", kat["POST /core/v1/organizations/organization/object_storage/object_storage_cluster/access_keys"], reads["katapult"])
	exactly("katapult key deletes", kat["DELETE /core/v1/object_storage/access_keys/access_key"], reads["katapult"])

	exactly("dstor temp-token (one per read; dStor caches nothing)", calls("dstor")["GET /v1/dev/temp-token"], reads["dstor"])

	st := calls("storable")["POST /auth/token"]
	// The first read's token serves every lease (a 10-minute TTL fits a
	// 90-minute token); 2 leaves room for one refresh.
	atMost("storable token requests for "+fmt.Sprint(reads["storable"])+" reads", st, 2)
	if len(run.storableTokens) > max(st, 1) {
		t.Errorf("storable: the leases carry %d distinct tokens, but only %d were requested", len(run.storableTokens), st)
	}

	t.Logf("storyden: %d sign-ins; storx: %d developer logins, create-user %d/%d and user-token %d/%d (users a/b); "+
		"storable: %d token requests for %d reads (%d distinct tokens in the leases); dstor: %d temp-tokens for %d reads",
		sd["POST /api/auth/password/signin"], sx["POST /api/v0/developer/auth/token"],
		c.storxUsers.count(pathStorxCreateUser, ccStorxUserA), c.storxUsers.count(pathStorxCreateUser, ccStorxUserB),
		c.storxUsers.count(pathStorxUserToken, ccStorxUserA), c.storxUsers.count(pathStorxUserToken, ccStorxUserB),
		st, reads["storable"], len(run.storableTokens), calls("dstor")["GET /v1/dev/temp-token"], reads["dstor"])
}

// checkStorage requires an empty WAL and an empty inventory, read through
// the engine's inventory path and straight from storage.
func (c *ccEnv) checkStorage() {
	t := c.t
	if n := c.walCount(); n != 0 {
		t.Errorf("%d WAL entries left after every read finished", n)
	}
	for _, conn := range []string{"sd", "sx", "kat", "ds", "st"} {
		resp := c.mustOK(logical.ListOperation, "inventory/"+conn+"/", nil)
		if keys, _ := resp.Data["keys"].([]string); len(keys) > 0 {
			t.Errorf("inventory/%s lists %d objects after every lease was revoked, e.g. %s", conn, len(keys), keys[0])
		}
	}
	if left, err := c.storage.List(context.Background(), inventoryStoragePrefix); err != nil || len(left) > 0 {
		t.Errorf("the inventory storage is not empty: %v %v", left, err)
	}
}
