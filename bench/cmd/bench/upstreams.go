package main

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// Seeded root credentials of the emulators. They exist only in this process
// and the Vault dev server it starts, both on loopback.
const (
	sdAdmin        = "bench-admin"
	sdPassword     = "bench-storyden-admin-password"
	sxDeveloper    = "bench-developer@bench.storx.test"
	sxPassword     = "bench-storx-developer-password"
	sxPassphrase   = "bench storx grant passphrase"
	sxUser         = "bench-app@bench.storx.test"
	kpToken        = "bench-katapult-api-token-secret"
	dsAPIKey       = "benchDstorApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
	sbClientID     = "bench-storable-client"
	sbClientSecret = "bench-storable-client-secret"
	sbAPIKey       = "benchStorableApiKey0123456789abcdefghijk"
)

// noLimit lifts the emulators' own request limits (Storyden's 5000 per
// hour, Katapult's 1000 per minute), which the phases that issue thousands
// of credentials would otherwise reach. The mass revoke phase sets its own.
const noLimit = math.MaxInt32

// target is one thing the bench reads: a provider's creds/app, or the KV v2
// secret it is compared with.
type target struct {
	name string
	// path is read with GET, e.g. "storyden/creds/app" or "secret/data/bench".
	path string
	// servers are the upstream emulators whose calls count for this target,
	// and names their names in call counts.
	servers []*sandbox.Server
	names   []string
	// floor is the fewest upstream calls one credential can cost, and
	// floorNote says why.
	floor     float64
	floorNote string
	// revokes tells whether a lease's revoke calls the upstream.
	revokes bool
}

func (t *target) addFault(f sandbox.Fault) {
	for _, s := range t.servers {
		s.AddFault(f)
	}
}

func (t *target) clearFaults() {
	for _, s := range t.servers {
		s.ClearFaults()
	}
}

func (t *target) resetCalls() {
	for _, s := range t.servers {
		s.ResetCalls()
	}
}

// calls sums the call counts of every server by "emulator: route".
func (t *target) calls() map[string]int {
	out := map[string]int{}
	for i, s := range t.servers {
		prefix := ""
		if len(t.servers) > 1 {
			prefix = t.names[i] + ": "
		}
		for route, n := range s.Calls() {
			out[prefix+route] += n
		}
	}
	return out
}

// emulators is every upstream server the bench started, closed at the end.
type emulators struct {
	mu      sync.Mutex
	servers []*sandbox.Server
}

func (e *emulators) start(emu sandbox.Emulator) (*sandbox.Server, error) {
	srv, err := sandbox.Start(emu, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.servers = append(e.servers, srv)
	e.mu.Unlock()
	return srv, nil
}

func (e *emulators) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.servers {
		_ = s.Close()
	}
}

// newStoryden starts a Storyden emulator (optionally behind a DELETE rate
// limit) and configures mount against it.
func newStoryden(c *api.Client, emus *emulators, mount string, limiter *deleteLimiter) (*target, error) {
	var emu sandbox.Emulator = storyden.New(storyden.Options{
		Accounts:  []storyden.Account{{Handle: sdAdmin, Password: sdPassword, Admin: true}},
		RateLimit: noLimit,
	})
	if limiter != nil {
		emu = limiter.wrap(emu)
	}
	srv, err := emus.start(emu)
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "storyden", "base_url": srv.URL(), "allow_http": true, "username": sdAdmin, "password": sdPassword,
	}, map[string]any{})
	return &target{name: "storyden", path: mount + "/creds/app", servers: []*sandbox.Server{srv}, floor: 1,
		floorNote: "create the access key", revokes: true}, err
}

func newStorx(c *api.Client, emus *emulators, mount string) (*target, error) {
	sat := storx.New(storx.Options{Developers: []storx.Developer{{Email: sxDeveloper, Password: sxPassword}}})
	satSrv, err := emus.start(sat)
	if err != nil {
		return nil, err
	}
	authSrv, err := emus.start(storx.NewAuthService(sat, storx.AuthOptions{}))
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "storx", "base_url": satSrv.URL(), "auth_url": authSrv.URL(), "allow_http": true, "email": sxDeveloper,
		"password": sxPassword, "passphrase": sxPassphrase,
	}, map[string]any{"user_email": sxUser, "buckets": "photos", "permissions": "download,list"})
	return &target{name: "storx", path: mount + "/creds/app", servers: []*sandbox.Server{satSrv, authSrv}, names: []string{"satellite", "auth"}, floor: 3,
		floorNote: "create the API key, derive its access grant, register the grant for S3 credentials", revokes: true}, err
}

func newKatapult(c *api.Client, emus *emulators, mount string) (*target, error) {
	emu := katapult.New(katapult.Options{
		Organizations:     []katapult.Organization{{SubDomain: "bench", Buckets: []string{"shared"}}},
		Tokens:            []katapult.Token{{Secret: kpToken, Organization: "bench", User: "ops"}},
		ProvisioningDelay: -1, // keys are ready at once: no provisioning retries
		RateLimit:         noLimit,
	})
	srv, err := emus.start(emu)
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "katapult", "base_url": srv.URL() + "/core/v1", "allow_http": true, "organization": "bench", "api_token": kpToken,
	}, map[string]any{"all_buckets_read": true})
	return &target{name: "katapult", path: mount + "/creds/app", servers: []*sandbox.Server{srv}, floor: 2,
		floorNote: "create the key, generate its S3 credentials (+ provisioning retries: none, delay 0)", revokes: true}, err
}

func newDstor(c *api.Client, emus *emulators, mount string) (*target, error) {
	srv, err := emus.start(dstor.New(dstor.Options{APIKeys: []dstor.APIKey{{Key: dsAPIKey}}}))
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "dstor", "base_url": srv.URL() + "/v1", "allow_http": true, "api_key": dsAPIKey,
	}, map[string]any{})
	return &target{name: "dstor", path: mount + "/creds/app", servers: []*sandbox.Server{srv}, floor: 1,
		floorNote: "mint the token"}, err
}

func newStorable(c *api.Client, emus *emulators, mount string) (*target, error) {
	srv, err := emus.start(storable.New(storable.Options{Clients: []storable.Client{{ID: sbClientID, Secret: sbClientSecret, APIKey: sbAPIKey}}}))
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "storable", "base_url": srv.URL(), "allow_http": true, "client_id": sbClientID,
		"client_secret": sbClientSecret, "api_key": sbAPIKey,
	}, map[string]any{})
	return &target{name: "storable", path: mount + "/creds/app", servers: []*sandbox.Server{srv}, floor: 0,
		floorNote: "none while the shared token is cached"}, err
}

// configure writes config/main and roles/app (ttl 1h, max_ttl 2h, plus the
// provider's role fields) on mount.
func configure(c *api.Client, mount string, conn, role map[string]any) error {
	_, err := c.Logical().Write(mount+"/config/main", conn)
	if err != nil && conn["allow_http"] != nil && strings.Contains(err.Error(), "allow_http is not a known field") {
		// A -compare build from before allow_http (v0.1.0, which measured
		// the 916 µs of issue 19) took loopback http base URLs without it.
		delete(conn, "allow_http")
		_, err = c.Logical().Write(mount+"/config/main", conn)
	}
	if err != nil {
		return fmt.Errorf("write %s/config/main: %w", mount, err)
	}
	role["connection"], role["ttl"], role["max_ttl"] = "main", "1h", "2h"
	if _, err := c.Logical().Write(mount+"/roles/app", role); err != nil {
		return fmt.Errorf("write %s/roles/app: %w", mount, err)
	}
	return nil
}

// deleteLimiter is a token bucket in front of an emulator's DELETE routes:
// rate per second, burst at most, and a 429 with Retry-After in whole
// seconds (as HTTP allows) when it is empty. It is off until enabled.
// The emulators' own limits do not fit a timed bench: Storyden's is an
// hourly window whose Retry-After is an hour away.
type deleteLimiter struct {
	mu      sync.Mutex
	on      bool
	rate    float64
	burst   float64
	tokens  float64
	last    time.Time
	refused int
	passed  int
}

func (l *deleteLimiter) enable(rate float64, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.on, l.rate, l.burst, l.tokens, l.last = true, rate, float64(burst), float64(burst), time.Now()
	l.refused, l.passed = 0, 0
}

func (l *deleteLimiter) disable() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.on = false
}

func (l *deleteLimiter) counts() (passed, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.passed, l.refused
}

// take reports whether a DELETE may pass, or how long until one may.
func (l *deleteLimiter) take() (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.on {
		return true, 0
	}
	now := time.Now()
	l.tokens = math.Min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		l.passed++
		return true, 0
	}
	l.refused++
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}

func (l *deleteLimiter) wrap(emu sandbox.Emulator) sandbox.Emulator {
	return &limitedEmulator{Emulator: emu, limiter: l}
}

type limitedEmulator struct {
	sandbox.Emulator
	limiter *deleteLimiter
}

func (e *limitedEmulator) Handler() http.Handler {
	return &limitedHandler{emu: e.Emulator, next: e.Emulator.Handler(), limiter: e.limiter}
}

type limitedHandler struct {
	emu     sandbox.Emulator
	next    http.Handler
	limiter *deleteLimiter
}

// Handler lets the sandbox count calls by the emulator's route templates.
func (h *limitedHandler) Handler(r *http.Request) (http.Handler, string) {
	if rt, ok := h.next.(interface {
		Handler(*http.Request) (http.Handler, string)
	}); ok {
		return rt.Handler(r)
	}
	return h.next, ""
}

func (h *limitedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		if ok, wait := h.limiter.take(); !ok {
			contentType, body := h.emu.FaultBody(http.StatusTooManyRequests)
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write(body)
			return
		}
	}
	h.next.ServeHTTP(w, r)
}
