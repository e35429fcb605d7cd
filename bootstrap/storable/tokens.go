package storable

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// issuer is the iss claim of every token.
const issuer = "https://api.storable.io"

// jwtHeader is the fixed, already encoded header of every token: RS256 with
// a key id, as Storable's documented example token starts.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"jwk-sandbox-1","typ":"JWT"}`))

// tokenClaims is the payload of an emulated token. Storable's real claims are
// undocumented; these are the usual OAuth access-token ones.
type tokenClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	TokenUse string `json:"token_use"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	ID       string `json:"jti"`
}

// issuedToken is a token the emulator handed out. value is kept only so
// ReuseTokens can hand it out again; Objects never shows it.
type issuedToken struct {
	id        string
	clientID  string
	value     string
	createdAt time.Time
	expiresAt time.Time
	// served counts the token responses that carried this token.
	served int
}

func (t *issuedToken) object(now time.Time) sandbox.Object {
	return sandbox.TokenObject("access_token", t.id, t.clientID, t.expiresAt, now,
		map[string]any{"created_at": t.createdAt, "served": t.served})
}

// issueToken is POST /auth/token. Checks run in API Gateway's order:
// throttling, then the API key, then the Basic-auth authorizer.
func (e *Emulator) issueToken(w http.ResponseWriter, r *http.Request) {
	now := e.now().UTC().Truncate(time.Second)
	if !e.limiter.allow(clientIP(r), now) {
		fail(w, errThrottled)
		return
	}
	client, ok := e.clientByAPIKey(r.Header.Get("x-api-key"))
	if !ok {
		fail(w, errForbidden)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || !equal(id, client.ID) || !equal(secret, client.Secret) {
		fail(w, errUnauthorized)
		return
	}
	t := e.tokenFor(client, now)
	w.Header().Set("X-Token-Created-At", t.createdAt.Format(http.TimeFormat))
	w.Header().Set("X-Token-Lifetime-Seconds", strconv.Itoa(int(e.opts.TokenLifetime/time.Second)))
	writeJSON(w, map[string]string{"access_token": t.value, "token_type": "bearer"})
}

// tokenFor mints a token, or with ReuseTokens returns the client's live one.
func (e *Emulator) tokenFor(client Client, now time.Time) *issuedToken {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.latest[client.ID]
	if !e.opts.ReuseTokens || t == nil || !now.Before(t.expiresAt) {
		t = e.mint(client, now)
		e.tokens = append(e.tokens, t)
		e.latest[client.ID] = t
	}
	t.served++
	return t
}

func (e *Emulator) mint(client Client, now time.Time) *issuedToken {
	jti := newID()
	expires := now.Add(e.opts.TokenLifetime)
	claims := tokenClaims{Issuer: issuer, Subject: client.ID, ClientID: client.ID, TokenUse: "access", IssuedAt: now.Unix(), Expires: expires.Unix(), ID: jti}
	return &issuedToken{id: jti, clientID: client.ID, value: e.sign(claims), createdAt: now, expiresAt: expires}
}

// sampleInfo is GET /sample-api/v1/info, standing in for every API route:
// it needs the client's API key (403 without) and a valid, unexpired token
// of that client (401 otherwise).
func (e *Emulator) sampleInfo(w http.ResponseWriter, r *http.Request) {
	client, ok := e.clientByAPIKey(r.Header.Get("x-api-key"))
	if !ok {
		fail(w, errForbidden)
		return
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	claims, ok := e.verify(token, e.now())
	if !strings.EqualFold(scheme, "Bearer") || !ok || claims.ClientID != client.ID {
		fail(w, errUnauthorized)
		return
	}
	writeJSON(w, map[string]string{"api": "sample-api", "version": "v1", "client_id": client.ID})
}

func (e *Emulator) clientByAPIKey(key string) (Client, bool) {
	for _, c := range e.opts.Clients {
		if key != "" && equal(key, c.APIKey) {
			return c, true
		}
	}
	return Client{}, false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (e *Emulator) sign(c tokenClaims) string {
	payload, err := json.Marshal(c)
	if err != nil {
		panic(err) // a struct of plain fields always encodes
	}
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(nil, e.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err) // signing with a valid key cannot fail
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// verify checks a token's signature and expiry. It looks at no state:
// tokens are stateless, which is why Storable cannot revoke them.
func (e *Emulator) verify(token string, now time.Time) (tokenClaims, bool) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return c, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err != nil || rsa.VerifyPKCS1v15(&e.key.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, false
	}
	return c, now.Unix() < c.Expires
}

func newSigningKey() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return key
}

func newID() string { return hex.EncodeToString(sandbox.RandomBytes(16)) }

// rateLimiter allows limit token requests per client IP in each fixed window.
// Like a gateway's throttle it counts refused requests too.
type rateLimiter struct {
	limit  int
	window time.Duration

	mu     sync.Mutex
	counts map[string]windowCount
}

type windowCount struct {
	start time.Time
	n     int
}

func newRateLimiter(limit int, window time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, counts: map[string]windowCount{}}
}

func (l *rateLimiter) allow(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := now.Truncate(l.window)
	c := l.counts[client]
	if !c.start.Equal(start) {
		c = windowCount{start: start}
	}
	c.n++
	l.counts[client] = c
	return c.n <= l.limit
}

func (l *rateLimiter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts = map[string]windowCount{}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
