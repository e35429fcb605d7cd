package storable

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for Storable's response parsers (API Gateway error bodies
// and headers, the token answer, x-token-created-at and
// x-token-lifetime-seconds) and its config validation. `go test` runs only
// the seeds and testdata/fuzz; run one target for longer with
//
//	go test -run '^$' -fuzz '^FuzzNewToken$' -fuzztime 60s ./backend/storable/

// Wire shapes from shared/reference/upstream-apis.md section 4.
const (
	fuzzCreatedAt = "Thu, 31 Jul 2025 17:31:46 GMT"
	fuzzJWT       = "eyJhbGciOiJSUzI1NiIsImtpZCI6Imp3ay0xIn0.eyJzdWIiOiJjbGllbnQifQ.c2lnbmF0dXJl"
	fuzzTokenBody = `{"access_token":"` + fuzzJWT + `","token_type":"bearer"}`
)

// FuzzUpstreamError: API Gateway's {"message"} or {"Message"}, its
// x-amzn-ErrorType header and plain text give a bounded one-line message; a
// 403 is the API key's fault unless it is the missing-route answer, a 401
// the client credentials'; the wait is only a 429's and never negative.
func FuzzUpstreamError(f *testing.F) {
	f.Add(403, "application/json", "ForbiddenException:http://internal.amazon.com/coral/com.amazon.coral.service/", []byte(`{"message":"Forbidden"}`), "")
	f.Add(403, "application/json", "MissingAuthenticationTokenException", []byte(`{"message":"Missing Authentication Token"}`), "")
	f.Add(401, "application/json", "UnauthorizedException", []byte(`{"message":"Unauthorized"}`), "")
	f.Add(429, "application/json", "TooManyRequestsException", []byte(`{"message":"Too Many Requests"}`), "")
	f.Add(429, "application/json", "LimitExceededException", []byte(`{"Message":"Limit Exceeded"}`), "60")
	f.Add(502, "text/plain", "", []byte("Bad Gateway\n"), "")
	f.Add(504, "text/html", "", []byte("<html>Gateway Timeout</html>"), "")
	f.Add(500, "", "", []byte(""), "")
	f.Fuzz(func(t *testing.T, status int, contentType, errorType string, body []byte, retryAfter string) {
		timeNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
		defer func() { timeNow = time.Now }()
		// Go's HTTP client delivers no header value with a line break or
		// another control character.
		if strings.ContainsFunc(errorType+retryAfter+contentType, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
			return
		}
		h := http.Header{"Retry-After": {retryAfter}, "X-Amzn-Errortype": {errorType}}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		ue := statusError(c0.fetchOp(), &provider.Response{Status: status, Header: h, Body: body})
		if ue.Provider != Name || ue.Status != status || strings.Contains(ue.Code, ":") {
			t.Fatalf("got %#v", ue)
		}
		if !testutil.CleanText(ue.Message) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(ue.Message), ue.Message)
		}
		rejected := status == http.StatusUnauthorized || (status == http.StatusForbidden && ue.Message != missingRouteMessage)
		if errors.Is(ue, provider.ErrRootRejected) != rejected {
			t.Fatalf("status %d, message %q: %v", status, ue.Message, ue)
		}
		if ue.RetryAfter != 0 && status != http.StatusTooManyRequests {
			t.Fatalf("a %d carries a wait of %s", status, ue.RetryAfter)
		}
		if ue.RetryAfter < 0 {
			t.Fatalf("a 429 with Retry-After %q reads as a negative wait %s ", retryAfter, ue.RetryAfter)
		}
		if !testutil.CleanText(ue.Code) {
			t.Fatalf("the x-amzn-ErrorType header is used as the code unbounded and uncleaned (%d bytes): %.60q", len(ue.Code), ue.Code)
		}
	})
}

// c0 is a connection for its fetchOp text.
var c0 = &connection{clientID: "client-id"}

// FuzzNewToken: the token's life comes from x-token-created-at and
// x-token-lifetime-seconds. Its creation is never later than the answer's
// arrival; a positive lifetime is taken as given, anything else is the
// documented 90 minutes and flagged; the lifetime is never negative; leases
// end a margin before the token; covers never promises past that end.
func FuzzNewToken(f *testing.F) {
	received := time.Date(2025, 7, 31, 17, 31, 47, 250, time.UTC).Unix()
	f.Add(fuzzCreatedAt, "5400", "bearer", received, int64(3600))
	f.Add(fuzzCreatedAt, "", "", received, int64(0))
	f.Add("", " 5400 ", "Bearer", received, int64(5400))
	f.Add("Thu, 31 Jul 2025 18:31:46 GMT", "5400", "bearer", received, int64(60))
	f.Add("Thursday, 31-Jul-25 17:31:46 GMT", "60", "bearer", received, int64(1))
	f.Add("1753983106", "-5", "bearer", received, int64(-1))
	f.Add(fuzzCreatedAt, "5400.5", "bearer", received, int64(9000))
	f.Fuzz(func(t *testing.T, createdAt, lifetime, tokenType string, receivedUnix, ttlSecs int64) {
		receivedAt := time.Unix(receivedUnix%(1<<36), 250)
		h := http.Header{}
		if createdAt != "" {
			h.Set("X-Token-Created-At", createdAt)
		}
		if lifetime != "" {
			h.Set("X-Token-Lifetime-Seconds", lifetime)
		}
		tok := newToken(fuzzJWT, tokenType, h, receivedAt)
		if tok.createdAt.After(receivedAt) {
			t.Fatalf("created at %s, after the answer arrived at %s", tok.createdAt, receivedAt)
		}
		if created, err := http.ParseTime(createdAt); err == nil && created.Before(receivedAt.Truncate(time.Second)) && !tok.createdAt.Equal(created) {
			t.Fatalf("x-token-created-at %q read as %s", createdAt, tok.createdAt)
		}
		if tok.tokenType == "" || (tokenType != "" && tok.tokenType != tokenType) || tok.value != fuzzJWT {
			t.Fatalf("token %#v", tok)
		}
		secs, err := strconv.Atoi(strings.TrimSpace(lifetime))
		switch {
		case err != nil || secs <= 0:
			if tok.lifetime != defaultLifetime || !tok.assumedLifetime {
				t.Fatalf("lifetime %q read as %s (assumed %t)", lifetime, tok.lifetime, tok.assumedLifetime)
			}
		case secs >= int(maxLifetime/time.Second):
			if tok.lifetime != maxLifetime || tok.assumedLifetime {
				t.Fatalf("lifetime %q read as %s (assumed %t), want the cap %s", lifetime, tok.lifetime, tok.assumedLifetime, maxLifetime)
			}
		default:
			if tok.lifetime != time.Duration(secs)*time.Second || tok.assumedLifetime {
				t.Fatalf("lifetime %q read as %s (assumed %t)", lifetime, tok.lifetime, tok.assumedLifetime)
			}
		}
		if tok.lifetime <= 0 {
			t.Fatalf("lifetime %s", tok.lifetime)
		}
		until := tok.usableUntil()
		if !until.Equal(tok.createdAt.Add(tok.lifetime).Add(-safetyMargin)) {
			t.Fatalf("usable until %s", until)
		}
		// Tokens whose usable life is already over are never cached, and a
		// lease TTL is never negative.
		if tok.lifetime <= safetyMargin {
			return
		}
		ttl := time.Duration(max(ttlSecs%(1<<33), -ttlSecs%(1<<33))) * time.Second
		for _, now := range []time.Time{receivedAt, until.Add(-ttl), until.Add(-time.Second)} {
			if tok.covers(now, ttl) && !now.Before(until) {
				t.Fatalf("covers(%s, %s) with the token usable until %s", now, ttl, until)
			}
			if tok.covers(now, ttl) && ttl > 0 && now.Add(min(ttl, (tok.lifetime-safetyMargin)*9/10)).After(until) {
				t.Fatalf("covers(%s, %s) although the lease would outlive %s", now, ttl, until)
			}
		}
	})
}

// FuzzConnect: client_id, client_secret and api_key are required and free
// of control characters, client_id and api_key of spaces too, and client_id
// of ':'; refusals wrap ErrInvalidInput and do not depend on the secret or
// the API key.
func FuzzConnect(f *testing.F) {
	f.Add("client-id", "client secret with spaces", "0123456789012345678901234567890123456789")
	f.Add("", "s", "k")
	f.Add("client:id", "s", "k")
	f.Add("client id", "s", "k")
	f.Add("client-id", "s\n", "k")
	f.Add("client-id", "s", "k k")
	f.Add("client-id", "", "k")
	f.Fuzz(func(t *testing.T, clientID, secret, apiKey string) {
		connect := func(secret, apiKey string) error {
			_, err := Provider{}.Connect(provider.ConnectionConfig{Name: "s", BaseURL: Provider{}.DefaultBaseURL(), Values: provider.Values{
				fieldClientID: clientID, fieldClientSecret: secret, fieldAPIKey: apiKey}})
			return err
		}
		err, errRot := connect(secret, apiKey), connect(testutil.Rot(secret), testutil.Rot(apiKey))
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on a secret: %v / %v", err, errRot)
		}
		ctl := func(s string) bool { return strings.ContainsFunc(s, unicode.IsControl) }
		space := func(s string) bool { return strings.ContainsFunc(s, unicode.IsSpace) }
		want := clientID != "" && secret != "" && apiKey != "" && !ctl(clientID) && !ctl(secret) && !ctl(apiKey) &&
			!space(clientID) && !space(apiKey) && !strings.Contains(clientID, ":")
		if (err == nil) != want {
			t.Fatalf("Connect(%q, %q, %q) = %v, want ok=%v", clientID, secret, apiKey, err, want)
		}
		if err != nil && !errors.Is(err, provider.ErrInvalidInput) {
			t.Fatalf("error without ErrInvalidInput: %v", err)
		}
		if err := (Provider{}).ValidateRole(provider.Values{"anything": secret}); err != nil {
			t.Fatalf("Storable has no role fields, yet ValidateRole refused: %v", err)
		}
	})
}

// fuzzUpstream answers POST /auth/token with the fuzzed answer on its
// fuzzAt-th call and a good token otherwise.
type fuzzUpstream struct {
	calls  int
	fuzzAt int
	status int
	header http.Header
	body   string
	now    func() time.Time
}

func (u *fuzzUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	i := u.calls
	u.calls++
	status, body := http.StatusOK, fuzzTokenBody
	header := http.Header{"Content-Type": {"application/json"}, "X-Token-Created-At": {u.now().UTC().Format(http.TimeFormat)}, "X-Token-Lifetime-Seconds": {"5400"}}
	if i == u.fuzzAt {
		status, header, body = u.status, u.header, u.body
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

// FuzzIssueResponse issues a lease against a fuzzed token answer (status,
// Content-Type, x-token-created-at, x-token-lifetime-seconds,
// x-amzn-ErrorType, body). Whatever the answer: no panic; an error never
// carries the client secret or the API key; an issued token is the body's,
// leased until a margin before its end and in the future, and the lease Ref
// only fingerprints it.
func FuzzIssueResponse(f *testing.F) {
	f.Add(uint8(0), 200, "application/json", "Wed, 31 Dec 2025 23:59:00 GMT", "5400", "", []byte(fuzzTokenBody), int64(3600))
	f.Add(uint8(0), 200, "application/json", "", "", "", []byte(fuzzTokenBody), int64(3600))
	f.Add(uint8(0), 200, "application/json", "Wed, 31 Dec 2025 22:30:00 GMT", "5400", "", []byte(fuzzTokenBody), int64(60))
	f.Add(uint8(0), 200, "application/json", "", "30", "", []byte(fuzzTokenBody), int64(60))
	f.Add(uint8(0), 200, "application/json", "", "", "", []byte(`{"access_token":""}`), int64(60))
	f.Add(uint8(0), 200, "application/json", "", "", "", []byte(`{"access_token":"t"}`), int64(60))
	f.Add(uint8(0), 403, "application/json", "", "", "ForbiddenException", []byte(`{"message":"Forbidden"}`), int64(60))
	f.Add(uint8(0), 403, "application/json", "", "", "MissingAuthenticationTokenException", []byte(`{"message":"Missing Authentication Token"}`), int64(60))
	f.Add(uint8(0), 401, "application/json", "", "", "UnauthorizedException", []byte(`{"message":"Unauthorized"}`), int64(60))
	f.Add(uint8(1), 200, "application/json", "", "600", "", []byte(fuzzTokenBody), int64(7200))
	f.Fuzz(func(t *testing.T, fuzzAt uint8, status int, contentType, createdAt, lifetime, errorType string, body []byte, ttlSecs int64) {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		if status < 100 || status > 999 {
			status = 200 + (status%100+100)%100
		}
		const secret, apiKey = "client secret 0123", "0123456789012345678901234567890123456789"
		header := http.Header{}
		for k, v := range map[string]string{"Content-Type": contentType, "X-Token-Created-At": createdAt, "X-Token-Lifetime-Seconds": lifetime, "X-Amzn-Errortype": errorType} {
			if v != "" {
				header.Set(k, v)
			}
		}
		upstream := &fuzzUpstream{fuzzAt: int(fuzzAt % 2), status: status, header: header, body: string(body), now: func() time.Time { return now }}
		pc, err := Provider{}.Connect(provider.ConnectionConfig{Name: "s", BaseURL: Provider{}.DefaultBaseURL(), HTTPClient: &http.Client{Transport: upstream},
			Values: provider.Values{fieldClientID: "client-id", fieldClientSecret: secret, fieldAPIKey: apiKey}})
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*connection)
		c.client.MaxAttempts, c.client.Gate = 1, nil // a retry or a wait at the gate would only sleep
		ttl := time.Duration(max(ttlSecs%(1<<33), -ttlSecs%(1<<33))) * time.Second
		// Two leases: the second either reuses the cached token or fetches.
		for i := 0; i < 2; i++ {
			cred, err := c.Issue(context.Background(), provider.IssueRequest{RoleName: "app", Name: "vault-app-x", TTL: ttl})
			if err != nil {
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), apiKey) {
					if !strings.Contains(string(body)+errorType, secret) && !strings.Contains(string(body)+errorType, apiKey) {
						t.Fatalf("the error carries a secret: %v", err)
					}
				}
				continue
			}
			token, _ := cred.Data["access_token"].(string)
			if token == "" || cred.Data["token_type"] == "" || !cred.ExpiresAt.After(now) || cred.Data["expires_at"] != provider.Timestamp(cred.ExpiresAt) {
				t.Fatalf("issued %#v until %s", cred.Data, cred.ExpiresAt)
			}
			var answer struct {
				AccessToken string `json:"access_token"`
			}
			if json.Unmarshal(body, &answer) != nil || answer.AccessToken != token {
				if json.Unmarshal([]byte(fuzzTokenBody), &answer); answer.AccessToken != token {
					t.Fatalf("issued token %q is not an answer's", token)
				}
			}
			if cached := c.currentToken(); cached == nil || cached.value != token || !cred.ExpiresAt.Equal(cached.usableUntil()) {
				t.Fatalf("lease until %s, cached token %+v", cred.ExpiresAt, cached)
			}
			// The lease Ref holds a fingerprint and two timestamps, never
			// the token.
			sum := sha256.Sum256([]byte(token))
			_, errCreated := time.Parse(time.RFC3339, cred.Ref[refCreatedAt])
			_, errExpires := time.Parse(time.RFC3339, cred.Ref[refExpiresAt])
			if len(cred.Ref) != 3 || cred.Ref[refTokenID] != hex.EncodeToString(sum[:8]) || errCreated != nil || errExpires != nil {
				t.Fatalf("lease Ref %v", cred.Ref)
			}
		}
	})
}
