// Package storyden emulates the parts of the Storyden forum API that the
// plugin uses: password sessions, personal access keys (create, list,
// revoke, admin list/revoke), password change and logout, with Storyden's
// quirks, error bodies and per-IP rate limit. It follows
// shared/reference/upstream-apis.md section 5.
package storyden

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Permission names as Storyden spells them.
const (
	// PermissionUsePersonalAccessKeys lets an account create, list and revoke
	// its own access keys. The default Member role does not hold it.
	PermissionUsePersonalAccessKeys = "USE_PERSONAL_ACCESS_KEYS"
	// PermissionAdministrator short-circuits every permission check.
	PermissionAdministrator = "ADMINISTRATOR"
)

const (
	defaultRateLimit = 5000
	rateLimitPeriod  = time.Hour
	rateLimitBucket  = time.Minute
	// maxRequestBody is far below Storyden's 50 MiB: nothing the plugin
	// sends comes near it, and the sandbox should stay small.
	maxRequestBody = 1 << 20
)

// Options configures an Emulator.
type Options struct {
	// Accounts are created when the emulator starts and on every Reset.
	Accounts []Account
	// LegacyErrors answers errors in the pre-v1.26.10 form
	// {"error","message"} instead of RFC 7807 problem details.
	LegacyErrors bool
	// RateLimit is the number of requests each client IP may make per hour;
	// 0 means Storyden's default of 5000.
	RateLimit int
	// Now is the clock for sessions, key expiry and the rate limit; nil
	// means time.Now.
	Now func() time.Time
	// WebAddress is Storyden's PUBLIC_WEB_ADDRESS, where logout redirects;
	// empty means Storyden's default, http://localhost:3000.
	WebAddress string
}

// defaultWebAddress is Storyden's default PUBLIC_WEB_ADDRESS.
const defaultWebAddress = "http://localhost:3000"

// Account is a seeded Storyden account.
type Account struct {
	// Handle is the account's unique name, which signs in as "identifier".
	Handle string
	// Password is the account's password; Storyden wants 8 characters or more.
	Password string
	// Admin gives the account the Admin role, which holds every permission.
	Admin bool
	// Permissions are granted through an extra custom role, e.g.
	// PermissionUsePersonalAccessKeys.
	Permissions []string
}

// Emulator is a stateful fake Storyden API. It implements sandbox.Emulator.
type Emulator struct {
	legacyErrors bool
	webAddress   *url.URL
	now          func() time.Time
	seeds        []Account
	limiter      *rateLimiter
	mux          *http.ServeMux

	// mu guards state; every request holds it while it runs.
	mu    sync.Mutex
	state *state
}

var _ sandbox.Emulator = (*Emulator)(nil)

// New returns an emulator holding the seeded accounts of opts.
func New(opts Options) *Emulator {
	web := opts.WebAddress
	if web == "" {
		web = defaultWebAddress
	}
	webAddress, err := url.Parse(web)
	if err != nil {
		panic("storyden emulator: WebAddress " + web + " is not a URL: " + err.Error())
	}
	e := &Emulator{
		legacyErrors: opts.LegacyErrors,
		webAddress:   webAddress,
		now:          opts.Now,
		seeds:        append([]Account(nil), opts.Accounts...),
	}
	if e.now == nil {
		e.now = time.Now
	}
	limit := opts.RateLimit
	if limit <= 0 {
		limit = defaultRateLimit
	}
	e.limiter = newRateLimiter(limit, rateLimitPeriod, rateLimitBucket)
	e.state = seededState(e.seeds, e.now().UTC())
	e.mux = e.routes()
	return e
}

// Name is "storyden".
func (e *Emulator) Name() string { return "storyden" }

// Handler serves the Storyden API under /api. It is an *http.ServeMux so the
// sandbox can count calls by route template.
func (e *Emulator) Handler() http.Handler { return e.mux }

// Reset forgets every session, access key, signed-up account, password change
// and rate-limit count, and seeds the accounts again.
func (e *Emulator) Reset() {
	e.limiter.reset()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = seededState(e.seeds, e.now().UTC())
}

// Objects lists every access key, revoked and expired ones included.
// Accounts are not listed: they hold passwords.
func (e *Emulator) Objects() []sandbox.Object {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := make([]sandbox.Object, 0, len(e.state.keys))
	for _, k := range e.state.keys {
		out = append(out, k.object(e.state.accounts[k.ownerID].handle, now))
	}
	return out
}

// FaultBody shapes an injected error like Storyden: the rate limiter's plain
// text for 429, otherwise the error handler's JSON body for that status.
func (e *Emulator) FaultBody(status int) (string, []byte) {
	if status == http.StatusTooManyRequests {
		return "text/plain; charset=utf-8", []byte(http.StatusText(status) + "\n")
	}
	return e.errorBody(apiError{
		status: status,
		kind:   kindForStatus(status),
		title:  http.StatusText(status),
		detail: "sandbox: injected fault",
	})
}

func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	e.handle(mux, "POST /api/auth/password/signin", e.signIn)
	e.handle(mux, "POST /api/auth/password/signup", e.signUp)
	e.handle(mux, "PATCH /api/auth/password", e.changePassword)
	e.handle(mux, "POST /api/auth/logout", e.logout)
	e.handle(mux, "GET /api/accounts", e.getAccount)
	e.handle(mux, "POST /api/auth/access-keys", e.createAccessKey)
	e.handle(mux, "GET /api/auth/access-keys", e.listAccessKeys)
	e.handle(mux, "DELETE /api/auth/access-keys/{id}", e.revokeAccessKey)
	e.handle(mux, "GET /api/admin/access-keys", e.adminListAccessKeys)
	e.handle(mux, "DELETE /api/admin/access-keys/{id}", e.adminRevokeAccessKey)
	e.handle(mux, "/", e.notFound)
	return mux
}

// endpoint handles one API call while the emulator's lock is held.
type endpoint func(w http.ResponseWriter, c *call)

// call is one API request, authenticated, with its body already read.
type call struct {
	r      *http.Request
	body   []byte
	now    time.Time
	caller *account // nil for a guest
	scheme scheme
	// sessionKey finds the session that authenticated a browser call.
	sessionKey string
}

// handle registers h behind Storyden's middleware order: rate limit, then
// session, then the operation.
func (e *Emulator) handle(mux *http.ServeMux, pattern string, h endpoint) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !e.admit(w, r) {
			return
		}
		// Read before taking the lock so a slow client cannot stall others.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			e.fail(w, errSchema(err))
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		c := e.authenticate(r, e.now().UTC())
		c.body = body
		h(w, c)
	})
}

func (e *Emulator) notFound(w http.ResponseWriter, _ *call) {
	e.fail(w, apiError{
		status: http.StatusNotFound,
		kind:   kindNotFound,
		title:  http.StatusText(http.StatusNotFound),
		detail: "code=404, message=Not Found",
	})
}

// writeJSON answers like Echo's c.JSON, trailing newline included.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // every value passed here is a plain struct or map
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
