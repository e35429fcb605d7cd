// Package storx emulates the two StorX services the plugin talks to, each a
// sandbox.Emulator on its own port:
//
//   - Satellite: the satellite console API (storx.io) as it was at the last
//     commit with the developer flow: developer login, create-user,
//     user-token, projects, API keys and access grants, with cookie-only
//     sessions, the per-IP limiter on the developer auth endpoints and
//     every quirk of shared/reference/upstream-apis.md section 1.
//   - AuthService: the Storj authservice (auth.storx.io) that turns an access
//     grant into S3 credentials, with text/plain errors and no delete.
//
// An S3 credential minted by the AuthService stays usable only while the
// satellite API key inside its grant exists and the grant has not expired,
// so tests can prove that revoking a lease really cut access.
package storx

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Satellite defaults, from satellite-config.yaml.lock.
const (
	defaultRateBurst       = 5
	defaultRateInterval    = 5 * time.Minute
	defaultSessionLifetime = 30 * time.Minute
	rememberedSession      = 7 * 24 * time.Hour
	defaultSatelliteAddr   = "satellite.storx.io:7777"
	// maxRequestBody bounds what the emulator reads; nothing the plugin
	// sends comes near it.
	maxRequestBody = 1 << 20
)

// Options configures a Satellite.
type Options struct {
	// Developers are seeded at start and on every Reset.
	Developers []Developer
	// Users are seeded too, as if created earlier by hand or by another
	// tool, each with its "My Project".
	Users []User
	// RateBurst and RateInterval shape the per-IP token bucket on the
	// developer auth endpoints: RateBurst requests at once, then one more
	// per RateInterval. Zero means StorX's defaults, 5 and 5 minutes.
	RateBurst    int
	RateInterval time.Duration
	// SessionLifetime is the lifetime of user sessions and of developer
	// sessions without rememberForOneWeek; zero means 30 minutes.
	SessionLifetime time.Duration
	// CSRF turns on the double-submit check (cookie csrf_token equal to
	// header X-CSRF-Token) on the API-key create and delete routes; StorX
	// ships with it off.
	CSRF bool
	// SatelliteAddress is written into every access grant; empty means
	// "satellite.storx.io:7777".
	SatelliteAddress string
	// Now is the clock for sessions, lockouts, the limiter and grant
	// expiry; nil means time.Now.
	Now func() time.Time
}

// Developer is a seeded developer account, the plugin's root credential.
type Developer struct {
	Email    string
	Password string
	// LockedOut makes every login fail with 401 as a locked account does.
	LockedOut bool
	// MFA makes a correct login answer 200 with an MFA-required error body.
	MFA bool
}

// User is a seeded StorX user.
type User struct {
	Email    string
	FullName string
	// Developer maps the user to that developer's email, if set.
	Developer string
	// Locked makes user-token answer 401 and create-user "activation code".
	Locked bool
}

// Satellite is a stateful fake of the StorX satellite console API. It
// implements sandbox.Emulator.
type Satellite struct {
	opts    Options
	now     func() time.Time
	limiter *rateLimiter
	mux     *http.ServeMux

	// mu guards state; every request holds it while it runs.
	mu    sync.Mutex
	state *state
}

var _ sandbox.Emulator = (*Satellite)(nil)

// New returns a satellite holding the seeded developers and users of opts.
func New(opts Options) *Satellite {
	if opts.RateBurst <= 0 {
		opts.RateBurst = defaultRateBurst
	}
	if opts.RateInterval <= 0 {
		opts.RateInterval = defaultRateInterval
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = defaultSessionLifetime
	}
	if opts.SatelliteAddress == "" {
		opts.SatelliteAddress = defaultSatelliteAddr
	}
	s := &Satellite{opts: opts, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.limiter = newRateLimiter(opts.RateBurst, opts.RateInterval)
	s.state = seededState(opts, s.now().UTC())
	s.mux = s.routes()
	return s
}

// Name is "storx".
func (s *Satellite) Name() string { return "storx" }

// Handler serves the console API under /api/v0. It is an *http.ServeMux so
// the sandbox counts calls by route template.
func (s *Satellite) Handler() http.Handler { return s.mux }

// Reset forgets every session, user, API key and limiter count, and seeds
// the developers and users again.
func (s *Satellite) Reset() {
	s.limiter.reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = seededState(s.opts, s.now().UTC())
}

// Objects lists every API key, deleted ones included (Live false). Users and
// projects are not listed: the plugin never deletes them.
func (s *Satellite) Objects() []sandbox.Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sandbox.Object, 0, len(s.state.keys))
	for _, k := range s.state.keys {
		out = append(out, k.object(s.state))
	}
	return out
}

// NamelessDeletes counts delete-by-name requests that came without a name,
// each of which crashed its request as the real handler does. A correct
// client never sends one.
func (s *Satellite) NamelessDeletes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.namelessDeletes
}

// FaultBody shapes an injected error like the satellite: {"error":…} with no
// Content-Type of its own (Go then sniffs text/plain).
func (s *Satellite) FaultBody(status int) (string, []byte) {
	msg := http.StatusText(status)
	switch {
	case status == http.StatusTooManyRequests:
		msg = msgRateLimited
	case status >= 500:
		msg = msgInternalPrefix + "sandbox: injected fault"
	}
	return "", errorBody(msg)
}

func (s *Satellite) routes() *http.ServeMux {
	mux := http.NewServeMux()
	s.handle(mux, "POST /api/v0/developer/auth/token", limited, s.developerToken)
	s.handle(mux, "POST /api/v0/developer/auth/create-user", limited|asDeveloper, s.createUser)
	s.handle(mux, "POST /api/v0/developer/auth/user-token", limited|asDeveloper, s.userToken)
	// At the postman-era commit the developer logout route sat behind the
	// user middleware, so it ends a user session like /api/v0/auth/logout.
	s.handle(mux, "POST /api/v0/developer/auth/logout", asUser, s.logout)
	s.handle(mux, "POST /api/v0/auth/logout", asUser, s.logout)
	s.handle(mux, "GET /api/v0/projects", asUser, s.listProjects)
	s.handle(mux, "POST /api/v0/api-keys/create/{projectID}", asUser|csrf, s.createAPIKey)
	s.handle(mux, "GET /api/v0/api-keys/list-paged", asUser, s.listAPIKeys)
	s.handle(mux, "GET /api/v0/api-keys/api-key-names", asUser, s.apiKeyNames)
	s.handle(mux, "GET /api/v0/api-keys/{project_id}/access-grant", asUser, s.accessGrant)
	s.handle(mux, "DELETE /api/v0/api-keys/delete-by-name", asUser|csrf, s.deleteByName)
	s.handle(mux, "DELETE /api/v0/api-keys/delete-by-ids", asUser|csrf, s.deleteByIDs)
	return mux
}

// guard lists the middleware a route sits behind.
type guard int

const (
	// limited routes pass the per-IP limiter first.
	limited guard = 1 << iota
	// asDeveloper routes need the _developer_tokenKey cookie.
	asDeveloper
	// asUser routes need the _tokenKey cookie.
	asUser
	// csrf routes check the CSRF token when Options.CSRF is on.
	csrf
)

// call is one request with its body read and its caller authenticated.
type call struct {
	r         *http.Request
	body      []byte
	now       time.Time
	developer *developer
	user      *user
}

// endpoint handles one API call while the satellite's lock is held.
type endpoint func(w http.ResponseWriter, c *call)

// handle registers h behind the middleware g names, in the satellite's
// order: limiter, then session, then CSRF.
func (s *Satellite) handle(mux *http.ServeMux, pattern string, g guard, h endpoint) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if g&limited != 0 && !s.limiter.allow(clientIP(r), s.now()) {
			serveError(w, http.StatusTooManyRequests, msgRateLimited)
			return
		}
		// Read before taking the lock so a slow client cannot stall others.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			serveError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		c := &call{r: r, body: body, now: s.now().UTC()}
		if !s.authenticate(w, c, g) {
			return
		}
		if g&csrf != 0 && s.opts.CSRF && !csrfMatches(r) {
			serveError(w, http.StatusForbidden, "CSRF token mismatch")
			return
		}
		h(w, c)
	})
}

// writeJSON answers like the satellite's json.NewEncoder(w).Encode calls:
// trailing newline, and a JSON Content-Type only where the handler sets one
// (the api-keys handlers do not, so Go sniffs their bodies as text/plain).
func writeJSON(w http.ResponseWriter, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // every value passed here is a plain struct, map or string
	}
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

// keyView is what the auth service learns about a grant's API key.
type keyView struct {
	found, live bool
	name, owner string
}

func (s *Satellite) keyView(head string) keyView {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.state.keyByHead(head)
	if k == nil {
		return keyView{}
	}
	obj := k.object(s.state)
	return keyView{found: true, live: obj.Live, name: k.name, owner: obj.Owner}
}
