package storyden

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// TestRevoke_OnlyMissingKeyIsGone: a revoke answered 404 is "already gone"
// only when Storyden says it has no such access key. Any other 404 (an
// unknown route, a base_url reaching another server) is an error, since the
// key may live on where it was issued.
func TestRevoke_OnlyMissingKeyIsGone(t *testing.T) {
	cases := []struct {
		name        string
		contentType string
		body        string
		gone        bool
	}{
		{"missing key, problem details", "application/problem+json",
			`{"type":"urn:storyden:problem:not-found","title":"Not Found","detail":"ent: authentication not found","trace_id":"unknown"}`, true},
		{"missing key, legacy body", "application/json",
			`{"error":"ent: authentication not found","message":"Not Found"}` + "\n", true},
		{"unknown route, problem details", "application/problem+json",
			`{"type":"urn:storyden:problem:not-found","title":"Not Found","detail":"code=404, message=Not Found","trace_id":"unknown"}`, false},
		{"unknown route, legacy body", "application/json",
			`{"error":"code=404, message=Not Found","message":"Not Found"}` + "\n", false},
		{"problem of another kind", "application/problem+json",
			`{"type":"urn:storyden:problem:internal","title":"x","detail":"ent: authentication not found","trace_id":"unknown"}`, false},
		{"Go's default mux", "text/plain; charset=utf-8", "404 page not found\n", false},
		{"a web server's page", "text/html", "<html><body><h1>404 Not Found</h1></body></html>", false},
		{"another API's JSON", "application/json", `{"error":"not found"}`, false},
		{"empty body", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/api/auth/password/signin" {
					w.Header().Set("Set-Cookie", sessionCookie+"=session; Path=/; HttpOnly")
					_, _ = w.Write([]byte(`{"id":"cc5lnd2s1s4652adtu50"}`))
					return
				}
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			conn, err := Provider{}.Connect(provider.ConnectionConfig{
				BaseURL: srv.URL, Values: provider.Values{fieldUsername: "vault", fieldPassword: "password-0123"}, HTTPClient: srv.Client(),
			})
			if err != nil {
				t.Fatal(err)
			}
			err = conn.Revoke(context.Background(), provider.Ref{refID: "cc5lnd2s1s4652adtu50", refAccount: "vault"})
			switch {
			case tc.gone && err != nil:
				t.Fatalf("Storyden's missing-key answer must count as already gone: %v", err)
			case !tc.gone && err == nil:
				t.Fatal("a 404 that is not Storyden's missing-key answer was taken for a revoked key")
			case !tc.gone && provider.StatusOf(err) != http.StatusNotFound:
				t.Fatalf("want an upstream error with the 404, got %v", err)
			}
		})
	}
}
