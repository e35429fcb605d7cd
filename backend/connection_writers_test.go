package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// holdSignIns, while armed, holds the answer of the next Storyden sign-in at
// the client: the upstream has accepted the password, and the caller learns
// so only after entered was reported and release closed.
type holdSignIns struct {
	next    http.RoundTripper
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *holdSignIns) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(r)
	if strings.HasSuffix(r.URL.Path, "/api/auth/password/signin") && h.armed.CompareAndSwap(true, false) {
		h.entered <- struct{}{}
		<-h.release
	}
	return resp, err
}

// TestConfigWriteDuringRotationKeepsTheNewRoot is the interleaving that lost
// roots: a config write is held inside Verify while rotate-root runs. The
// rotation must wait for the write (or the write must be refused); either
// way the stored root works upstream afterwards.
func TestConfigWriteDuringRotationKeepsTheNewRoot(t *testing.T) {
	env := newTestEnv(t)
	hold := &holdSignIns{next: http.DefaultTransport, entered: make(chan struct{}), release: make(chan struct{})}
	env.b.httpClient = &http.Client{Transport: hold}
	env.setup(nil)
	contended := make(chan struct{}, 1)
	env.b.connLockContended = func(string) { contended <- struct{}{} }

	hold.armed.Store(true)
	writeDone := make(chan error, 1)
	go func() {
		_, err := env.request(logical.UpdateOperation, "config/main", map[string]any{"username": adminHandle})
		writeDone <- err
	}()
	<-hold.entered
	rotateDone := make(chan *logical.Response, 1)
	go func() {
		resp, _ := env.request(logical.UpdateOperation, "rotate-root/main", nil)
		rotateDone <- resp
	}()
	// Either the rotation waits for the config write's lock, or (the bug) it
	// completes while the write still holds the old root.
	var rotated *logical.Response
	rotatedFirst := false
	select {
	case <-contended:
	case rotated = <-rotateDone:
		rotatedFirst = true
	}
	close(hold.release)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	if !rotatedFirst {
		rotated = <-rotateDone
	}
	if rotated != nil && rotated.IsError() {
		t.Fatalf("rotate-root: %v", rotated.Error())
	}
	if got := env.signInStatus(adminHandle, env.storedPassword("main")); got != http.StatusOK {
		t.Fatalf("the stored root no longer works upstream (sign-in %d): the config write stored the old root over the rotated one", got)
	}
}

// failingPromotions fails, once armed, the next storage write that clears a
// connection's pending root: the last step of a rotation or a recovery.
type failingPromotions struct {
	logical.Storage
	armed atomic.Bool
}

func (s *failingPromotions) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, configStoragePrefix) && s.armed.Load() && !strings.Contains(string(e.Value), `"pending_root"`) {
		if stored, err := s.Storage.Get(ctx, e.Key); err == nil && stored != nil && strings.Contains(string(stored.Value), `"pending_root"`) && s.armed.CompareAndSwap(true, false) {
			return fmt.Errorf("injected storage failure")
		}
	}
	return s.Storage.Put(ctx, e)
}

// TestConnectionWritersRandomized runs seeded random batches of concurrent
// connection writers against the Storyden emulator: config writes with and
// without an upstream check, schedule changes, rotate-root, scheduled
// rotations and recoveries of interrupted ones. After every step the stored
// root works upstream. APIKEYS_SEED replays a run; APIKEYS_STEPS lengthens it.
func TestConnectionWritersRandomized(t *testing.T) {
	seed, steps := uint64(20261202), 1000
	if s, err := strconv.ParseUint(os.Getenv("APIKEYS_SEED"), 10, 64); err == nil {
		seed = s
	}
	if n, err := strconv.Atoi(os.Getenv("APIKEYS_STEPS")); err == nil && n > 0 {
		steps = n
	}
	t.Logf("seed %d, %d steps", seed, steps)
	rng := rand.New(rand.NewPCG(seed, seed))

	env := newTestEnv(t)
	env.setup(nil)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	env.b.now = func() time.Time { return time.Unix(0, clock.Load()) }
	storage := &failingPromotions{Storage: env.storage}
	ctx := context.Background()
	request := func(path string, data map[string]any) {
		resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data, Storage: storage, MountPoint: "apikeys/"})
		if err != nil && !strings.Contains(err.Error(), "injected storage failure") {
			t.Errorf("%s: %v", path, err)
		}
		if resp != nil && resp.IsError() && !strings.Contains(resp.Error().Error(), "injected storage failure") {
			t.Errorf("%s: %v", path, resp.Error())
		}
	}
	// Each op gets its coin flip from the test's goroutine, so that a seed
	// always yields the same operations.
	ops := []struct {
		name string
		run  func(coin int)
	}{
		{"config write, verified", func(int) { request("config/main", map[string]any{"username": adminHandle}) }},
		{"config write, allowed_roles", func(coin int) { request("config/main", map[string]any{"allowed_roles": []string{"*", "app"}[coin]}) }},
		{"config write, schedule", func(coin int) { request("config/main", map[string]any{"rotation_period": []string{"0", "1h"}[coin]}) }},
		{"rotate-root", func(int) { request("rotate-root/main", nil) }},
		{"scheduled rotation", func(int) {
			clock.Add(int64(2 * time.Hour))
			if err := env.b.maintainRoots(ctx, storage); err != nil && !strings.Contains(err.Error(), "injected storage failure") {
				t.Errorf("periodic: %v", err)
			}
		}},
		{"interrupt the next promotion", func(int) { storage.armed.Store(true) }},
	}
	for step := range steps {
		batch := make([]int, 1+rng.IntN(3))
		var wg sync.WaitGroup
		for i := range batch {
			batch[i] = rng.IntN(len(ops))
			wg.Add(1)
			go func(op, coin int) {
				defer wg.Done()
				ops[op].run(coin)
			}(batch[i], rng.IntN(2))
		}
		wg.Wait()
		storage.armed.Store(false)
		if err := env.b.maintainRoots(ctx, storage); err != nil {
			t.Fatalf("step %d: recovery: %v", step, err)
		}
		entry, err := getConnection(ctx, storage, "main")
		if err != nil || entry == nil || entry.PendingRoot != nil {
			t.Fatalf("step %d: after recovery the connection is %+v (%v)", step, entry, err)
		}
		if got := env.signInStatus(adminHandle, entry.Values.String("password")); got != http.StatusOK {
			names := make([]string, len(batch))
			for i, op := range batch {
				names[i] = ops[op].name
			}
			t.Fatalf("step %d (seed %d), after %v: the stored root is refused upstream (%d)", step, seed, names, got)
		}
		if t.Failed() {
			t.Fatalf("step %d (seed %d) failed", step, seed)
		}
	}
}

// TestConfigWriteKeepsSessionWhenNothingUpstreamChanges: StorX allows five
// sign-ins per address, so a write of allowed_roles or the schedule must not
// sign in again.
func TestConfigWriteKeepsSessionWhenNothingUpstreamChanges(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.issue()
	signIns := func() int { return env.upstream.Calls()["POST /api/auth/password/signin"] }
	before := signIns()
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "app"})
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": "1h"})
	env.issue()
	if got := signIns(); got != before {
		t.Fatalf("%d new sign-ins after writes that change nothing upstream", got-before)
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"username": adminHandle})
	env.issue()
	if got := signIns(); got == before {
		t.Fatal("a write of a provider field did not verify the credential again")
	}
}

// TestConfigDeleteDeregistersRotation: the rotation manager forgets a
// deleted connection; on Vault Community there is nothing to forget.
func TestConfigDeleteDeregistersRotation(t *testing.T) {
	for _, enterprise := range []bool{true, false} {
		t.Run(fmt.Sprintf("enterprise=%v", enterprise), func(t *testing.T) {
			env := newTestEnv(t)
			sys := env.b.System().(*testSystemView)
			sys.enterprise = enterprise
			env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "1h"}))
			sys.mu.Lock()
			registered := len(sys.registered)
			sys.mu.Unlock()
			if enterprise != (registered == 1) {
				t.Fatalf("%d rotation jobs registered", registered)
			}
			env.mustOK(logical.DeleteOperation, "config/main", nil)
			sys.mu.Lock()
			defer sys.mu.Unlock()
			if len(sys.registered) != 0 {
				t.Fatalf("the rotation job of a deleted connection is still registered: %v", sys.registered)
			}
		})
	}
}
