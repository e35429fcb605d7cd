package storx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

// clientTimeout is short so that latency faults outlast it quickly.
const clientTimeout = 400 * time.Millisecond

// pastTimeoutMS outlasts clientTimeout so far that the client always gives
// up first, whatever the load (the sandbox then abandons the request).
const pastTimeoutMS = 60_000

// TestIssueUnderFaults injects each fault into one step of Issue. Whatever
// happens, once the engine's rollback ran nothing is left upstream but the
// credential of a successful Issue, and that one works.
func TestIssueUnderFaults(t *testing.T) {
	const satellite, auth = "satellite", "auth"
	tests := []struct {
		name    string
		server  string
		fault   sandbox.Fault
		wantErr string // empty: Issue succeeds
		// route is counted to prove a retry happened or did not.
		route     string
		wantCalls int
	}{
		{name: "500 on create key is not retried", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, Status: 500},
			wantErr: "HTTP 500", route: routeNewKey, wantCalls: 1},
		{name: "503 on create key is not retried: the key may exist", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, Status: 503, Times: 1},
			wantErr: "HTTP 503", route: routeNewKey, wantCalls: 1},
		{name: "503 on the access grant is retried", server: satellite,
			fault: sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", Status: 503, Times: 2},
			route: routeGrant, wantCalls: 3},
		{name: "429 with Retry-After on create key waits and retries", server: satellite,
			fault: sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, Status: 429, RetryAfter: "1", Times: 1},
			route: routeNewKey, wantCalls: 2},
		{name: "429 without Retry-After on the access grant backs off and retries", server: satellite,
			fault: sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", Status: 429, Times: 1},
			route: routeGrant, wantCalls: 2},
		{name: "429 that lasts on the auth service fails after bounded retries", server: auth,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathAccess, Status: 429},
			wantErr: "rate limit", route: routeAccess, wantCalls: 4},
		{name: "429 with a long Retry-After is reported at once", server: auth,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathAccess, Status: 429, RetryAfter: "3600"},
			wantErr: "retry after 1h0m0s", route: routeAccess, wantCalls: 1},
		{name: "a dropped connection on create key is not retried", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, Drop: true},
			wantErr: "EOF", route: routeNewKey, wantCalls: 1},
		{name: "a dropped connection on the auth service is retried", server: auth,
			fault: sandbox.Fault{Method: http.MethodPost, Path: pathAccess, Drop: true, Times: 1},
			route: routeAccess, wantCalls: 2},
		{name: "a malformed create-key body leaves a key the rollback deletes", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, Malformed: true},
			wantErr: "not the JSON expected", route: routeNewKey, wantCalls: 1},
		{name: "a malformed access grant is refused", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", Malformed: true},
			wantErr: "not an access grant", route: routeGrant, wantCalls: 1},
		{name: "malformed S3 credentials are refused", server: auth,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathAccess, Malformed: true},
			wantErr: "not the JSON expected", route: routeAccess, wantCalls: 1},
		{name: "one attempt past the client timeout on the access grant is retried (it is a GET)", server: satellite,
			fault: sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", LatencyMS: pastTimeoutMS, Times: 1},
			route: routeGrant, wantCalls: 2},
		{name: "latency past the client timeout on create key fails", server: satellite,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathNewKey, LatencyMS: pastTimeoutMS},
			wantErr: "Timeout", route: routeNewKey, wantCalls: 1},
		{name: "500 on the auth service is reported with its empty text/plain body", server: auth,
			fault:   sandbox.Fault{Method: http.MethodPost, Path: pathAccess, Status: 500},
			wantErr: "get S3 credentials from the auth service failed with HTTP 500 Internal Server Error", route: routeAccess, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withClientTimeout(clientTimeout))
			// Sessions and project first, so that the fault meets its step.
			if err := e.conn.Revoke(context.Background(), e.mustIssue(e.issueRequest(nil)).Ref); err != nil {
				t.Fatal(err)
			}
			e.resetCalls()
			srv := e.satSrv
			if tt.server == auth {
				srv = e.authSrv
			}
			srv.AddFault(tt.fault)
			req := e.issueRequest(nil)
			cred, err := e.issue(e.conn, req)
			srv.ClearFaults()
			e.expectCalls(map[string]int{tt.route: tt.wantCalls})
			if tt.wantErr == "" {
				checkIssuedDespiteFault(t, e, cred, err)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Issue = %v, want an error with %q", err, tt.wantErr)
			}
			var ue *provider.UpstreamError
			if !errors.As(err, &ue) {
				t.Errorf("Issue error is not an *UpstreamError: %v", err)
			}
			if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			e.expectNothingLive()
		})
	}
}

func checkIssuedDespiteFault(t *testing.T, e *env, cred *provider.Credential, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if err := e.auth.VerifyS3Credential(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)); err != nil {
		t.Errorf("the S3 credential does not work: %v", err)
	}
	if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	e.expectNothingLive()
}

// The developer auth endpoints share StorX's tight per-IP limit (no
// Retry-After). A 429 there is reported at once, with what to do, and never
// retried: a retry within seconds could only fail again.
func TestRateLimitedAuthEndpoints(t *testing.T) {
	e := newEnv(t, withEmulator(func(o *emulator.Options) { o.RateBurst = 2 }))
	if err := e.conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// create-user takes the second token; user-token finds none.
	req := e.issueRequest(nil)
	_, err := e.issue(e.conn, req)
	for _, want := range []string{"HTTP 429", "You've exceeded your request limit", "1 every 5 minutes", "Vault caches these sessions"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Issue = %v, want an error with %q", err, want)
		}
	}
	e.expectCalls(map[string]int{routeToken: 1, routeCreate: 1, routeUserToken: 1})
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
		t.Fatal(err)
	}
	e.expectCalls(map[string]int{routeUserToken: 1})

	// The project is cached: once a token refills, one user-token is enough.
	e.clock.Advance(5 * time.Minute)
	e.mustIssue(e.issueRequest(nil))
	e.expectCalls(map[string]int{routeToken: 1, routeCreate: 1, routeUserToken: 2})
}

func TestRateLimitedLoginIsNotRetried(t *testing.T) {
	for _, retryAfter := range []string{"", "1"} {
		t.Run("Retry-After="+retryAfter, func(t *testing.T) {
			e := newEnv(t)
			e.satSrv.AddFault(sandbox.Fault{Path: "/api/v0/developer/auth/token", Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
			err := e.conn.Verify(context.Background())
			if err == nil || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "Vault caches these sessions") {
				t.Fatalf("Verify = %v", err)
			}
			if errors.Is(err, provider.ErrRootRejected) {
				t.Error("a rate limit is not a rejected root")
			}
			e.expectCalls(map[string]int{routeToken: 1})
		})
	}
}

// The developer routes left StorX's public source in 2025; a server without
// them is reported as such, not as a bad password.
func TestMissingDeveloperRoutesAreExplained(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t)
			e.satSrv.AddFault(sandbox.Fault{Path: "/api/v0/developer/auth/", Status: status})
			err := e.conn.Verify(context.Background())
			if err == nil || !strings.Contains(err.Error(), "does not offer the developer API") || errors.Is(err, provider.ErrRootRejected) {
				t.Fatalf("Verify = %v", err)
			}
		})
	}
}

// With StorX's optional CSRF protection on, the double-submit pair the
// provider always sends passes it.
func TestIssueAndRevokeWithCSRFProtection(t *testing.T) {
	e := newEnv(t, withEmulator(func(o *emulator.Options) { o.CSRF = true }))
	cred := e.mustIssue(e.issueRequest(nil))
	if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	e.expectNothingLive()
}
