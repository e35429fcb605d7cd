package dstor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for dStor's response parsers (error bodies, the token
// answer, the JWT claims) and its config validation. `go test` runs only the
// seeds and testdata/fuzz; run one target for longer with
//
//	go test -run '^$' -fuzz '^FuzzReadClaims$' -fuzztime 60s ./backend/dstor/

// fuzzJWT builds a token with the given payload the way dStor's look:
// base64url without padding, an HS256 header and an opaque signature.
func fuzzJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

// The payload decoded from the reference's example token (section 2.3).
const fuzzPayload = `{"d":false,"o":false,"s":false,"t":null,"iat":1632788837,"exp":1632792437,"aud":"dstor.cloud","iss":"dstor.cloud","sub":"0f8fad5b-d9cb-469f-a165-70867728950e"}`

// FuzzUpstreamError: dStor's undocumented error bodies ("message" as a
// string or a list, "error", plain text) give a bounded one-line message;
// 401 and 403 wrap ErrRootRejected, 404 gives a base_url hint; the wait is
// only a 429's and never negative.
func FuzzUpstreamError(f *testing.F) {
	f.Add(401, "application/json", []byte(`{"message":"Unauthorized"}`), "")
	f.Add(403, "application/json", []byte(`{"error":"invalid api key"}`), "")
	f.Add(400, "application/json", []byte(`{"statusCode":400,"message":"bad x-expiration","error":"Bad Request"}`), "")
	f.Add(400, "application/json", []byte(`{"message":["a must be set","b too"]}`), "")
	f.Add(400, "application/json", []byte(`{"message":{"k":1},"error":"e"}`), "")
	f.Add(404, "text/plain; charset=utf-8", []byte("404 page not found\n"), "")
	f.Add(503, "", []byte("upstream  down"), "")
	f.Add(502, "text/html", []byte("<html>bad gateway</html>"), "")
	f.Add(429, "application/json", []byte(`{"message":"Too Many Requests"}`), "30")
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte, retryAfter string) {
		timeNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
		defer func() { timeNow = time.Now }()
		h := http.Header{"Retry-After": {retryAfter}}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		ue := statusError("mint access token vault-app-x", &provider.Response{Status: status, Header: h, Body: body})
		if ue.Provider != Name || ue.Status != status || ue.Code != "" {
			t.Fatalf("got %#v", ue)
		}
		if !testutil.CleanText(ue.Message) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(ue.Message), ue.Message)
		}
		rejected := status == http.StatusUnauthorized || status == http.StatusForbidden
		if errors.Is(ue, provider.ErrRootRejected) != rejected || (status == http.StatusNotFound) != strings.Contains(ue.Error(), "base_url") {
			t.Fatalf("status %d: %v", status, ue)
		}
		if ue.RetryAfter != 0 && status != http.StatusTooManyRequests {
			t.Fatalf("a %d carries a wait of %s", status, ue.RetryAfter)
		}
		if json.Valid(body) && strings.HasPrefix(strings.TrimSpace(string(body)), "{") {
			var probe map[string]json.RawMessage
			named := func(name string) bool { // encoding/json matches keys without case
				for k := range probe {
					if strings.EqualFold(k, name) {
						return true
					}
				}
				return false
			}
			if json.Unmarshal(body, &probe) == nil && !named("message") && !named("error") && ue.Message != "" {
				t.Fatalf("a JSON body without message or error gave %q", ue.Message)
			}
		}
		if ue.RetryAfter < 0 {
			t.Fatalf("a 429 with Retry-After %q reads as a negative wait %s ", retryAfter, ue.RetryAfter)
		}
	})
}

// FuzzReadClaims: the claims of a JWT built from any sub, iat and exp read
// back exactly (with or without base64 padding); anything else yields no
// claims rather than a panic; the expiry is exp in whole seconds, or the
// expiry asked for.
func FuzzReadClaims(f *testing.F) {
	f.Add(fuzzJWT(fuzzPayload), "0f8fad5b-d9cb-469f-a165-70867728950e", 1632788837.0, 1632792437.0, true)
	f.Add(fuzzJWT(`{"exp":1632792437.9}`), "", 0.0, 1.5, false)
	f.Add(fuzzJWT(`{"exp":"1632792437"}`), "x", 0.0, 0.0, true)
	f.Add(fuzzJWT(`{"sub":1}`), "", -1.0, -1.0, true)
	f.Add("not-a-jwt", "", 0.0, 1e300, true)
	f.Add("a.b.c.d", "", 0.0, 9.3e18, true)
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30=.c2ln", "", 0.0, 0.0, false)
	f.Fuzz(func(t *testing.T, token, sub string, iat, exp float64, withIat bool) {
		requested := time.Date(2026, 1, 1, 12, 0, 0, 500, time.UTC)
		c := readClaims(token)
		if c.ExpiresAt == nil {
			if got := tokenExpiry(c, requested); !got.Equal(requested.Truncate(time.Second)) {
				t.Fatalf("no exp: expiry %s, want %s", got, requested.Truncate(time.Second))
			}
		} else if exp := *c.ExpiresAt; math.Abs(exp) < 1<<62 && !tokenExpiry(c, requested).Equal(time.Unix(int64(exp), 0)) {
			t.Fatalf("exp %v read as %s", exp, tokenExpiry(c, requested))
		}
		ref := c.ref(tokenExpiry(c, requested))
		if ref[refExpiresAt] == "" || strings.Contains(ref[refSubject]+ref[refIssuedAt], token) && len(token) > 8 {
			t.Fatalf("ref %v for token %q", ref, token)
		}
		// Round trip.
		if math.IsNaN(iat) || math.IsInf(iat, 0) || math.IsNaN(exp) || math.IsInf(exp, 0) {
			return
		}
		claims := map[string]any{"sub": sub, "exp": exp, "aud": "dstor.cloud"}
		if withIat {
			claims["iat"] = iat
		}
		payload, err := json.Marshal(claims)
		if err != nil {
			t.Fatal(err)
		}
		jwt := fuzzJWT(string(payload))
		parts := strings.Split(jwt, ".")
		padded := parts[0] + "." + base64.URLEncoding.EncodeToString(payload) + "." + parts[2]
		for _, tok := range []string{jwt, padded} {
			got := readClaims(tok)
			var wantSub string
			_ = json.Unmarshal(mustJSON(t, sub), &wantSub)
			if got.Subject != wantSub || got.ExpiresAt == nil || *got.ExpiresAt != exp || (got.IssuedAt != nil) != withIat || (withIat && *got.IssuedAt != iat) {
				t.Fatalf("claims of %s read as %+v", payload, got)
			}
		}
		if expiry := tokenExpiry(readClaims(jwt), requested); exp >= 0 && exp < 1<<40 && expiry.After(time.Unix(int64(math.Ceil(exp)), 0)) {
			t.Fatalf("exp %v gives a lease until %s, after the token's end", exp, expiry)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzConnect: api_key is required and may hold no spaces or control
// characters; refusals wrap ErrInvalidInput and do not depend on the key.
func FuzzConnect(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	f.Add("")
	f.Add("has space")
	f.Add("tab\tkey")
	f.Add("nbsp\u00a0key")
	f.Add("key\u0085")
	f.Fuzz(func(t *testing.T, key string) {
		connect := func(key string) error {
			_, err := Provider{}.Connect(provider.ConnectionConfig{Name: "d", BaseURL: Provider{}.DefaultBaseURL(), Values: provider.Values{fieldAPIKey: key}})
			return err
		}
		err, errRot := connect(key), connect(testutil.Rot(key))
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on the key: %v / %v", err, errRot)
		}
		want := key != "" && !strings.ContainsFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
		if (err == nil) != want {
			t.Fatalf("Connect(%q) = %v, want ok=%v", key, err, want)
		}
		if err != nil && !errors.Is(err, provider.ErrInvalidInput) {
			t.Fatalf("error without ErrInvalidInput: %v", err)
		}
		if err := (Provider{}).ValidateRole(provider.Values{"anything": key}); err != nil {
			t.Fatalf("dStor has no role fields, yet ValidateRole refused: %v", err)
		}
	})
}

// fuzzUpstream answers GET /dev/temp-token with the fuzzed answer on its
// fuzzAt-th call and a good token otherwise.
type fuzzUpstream struct {
	calls  int
	fuzzAt int
	status int
	header http.Header
	body   string
	good   string
}

func (u *fuzzUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	i := u.calls
	u.calls++
	status, header, body := http.StatusOK, http.Header{"Content-Type": {"application/json"}}, u.good
	if i == u.fuzzAt {
		status, header, body = u.status, u.header, u.body
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

// FuzzIssueResponse mints a token against a fuzzed answer (status,
// Content-Type, Retry-After, body). Whatever the answer: no panic; an error
// never carries the API key; an issued token is the body's access_token,
// expires in the future and no later than its exp claim, and the lease Ref
// does not hold it.
func FuzzIssueResponse(f *testing.F) {
	good := `{"access_token":"` + fuzzJWT(`{"d":false,"o":false,"s":false,"t":null,"iat":1767268800,"exp":1767355200,"aud":"dstor.cloud","iss":"dstor.cloud","sub":"0f8fad5b-d9cb-469f-a165-70867728950e"}`) + `"}`
	f.Add(uint8(0), 200, "application/json", "", []byte(good))
	f.Add(uint8(0), 200, "application/json", "", []byte(`{"access_token":"`+fuzzJWT(fuzzPayload)+`"}`))
	f.Add(uint8(0), 200, "application/json", "", []byte(`{"access_token":"opaque-token"}`))
	f.Add(uint8(0), 200, "application/json", "", []byte(`{"access_token":""}`))
	f.Add(uint8(0), 200, "text/html", "", []byte(`<html></html>`))
	f.Add(uint8(0), 401, "application/json", "", []byte(`{"message":"Unauthorized"}`))
	f.Add(uint8(0), 404, "text/plain", "", []byte("Cannot GET /dev/temp-token"))
	f.Add(uint8(0), 429, "application/json", "2", []byte(`{"message":"Too Many Requests"}`))
	f.Fuzz(func(t *testing.T, fuzzAt uint8, status int, contentType, retryAfter string, body []byte) {
		now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		if status < 100 || status > 999 {
			status = 200 + (status%100+100)%100
		}
		const apiKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		header := http.Header{}
		if contentType != "" {
			header.Set("Content-Type", contentType)
		}
		if retryAfter != "" {
			header.Set("Retry-After", retryAfter)
		}
		upstream := &fuzzUpstream{fuzzAt: int(fuzzAt % 2), status: status, header: header, body: string(body), good: good}
		pc, err := Provider{}.Connect(provider.ConnectionConfig{Name: "d", BaseURL: Provider{}.DefaultBaseURL(), HTTPClient: &http.Client{Transport: upstream},
			Values: provider.Values{fieldAPIKey: apiKey}})
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*connection)
		c.client.MaxAttempts, c.client.Gate = 1, nil // a retry or a wait at the gate would only sleep
		leaseEnd := now.Add(24 * time.Hour)
		cred, err := c.Issue(context.Background(), provider.IssueRequest{RoleName: "app", Name: "vault-app-x", TTL: time.Hour, ExpiresAt: leaseEnd})
		if err != nil {
			if strings.Contains(err.Error(), apiKey) && !strings.Contains(string(body), apiKey) {
				t.Fatalf("the error carries the API key: %v", err)
			}
			return
		}
		token, _ := cred.Data["access_token"].(string)
		var answer struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.Unmarshal([]byte(upstream.lastBody()), &answer)
		if token == "" || token != answer.AccessToken {
			t.Fatalf("issued token %q, answer %q", token, answer.AccessToken)
		}
		if !cred.ExpiresAt.After(now) || cred.Data["expires_at"] != provider.Timestamp(cred.ExpiresAt) {
			t.Fatalf("issued a token expiring %s (%v) at %s", cred.ExpiresAt, cred.Data["expires_at"], now)
		}
		if claims := readClaims(token); claims.ExpiresAt != nil && cred.ExpiresAt.After(time.Unix(int64(math.Ceil(*claims.ExpiresAt)), 0)) {
			t.Fatalf("lease until %s, after the token's exp %v", cred.ExpiresAt, *claims.ExpiresAt)
		} else if claims.ExpiresAt == nil && !cred.ExpiresAt.Equal(leaseEnd) {
			t.Fatalf("a token without exp leased until %s, not the lease end %s", cred.ExpiresAt, leaseEnd)
		}
		for k, v := range cred.Ref {
			if strings.Contains(v, token) || strings.Contains(v, apiKey) {
				t.Fatalf("lease Ref %s holds a secret", k)
			}
		}
	})
}

// lastBody is the body of the answer Issue read: the fuzzed one when it
// was the first call.
func (u *fuzzUpstream) lastBody() string {
	if u.fuzzAt == 0 {
		return u.body
	}
	return u.good
}
