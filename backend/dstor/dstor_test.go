package dstor

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	goodKey     = "5xikF8a5wcJeqVrtQE8OffKvtR9qaRxPXXJAedhIiNFWJbNsGqsdPfJ5eDYY7n92"
	wrongKey    = "wrongF8a5wcJeqVrtQE8OffKvtR9qaRxPXXJAedhIiNFWJbNsGqsdPfJ5eDYY7n92"
	disabledKey = "disabled8a5wcJeqVrtQE8OffKvtR9qaRxPXXJAedhIiNFWJbNsGqsdPfJ5eDYY7n"
	account     = "0b6e2f43-5d0c-4f5e-9a57-0d6a3c0c8d11"
	tokenRoute  = "GET /v1/dev/temp-token"
)

type harness struct {
	t   *testing.T
	srv *sandbox.Server
	log *testutil.LogBuffer

	mu     sync.Mutex
	tokens []string
}

func start(t *testing.T) *harness {
	t.Helper()
	emu := emulator.New(emulator.Options{APIKeys: []emulator.APIKey{
		{Key: goodKey, Account: account},
		{Key: disabledKey, Disabled: true},
	}})
	h := &harness{t: t, log: &testutil.LogBuffer{}}
	// Registered before the server's Close, so it runs after it.
	t.Cleanup(h.checkLogHasNoSecrets)
	h.srv = testutil.StartEmulator(t, emu)
	return h
}

// checkLogHasNoSecrets: every test logs at trace level; none may log a secret.
func (h *harness) checkLogHasNoSecrets() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, secret := range append(h.tokens, goodKey, wrongKey, disabledKey) {
		if strings.Contains(h.log.String(), secret) {
			h.t.Errorf("the log contains the secret %q", secret)
		}
	}
}

// connect opens a connection with apiKey against the emulator's /v1.
func (h *harness) connect(apiKey string) *connection {
	h.t.Helper()
	return h.connectTo(h.srv.URL()+"/v1", apiKey)
}

func (h *harness) connectTo(baseURL, apiKey string) *connection {
	h.t.Helper()
	conn, err := New().Connect(provider.ConnectionConfig{
		Name:       "test",
		BaseURL:    baseURL,
		Values:     provider.Values{fieldAPIKey: apiKey},
		HTTPClient: &http.Client{Timeout: 500 * time.Millisecond},
		Logger:     hclog.New(&hclog.LoggerOptions{Output: h.log, Level: hclog.Trace}),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return conn.(*connection)
}

func (h *harness) issue(conn *connection, expiresAt time.Time) (*provider.Credential, error) {
	cred, err := conn.Issue(context.Background(), provider.IssueRequest{
		RoleName: "app", Name: "vault-app-abc123", TTL: time.Hour, ExpiresAt: expiresAt,
	})
	if err == nil {
		h.mu.Lock()
		h.tokens = append(h.tokens, cred.Data["access_token"].(string))
		h.mu.Unlock()
	}
	return cred, err
}

// works reports whether token is accepted by a dStor route that takes tokens.
func (h *harness) works(token string) bool {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL()+"/v1/upload/get-status/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// recordWaits makes conn's client note the waits it asks for, backoffs and
// Retry-Afters, instead of spending them.
func recordWaits(conn *connection) *testutil.Waits {
	waits := &testutil.Waits{}
	conn.client.Sleep = waits.Sleep
	return waits
}

// pastTimeoutMS outlasts the harness's 500 ms client timeout so far that the
// client always gives up first, whatever the load (the sandbox then
// abandons the request).
const pastTimeoutMS = 60_000

// longestBackoffs is the most provider.Client's backoff asks for over its
// four attempts (jittered waits of at most 250 ms, 500 ms and 1 s).
const longestBackoffs = 1750 * time.Millisecond

func TestConnectValidatesAPIKey(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"64 characters", goodKey, true},
		{"other length is dStor's to judge", "short-key", true},
		{"empty", "", false},
		{"inner space", "abc def", false},
		{"newline", "abc\ndef", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New().Connect(provider.ConnectionConfig{Values: provider.Values{fieldAPIKey: tt.key}})
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, provider.ErrInvalidInput)) {
				t.Fatalf("Connect = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("error reveals the key: %v", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	h := start(t)
	// The token's expiry is read against the times around the call, so
	// that no bound depends on how long the call took.
	before := time.Now()
	if err := h.connect(goodKey).Verify(context.Background()); err != nil {
		t.Fatalf("Verify with a good key: %v", err)
	}
	after := time.Now()
	objects := h.srv.Objects()
	// x-expiration is in whole seconds.
	if len(objects) != 1 || objects[0].ExpiresAt.Before(before.Add(verifyTokenLifetime).Truncate(time.Second)) || objects[0].ExpiresAt.After(after.Add(verifyTokenLifetime)) {
		t.Fatalf("Verify minted %+v between %s and %s, want one token living %s", objects, before, after, verifyTokenLifetime)
	}
	for _, key := range []string{wrongKey, disabledKey} {
		err := h.connect(key).Verify(context.Background())
		var ue *provider.UpstreamError
		if !errors.Is(err, provider.ErrRootRejected) || !errors.As(err, &ue) || ue.Status != 401 || ue.Message != "Unauthorized" {
			t.Errorf("Verify with a bad key = %v, want 401 Unauthorized wrapping ErrRootRejected", err)
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("error reveals the key: %v", err)
		}
	}
	if n := h.srv.Calls()[tokenRoute]; n != 3 {
		t.Errorf("%d token calls, want one per Verify", n)
	}
}

func TestIssueMintsTokenEndingAtLeaseMax(t *testing.T) {
	h := start(t)
	conn := h.connect(goodKey)
	leaseMax := time.Now().Add(2 * time.Hour).Add(300 * time.Millisecond)
	cred, err := h.issue(conn, leaseMax)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := cred.Data["access_token"].(string)
	wantEnd := time.Unix(leaseMax.Unix(), 0).UTC()
	if len(cred.Data) != 2 || cred.Data["expires_at"] != wantEnd.Format(time.RFC3339) {
		t.Errorf("data = %v, want access_token and expires_at %s", cred.Data, wantEnd.Format(time.RFC3339))
	}
	if exp := testutil.JWTClaims(t, token)["exp"]; exp != float64(leaseMax.Unix()) {
		t.Errorf("JWT exp = %v, want the lease max end %d", exp, leaseMax.Unix())
	}
	if !cred.ExpiresAt.Equal(wantEnd) {
		t.Errorf("ExpiresAt = %v, want the JWT exp %v", cred.ExpiresAt, wantEnd)
	}
	if !h.works(token) {
		t.Error("the issued token does not work at dStor")
	}
	if len(cred.Warnings) != 1 || !strings.Contains(cred.Warnings[0], "no revocation API") || !strings.Contains(cred.Warnings[0], wantEnd.Format(time.RFC3339)) {
		t.Errorf("warnings = %q", cred.Warnings)
	}
	wantRef := provider.Ref{refSubject: account, refExpiresAt: wantEnd.Format(time.RFC3339), refIssuedAt: provider.Timestamp(time.Unix(int64(testutil.JWTClaims(t, token)["iat"].(float64)), 0))}
	if fmt.Sprint(cred.Ref) != fmt.Sprint(wantRef) {
		t.Errorf("ref = %v, want %v", cred.Ref, wantRef)
	}
	objects := h.srv.Objects()
	if len(objects) != 1 || objects[0].Extra["x_expiration"] != strconv.FormatInt(leaseMax.Unix(), 10) {
		t.Errorf("objects = %+v, want x-expiration sent as integer seconds", objects)
	}
}

func TestRevokeIsHonestNoOp(t *testing.T) {
	h := start(t)
	conn := h.connect(goodKey)
	cred, err := h.issue(conn, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.ResetCalls()
	for range 2 {
		if err := conn.Revoke(context.Background(), cred.Ref); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	if err := conn.Revoke(context.Background(), provider.Ref{}); err != nil {
		t.Errorf("Revoke of an unknown token: %v", err)
	}
	if !h.works(cred.Data["access_token"].(string)) {
		t.Error("the token stopped working after revoke; dStor cannot revoke, so the warning would be wrong")
	}
	if err := conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-abc123", RoleName: "app"}); err != nil {
		t.Errorf("Rollback: %v", err)
	}
	if calls := h.srv.Calls(); calls[tokenRoute] != 0 {
		t.Errorf("revoke and rollback called dStor: %v", calls)
	}
}

func TestRotateRootIsUnsupported(t *testing.T) {
	h := start(t)
	staged := false
	_, err := h.connect(goodKey).RotateRoot(context.Background(), func(provider.Values) error { staged = true; return nil })
	if !errors.Is(err, provider.ErrRotationUnsupported) || !strings.Contains(err.Error(), "dStor console") || staged {
		t.Errorf("RotateRoot = %v (staged %v), want ErrRotationUnsupported naming the console", err, staged)
	}
}

func TestBaseURLWithoutV1GetsAHint(t *testing.T) {
	h := start(t)
	err := h.connectTo(h.srv.URL(), goodKey).Verify(context.Background())
	if err == nil || errors.Is(err, provider.ErrRootRejected) || !strings.Contains(err.Error(), "including /v1") || !strings.Contains(err.Error(), "404 page not found") {
		t.Errorf("Verify against base_url without /v1 = %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name, contentType, body, want string
	}{
		{"message", "application/json", `{"message":"Unauthorized"}`, "Unauthorized"},
		{"error", "application/json", `{"error":"invalid api key"}`, "invalid api key"},
		{"message wins over error", "application/json", `{"statusCode":400,"message":"bad x-expiration","error":"Bad Request"}`, "bad x-expiration"},
		{"message list", "application/json", `{"message":["a must be set","b too"]}`, "a must be set; b too"},
		{"unknown shape", "application/json", `{"detail":{"why":"x"}}`, ""},
		{"object message ignored, error used", "application/json", `{"message":{"k":1},"error":"e"}`, "e"},
		{"plain text", "text/plain; charset=utf-8", "404 page not found\n", "404 page not found"},
		{"text without type", "", "upstream  down", "upstream down"},
		{"html is not shown", "text/html", "<html>bad gateway</html>", ""},
		{"empty", "application/json", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &provider.Response{Status: 400, Header: http.Header{}, Body: []byte(tt.body)}
			if tt.contentType != "" {
				resp.Header.Set("Content-Type", tt.contentType)
			}
			if got := errorMessage(resp); got != tt.want {
				t.Errorf("errorMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeJWT builds a token with the given payload; dStor's signature is not
// checked by the plugin, so any will do.
func fakeJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

// TestTokenShapes covers answers the emulator does not give but dStor might:
// tokens without exp, opaque tokens, and exp that differs from x-expiration.
func TestTokenShapes(t *testing.T) {
	leaseMax := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	earlier := leaseMax.Add(-30 * time.Minute)
	tests := []struct {
		name, body string
		wantEnd    time.Time
		wantErr    string
	}{
		{"exp earlier than asked caps the lease", `{"access_token":"` + fakeJWT(fmt.Sprintf(`{"exp":%d,"sub":"u"}`, earlier.Unix())) + `"}`, earlier, ""},
		{"float exp", `{"access_token":"` + fakeJWT(fmt.Sprintf(`{"exp":%d.9}`, earlier.Unix())) + `"}`, earlier, ""},
		{"no exp uses the expiry asked for", `{"access_token":"` + fakeJWT(`{"sub":"u"}`) + `"}`, leaseMax, ""},
		{"opaque token", `{"access_token":"opaque-token"}`, leaseMax, ""},
		{"payload not JSON", `{"access_token":"` + fakeJWT(`not json`) + `"}`, leaseMax, ""},
		{"exp already past", `{"access_token":"` + fakeJWT(`{"exp":1000}`) + `"}`, time.Time{}, "expired at 1970-01-01T00:16:40Z"},
		{"no token", `{"access_token":""}`, time.Time{}, "no access_token"},
		{"not JSON", `access_token=x`, time.Time{}, "not the JSON expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			h := &harness{t: t, log: &testutil.LogBuffer{}}
			cred, err := h.issue(h.connectTo(srv.URL, goodKey), leaseMax)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Issue = %v, want an error containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !cred.ExpiresAt.Equal(tt.wantEnd) || cred.Data["expires_at"] != provider.Timestamp(tt.wantEnd):
				t.Errorf("ExpiresAt = %v, expires_at = %v, want %v", cred.ExpiresAt, cred.Data["expires_at"], tt.wantEnd)
			}
		})
	}
}

func TestUpstreamFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault sandbox.Fault
		// calls is how many token requests reach the emulator.
		calls   int
		wantErr string
		check   func(t *testing.T, err error)
	}{
		{name: "500 is not retried", fault: sandbox.Fault{Status: 500}, calls: 1,
			wantErr: "HTTP 500 Internal Server Error: Internal Server Error"},
		{name: "503 once is retried", fault: sandbox.Fault{Status: 503, Times: 1}, calls: 2},
		{name: "503 throughout fails after bounded retries", fault: sandbox.Fault{Status: 503}, calls: 4, wantErr: "HTTP 503"},
		{name: "429 with Retry-After is retried after it", fault: sandbox.Fault{Status: 429, RetryAfter: "1", Times: 1}, calls: 2},
		{name: "429 without Retry-After throughout", fault: sandbox.Fault{Status: 429}, calls: 4, wantErr: "rate limit is exhausted"},
		{name: "429 asking for a long wait is reported at once", fault: sandbox.Fault{Status: 429, RetryAfter: "120"}, calls: 1,
			wantErr: "retry after 2m0s", check: func(t *testing.T, err error) {
				var ue *provider.UpstreamError
				if !errors.As(err, &ue) || ue.RetryAfter != 2*time.Minute {
					t.Errorf("RetryAfter not reported: %#v", err)
				}
			}},
		{name: "dropped connection is retried", fault: sandbox.Fault{Drop: true, Times: 1}, calls: 2},
		{name: "malformed body", fault: sandbox.Fault{Malformed: true}, calls: 1, wantErr: "not the JSON expected"},
		{name: "one attempt past the client timeout is retried", fault: sandbox.Fault{LatencyMS: pastTimeoutMS, Times: 1}, calls: 2},
		{name: "latency past the client timeout throughout fails", fault: sandbox.Fault{LatencyMS: pastTimeoutMS}, calls: 4, wantErr: "Client.Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t)
			conn := h.connect(goodKey)
			waits := recordWaits(conn)
			tt.fault.Path = "/v1/dev/temp-token"
			h.srv.AddFault(tt.fault)
			leaseMax := time.Now().Add(time.Hour)
			cred, err := h.issue(conn, leaseMax)
			if calls := h.srv.Calls()[tokenRoute]; calls != tt.calls {
				t.Errorf("%d token requests, want %d", calls, tt.calls)
			}
			// One wait before every retry, and no more in all than the
			// backoff schedule: a long Retry-After is reported, not
			// waited out.
			if len(waits.All()) != tt.calls-1 || waits.Total() > longestBackoffs {
				t.Errorf("waits %v for %d token requests, want one before each retry and %s at most in all", waits.All(), tt.calls, longestBackoffs)
			}
			if tt.wantErr == "" {
				if err != nil || !h.works(cred.Data["access_token"].(string)) {
					t.Fatalf("Issue = %v, want a working token", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Issue = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
			if err := conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-abc123"}); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			// Nothing can be deleted at dStor; what a failed Issue minted
			// must at least die by the lease's latest end.
			for _, o := range h.srv.Objects() {
				if o.Live && o.ExpiresAt.After(leaseMax) {
					t.Errorf("token %s outlives the lease: %v", o.ID, o.ExpiresAt)
				}
			}
		})
	}
}
