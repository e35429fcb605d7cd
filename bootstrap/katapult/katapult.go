// Package katapult emulates the parts of the Katapult Core API
// (api.katapult.io/core/v1) that the plugin uses: the organization's object
// storage account, object storage access keys with their provisioning delay
// and S3 credentials, bucket ACLs, API token secret regeneration and the
// current user, with Katapult's wrapped error bodies, X-Request-Id and its
// per-token, per-minute rate limit. It follows
// shared/reference/upstream-apis.md section 3.
package katapult

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// API token scopes the emulator checks.
const (
	ScopeObjectStorage     = "object_storage"
	ScopeObjectStorageRead = "object_storage:read"
	ScopeAPITokens         = "api_tokens"
)

const (
	// DefaultProvisioningDelay is how long a new access key answers
	// generate_credentials with 422 object_storage_provisioning_error. Real
	// keys took about 30 s; a few seconds keeps the sandbox quick.
	DefaultProvisioningDelay = 3 * time.Second
	// DefaultRateLimit is Katapult's X-Ratelimit-Permitted per minute.
	DefaultRateLimit = 1000
	maxRequestBody   = 1 << 20
)

// Options configures an Emulator.
type Options struct {
	// Organizations are created when the emulator starts and on every Reset.
	Organizations []Organization
	// Tokens are the API tokens that exist when the emulator starts and on
	// every Reset.
	Tokens []Token
	// ProvisioningDelay is how long after its creation an access key is
	// still provisioning. Zero means DefaultProvisioningDelay; a negative
	// value means keys are ready at once.
	ProvisioningDelay time.Duration
	// DeletedKeysStayInACLs leaves a deleted key's id in bucket ACLs.
	// Whether Katapult drops it is not recorded; by default the emulator
	// guesses that it does. Tests of clients that clean ACLs themselves set
	// this so that the emulator's own cleaning cannot hide a gap.
	DeletedKeysStayInACLs bool
	// RateLimit is the number of requests each token may make per minute;
	// 0 means DefaultRateLimit.
	RateLimit int
	// Now is the clock for provisioning, key states, the rate limit and the
	// Date header; nil means time.Now.
	Now func() time.Time
}

// Organization is a seeded Katapult organization.
type Organization struct {
	// ID is the org_… id; one is made up when empty.
	ID string
	// SubDomain is the organization's sub-domain, its other lookup.
	SubDomain string
	Name      string
	// NoObjectStorage leaves the organization without an object storage
	// account, so object storage calls answer 404.
	NoObjectStorage bool
	// Buckets are the names of the organization's buckets in Region, each
	// with an empty ACL.
	Buckets []string
}

// Token is a seeded API token.
type Token struct {
	// ID is the token's id, which regenerate_secret takes; one is made up
	// when empty.
	ID string
	// Secret is what clients send as "Authorization: Bearer …".
	Secret string
	Name   string
	// Organization is the sub-domain of the organization the token acts on.
	Organization string
	// User names the user of a user token; empty makes an organization
	// token, for which GET /users/current answers 404.
	User string
	// Scopes granted to the token; nil grants object_storage and api_tokens.
	Scopes []string
}

// Emulator is a stateful fake Katapult Core API. It implements sandbox.Emulator.
type Emulator struct {
	now   func() time.Time
	delay time.Duration
	// keepDeleted is Options.DeletedKeysStayInACLs.
	keepDeleted bool
	orgs        []Organization
	tokens      []Token
	limiter     *rateLimiter
	mux         *http.ServeMux

	// mu guards state; every request holds it while it runs.
	mu    sync.Mutex
	state *state
}

var _ sandbox.Emulator = (*Emulator)(nil)

// New returns an emulator holding the seeded organizations and tokens of opts.
func New(opts Options) *Emulator {
	e := &Emulator{now: opts.Now, delay: opts.ProvisioningDelay, keepDeleted: opts.DeletedKeysStayInACLs}
	if e.now == nil {
		e.now = time.Now
	}
	switch {
	case e.delay == 0:
		e.delay = DefaultProvisioningDelay
	case e.delay < 0:
		e.delay = 0
	}
	limit := opts.RateLimit
	if limit <= 0 {
		limit = DefaultRateLimit
	}
	e.limiter = newRateLimiter(limit)
	e.orgs, e.tokens = seedIDs(opts.Organizations, opts.Tokens)
	e.state = seededState(e.orgs, e.tokens, e.now().UTC())
	e.mux = e.routes()
	return e
}

// seedIDs copies the seeds, filling in missing ids once so that Reset
// brings back the same ones.
func seedIDs(orgs []Organization, tokens []Token) ([]Organization, []Token) {
	orgs, tokens = slices.Clone(orgs), slices.Clone(tokens)
	for i := range orgs {
		if orgs[i].ID == "" {
			orgs[i].ID = newID("org_")
		}
		orgs[i].Buckets = slices.Clone(orgs[i].Buckets)
	}
	for i := range tokens {
		if tokens[i].ID == "" {
			tokens[i].ID = newID("apitoken_")
		}
		if tokens[i].Scopes == nil {
			tokens[i].Scopes = []string{ScopeObjectStorage, ScopeAPITokens}
		}
	}
	return orgs, tokens
}

// Name is "katapult".
func (e *Emulator) Name() string { return "katapult" }

// Handler serves the API under /core/v1. It is an *http.ServeMux so the
// sandbox can count calls by route.
func (e *Emulator) Handler() http.Handler { return e.mux }

// Reset forgets every access key, ACL entry, regenerated secret and
// rate-limit count, and seeds the organizations and tokens again.
func (e *Emulator) Reset() {
	e.limiter.reset()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = seededState(e.orgs, e.tokens, e.now().UTC())
}

// Objects lists every access key (deleted ones with Live false) with the
// buckets whose ACL holds it, and every bucket with its ACL key ids, so a
// test can prove both sides are clean. Tokens are not listed: they hold
// secrets.
func (e *Emulator) Objects() []sandbox.Object {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := make([]sandbox.Object, 0, len(e.state.keys)+len(e.state.buckets))
	for _, k := range e.state.keys {
		out = append(out, e.state.keyObject(k, now))
	}
	for _, b := range e.state.buckets {
		out = append(out, b.object())
	}
	return out
}

// FaultBody shapes an injected error in Katapult's wrapped form.
func (e *Emulator) FaultBody(status int) (string, []byte) {
	body, _ := json.Marshal(faultError(status, e.limiter.limit).body())
	return "application/json", body
}

// S3CredentialsLive reports whether an S3 access key id and secret pair is
// the current pair of an access key that still exists: deleting the key or
// generating new credentials retires it. The provisioning state does not
// matter here.
func (e *Emulator) S3CredentialsLive(accessKeyID, secret string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range e.state.keys {
		if !k.deleted && k.s3ID != "" && k.s3ID == accessKeyID &&
			subtle.ConstantTimeCompare([]byte(k.s3Secret), []byte(secret)) == 1 {
			return true
		}
	}
	return false
}

// S3Secret returns the secret of the S3 access key id while it is the
// current pair of an access key that still exists, the pairs
// S3CredentialsLive accepts; otherwise false. Its method value is an
// s3gateway.Resolver.
func (e *Emulator) S3Secret(accessKeyID string) (string, bool) {
	if accessKeyID == "" {
		return "", false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range e.state.keys {
		if !k.deleted && k.s3ID == accessKeyID {
			return k.s3Secret, true
		}
	}
	return "", false
}

func (e *Emulator) routes() *http.ServeMux {
	const (
		orgStorage = "/core/v1/organizations/organization/object_storage"
		accessKey  = "/core/v1/object_storage/access_keys/access_key"
		bucket     = "/core/v1/object_storage/object_storage_cluster/buckets/bucket"
	)
	mux := http.NewServeMux()
	e.handle(mux, "GET "+orgStorage+"/object_storage_cluster", ScopeObjectStorageRead, e.getAccount)
	e.handle(mux, "POST "+orgStorage+"/object_storage_cluster/access_keys", ScopeObjectStorage, e.createAccessKey)
	e.handle(mux, "GET "+orgStorage+"/access_keys", ScopeObjectStorageRead, e.listAccessKeys)
	e.handle(mux, "POST "+accessKey+"/generate_credentials", ScopeObjectStorage, e.generateCredentials)
	e.handle(mux, "GET "+accessKey, ScopeObjectStorageRead, e.getAccessKey)
	e.handle(mux, "PATCH "+accessKey, ScopeObjectStorage, e.updateAccessKey)
	e.handle(mux, "DELETE "+accessKey, ScopeObjectStorage, e.deleteAccessKey)
	e.handle(mux, "GET "+bucket, ScopeObjectStorageRead, e.getBucket)
	e.handle(mux, "PATCH "+bucket, ScopeObjectStorage, e.updateBucket)
	e.handle(mux, "GET /core/v1/users/current", "", e.currentUser)
	e.handle(mux, "POST /core/v1/api_tokens/api_token/regenerate_secret", ScopeAPITokens, e.regenerateSecret)
	e.handle(mux, "/", "", func(w http.ResponseWriter, c *call) { fail(w, errRouteNotFound(c.r)) })
	return mux
}

// endpoint handles one API call while the emulator's lock is held.
type endpoint func(w http.ResponseWriter, c *call)

// call is one authenticated API request with its body already read.
type call struct {
	r     *http.Request
	body  []byte
	now   time.Time
	token *apiToken
}

// handle registers h behind Katapult's request pipeline: request id,
// authentication, the token's rate limit, then the endpoint's scope.
func (e *Emulator) handle(mux *http.ServeMux, pattern, scope string, h endpoint) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		// Read before taking the lock so a slow client cannot stall others.
		body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		e.mu.Lock()
		defer e.mu.Unlock()
		now := e.now().UTC()
		w.Header().Set("X-Request-Id", newRequestID())
		w.Header().Set("Date", now.Format(http.TimeFormat))
		token, authErr := e.authenticate(r)
		if !e.admit(w, r, token, now) {
			return
		}
		switch {
		case authErr != nil:
			fail(w, *authErr)
		case readErr != nil:
			fail(w, errBadArgument("the request body could not be read"))
		case scope != "" && !token.grants(scope):
			fail(w, errScopeNotGranted(scope))
		default:
			h(w, &call{r: r, body: body, now: now, token: token})
		}
	})
}

// authenticate reads "Authorization: Bearer <secret>".
func (e *Emulator) authenticate(r *http.Request) (*apiToken, *apiError) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		err := errMissingToken()
		return nil, &err
	}
	token := e.state.tokenBySecret(secret)
	if token == nil {
		err := errInvalidToken()
		return nil, &err
	}
	return token, nil
}

// admit applies the rate limit and sets its headers on every answer.
// Requests without a valid token are counted per client address.
func (e *Emulator) admit(w http.ResponseWriter, r *http.Request, token *apiToken, now time.Time) bool {
	caller := "addr:" + clientHost(r)
	if token != nil {
		caller = "token:" + token.id
	}
	remaining, allowed := e.limiter.take(caller, now)
	w.Header().Set("X-Ratelimit-Permitted", strconv.Itoa(e.limiter.limit))
	w.Header().Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	if !allowed {
		fail(w, errRateLimit(e.limiter.limit))
	}
	return allowed
}

// grants reports whether the token holds scope; object_storage includes
// object_storage:read.
func (t *apiToken) grants(scope string) bool {
	if slices.Contains(t.scopes, scope) {
		return true
	}
	return scope == ScopeObjectStorageRead && slices.Contains(t.scopes, ScopeObjectStorage)
}

// writeJSON answers with a compact JSON body, no trailing newline, as
// Katapult does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // every value passed here is a plain struct or map
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
