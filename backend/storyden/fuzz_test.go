package storyden

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for Storyden's response parsers and its config and role
// validation. `go test` runs only the seeds and testdata/fuzz; run one
// target for longer with
//
//	go test -run '^$' -fuzz '^FuzzUpstreamError$' -fuzztime 60s ./backend/storyden/

// Wire shapes from shared/reference/upstream-apis.md section 5.
const (
	fuzzProblem   = `{"type":"urn:storyden:problem:unauthenticated","title":"The provided password did not match the account.","detail":"internal chain","trace_id":"unknown"}`
	fuzzLegacy    = `{"error":"internal: bad","message":"Password is too short","metadata":{"k":"v"}}`
	fuzzIssued    = `{"id":"cc5lnd2s1s4652adtu50","createdAt":"2026-01-01T00:00:00Z","updatedAt":"0001-01-01T00:00:00Z","enabled":false,"name":"vault-app-x","expires_at":"2026-01-02T00:00:00Z","secret":"sdpak_abcdefghijklABCDEFGHIJKLMNOPQRSTUVWXYZ012345"}`
	fuzzKeyList   = `{"keys":[{"id":"cc5lnd2s1s4652adtu50","createdAt":"2026-01-01T00:00:00Z","enabled":true,"name":"vault-app-x","expires_at":"2026-01-02T00:00:00Z"},{"id":"cc5lnd2s1s4652adtu51","createdAt":"2026-01-01T00:00:00Z","enabled":false,"name":"vault-app-y"}]}`
	fuzzSetCookie = "storyden-session=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG; Path=/; Domain=forum.example.com; Expires=Wed, 01 Apr 2026 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax"
)

// FuzzUpstreamError: Storyden's RFC 7807, legacy and plain-text error
// bodies give a bounded one-line message, the status, a code only from a
// problem type, and a wait only for a 429 that is never negative.
func FuzzUpstreamError(f *testing.F) {
	f.Add(401, "application/problem+json", []byte(fuzzProblem), "")
	f.Add(404, "application/problem+json", []byte(`{"type":"urn:storyden:problem:not-found","title":"not found","trace_id":"x"}`), "")
	f.Add(400, "application/problem+json", []byte(`{"title":"Something","trace_id":"x"}`), "")
	f.Add(400, "application/json", []byte(fuzzLegacy), "")
	f.Add(404, "application/json", []byte(`{"error":"not found"}`), "")
	f.Add(429, "text/plain; charset=utf-8", []byte("Too Many Requests\n"), "Thu, 01 Jan 2026 00:01:00 GMT")
	f.Add(429, "text/plain; charset=utf-8", []byte("Too Many Requests\n"), "30")
	f.Add(502, "text/html", []byte("<html>Bad Gateway</html>"), "")
	f.Add(500, "", []byte(""), "")
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte, retryAfter string) {
		timeNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
		defer func() { timeNow = time.Now }()
		h := http.Header{"Content-Type": {contentType}, "Retry-After": {retryAfter}}
		ue := upstreamError("create access key vault-app-x", &provider.Response{Status: status, Header: h, Body: body})
		if ue.Provider != Name || ue.Status != status || ue.Err != nil {
			t.Fatalf("got %#v", ue)
		}
		if !testutil.CleanText(ue.Message) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(ue.Message), ue.Message)
		}
		if ue.RetryAfter != 0 && status != http.StatusTooManyRequests {
			t.Fatalf("a %d carries a wait of %s", status, ue.RetryAfter)
		}
		var problem struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &problem) != nil && ue.Code != "" {
			t.Fatalf("code %q from a body that is not JSON", ue.Code)
		}
		if ue.RetryAfter < 0 {
			t.Fatalf("a 429 with Retry-After %q reads as a negative wait %s ", retryAfter, ue.RetryAfter)
		}
		if !testutil.CleanText(ue.Code) {
			t.Fatalf("the problem type becomes the code unbounded and uncleaned (%d bytes): %.60q", len(ue.Code), ue.Code)
		}
	})
}

// FuzzCookieValue: the session is read only from a storyden-session cookie
// of Set-Cookie, a value that can be sent back in a Cookie header, and a
// well-formed cookie round-trips.
func FuzzCookieValue(f *testing.F) {
	f.Add("other=1; Path=/\n"+fuzzSetCookie, "abc123")
	f.Add("storyden-session=; Max-Age=0", "x")
	f.Add(`storyden-session="quoted"; Path=/`, "y")
	f.Add("storyden-session=a;b\nstoryden-session=second", "z")
	f.Add("Storyden-Session=case; Path=/", "w")
	f.Fuzz(func(t *testing.T, lines, value string) {
		h := http.Header{}
		for _, line := range strings.Split(lines, "\n") {
			h.Add("Set-Cookie", line)
		}
		got := provider.CookieValue(h, sessionCookie)
		if got != "" {
			if strings.ContainsAny(got, ";\"\\") || strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
				t.Fatalf("session %q cannot be sent back in a Cookie header", got)
			}
			if !strings.Contains(lines, sessionCookie+"=") {
				t.Fatalf("session %q read without a %s cookie in %q", got, sessionCookie, lines)
			}
		}
		// A cookie as Storyden sets it, first, round-trips.
		ck := &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
		if ck.Valid() != nil || value == "" || strings.ContainsAny(value, " ,") {
			return
		}
		h = http.Header{"Set-Cookie": {ck.String()}}
		for _, line := range strings.Split(lines, "\n") {
			h.Add("Set-Cookie", line)
		}
		if got := provider.CookieValue(h, sessionCookie); got != value {
			t.Fatalf("Set-Cookie %q read as %q", ck.String(), got)
		}
	})
}

// FuzzConnect: a connection is refused, with ErrInvalidInput and a message
// that does not depend on the password, unless it has a base_url without
// /api, a username and a password of at least 8 characters.
func FuzzConnect(f *testing.F) {
	f.Add("https://forum.example.com", "vault-bot", "correct-horse-battery")
	f.Add("https://forum.example.com/api", "vault-bot", "correct-horse-battery")
	f.Add("https://forum.example.com", "", "12345678")
	f.Add("https://forum.example.com", "u", "1234567")
	f.Add("http://127.0.0.1:8000", "admin", "ünïcödé")
	f.Fuzz(func(t *testing.T, baseURL, username, password string) {
		connect := func(password string) (provider.Connection, error) {
			return Provider{}.Connect(provider.ConnectionConfig{Name: "forum", BaseURL: baseURL, Values: provider.Values{fieldUsername: username, fieldPassword: password}})
		}
		conn, err := connect(password)
		_, errRot := connect(testutil.Rot(password))
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on the password: %v / %v", err, errRot)
		}
		want := !strings.HasSuffix(baseURL, "/api") && username != "" && len(password) >= minPasswordLen
		if (err == nil) != want {
			t.Fatalf("Connect(%q, %q, %d-byte password) = %v, want ok=%v", baseURL, username, len(password), err, want)
		}
		if err != nil {
			if !errors.Is(err, provider.ErrInvalidInput) {
				t.Fatalf("error without ErrInvalidInput: %v", err)
			}
			return
		}
		conn.Close()
	})
}

// FuzzValidateRole: key_name_prefix is empty or 1 to 32 letters, digits,
// '-' or '_' starting with a letter or digit; refusals wrap ErrInvalidInput.
func FuzzValidateRole(f *testing.F) {
	for _, s := range []string{"", "vault", "ci_bot-1", "-x", "has space", strings.Repeat("a", 32), strings.Repeat("a", 33), "a\n", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		err := Provider{}.ValidateRole(provider.Values{fieldKeyNamePrefix: prefix})
		want := prefix == "" || (len(prefix) <= 32 && isAlnum(prefix[0]) && strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == "")
		if (err == nil) != want {
			t.Fatalf("ValidateRole(%q) = %v, want ok=%v", prefix, err, want)
		}
		if err != nil && !errors.Is(err, provider.ErrInvalidInput) {
			t.Fatalf("error without ErrInvalidInput: %v", err)
		}
	})
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

const (
	fuzzUser     = "vault-bot"
	fuzzPassword = "correct-horse-battery-staple"
	fuzzSession  = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// fuzzAnswer answers like Storyden.
func fuzzAnswer(req *http.Request) testutil.Answer {
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	route := req.Method + " " + req.URL.Path
	switch {
	case route == "POST /api/auth/password/signin":
		return testutil.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {strings.Replace(fuzzSetCookie, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", fuzzSession, 1)}}, Body: `{"id":"cc5lnd2s1s4652adtu4g"}`}
	case route == "GET /api/accounts":
		return testutil.Answer{Status: 200, Header: jsonHeader, Body: `{"id":"cc5lnd2s1s4652adtu4g","handle":"vault-bot","admin":true}`}
	case route == "GET /api/auth/access-keys":
		return testutil.Answer{Status: 200, Header: jsonHeader, Body: fuzzKeyList}
	case route == "POST /api/auth/access-keys":
		return testutil.Answer{Status: 200, Header: jsonHeader, Body: fuzzIssued}
	case req.Method == http.MethodDelete:
		return testutil.Answer{Status: 204}
	case route == "PATCH /api/auth/password":
		return testutil.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"storyden-session=rotatedsession0123456789; Path=/; Secure"}}, Body: `{"id":"cc5lnd2s1s4652adtu4g"}`}
	}
	return testutil.Answer{Status: 404, Header: jsonHeader, Body: `{"type":"urn:storyden:problem:not-found","title":"not found"}`}
}

// FuzzUpstreamResponses runs one connection operation against a Storyden
// whose fuzzAt-th answer is fuzzed (status, Content-Type, Set-Cookie,
// Retry-After and body). Whatever the answer: no panic; an error never
// carries the password or the session unless the fuzzed answer did; an
// issued key has an id, a secret, an expiry in the future and a lease Ref
// without the secret; a listing holds only live keys.
func FuzzUpstreamResponses(f *testing.F) {
	// op: 0 Verify, 1 Issue, 2 ListObjects, 3 Revoke, 4 Rollback, 5 RotateRoot.
	f.Add(uint8(1), uint8(0), 200, "application/json", "storyden-session=fresh; Path=/; Secure", "", []byte(`{"id":"x"}`))
	f.Add(uint8(1), uint8(0), 401, "application/problem+json", "", "", []byte(fuzzProblem))
	f.Add(uint8(1), uint8(0), 200, "application/json", "", "", []byte(`{"id":"x"}`))
	f.Add(uint8(1), uint8(1), 200, "application/json", "", "", []byte(fuzzIssued))
	f.Add(uint8(1), uint8(1), 403, "application/json", "", "", []byte(fuzzLegacy))
	f.Add(uint8(1), uint8(1), 429, "text/plain; charset=utf-8", "", "Thu, 01 Jan 2026 00:01:00 GMT", []byte("Too Many Requests\n"))
	f.Add(uint8(0), uint8(2), 403, "application/problem+json", "", "", []byte(`{"type":"urn:storyden:problem:permission-denied","title":"no"}`))
	f.Add(uint8(2), uint8(1), 200, "application/json", "", "", []byte(fuzzKeyList))
	f.Add(uint8(2), uint8(1), 200, "application/json", "", "", []byte(`{"keys":[{"id":"a","enabled":true,"createdAt":"x"}]}`))
	f.Add(uint8(3), uint8(1), 404, "application/problem+json", "", "", []byte(`{"type":"urn:storyden:problem:not-found","title":"not found"}`))
	f.Add(uint8(3), uint8(1), 500, "", "", "", []byte(`{"error":"`+fuzzPassword+`"}`))
	f.Add(uint8(4), uint8(1), 200, "application/json", "", "", []byte(`{"keys":[{"id":"a/../b","name":"vault-app-x","enabled":true}]}`))
	f.Add(uint8(5), uint8(1), 200, "application/json", "storyden-session=new; Path=/", "", []byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, op, fuzzAt uint8, status int, contentType, setCookie, retryAfter string, body []byte) {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		if status < 100 || status > 999 {
			status = 200 + (status%100+100)%100
		}
		header := http.Header{}
		for k, v := range map[string]string{"Content-Type": contentType, "Set-Cookie": setCookie, "Retry-After": retryAfter} {
			if v != "" {
				header.Set(k, v)
			}
		}
		upstream := &testutil.FuzzTransport{Script: fuzzAnswer, FuzzAt: int(fuzzAt % 6), Fuzzed: testutil.Answer{Status: status, Header: header, Body: string(body)}}
		pc, err := Provider{}.Connect(provider.ConnectionConfig{Name: "forum", BaseURL: "https://forum.example.com",
			Values: provider.Values{fieldUsername: fuzzUser, fieldPassword: fuzzPassword}, HTTPClient: &http.Client{Transport: upstream}})
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*connection)
		c.client.MaxAttempts, c.client.Gate = 1, nil // a retry or a wait at the gate would only sleep
		ctx := context.Background()
		fuzzedText := setCookie + retryAfter + contentType + string(body)
		switch op % 6 {
		case 0:
			err = c.Verify(ctx)
		case 1:
			var cred *provider.Credential
			cred, err = c.Issue(ctx, provider.IssueRequest{RoleName: "app", Name: "vault-app-x", TTL: time.Hour, ExpiresAt: now.Add(24 * time.Hour)})
			if err == nil {
				checkIssued(t, cred, now)
			}
		case 2:
			var objects []provider.UpstreamObject
			objects, err = c.ListObjects(ctx, nil)
			for _, o := range objects {
				if o.Ref[refID] != o.ID || o.Ref[refName] != o.Name || o.Ref[refAccount] != fuzzUser {
					t.Fatalf("object %#v", o)
				}
			}
		case 3:
			err = c.Revoke(ctx, provider.Ref{refID: "cc5lnd2s1s4652adtu50", refName: "vault-app-x", refAccount: fuzzUser})
		case 4:
			err = c.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-x", RoleName: "app"})
		case 5:
			var staged provider.Values
			var next provider.Values
			next, err = c.RotateRoot(ctx, func(v provider.Values) error { staged = v; return nil })
			if err == nil && (next.String(fieldPassword) == "" || next.String(fieldPassword) != staged.String(fieldPassword) || c.password != next.String(fieldPassword)) {
				t.Fatalf("rotate-root returned %v, staged %v, uses %q", next, staged, c.password)
			}
		}
		if err == nil {
			return
		}
		msg := err.Error()
		for _, secret := range []string{fuzzPassword, fuzzSession, "rotatedsession0123456789"} {
			if strings.Contains(msg, secret) && !strings.Contains(fuzzedText, secret) {
				t.Fatalf("the error carries a secret the answer did not: %v", err)
			}
		}
		if c.password != fuzzPassword && op%6 != 5 {
			t.Fatalf("the password changed: %q", c.password)
		}
	})
}

func checkIssued(t *testing.T, cred *provider.Credential, now time.Time) {
	t.Helper()
	secret, _ := cred.Data["access_key"].(string)
	id, _ := cred.Data["access_key_id"].(string)
	expires, _ := cred.Data["expires_at"].(string)
	if secret == "" || id == "" || cred.ObjectID != id || cred.Ref[refID] != id {
		t.Fatalf("issued %#v", cred)
	}
	// The lease Ref holds only the id (Storyden's), the name and the
	// account: never the secret.
	if len(cred.Ref) != 3 || cred.Ref[refName] != "vault-app-x" || cred.Ref[refAccount] != fuzzUser {
		t.Fatalf("the lease Ref %v holds more than the id, name and account", cred.Ref)
	}
	at, err := time.Parse(time.RFC3339, expires)
	if err != nil || !at.Equal(cred.ExpiresAt.Truncate(time.Second)) {
		t.Fatalf("expires_at %q, ExpiresAt %s: %v", expires, cred.ExpiresAt, err)
	}
	if !cred.ExpiresAt.After(now) {
		t.Fatalf("Issue hands out an access key that Storyden says expired at %s (now %s)", cred.ExpiresAt, now)
	}
}
