package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const ttlDstorKey = "leaseTTLsDstorApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEF"

// addDstor writes connection "ds" on a dStor emulator (before, when set, sees
// each request first) and role "ds" with the given role fields.
func (e *testEnv) addDstor(before func(*http.Request), role map[string]any) {
	e.t.Helper()
	emu := testutil.Hooked{Emulator: dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: ttlDstorKey}}}), Before: before}
	if before == nil {
		emu.Before = func(*http.Request) {}
	}
	srv := testutil.StartEmulator(e.t, emu)
	e.mustOK(logical.CreateOperation, "config/ds", map[string]any{"provider": "dstor", "base_url": srv.URL() + "/v1", "allow_http": true, "api_key": ttlDstorKey})
	role["connection"] = "ds"
	e.mustOK(logical.CreateOperation, "roles/ds", role)
}

// expiresWithin fails unless the credential's expires_at lies in [from+d, to+d],
// whole seconds as the upstreams keep them.
func expiresWithin(t *testing.T, resp *logical.Response, from, to time.Time, d time.Duration) {
	t.Helper()
	expires, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if expires.Before(from.Add(d).Truncate(time.Second)) || expires.After(to.Add(d)) {
		t.Fatalf("upstream expiry %s is not %s after the issue (%s to %s)", expires, d, from, to)
	}
}

// The engine plans an issue with the mount's TTLs Vault last answered and
// asks again during the create; a tune in between must still bound the
// next credential, whose first draft is revoked upstream.
func TestLeaseTTLs_TuneBetweenIssuesReachesTheNextCredential(t *testing.T) {
	e := newTestEnv(t)
	e.setup(map[string]any{"max_ttl": "2h"})
	sys := e.b.System().(*testSystemView)
	e.issue() // the mount's 24h is now the last answer
	sys.setMountMax(30 * time.Minute)

	before := time.Now()
	resp := e.issue()
	after := time.Now()
	expiresWithin(t, resp, before, after, 30*time.Minute)
	if resp.Secret.MaxTTL > 30*time.Minute {
		t.Fatalf("lease max %s passes the tuned mount's 30m", resp.Secret.MaxTTL)
	}
	objects, live := e.upstream.Objects(), e.liveKeys()
	if len(objects) != 3 || len(live) != 2 {
		t.Fatalf("upstream holds %d keys, %d live; want 3 and 2 (the draft under the old maximum revoked)", len(objects), len(live))
	}
	if n := e.walCount(); n != 0 {
		t.Fatalf("%d issues still on record as in flight", n)
	}
	entries, err := listInventory(context.Background(), e.storage, "main")
	if err != nil || len(entries) != 2 {
		t.Fatalf("inventory holds %d entries (%v), want the 2 live keys", len(entries), err)
	}
	// Vault answered once more during the second issue, and the retry used
	// that answer without asking again.
	sys.takeTTLAsks()
	e.issue()
	if asks := sys.takeTTLAsks(); asks != 1 {
		t.Fatalf("an issue after the tune settled asked %d questions of Vault, want 1", asks)
	}
}

// dStor's tokens cannot be revoked: the token minted under the old maximum
// is dropped unseen, and the one returned expires within the tuned maximum.
func TestLeaseTTLs_TuneReachesTheNextDstorToken(t *testing.T) {
	e := newTestEnv(t)
	e.addDstor(nil, map[string]any{"ttl": "10m", "max_ttl": "2h"})
	sys := e.b.System().(*testSystemView)
	e.mustOK(logical.ReadOperation, "creds/ds", nil)
	sys.setMountMax(20 * time.Minute)
	before := time.Now()
	resp := e.mustOK(logical.ReadOperation, "creds/ds", nil)
	expiresWithin(t, resp, before, time.Now(), 20*time.Minute)
}

// The first issue on a node has no answer to go on: it asks before the
// create. Later ones ask while the create runs: the create reaches the
// upstream before Vault has answered.
func TestLeaseTTLs_AskOverlapsTheCreateOnceAnswered(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	var created chan struct{}
	e.addDstor(func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if created != nil && strings.Contains(r.URL.Path, "temp-token") {
			close(created)
			created = nil
		}
	}, map[string]any{"ttl": "10m", "max_ttl": "2h"})
	e.mustOK(logical.ReadOperation, "creds/ds", nil)

	reached := make(chan struct{})
	mu.Lock()
	created = reached
	mu.Unlock()
	var askedFirst atomic.Bool
	e.b.System().(*testSystemView).holdMaxWith(func() {
		// An ask made before the create would wait here for ever.
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			askedFirst.Store(true)
		}
	})
	e.mustOK(logical.ReadOperation, "creds/ds", nil)
	if askedFirst.Load() {
		t.Fatal("the issue asked Vault for the mount's maximum before creating the token")
	}
}

// A role with a ttl, of a provider whose credentials carry no expiry from
// the lease, costs no question to Vault: Vault caps the lease itself. A role
// without ttl asks for the default.
func TestLeaseTTLs_ExpiryFreeRoleWithTTLAsksNothing(t *testing.T) {
	e := newTestEnv(t)
	c := storableemu.Client{ID: "ttl-client", Secret: "lease-ttls-client-secret", APIKey: "leaseTTLsStorableApiKey0123456789abcdefg"}
	srv := testutil.StartEmulator(t, storableemu.New(storableemu.Options{Clients: []storableemu.Client{c}}))
	e.mustOK(logical.CreateOperation, "config/st", map[string]any{"provider": "storable", "base_url": srv.URL(), "allow_http": true, "client_id": c.ID, "client_secret": c.Secret, "api_key": c.APIKey})
	e.mustOK(logical.CreateOperation, "roles/st", map[string]any{"connection": "st", "ttl": "10m"})
	e.mustOK(logical.CreateOperation, "roles/st-default", map[string]any{"connection": "st"})
	sys := e.b.System().(*testSystemView)
	sys.takeTTLAsks()

	resp := e.mustOK(logical.ReadOperation, "creds/st", nil)
	if asks := sys.takeTTLAsks(); asks != 0 {
		t.Fatalf("an issue of a role with a ttl asked Vault %d questions, want 0", asks)
	}
	// Storable cannot revoke: a role without max_ttl is bounded at a day.
	if resp.Secret.TTL != 10*time.Minute || resp.Secret.MaxTTL > irrevocableMaxTTL {
		t.Fatalf("lease ttl=%s max=%s, want 10m and at most %s", resp.Secret.TTL, resp.Secret.MaxTTL, irrevocableMaxTTL)
	}
	resp = e.mustOK(logical.ReadOperation, "creds/st-default", nil)
	if asks := sys.takeTTLAsks(); asks != 2 {
		t.Fatalf("the first issue of a role without ttl asked Vault %d questions, want the default and the maximum", asks)
	}
	if resp.Secret.TTL != time.Hour {
		t.Fatalf("lease ttl=%s, want the mount's default of 1h", resp.Secret.TTL)
	}
}

// Seeded randomized run: issues from several goroutines while the mount's
// maximum is tuned back and forth. Every credential returned must expire
// within a maximum the mount had at some moment of its request.
func TestLeaseTTLs_ConcurrentTunesNeverLeaveAStaleMaximum(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	e := newTestEnv(t)
	e.addDstor(nil, map[string]any{"ttl": "5m", "max_ttl": "3h"})
	sys := e.b.System().(*testSystemView)
	maxima := []time.Duration{20 * time.Minute, 40 * time.Minute, time.Hour, 2 * time.Hour}

	// history is the mount's maxima in order: each in effect from at
	// (taken before it was set) until the next one's setDone (taken after).
	type tune struct {
		at, setDone time.Time
		max         time.Duration
	}
	var histMu sync.Mutex
	history := []tune{{max: 24 * time.Hour}}
	setMax := func(d time.Duration) {
		histMu.Lock()
		defer histMu.Unlock()
		at := time.Now()
		sys.setMountMax(d)
		history = append(history, tune{at: at, setDone: time.Now(), max: d})
	}
	// allowed is every maximum, capped by the role's, in effect at some
	// moment between from and to.
	allowed := func(from, to time.Time) []time.Duration {
		histMu.Lock()
		defer histMu.Unlock()
		var out []time.Duration
		for i, h := range history {
			if h.at.After(to) {
				break
			}
			if i+1 == len(history) || !history[i+1].setDone.Before(from) {
				out = append(out, min(h.max, 3*time.Hour))
			}
		}
		return out
	}

	const workers, perWorker = 4, 25
	tunes := make([]time.Duration, workers*perWorker)
	for i := range tunes {
		tunes[i] = maxima[rng.IntN(len(maxima))]
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if (w+i)%3 == 0 {
					setMax(tunes[w*perWorker+i])
				}
				from := time.Now()
				resp, err := e.request(logical.ReadOperation, "creds/ds", nil)
				to := time.Now()
				if err != nil || resp.IsError() {
					errs <- fmt.Errorf("issue: %v %v", err, respError(resp))
					continue
				}
				expires, _ := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
				ok := false
				for _, m := range allowed(from, to) {
					if !expires.Before(from.Add(m).Truncate(time.Second)) && !expires.After(to.Add(m)) {
						ok = true
					}
				}
				if !ok {
					errs <- fmt.Errorf("token issued between %s and %s expires at %s: no maximum of that time (%v) gives it", from, to, expires, allowed(from, to))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Issues that start while an ask is in flight share the next one, sent
// when it returns: three issues cost two asks, and the two that started
// after a tune get the tuned maximum even though the ask in flight, sent
// before the tune, answers with the old one.
func TestLeaseTTLs_IssuesShareTheNextAskNotTheOneInFlight(t *testing.T) {
	e := newTestEnv(t)
	var watching atomic.Bool
	var creates atomic.Int32
	createSeen := make(chan struct{}, 5)
	e.addDstor(func(r *http.Request) {
		if watching.Load() && strings.Contains(r.URL.Path, "temp-token") {
			creates.Add(1)
			createSeen <- struct{}{}
		}
	}, map[string]any{"ttl": "10m", "max_ttl": "2h"})
	sys := e.b.System().(*testSystemView)
	e.mustOK(logical.ReadOperation, "creds/ds", nil) // the last answer: 24h
	sys.takeTTLAsks()
	watching.Store(true)

	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	sys.holdMaxWith(func() {
		if first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	})
	type result struct {
		resp     *logical.Response
		from, to time.Time
		err      error
	}
	issue := func(out chan<- result) {
		from := time.Now()
		resp, err := e.request(logical.ReadOperation, "creds/ds", nil)
		out <- result{resp, from, time.Now(), err}
	}
	a := make(chan result, 1)
	go issue(a)
	<-held // A's ask read 24h and is on its way back
	sys.setMountMax(30 * time.Minute)
	later := make(chan result, 2)
	go issue(later)
	go issue(later)
	for range 3 {
		<-createSeen // B and C have joined the next ask before they created
	}
	close(release)

	ra := <-a
	if ra.err != nil || ra.resp.IsError() {
		t.Fatalf("issue A: %v %v", ra.err, respError(ra.resp))
	}
	expiresWithin(t, ra.resp, ra.from, ra.to, 2*time.Hour)
	for range 2 {
		r := <-later
		if r.err != nil || r.resp.IsError() {
			t.Fatalf("issue after the tune: %v %v", r.err, respError(r.resp))
		}
		expiresWithin(t, r.resp, r.from, r.to, 30*time.Minute)
	}
	if asks := sys.takeTTLAsks(); asks != 2 {
		t.Fatalf("three issues asked Vault %d times, want 2 (one in flight, one shared)", asks)
	}
	if n := creates.Load(); n != 5 {
		t.Fatalf("%d tokens minted, want 5 (A, and B and C twice: once under the old maximum)", n)
	}
}
