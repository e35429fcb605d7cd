package storx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for StorX's response parsers (error bodies, login tokens and
// cookies, the JSON-quoted access grant, every success body of the issue
// flow) and its config and role validation. `go test` runs only the seeds
// and testdata/fuzz; run one target for longer with
//
//	go test -run '^$' -fuzz '^FuzzParseGrant$' -fuzztime 60s ./backend/storx/

// fuzzLeaks reports whether text shows secret between its "[redacted]"
// markers, so that a secret made partly of the marker's own letters
// ("redacted]") is not taken for a leak.
func fuzzLeaks(text, secret string) bool {
	if len(secret) < minRedactedLen {
		return false
	}
	for _, part := range strings.Split(text, "[redacted]") {
		if strings.Contains(part, secret) {
			return true
		}
	}
	return false
}

// Wire shapes from shared/reference/upstream-apis.md section 1.
const (
	fuzzDevToken    = "ZGV2ZWxvcGVyLXNlc3Npb24.c2lnbmF0dXJlMDE="
	fuzzUserToken   = "dXNlci1zZXNzaW9uLXV1aWQ.c2lnbmF0dXJlMDI="
	fuzzAPIKey      = "13YqeGFpvBTkrkpyCkfmD3HGaZAFhLNj8vXiAbHjwoLQR6Nb9qa2b9cEcGRRKnkSBHBHpVhSJhhBTgYE8zGPLQuAxGuYhcu"
	fuzzGrant       = "1BxQvBGN5cV7dmWXkUprZ5T5u4AfgLvcYtFVBTjPHdpPaXwkk8zZLVixJVnk7gH3CmGsLiSDz6ZNUQSWvjvd5ZjyL3uQdk"
	fuzzS3Secret    = "jxbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	fuzzPassword    = "developer-password-0123"
	fuzzPassphrase  = "one fixed grant passphrase"
	fuzzLoginOK     = `{"token":"` + fuzzDevToken + `","expiresAt":"2026-01-08T00:00:00Z"}`
	fuzzCreated     = `{"message":"user created","data":{"id":"4d4b5c36-8e5c-4a0b-9c37-1b2a3c4d5e6f","fullName":"app","email":"app@example.com","projectId":"a1b2c3d4-0000-4000-8000-000000000001","createdAt":"2026-01-01T00:00:00Z"}}`
	fuzzProjects    = `[{"id":"a1b2c3d4-0000-4000-8000-000000000001","name":"My Project","ownerId":"4d4b5c36-8e5c-4a0b-9c37-1b2a3c4d5e6f","memberCount":1}]`
	fuzzKeyCreated  = `{"key":"` + fuzzAPIKey + `","keyInfo":{"id":"9e8d7c6b-0000-4000-8000-000000000002","projectId":"a1b2c3d4-0000-4000-8000-000000000001","name":"vault-app-x","createdAt":"2026-01-01T00:00:00Z","version":1}}`
	fuzzS3Creds     = `{"access_key_id":"jwaaaaaaaaaaaaaaaaaaaaaaaaaa","secret_key":"` + fuzzS3Secret + `","endpoint":"https://gateway.storx.io"}`
	fuzzKeyList     = `{"apiKeys":[{"id":"9e8d7c6b-0000-4000-8000-000000000002","name":"vault-app-x","createdAt":"2026-01-01T00:00:00Z"}],"search":"","limit":100,"order":2,"orderDirection":1,"offset":0,"pageCount":1,"currentPage":1,"totalCount":1}`
	fuzzInternal    = `{"error":"There was an error processing your requestunauthorized: user already verified"}`
	fuzzRateLimited = `{"error":"You've exceeded your request limit. Please try again later."}`
)

// FuzzUpstreamError: the satellite's {"error":…} and the auth service's
// plain text give a bounded one-line message in which the password, the
// passphrase and the extra secret of the call (API key, grant) never show,
// not even in part when one secret contains another; the wait is only a
// 429's and never negative.
func FuzzUpstreamError(f *testing.F) {
	f.Add(401, []byte(`{"error":"Your login credentials are incorrect, please try again"}`), fuzzPassword, fuzzPassphrase, fuzzAPIKey, "")
	f.Add(401, []byte(fuzzInternal), fuzzPassword, fuzzPassphrase, "", "")
	f.Add(500, []byte(`{"error":"validation: An API Key with this name already exists in this project, please use a different name"}`), fuzzPassword, fuzzPassphrase, "", "")
	f.Add(429, []byte(fuzzRateLimited), fuzzPassword, fuzzPassphrase, "", "120")
	f.Add(400, []byte("expiration cannot be shorter than a minute\n"), fuzzPassword, fuzzPassphrase, fuzzGrant, "")
	f.Add(400, []byte(`{"error":"bad `+fuzzPassword+` and `+fuzzPassphrase+` and `+fuzzAPIKey+`"}`), fuzzPassword, fuzzPassphrase, fuzzAPIKey, "")
	f.Add(502, []byte("<html>Bad Gateway</html>"), fuzzPassword, fuzzPassphrase, "", "")
	f.Add(500, []byte(""), "x", "", "", "")
	f.Fuzz(func(t *testing.T, status int, body []byte, password, passphrase, extra, retryAfter string) {
		timeNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
		defer func() { timeNow = time.Now }()
		// Connection values are trimmed by the engine.
		password, passphrase, extra = strings.TrimSpace(password), strings.TrimSpace(passphrase), strings.TrimSpace(extra)
		c := &connection{password: password, passphrase: passphrase}
		ue := c.upstreamError("create API key vault-app-x", &provider.Response{Status: status, Header: http.Header{"Retry-After": {retryAfter}}, Body: body}, extra)
		if ue.Provider != Name || ue.Status != status || ue.Code != "" {
			t.Fatalf("got %#v", ue)
		}
		if !testutil.CleanText(ue.Message) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(ue.Message), ue.Message)
		}
		if ue.RetryAfter != 0 && status != http.StatusTooManyRequests {
			t.Fatalf("a %d carries a wait of %s", status, ue.RetryAfter)
		}
		secrets := []string{password, passphrase, extra}
		for _, s := range secrets {
			if fuzzLeaks(ue.Error(), s) && !strings.Contains("create API key vault-app-x", s) {
				t.Fatalf("the error shows secret %q: %s", s, ue.Error())
			}
		}
		// A secret that contains a shorter one must not come out with only
		// the shorter one masked: the rest of it would show.
		for _, long := range secrets {
			for _, short := range secrets {
				if len(short) < minRedactedLen || len(long) <= len(short) || !strings.Contains(long, short) || !strings.Contains(string(body), long) {
					continue
				}
				rest := strings.ReplaceAll(long, short, "[redacted]")
				if len(strings.ReplaceAll(rest, "[redacted]", "")) >= minRedactedLen && strings.Contains(ue.Message, rest) && !strings.Contains(string(body), rest) {
					t.Fatalf("redact masks the shorter secret %q inside the longer %q first and shows the rest: %q", short, long, ue.Message)
				}
			}
		}
		if ue.RetryAfter < 0 {
			t.Fatalf("a 429 with Retry-After %q reads as a negative wait %s ", retryAfter, ue.RetryAfter)
		}
	})
}

// FuzzReadToken: a login answer gives either a refusal (a 200 whose body is
// {"error":…}), or a session whose token is the body's or else the
// cookie's and can be sent back in a Cookie header, to be renewed after
// now and before it ends; or an UpstreamError.
func FuzzReadToken(f *testing.F) {
	cookie := developerCookie + "=" + fuzzDevToken + "; Path=/; Expires=Thu, 08 Jan 2026 00:00:00 GMT; SameSite=Strict"
	f.Add([]byte(fuzzLoginOK), cookie, int64(1767225600))
	f.Add([]byte(`{"token":"`+fuzzDevToken+`"}`), "", int64(1767225600))
	f.Add([]byte(`{"expiresAt":"2026-01-01T00:30:00Z"}`), cookie, int64(1767225600))
	f.Add([]byte(`{"error":"A MFA passcode or recovery code is required"}`), "", int64(1767225600))
	f.Add([]byte(`{"token":"t","expiresAt":"2025-12-31T00:00:00Z"}`), "", int64(1767225600))
	f.Add([]byte(`{"token":"t","expiresAt":"2026-01-01T00:00:01.5Z"}`), "", int64(1767225600))
	f.Add([]byte(`{}`), developerCookie+"=; Max-Age=0", int64(1767225600))
	f.Add([]byte(`not json`), cookie, int64(1767225600))
	f.Fuzz(func(t *testing.T, body []byte, setCookie string, nowUnix int64) {
		now := time.Unix(nowUnix%(1<<36), 0).UTC()
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		resp := &provider.Response{Status: http.StatusOK, Header: http.Header{"Set-Cookie": strings.Split(setCookie, "\n")}, Body: body}
		c := &connection{password: fuzzPassword, passphrase: fuzzPassphrase}
		s, refusal, err := c.readToken("log in as developer", resp, developerCookie)
		var parsed tokenBody
		jsonErr := json.Unmarshal(body, &parsed)
		switch {
		case refusal != nil:
			if err != nil || parsed.Error == "" || !testutil.CleanText(refusal.Message) || refusal.Status != http.StatusOK {
				t.Fatalf("refusal %#v, err %v", refusal, err)
			}
			if strings.Contains(refusal.Message, fuzzPassword) || strings.Contains(refusal.Message, fuzzPassphrase) {
				t.Fatalf("the refusal shows a secret: %q", refusal.Message)
			}
			return
		case err != nil:
			offered := parsed.Token
			if offered == "" {
				offered = provider.CookieValue(resp.Header, developerCookie)
			}
			// Only a token that can go back in a Cookie header is usable.
			usable := offered != "" && !strings.ContainsFunc(offered, outsideCookieValue)
			var ue *provider.UpstreamError
			if !errors.As(err, &ue) || (jsonErr == nil && usable) {
				t.Fatalf("err %v for body %q", err, body)
			}
			return
		}
		if jsonErr != nil || parsed.Error != "" {
			t.Fatalf("a session from body %q", body)
		}
		want := parsed.Token
		if want == "" {
			want = provider.CookieValue(resp.Header, developerCookie)
		}
		if s.token == "" || s.token != want {
			t.Fatalf("token %q, want %q", s.token, want)
		}
		if !s.refreshAt.After(now) {
			t.Fatalf("session renewed at %s, not after now %s", s.refreshAt, now)
		}
		if expiresAt, err := time.Parse(time.RFC3339Nano, parsed.ExpiresAt); err == nil && expiresAt.After(now) && s.refreshAt.After(expiresAt) {
			t.Fatalf("session ending %s renewed only at %s", expiresAt, s.refreshAt)
		}
		if strings.ContainsFunc(s.token, outsideCookieValue) {
			t.Fatalf("the session token %q from the login body is cached and sent in the Cookie header unchecked", s.token)
		}
	})
}

// outsideCookieValue reports a character RFC 6265 keeps out of a cookie
// value, written apart from the plugin's own check.
func outsideCookieValue(r rune) bool {
	return r <= ' ' || r == ';' || r == ',' || r == '"' || r == '\\' || r >= 0x7f
}

// FuzzParseGrant: the satellite's JSON-quoted grant and a bare grant both
// round-trip; anything accepted is a non-empty base58 string that is
// either the JSON string or the trimmed body.
func FuzzParseGrant(f *testing.F) {
	f.Add([]byte("\""+fuzzGrant+"\"\n"), fuzzGrant)
	f.Add([]byte(" "+fuzzGrant+"\n"), "1Bx3vAQ")
	f.Add([]byte("\"1Bx3"), "1")
	f.Add([]byte("\"\"\n"), "")
	f.Add([]byte(`{"error":"missing api-key query param"}`), "x")
	f.Add([]byte("\"1Bx0OIl\""), "0OIl")
	f.Add([]byte(`"\u0031Bx"`), "z")
	f.Fuzz(func(t *testing.T, body []byte, grant string) {
		got, ok := parseGrant(body)
		if ok {
			var quoted string
			fromJSON := json.Unmarshal(body, &quoted) == nil && quoted == got
			if got == "" || strings.Trim(got, base58Alphabet) != "" || (!fromJSON && got != strings.TrimSpace(string(body))) {
				t.Fatalf("parseGrant(%q) = %q", body, got)
			}
		}
		if grant == "" || strings.Trim(grant, base58Alphabet) != "" {
			return
		}
		encoded, err := json.Marshal(grant)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{append(encoded, '\n'), encoded, []byte(grant), []byte(" " + grant + "\r\n")} {
			if got, ok := parseGrant(b); !ok || got != grant {
				t.Fatalf("parseGrant(%q) = %q, %t; want %q", b, got, ok, grant)
			}
		}
	})
}

// FuzzConnect: a connection needs an email-like email, a password and a
// passphrase, and a valid auth_url; refusals wrap ErrInvalidInput and do not
// depend on the password or the passphrase.
func FuzzConnect(f *testing.F) {
	f.Add("dev@example.com", fuzzPassword, fuzzPassphrase, "")
	f.Add("dev@example.com", fuzzPassword, fuzzPassphrase, "https://stageauth7.storx.io/")
	f.Add("dev@example.com", "", fuzzPassphrase, "")
	f.Add("dev@example.com", fuzzPassword, "", "")
	f.Add("dev", fuzzPassword, fuzzPassphrase, "")
	f.Add("a b@c", fuzzPassword, fuzzPassphrase, "")
	f.Add("dev@example.com", fuzzPassword, fuzzPassphrase, "https://auth.storx.io/?")
	f.Fuzz(func(t *testing.T, email, password, passphrase, authURL string) {
		connect := func(password, passphrase string) (provider.Connection, error) {
			return Provider{}.Connect(provider.ConnectionConfig{Name: "storx", BaseURL: defaultBaseURL, Values: provider.Values{
				fieldEmail: email, fieldPassword: password, fieldPassphrase: passphrase, fieldAuthURL: authURL}})
		}
		conn, err := connect(password, passphrase)
		_, errRot := connect(testutil.Rot(password), testutil.Rot(passphrase))
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on a secret: %v / %v", err, errRot)
		}
		_, authErr := normalizeAuthURL(authURL)
		want := looksLikeEmail(email) && password != "" && passphrase != "" && authErr == nil
		if (err == nil) != want {
			t.Fatalf("Connect = %v, want ok=%v", err, want)
		}
		if err != nil {
			if !errors.Is(err, provider.ErrInvalidInput) {
				t.Fatalf("error without ErrInvalidInput: %v", err)
			}
			return
		}
		c := conn.(*connection)
		if c.csrfToken == "" || strings.Trim(c.csrfToken, csrfAlphabet) != "" {
			t.Fatalf("csrf token %q", c.csrfToken)
		}
		conn.Close()
	})
}

// FuzzValidateRole: user_email looks like an email, buckets are valid and
// not "all", a prefix has exactly one bucket, permissions when set are not
// empty; refusals wrap ErrInvalidInput; the grant query of a valid role
// names exactly its buckets (or all) and its permissions.
func FuzzValidateRole(f *testing.F) {
	f.Add("app@example.com", "", "", "", false)
	f.Add("app@example.com", "assets,logs", "", "download,list", true)
	f.Add("app@example.com", "assets", "reports/", "upload", true)
	f.Add("app@example.com", "assets,logs", "reports/", "", false)
	f.Add("app@example.com", "all", "", "", false)
	f.Add("app@example.com", "Bad_Bucket", "", "", false)
	f.Add("not-an-email", "", "", "", false)
	f.Add("app@example.com", "", "", "", true)
	f.Fuzz(func(t *testing.T, email, buckets, prefix, permissions string, permissionsSet bool) {
		role := provider.Values{fieldUserEmail: email, fieldPrefix: prefix}
		if buckets != "" {
			role[fieldBuckets] = strings.Split(buckets, ",")
		}
		if permissionsSet {
			var l []string
			if permissions != "" {
				l = strings.Split(permissions, ",")
			}
			role[fieldPermissions] = l
		}
		err := Provider{}.ValidateRole(role)
		list := role.Strings(fieldBuckets)
		want := (email == "" || looksLikeEmail(email)) && (prefix == "" || len(list) == 1) && (!permissionsSet || len(role.Strings(fieldPermissions)) > 0)
		for _, b := range list {
			want = want && b != allBucketsParameter && storjBucketName.MatchString(b)
		}
		if (err == nil) != want {
			t.Fatalf("ValidateRole(%#v) = %v, want ok=%v", role, err, want)
		}
		if err != nil {
			if !errors.Is(err, provider.ErrInvalidInput) {
				t.Fatalf("error without ErrInvalidInput: %v", err)
			}
			return
		}
		spec := roleFrom(role)
		q := grantQuery(spec, fuzzAPIKey, fuzzPassphrase, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		wantBucket := allBucketsParameter
		if len(list) > 0 {
			wantBucket = strings.Join(list, ",")
		}
		if q.Get("bucket") != wantBucket || q.Get("prefix") != prefix || q.Get("expiry") != "2026-01-02 03:04:05" {
			t.Fatalf("grant query %v for role %#v", q, role)
		}
		for _, p := range allPermissions {
			if q.Has("allow_"+p) != slices.Contains(spec.permissions, p) {
				t.Fatalf("grant query %v for permissions %q", q, spec.permissions)
			}
		}
	})
}

// fuzzUpstream answers like the StorX satellite and auth service. existing
// makes create-user answer that the user exists.
type fuzzUpstream struct {
	existing bool
}

func (u *fuzzUpstream) answer(req *http.Request) testutil.Answer {
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	path := req.URL.Path
	switch {
	case req.URL.Host == "auth.storx.io" && path == "/v1/access":
		return testutil.Answer{Status: 200, Header: jsonHeader, Body: fuzzS3Creds}
	case path == pathDeveloperToken:
		return testutil.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {developerCookie + "=" + fuzzDevToken + "; Path=/; SameSite=Strict"}}, Body: fuzzLoginOK}
	case path == pathCreateUser && u.existing:
		return testutil.Answer{Status: 401, Header: nil, Body: fuzzInternal}
	case path == pathCreateUser:
		return testutil.Answer{Status: 200, Header: jsonHeader, Body: fuzzCreated}
	case path == pathUserToken:
		return testutil.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {userCookie + "=" + fuzzUserToken + "; Path=/; SameSite=Strict"}}, Body: `{"token":"` + fuzzUserToken + `","expiresAt":"2026-01-01T00:30:00Z"}`}
	case path == pathProjects:
		return testutil.Answer{Status: 200, Header: nil, Body: fuzzProjects}
	case strings.HasPrefix(path, "/api/v0/api-keys/create/"):
		return testutil.Answer{Status: 200, Header: nil, Body: fuzzKeyCreated}
	case strings.HasSuffix(path, "/access-grant"):
		return testutil.Answer{Status: 200, Header: nil, Body: "\"" + fuzzGrant + "\"\n"}
	case path == pathDeleteByName:
		return testutil.Answer{Status: 200}
	case path == pathListKeys:
		return testutil.Answer{Status: 200, Header: nil, Body: fuzzKeyList}
	}
	return testutil.Answer{Status: 404, Header: nil, Body: "404 page not found\n"}
}

// FuzzUpstreamResponses runs one connection operation against a StorX
// whose fuzzAt-th answer is fuzzed (status, Set-Cookie, Retry-After, body).
// Whatever the answer: no panic; an error never shows the password or the
// passphrase, even if the answer echoed them, nor a session, API key or
// grant the fuzzed answer did not hold; an issue gives all four credential
// values and a lease Ref without any secret.
func FuzzUpstreamResponses(f *testing.F) {
	// op: 0 Verify, 1 Issue, 2 ListObjects, 3 Revoke, 4 Rollback, 5 Issue for an existing user.
	f.Add(uint8(1), uint8(0), 200, "", "", []byte(`{"error":"A MFA passcode or recovery code is required"}`))
	f.Add(uint8(0), uint8(0), 401, "", "", []byte(`{"error":"Your login credentials are incorrect, please try again"}`))
	f.Add(uint8(0), uint8(0), 401, "", "", []byte(`{"error":"wrong password `+fuzzPassword+`"}`))
	f.Add(uint8(0), uint8(0), 429, "", "", []byte(fuzzRateLimited))
	f.Add(uint8(1), uint8(1), 200, "", "", []byte(fuzzCreated))
	f.Add(uint8(1), uint8(1), 200, "", "", []byte(`{"message":"user created","data":{}}`))
	f.Add(uint8(1), uint8(1), 404, "", "", []byte("404 page not found\n"))
	f.Add(uint8(1), uint8(2), 200, developerCookie+"=abc", "", []byte(`{"expiresAt":"2026-01-01T00:30:00Z"}`))
	f.Add(uint8(1), uint8(2), 500, "", "", []byte(`{"error":"There was an error processing your requestsql: no rows in result set"}`))
	f.Add(uint8(1), uint8(3), 200, "", "", []byte(fuzzKeyCreated))
	f.Add(uint8(1), uint8(3), 500, "", "", []byte(`{"error":"validation: An API Key with this name already exists in this project, please use a different name"}`))
	f.Add(uint8(1), uint8(4), 200, "", "", []byte("\""+fuzzGrant+"\"\n"))
	f.Add(uint8(1), uint8(4), 400, "", "", []byte(`{"error":"invalid api-key `+fuzzAPIKey+` or passphrase `+fuzzPassphrase+`"}`))
	f.Add(uint8(1), uint8(5), 200, "", "", []byte(fuzzS3Creds))
	f.Add(uint8(1), uint8(5), 400, "", "", []byte("expiration cannot be shorter than a minute\n"))
	f.Add(uint8(5), uint8(2), 401, "", "", []byte(`{"error":"The activation code is invalid"}`))
	f.Add(uint8(5), uint8(3), 200, "", "", []byte(fuzzProjects))
	f.Add(uint8(5), uint8(3), 200, "", "", []byte(`[]`))
	f.Add(uint8(2), uint8(3), 200, "", "", []byte(fuzzKeyList))
	f.Add(uint8(2), uint8(3), 200, "", "", []byte(`{"apiKeys":[{"id":"a","name":"b"}],"pageCount":2}`))
	f.Add(uint8(3), uint8(2), 200, "", "", []byte(""))
	f.Add(uint8(3), uint8(2), 401, "", "", []byte(`{"error":"unauthorized"}`))
	f.Add(uint8(4), uint8(2), 200, "", "", []byte(fuzzProjects))
	f.Fuzz(func(t *testing.T, op, fuzzAt uint8, status int, setCookie, retryAfter string, body []byte) {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		if status < 100 || status > 999 {
			status = 200 + (status%100+100)%100
		}
		header := http.Header{}
		if setCookie != "" {
			header.Set("Set-Cookie", setCookie)
		}
		if retryAfter != "" {
			header.Set("Retry-After", retryAfter)
		}
		upstream := &testutil.FuzzTransport{Script: (&fuzzUpstream{existing: op%6 == 5}).answer,
			FuzzAt: int(fuzzAt % 8), Fuzzed: testutil.Answer{Status: status, Header: header, Body: string(body)}}
		pc, err := Provider{}.Connect(provider.ConnectionConfig{Name: "storx", BaseURL: defaultBaseURL, HTTPClient: &http.Client{Transport: upstream},
			Values: provider.Values{fieldEmail: "dev@example.com", fieldPassword: fuzzPassword, fieldPassphrase: fuzzPassphrase}})
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*connection)
		c.console.MaxAttempts, c.auth.MaxAttempts = 1, 1 // a retry would only sleep
		c.console.Gate, c.auth.Gate = nil, nil
		ctx := context.Background()
		roleValues := provider.Values{fieldUserEmail: "app@example.com", fieldBuckets: []string{"assets"}, fieldPermissions: []string{"download", "list"}}
		switch op % 6 {
		case 0:
			err = c.Verify(ctx)
		case 1, 5:
			var cred *provider.Credential
			cred, err = c.Issue(ctx, provider.IssueRequest{RoleName: "app", Role: roleValues, Name: "vault-app-x", TTL: time.Hour, ExpiresAt: now.Add(24 * time.Hour)})
			if err == nil {
				for _, k := range []string{"access_key_id", "secret_access_key", "endpoint", "access_grant"} {
					if v, _ := cred.Data[k].(string); v == "" {
						t.Fatalf("issued credential lacks %s: %#v", k, cred.Data)
					}
				}
				if g := cred.Data["access_grant"].(string); strings.Trim(g, base58Alphabet) != "" || cred.Data["api_key_name"] != "vault-app-x" || !cred.ExpiresAt.Equal(now.Add(24*time.Hour)) {
					t.Fatalf("issued %#v expiring %s", cred.Data, cred.ExpiresAt)
				}
				for k, v := range cred.Ref {
					for _, s := range []string{fuzzPassword, fuzzPassphrase, cred.Data["secret_access_key"].(string), cred.Data["access_grant"].(string), fuzzAPIKey} {
						if len(s) >= minRedactedLen && strings.Contains(v, s) {
							t.Fatalf("lease Ref %s=%q holds a secret", k, v)
						}
					}
				}
			}
		case 2:
			var objects []provider.UpstreamObject
			objects, err = c.ListObjects(ctx, []provider.Values{roleValues, roleValues})
			for _, o := range objects {
				if o.Ref[refKeyName] != o.Name || o.Ref[refUserEmail] != "app@example.com" || o.Ref[refProjectID] == "" {
					t.Fatalf("object %#v", o)
				}
			}
		case 3:
			err = c.Revoke(ctx, provider.Ref{refUserEmail: "app@example.com", refProjectID: "a1b2c3d4-0000-4000-8000-000000000001", refKeyName: "vault-app-x"})
		case 4:
			err = c.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-x", RoleName: "app", Role: roleValues})
		}
		if err == nil {
			return
		}
		msg := err.Error()
		for _, s := range []string{fuzzPassword, fuzzPassphrase} {
			if fuzzLeaks(msg, s) {
				if !strings.Contains(msg, "[redacted]") && strings.Contains(string(body), s) {
					t.Fatalf("an error message read from a login answer is not masked and shows a secret: %v", err)
				}
				t.Fatalf("the error shows a secret: %v", err)
			}
		}
		for _, s := range []string{fuzzDevToken, fuzzUserToken, fuzzAPIKey, fuzzGrant, fuzzS3Secret, c.csrfToken} {
			if strings.Contains(msg, s) && !strings.Contains(setCookie+string(body), s) {
				t.Fatalf("the error carries a secret the answer did not: %v", err)
			}
		}
	})
}

// storjBucketName is Storj's bucket naming rule, the fuzz oracle's own copy:
// 3 to 63 lower-case letters, digits, '-' and '.', starting and ending with
// a letter or digit.
var storjBucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
