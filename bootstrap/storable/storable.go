// Package storable emulates the Storable API as its authentication guide
// describes it: POST /auth/token trades a client id + secret (Basic auth)
// and a client API key (x-api-key) for an RS256 bearer JWT with the
// x-token-created-at and x-token-lifetime-seconds headers, and
// GET /sample-api/v1/info takes that token plus the API key. Errors,
// throttling and unknown routes answer the way AWS API Gateway does, which
// the reference takes Storable to be. It follows
// shared/reference/upstream-apis.md section 4.
package storable

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Defaults for Options.
const (
	defaultTokenLifetime = 5400 * time.Second
	defaultRateLimit     = 60
	rateWindow           = time.Minute
)

// Options configures an Emulator.
type Options struct {
	// Clients are the API clients Storable knows.
	Clients []Client
	// TokenLifetime is how long tokens live; 0 means the documented 5400 s.
	TokenLifetime time.Duration
	// RateLimit is how many token requests each client IP may make per
	// minute; 0 means 60.
	RateLimit int
	// ReuseTokens answers a client's token request with its last token while
	// that one lives, with the original x-token-created-at, as a token
	// endpoint that caches server-side would.
	ReuseTokens bool
	// Now is the clock for tokens and the rate limit; nil means time.Now.
	Now func() time.Time
}

// Client is one Storable API client, as the API Integration team issues it.
type Client struct {
	ID     string
	Secret string
	// APIKey is the client's x-api-key (40 characters at Storable).
	APIKey string
}

// Emulator is a stateful fake Storable API. It implements sandbox.Emulator.
type Emulator struct {
	opts    Options
	now     func() time.Time
	key     *rsa.PrivateKey
	limiter *rateLimiter
	mux     *http.ServeMux

	mu     sync.Mutex
	tokens []*issuedToken // in issue order
	// latest is each client's newest token, for ReuseTokens.
	latest map[string]*issuedToken
}

var _ sandbox.Emulator = (*Emulator)(nil)

// New returns an emulator that knows the clients of opts.
func New(opts Options) *Emulator {
	opts.Clients = slices.Clone(opts.Clients)
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = defaultTokenLifetime
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = defaultRateLimit
	}
	e := &Emulator{opts: opts, now: opts.Now, key: newSigningKey(), latest: map[string]*issuedToken{}}
	if e.now == nil {
		e.now = time.Now
	}
	e.limiter = newRateLimiter(opts.RateLimit, rateWindow)
	e.mux = e.routes()
	return e
}

// Name is "storable".
func (e *Emulator) Name() string { return "storable" }

// Handler serves the Storable API. It is an *http.ServeMux so the sandbox
// can count calls by route.
func (e *Emulator) Handler() http.Handler { return e.mux }

// Reset forgets every issued token and rate-limit count. Tokens already
// handed out stay valid until they expire: they are signed, not stored.
func (e *Emulator) Reset() {
	e.limiter.reset()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens = nil
	e.latest = map[string]*issuedToken{}
}

// Objects lists every token issued since the last Reset, expired ones included.
func (e *Emulator) Objects() []sandbox.Object {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := make([]sandbox.Object, 0, len(e.tokens))
	for _, t := range e.tokens {
		out = append(out, t.object(now))
	}
	return out
}

// FaultBody shapes an injected error like API Gateway.
func (e *Emulator) FaultBody(status int) (string, []byte) {
	return messageBody(gatewayMessage(status))
}

// gatewayMessage is API Gateway's message for a status it produces itself.
func gatewayMessage(status int) string {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway:
		return "Internal server error"
	case http.StatusGatewayTimeout:
		return "Endpoint request timed out"
	}
	return http.StatusText(status)
}

func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/token", e.issueToken)
	mux.HandleFunc("GET /sample-api/v1/info", e.sampleInfo)
	mux.HandleFunc("/", missingRoute)
	return mux
}

// gatewayError is an error answer as API Gateway shapes it.
type gatewayError struct {
	status int
	// errorType goes to the x-amzn-ErrorType header.
	errorType string
	message   string
}

var (
	errForbidden    = gatewayError{http.StatusForbidden, "ForbiddenException", "Forbidden"}
	errUnauthorized = gatewayError{http.StatusUnauthorized, "UnauthorizedException", "Unauthorized"}
	errThrottled    = gatewayError{http.StatusTooManyRequests, "TooManyRequestsException", "Too Many Requests"}
	// errMissingRoute is API Gateway's answer for any path or method it has
	// no route for, whatever the credentials.
	errMissingRoute = gatewayError{http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token"}
)

func missingRoute(w http.ResponseWriter, _ *http.Request) { fail(w, errMissingRoute) }

func fail(w http.ResponseWriter, err gatewayError) {
	contentType, body := messageBody(err.message)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", err.errorType)
	w.WriteHeader(err.status)
	_, _ = w.Write(body)
}

func messageBody(message string) (string, []byte) {
	body, _ := json.Marshal(map[string]string{"message": message})
	return "application/json", body
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // every value passed here is a plain map
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
