package storx

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

func TestValidateRole(t *testing.T) {
	tests := []struct {
		name    string
		role    provider.Values
		wantErr string
	}{
		{"minimal", provider.Values{fieldUserEmail: "a@example.com"}, ""},
		{"buckets, prefix and permissions", provider.Values{fieldUserEmail: "a@example.com", fieldBuckets: []string{"media"}, fieldPrefix: "up/", fieldPermissions: []string{"upload"}}, ""},
		{"not an email", provider.Values{fieldUserEmail: "app"}, "user_email"},
		{"prefix without a bucket", provider.Values{fieldUserEmail: "a@example.com", fieldPrefix: "up/"}, "exactly one bucket"},
		{"prefix with two buckets", provider.Values{fieldUserEmail: "a@example.com", fieldBuckets: []any{"a1b", "c2d"}, fieldPrefix: "up/"}, "exactly one bucket"},
		{"the reserved bucket all", provider.Values{fieldUserEmail: "a@example.com", fieldBuckets: []string{"all"}}, "every bucket"},
		{"an invalid bucket name", provider.Values{fieldUserEmail: "a@example.com", fieldBuckets: []string{"Media_Files"}}, "not a valid bucket name"},
		{"no permission at all", provider.Values{fieldUserEmail: "a@example.com", fieldPermissions: []string{}}, "at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New().ValidateRole(tt.role)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateRole = %v", err)
				}
				return
			}
			if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateRole = %v, want ErrInvalidInput with %q", err, tt.wantErr)
			}
		})
	}
}

// Permissions are limited to StorX's four flags by the field itself.
func TestPermissionsFieldAllowsOnlyStorXFlags(t *testing.T) {
	var field provider.Field
	for _, f := range New().RoleFields() {
		if f.Name == fieldPermissions {
			field = f
		}
	}
	if _, err := field.Normalize([]any{"download", "write"}); !errors.Is(err, provider.ErrInvalidInput) {
		t.Errorf("Normalize accepted write: %v", err)
	}
	got, err := field.Normalize("upload,list")
	if err != nil || strings.Join(got.([]string), ",") != "list,upload" {
		t.Errorf("Normalize = %v, %v", got, err)
	}
}

func TestConnect(t *testing.T) {
	good := provider.Values{fieldEmail: "dev@example.com", fieldPassword: "pw", fieldPassphrase: "phrase"}
	with := func(k string, v any) provider.Values {
		out := good.Clone()
		out[k] = v
		return out
	}
	tests := []struct {
		name        string
		values      provider.Values
		wantErr     string
		wantAuthURL string
	}{
		{"auth_url defaults", good, "", "https://auth.storx.io"},
		{"auth_url trailing slash dropped", with(fieldAuthURL, "http://127.0.0.1:9000/"), "", "http://127.0.0.1:9000"},
		{"auth_url relative", with(fieldAuthURL, "auth.storx.io"), "auth_url is not valid", ""},
		{"auth_url ftp", with(fieldAuthURL, "ftp://auth.storx.io"), "auth_url is not valid", ""},
		{"auth_url with credentials", with(fieldAuthURL, "https://u:p@auth.storx.io"), "must not carry credentials", ""},
		{"auth_url with a query", with(fieldAuthURL, "https://auth.storx.io?x=1"), "must not have a query", ""},
		{"email not an email", with(fieldEmail, "developer"), "email=", ""},
		{"password missing", with(fieldPassword, ""), "password is required", ""},
		{"passphrase missing", with(fieldPassphrase, ""), "passphrase is required", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := New().Connect(provider.ConnectionConfig{Name: "c", BaseURL: defaultBaseURL, Values: tt.values})
			if tt.wantErr != "" {
				if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Connect = %v, want ErrInvalidInput with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := conn.(*connection).auth.BaseURL; got != tt.wantAuthURL {
				t.Errorf("auth service URL = %q, want %q", got, tt.wantAuthURL)
			}
		})
	}
}

func TestMessageOf(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"satellite JSON", `{"error":"Your login credentials are incorrect, please try again"}` + "\n", "Your login credentials are incorrect, please try again"},
		{"prefix glued to its cause", `{"error":"There was an error processing your requestunauthorized: user already verified"}`,
			"There was an error processing your request: unauthorized: user already verified"},
		{"the prefix alone", `{"error":"There was an error processing your request"}`, "There was an error processing your request"},
		{"auth service text/plain", "expiration cannot be shorter than a minute\n", "expiration cannot be shorter than a minute"},
		{"auth service 5xx, empty", "\n", ""},
		{"HTML from a proxy", "<html><body>Bad Gateway</body></html>", ""},
		{"JSON of another shape", `{"message":"nope"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageOf([]byte(tt.body)); got != tt.want {
				t.Errorf("messageOf(%q) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

func TestUpstreamErrorMasksSecretsAndReadsRetryAfter(t *testing.T) {
	c := &connection{password: "hunter2-password", passphrase: "the-passphrase"}
	resp := &provider.Response{
		Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"7"}},
		Body:   []byte(`{"error":"bad hunter2-password, the-passphrase and grant-1abc"}`),
	}
	ue := c.upstreamError("op", resp, "grant-1abc")
	if strings.Contains(ue.Error(), "hunter2") || strings.Contains(ue.Error(), "the-passphrase") || strings.Contains(ue.Error(), "grant-1abc") {
		t.Errorf("secret in %q", ue.Error())
	}
	if ue.RetryAfter.Seconds() != 7 || ue.Status != http.StatusTooManyRequests || ue.Provider != Name || ue.Op != "op" {
		t.Errorf("UpstreamError = %+v", ue)
	}
}

func TestRedact(t *testing.T) {
	c := &connection{password: "grant passphrase", passphrase: "one fixed grant passphrase"}
	tests := []struct{ name, msg, extra, want string }{
		{"short secrets leave words alone", "You've exceeded your request limit.", "x", "You've exceeded your request limit."},
		{"an extra secret", "bad password hunter2!", "hunter2", "bad password [redacted]!"},
		{"a secret inside a longer one goes whole", "passphrase one fixed grant passphrase is wrong", "", "passphrase [redacted] is wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.redact(tt.msg, tt.extra); got != tt.want {
				t.Errorf("redact = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseGrant(t *testing.T) {
	tests := []struct {
		name, body, want string
		ok               bool
	}{
		{"JSON-quoted with a trailing newline", "\"1Bx3vAQ\"\n", "1Bx3vAQ", true},
		{"bare grant", " 1Bx3vAQ\n", "1Bx3vAQ", true},
		{"truncated JSON string", "\"1Bx3", "", false},
		{"empty JSON string", "\"\"\n", "", false},
		{"an error body", `{"error":"missing api-key query param"}`, "", false},
		{"not base58", "\"1Bx0OIl\"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseGrant([]byte(tt.body))
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("parseGrant(%q) = %q, %t; want %q, %t", tt.body, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestAboutTheUser(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"error":"There was an error processing your requestunauthorized: user already verified"}`, true},
		{`{"error":"The activation code is invalid"}`, true},
		{`{"error":"Your login credentials are incorrect, please try again"}`, true},
		{`{"error":"unauthorized: invalid or expired session"}`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := aboutTheUser(&provider.Response{Status: http.StatusUnauthorized, Body: []byte(tt.body)}); got != tt.want {
			t.Errorf("aboutTheUser(%s) = %t, want %t", tt.body, got, tt.want)
		}
	}
}

func TestNewSessionSchedulesTheNextLogin(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		expiresAt time.Time
		want      time.Time
	}{
		{"a week-long developer session", now.Add(7 * 24 * time.Hour), now.Add(7*24*time.Hour - sessionMargin)},
		{"a 30-minute user session", now.Add(30 * time.Minute), now.Add(28 * time.Minute)},
		{"a session shorter than twice the margin is used for half its life", now.Add(2 * time.Minute), now.Add(time.Minute)},
		{"no expiresAt", time.Time{}, now.Add(fallbackSessionLifetime)},
		{"an expiresAt already past", now.Add(-time.Minute), now.Add(fallbackSessionLifetime)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newSession("t", tt.expiresAt, now).refreshAt; !got.Equal(tt.want) {
				t.Errorf("refreshAt = %s, want %s", got, tt.want)
			}
		})
	}
}
