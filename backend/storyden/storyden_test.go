package storyden

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

func TestUpstreamError_ReadsEveryStorydenErrorBody(t *testing.T) {
	cases := []struct {
		name        string
		contentType string
		body        string
		wantCode    string
		wantMessage string
	}{
		{"RFC 7807 (v1.26.10+)", "application/problem+json",
			`{"type":"urn:storyden:problem:unauthenticated","title":"The provided password did not match the account.","detail":"internal chain","trace_id":"x"}`,
			"unauthenticated", "The provided password did not match the account."},
		{"problem without type", "application/problem+json", `{"title":"Something","trace_id":"x"}`, "", "Something"},
		{"legacy with message", "application/json", `{"error":"internal: bad","message":"Password is too short"}`, "", "Password is too short"},
		{"legacy error only", "application/json", `{"error":"not found"}`, "", "not found"},
		{"rate limiter plain text", "text/plain; charset=utf-8", "Too Many Requests\n", "", "Too Many Requests"},
		{"unknown body", "text/html", "<html>oops</html>", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ue := upstreamError("op", &provider.Response{Status: 400, Header: http.Header{"Content-Type": {tc.contentType}}, Body: []byte(tc.body)})
			if ue.Code != tc.wantCode || ue.Message != tc.wantMessage || ue.Status != 400 {
				t.Fatalf("got code %q message %q status %d", ue.Code, ue.Message, ue.Status)
			}
		})
	}
}

func TestConnect_Validation(t *testing.T) {
	cases := []struct {
		name    string
		baseURL string
		values  provider.Values
		want    string
	}{
		{"ok", "https://forum.example.com", provider.Values{"username": "u", "password": "12345678"}, ""},
		{"trailing /api", "https://forum.example.com/api", provider.Values{"username": "u", "password": "12345678"}, `use "https://forum.example.com"`},
		{"no username", "https://f", provider.Values{"password": "12345678"}, "username is required"},
		{"short password", "https://f", provider.Values{"username": "u", "password": "1234567"}, "at least 8 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Provider{}.Connect(provider.ConnectionConfig{BaseURL: tc.baseURL, Values: tc.values})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalidInput containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "1234567") {
				t.Fatal("the error carries the password")
			}
		})
	}
}

func TestValidateRole(t *testing.T) {
	for prefix, ok := range map[string]bool{"": true, "vault": true, "ci_bot-1": true, "-x": false, "has space": false, strings.Repeat("a", 33): false} {
		err := Provider{}.ValidateRole(provider.Values{fieldKeyNamePrefix: prefix})
		if (err == nil) != ok {
			t.Errorf("key_name_prefix %q: err %v", prefix, err)
		}
	}
}

func TestRandomPassword(t *testing.T) {
	pw, err := randomPassword()
	if err != nil || len(pw) != 40 || strings.Trim(pw, passwordAlphabet) != "" {
		t.Fatalf("randomPassword = %d chars, %v", len(pw), err)
	}
}

func TestCookieValue(t *testing.T) {
	h := http.Header{"Set-Cookie": {
		"other=1; Path=/",
		"storyden-session=abc123; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=7776000",
	}}
	if got := provider.CookieValue(h, sessionCookie); got != "abc123" {
		t.Fatalf("cookieValue = %q", got)
	}
	if got := provider.CookieValue(http.Header{"Set-Cookie": {"storyden-session=; Max-Age=0"}}, sessionCookie); got != "" {
		t.Fatalf("a clearing cookie must read as none, got %q", got)
	}
}
