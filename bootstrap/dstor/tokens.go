package dstor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// audience is both the aud and the iss of every dStor token.
const audience = "dstor.cloud"

// maxUnixSeconds (9999-12-31T23:59:59Z) bounds x-expiration so that any
// accepted value converts to a time exactly.
const maxUnixSeconds = 253402300799

// jwtHeader is the fixed, already encoded header of every token.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// tokenClaims is the payload of a dStor token, as decoded from dStor's own
// documentation example. The meaning of d, o, s and t is unknown; they are
// sent as dStor sends them.
type tokenClaims struct {
	D        bool    `json:"d"`
	O        bool    `json:"o"`
	S        bool    `json:"s"`
	T        *string `json:"t"`
	IssuedAt int64   `json:"iat"`
	Expires  int64   `json:"exp"`
	Audience string  `json:"aud"`
	Issuer   string  `json:"iss"`
	Subject  string  `json:"sub"`
}

// issuedToken is what the emulator remembers of a token for Objects. The
// token itself is not kept.
type issuedToken struct {
	fingerprint string
	account     string
	issuedAt    time.Time
	expiresAt   time.Time
	// expiration is the x-expiration header exactly as the client sent it.
	expiration string
}

func (t issuedToken) object(now time.Time) sandbox.Object {
	return sandbox.TokenObject("temp_token", t.fingerprint, t.account, t.expiresAt, now,
		map[string]any{"issued_at": t.issuedAt, "x_expiration": t.expiration})
}

// issueToken is GET /v1/dev/temp-token. Only the api-key header is read:
// the reference says to send it, and x-api-key (named by one older doc) is
// not accepted, so a client sending the wrong header fails here as it may
// at dStor.
func (e *Emulator) issueToken(w http.ResponseWriter, r *http.Request) {
	now := e.now().UTC()
	e.mu.Lock()
	defer e.mu.Unlock()
	key, ok := e.keys[r.Header.Get("api-key")]
	if !ok || key.Disabled {
		writeMessage(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	raw := r.Header.Get("x-expiration")
	expires, err := parseExpiration(raw, now)
	if err != nil {
		writeMessage(w, http.StatusBadRequest, err.Error())
		return
	}
	token := e.sign(tokenClaims{IssuedAt: now.Unix(), Expires: expires.Unix(), Audience: audience, Issuer: audience, Subject: key.Account})
	e.tokens = append(e.tokens, issuedToken{fingerprint: fingerprint(token), account: key.Account, issuedAt: now, expiresAt: expires, expiration: raw})
	writeJSON(w, http.StatusOK, map[string]string{"access_token": token})
}

// parseExpiration reads x-expiration: absolute unix seconds, integer or
// float (clients send both), defaulting to one year from now.
func parseExpiration(raw string, now time.Time) (time.Time, error) {
	if raw == "" {
		return now.Add(defaultTokenLifetime).Truncate(time.Second), nil
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs > maxUnixSeconds {
		return time.Time{}, fmt.Errorf("x-expiration must be a unix timestamp in seconds, got %q", raw)
	}
	expires := time.Unix(int64(secs), 0).UTC()
	if !expires.After(now) {
		return time.Time{}, fmt.Errorf("x-expiration %q is in the past", raw)
	}
	return expires, nil
}

// uploadStatus is GET /v1/upload/get-status/, standing in for every route
// that takes a token: a valid, unexpired token gets 200, anything else 401.
func (e *Emulator) uploadStatus(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	claims, ok := e.verify(token, e.now())
	if !strings.EqualFold(scheme, "Bearer") || !ok {
		writeMessage(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": "ok", "account": claims.Subject, "uploads": []any{}})
}

func (e *Emulator) sign(c tokenClaims) string {
	payload, err := json.Marshal(c)
	if err != nil {
		panic(err) // a struct of plain fields always encodes
	}
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(e.mac(signed))
}

func (e *Emulator) mac(signed string) []byte {
	m := hmac.New(sha256.New, e.signingKey)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// verify checks a token's signature and expiry. It looks at no state: like
// dStor's, the tokens are stateless.
func (e *Emulator) verify(token string, now time.Time) (tokenClaims, bool) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return c, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, e.mac(parts[0]+"."+parts[1])) {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, false
	}
	return c, now.Unix() < c.Expires
}

// fingerprint names a token in Objects without revealing it.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}
