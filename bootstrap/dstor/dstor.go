// Package dstor emulates the parts of the dStor API that the plugin uses:
// GET /v1/dev/temp-token, which trades an account API key for a stateless
// HS256 JWT, and one protected route that accepts such a token, so tests can
// prove a token works (and keeps working: dStor cannot revoke tokens). It
// follows shared/reference/upstream-apis.md section 2.
package dstor

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// defaultTokenLifetime applies when a token request has no x-expiration:
// "defaults to one year".
const defaultTokenLifetime = 365 * 24 * time.Hour

// Options configures an Emulator.
type Options struct {
	// APIKeys are the account API keys dStor accepts.
	APIKeys []APIKey
	// Now is the clock for token issue and expiry; nil means time.Now.
	Now func() time.Time
}

// APIKey is a seeded dStor account API key.
type APIKey struct {
	// Key is sent in the api-key header; dStor's are 64 characters.
	Key string
	// Account is the account's UUID, the tokens' sub claim; empty makes one up.
	Account string
	// Disabled keys are refused as if unknown, like a key expired or
	// deleted in the dStor console.
	Disabled bool
}

// Emulator is a stateful fake dStor API. It implements sandbox.Emulator.
type Emulator struct {
	now        func() time.Time
	signingKey []byte
	mux        *http.ServeMux

	mu     sync.Mutex
	keys   map[string]APIKey // by key
	tokens []issuedToken     // in issue order
}

var _ sandbox.Emulator = (*Emulator)(nil)

// New returns an emulator accepting the API keys of opts.
func New(opts Options) *Emulator {
	e := &Emulator{now: opts.Now, signingKey: sandbox.RandomBytes(32), keys: map[string]APIKey{}}
	if e.now == nil {
		e.now = time.Now
	}
	for _, k := range opts.APIKeys {
		if k.Account == "" {
			k.Account = sandbox.NewUUID()
		}
		e.keys[k.Key] = k
	}
	e.mux = e.routes()
	return e
}

// Name is "dstor".
func (e *Emulator) Name() string { return "dstor" }

// Handler serves the dStor API under /v1. It is an *http.ServeMux so the
// sandbox can count calls by route.
func (e *Emulator) Handler() http.Handler { return e.mux }

// Reset forgets every issued token. Tokens already handed out stay valid, as
// they would at dStor: they are signed, not stored.
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens = nil
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

// FaultBody shapes an injected error like dStor's JSON errors.
func (e *Emulator) FaultBody(status int) (string, []byte) {
	return messageBody(http.StatusText(status))
}

func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dev/temp-token", e.issueToken)
	mux.HandleFunc("GET /v1/upload/get-status/", e.uploadStatus)
	mux.HandleFunc("/", notFound)
	return mux
}

// notFound answers like the Go router behind dStor: plain text.
func notFound(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte("404 page not found"))
}

func messageBody(message string) (string, []byte) {
	body, _ := json.Marshal(map[string]string{"message": message})
	return "application/json; charset=utf-8", body
}

func writeMessage(w http.ResponseWriter, status int, message string) {
	contentType, body := messageBody(message)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // every value passed here is a plain map
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
