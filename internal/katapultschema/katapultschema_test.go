package katapultschema

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRecorderJudgesExchanges shows what the validator catches, each with
// the operation id and the place in the document that was broken.
func TestRecorderJudgesExchanges(t *testing.T) {
	const (
		user    = `{"user":{"id":"user_a","first_name":"a","last_name":"","avatar_url":""},"organizations":[],"api_token_id":"apitoken_A"}`
		current = "#/paths/~1users~1current/get"
		regen   = "#/paths/~1api_tokens~1api_token~1regenerate_secret/post"
	)
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		answer                         string
		want                           []Mismatch
	}{
		{name: "documented exchange", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 200, answer: user},
		{name: "wrapped documented error", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 404, answer: `{"error":{"code":"no_user_associated_with_identity","description":"d","detail":{}}}`},
		{name: "field the document does not declare", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 200, answer: strings.Replace(user, `"avatar_url":""`, `"email_address":"a@b"`, 1),
			want: []Mismatch{{"get:users_current", current + "/responses/200", `value at /user breaks "properties": property "email_address" is unsupported`}}},
		{name: "error code the status does not allow", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 404, answer: `{"error":{"code":"organization_not_found","description":"d","detail":{}}}`,
			want: []Mismatch{{"get:users_current", current + "/responses/404", `value at /code breaks "enum": value is not one of the allowed values ["no_user_associated_with_identity"]`}}},
		{name: "error outside its envelope", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 404, answer: `{"code":"no_user_associated_with_identity"}`,
			want: []Mismatch{{"get:users_current", current + "/responses/404", `error body is not {"error":{…}}, the envelope Katapult sends`}}},
		{name: "undocumented status", method: "GET", path: "/core/v1/users/current", auth: "Bearer x",
			status: 401, answer: `{"error":{"code":"invalid_api_token"}}`,
			want: []Mismatch{{"get:users_current", current + "/responses/401", "status is not supported"}}},
		{name: "request without a bearer token", method: "GET", path: "/core/v1/users/current",
			status: 200, answer: user,
			want: []Mismatch{{"get:users_current", current + "/security", "security requirements failed: not used by the plugin | no Authorization: Bearer token"}}},
		{name: "request body field the document does not declare", method: "POST", path: "/core/v1/api_tokens/api_token/regenerate_secret",
			auth: "Bearer x", body: `{"api_token":{"id":"apitoken_A"},"force":true}`,
			status: 200, answer: `{"api_token":{"id":"apitoken_A","secret":"s"}}`,
			want: []Mismatch{{"post:api_token_regenerate_secret", regen + "/requestBody", `value at / breaks "properties": property "force" is unsupported`}}},
		{name: "query parameter the document does not declare", method: "GET", path: "/core/v1/users/current?verbose=1", auth: "Bearer x",
			status: 200, answer: user,
			want: []Mismatch{{"get:users_current", current + "/parameters", `query parameter "verbose" is not declared`}}},
		{name: "route the document does not have", method: "GET", path: "/core/v1/users/me", auth: "Bearer x",
			status: 404, answer: `{}`,
			want: []Mismatch{{"GET /core/v1/users/me", "#/paths", "no operation in the document: no matching operation was found"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &Recorder{}
			h := rec.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.answer))
			}))
			req := httptest.NewRequest(tt.method, "http://127.0.0.1"+tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.status || w.Body.String() != tt.answer {
				t.Errorf("answer passed through as %d %q", w.Code, w.Body.String())
			}
			got := rec.Mismatches()
			if len(got) != len(tt.want) {
				t.Fatalf("mismatches = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("mismatch %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
