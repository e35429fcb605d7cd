package storable

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const tokenRoute = "POST /auth/token"

var client = emulator.Client{ID: "vault-client", Secret: "client-secret-value", APIKey: "5XOZWgBi472xX72v6inMA6zX8xRxjbH47sqZK0eI"}

type harness struct {
	t   *testing.T
	srv *sandbox.Server
	// clk is a settable time source shared by the emulator and the provider.
	clk *testutil.Clock
	log *testutil.LogBuffer

	mu     sync.Mutex
	tokens []string
}

// start runs the emulator and points both its clock and the provider's at
// one fake clock. Tests in this package therefore never run in parallel.
func start(t *testing.T, opts emulator.Options) *harness {
	t.Helper()
	return startHooked(t, opts, nil)
}

// startHooked is start with before, when set, run on every request ahead of
// the emulator (see testutil.Hooked).
func startHooked(t *testing.T, opts emulator.Options, before func(*http.Request)) *harness {
	t.Helper()
	h := &harness{t: t, clk: testutil.NewClock(time.Date(2025, 7, 31, 17, 31, 46, 0, time.UTC)), log: &testutil.LogBuffer{}}
	opts.Clients = []emulator.Client{client}
	opts.Now = h.clk.Now
	h.useClock()
	// Cleanups run last-registered first: the server closes, then the log
	// is checked, then timeNow is restored.
	t.Cleanup(h.checkLogHasNoSecrets)
	var emu sandbox.Emulator = emulator.New(opts)
	if before != nil {
		emu = testutil.Hooked{Emulator: emu, Before: before}
	}
	h.srv = testutil.StartEmulator(t, emu)
	return h
}

// startHoldingTokens starts the emulator with every token request held until
// the returned hold is released.
func startHoldingTokens(t *testing.T) (*harness, *testutil.Hold) {
	t.Helper()
	hold := testutil.NewHold(func(r *http.Request) bool { return r.URL.Path == tokenPath })
	t.Cleanup(hold.Release)
	return startHooked(t, emulator.Options{}, hold.Before), hold
}

// patient is h.connect with an HTTP timeout no held request reaches, so that
// only the test decides when the token request ends.
func (h *harness) patient() *connection {
	conn := h.connect()
	conn.client.HTTP = &http.Client{Timeout: 2 * testutil.Failsafe}
	return conn
}

// tokenWaiters signals once for every caller that starts waiting for a
// shared token request.
func tokenWaiters(t *testing.T) <-chan struct{} {
	t.Helper()
	joined := make(chan struct{}, 1024)
	tokenWaiter = func() { joined <- struct{}{} }
	t.Cleanup(func() { tokenWaiter = nil })
	return joined
}

// recordWaits makes conn's client note the waits it asks for, backoffs and
// Retry-Afters, instead of spending them.
func recordWaits(conn *connection) *testutil.Waits {
	waits := &testutil.Waits{}
	conn.client.Sleep = waits.Sleep
	return waits
}

func (h *harness) useClock() {
	previous := timeNow
	timeNow = h.clk.Now
	h.t.Cleanup(func() { timeNow = previous })
}

// checkLogHasNoSecrets: every test logs at trace level; none may log a secret.
func (h *harness) checkLogHasNoSecrets() {
	h.mu.Lock()
	defer h.mu.Unlock()
	basic := base64.StdEncoding.EncodeToString([]byte(client.ID + ":" + client.Secret))
	for _, secret := range append(h.tokens, client.Secret, client.APIKey, basic) {
		if strings.Contains(h.log.String(), secret) {
			h.t.Errorf("the log contains the secret %q", secret)
		}
	}
}

func (h *harness) connect() *connection {
	h.t.Helper()
	return h.connectTo(h.srv.URL(), provider.Values{fieldClientID: client.ID, fieldClientSecret: client.Secret, fieldAPIKey: client.APIKey})
}

func (h *harness) connectTo(baseURL string, values provider.Values) *connection {
	h.t.Helper()
	conn, err := New().Connect(provider.ConnectionConfig{
		Name:       "sandbox",
		BaseURL:    baseURL,
		Values:     values,
		HTTPClient: &http.Client{Timeout: 500 * time.Millisecond},
		Logger:     hclog.New(&hclog.LoggerOptions{Output: h.log, Level: hclog.Trace}),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return conn.(*connection)
}

func (h *harness) issueCtx(ctx context.Context, conn *connection, ttl time.Duration) (*provider.Credential, error) {
	cred, err := conn.Issue(ctx, provider.IssueRequest{
		RoleName: "app", Name: "vault-app-abc123", TTL: ttl, ExpiresAt: h.clk.Now().Add(ttl),
	})
	if err == nil {
		h.mu.Lock()
		h.tokens = append(h.tokens, cred.Data["access_token"].(string))
		h.mu.Unlock()
	}
	return cred, err
}

func (h *harness) issue(conn *connection, ttl time.Duration) *provider.Credential {
	h.t.Helper()
	cred, err := h.issueCtx(context.Background(), conn, ttl)
	if err != nil {
		h.t.Fatalf("Issue(ttl %s): %v", ttl, err)
	}
	return cred
}

func (h *harness) tokenCalls() int { return h.srv.Calls()[tokenRoute] }

// works reports whether Storable's sample API accepts the credential.
func (h *harness) works(cred *provider.Credential) bool {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL()+"/sample-api/v1/info", nil)
	req.Header.Set("Authorization", "Bearer "+cred.Data["access_token"].(string))
	req.Header.Set("x-api-key", client.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func TestConnectValidates(t *testing.T) {
	good := provider.Values{fieldClientID: "id", fieldClientSecret: "s e c r e t", fieldAPIKey: "key"}
	tests := []struct {
		name   string
		change provider.Values
		ok     bool
	}{
		{"all set; a secret may hold spaces", nil, true},
		{"no client_id", provider.Values{fieldClientID: ""}, false},
		{"no client_secret", provider.Values{fieldClientSecret: ""}, false},
		{"no api_key", provider.Values{fieldAPIKey: ""}, false},
		{"colon in client_id", provider.Values{fieldClientID: "a:b"}, false},
		{"space in api_key", provider.Values{fieldAPIKey: "a b"}, false},
		{"newline in client_secret", provider.Values{fieldClientSecret: "a\nb"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := good.Clone()
			for k, v := range tt.change {
				values[k] = v
			}
			_, err := New().Connect(provider.ConnectionConfig{Values: values})
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, provider.ErrInvalidInput)) {
				t.Fatalf("Connect = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestVerifyCachesTokenForIssue(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	if err := conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !h.works(h.issue(conn, 5*time.Minute)) {
		t.Error("issued token does not work")
	}
	if n := h.tokenCalls(); n != 1 {
		t.Errorf("%d token requests for Verify then Issue, want 1", n)
	}
}

func TestVerifyRejectsBadRoot(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		change   provider.Values
		rejected bool
		want     string
	}{
		{"wrong client secret", "", provider.Values{fieldClientSecret: "wrong-secret"}, true, "HTTP 401 Unauthorized (UnauthorizedException): Unauthorized: the upstream rejected the root credential: check client_id and client_secret"},
		{"wrong client id", "", provider.Values{fieldClientID: "someone-else"}, true, "check client_id and client_secret"},
		{"wrong api key", "", provider.Values{fieldAPIKey: "wrong-api-key"}, true, "HTTP 403 Forbidden (ForbiddenException): Forbidden: the upstream rejected the root credential: check api_key"},
		{"wrong base_url", "/v1", nil, false, "Missing Authentication Token: no such route: check base_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, emulator.Options{})
			values := provider.Values{fieldClientID: client.ID, fieldClientSecret: client.Secret, fieldAPIKey: client.APIKey}
			for k, v := range tt.change {
				values[k] = v
			}
			err := h.connectTo(h.srv.URL()+tt.path, values).Verify(context.Background())
			if err == nil || errors.Is(err, provider.ErrRootRejected) != tt.rejected || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want rejected=%v and %q", err, tt.rejected, tt.want)
			}
			for _, secret := range []string{client.Secret, client.APIKey, "wrong-secret", "wrong-api-key"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals %q", secret)
				}
			}
			if n := h.srv.TotalCalls(); n != 1 {
				t.Errorf("%d requests, want 1 (a refusal is not retried)", n)
			}
		})
	}
}

func TestIssueReturnsWorkingToken(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	cred := h.issue(conn, 5*time.Minute)
	wantEnd := h.clk.Now().Add(5400*time.Second - safetyMargin)
	if len(cred.Data) != 3 || cred.Data["token_type"] != "bearer" || cred.Data["expires_at"] != "2025-07-31T19:00:46Z" || !cred.ExpiresAt.Equal(wantEnd) {
		t.Errorf("data = %v, ExpiresAt = %v, want token_type bearer and the end %v", cred.Data, cred.ExpiresAt, wantEnd)
	}
	if !h.works(cred) {
		t.Error("issued token does not work at Storable")
	}
	if len(cred.Warnings) != 1 || !strings.Contains(cred.Warnings[0], "no revocation API") || !strings.Contains(cred.Warnings[0], `connection "sandbox"`) {
		t.Errorf("warnings = %q", cred.Warnings)
	}
	if len(cred.Ref) != 3 || cred.Ref[refExpiresAt] != "2025-07-31T19:00:46Z" || cred.Ref[refCreatedAt] != "2025-07-31T17:31:46Z" || len(cred.Ref[refTokenID]) != 16 {
		t.Errorf("ref = %v", cred.Ref)
	}
	for _, v := range cred.Ref {
		if strings.Contains(cred.Data["access_token"].(string), v) {
			t.Errorf("ref value %q is part of the token", v)
		}
	}
}

func TestCacheReuseAndRefetchNearExpiry(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	first := h.issue(conn, 5*time.Minute)
	steps := []struct {
		advance time.Duration
		fresh   bool
	}{
		{80 * time.Minute, false},             // 9m of usable life left covers 5m
		{4*time.Minute - time.Second, false},  // 5m1s left still does
		{time.Second, true},                   // exactly 5m left does not
		{84*time.Minute - time.Second, false}, // the new token, 5m1s before its usable end
	}
	previous := first
	for i, s := range steps {
		h.clk.Advance(s.advance)
		cred := h.issue(conn, 5*time.Minute)
		same := cred.Data["access_token"] == previous.Data["access_token"]
		if same == s.fresh {
			t.Fatalf("step %d: fresh token = %v, want %v", i, !same, s.fresh)
		}
		if !cred.ExpiresAt.After(h.clk.Now()) || !h.works(cred) {
			t.Fatalf("step %d: credential ends at %v or does not work", i, cred.ExpiresAt)
		}
		previous = cred
	}
	if n := h.tokenCalls(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

func TestTTLBeyondRemainingLife(t *testing.T) {
	tests := []struct {
		name  string
		age   time.Duration
		ttl   time.Duration
		fresh bool
	}{
		{"ttl longer than the remaining life gets a fresh token", 40 * time.Minute, time.Hour, true},
		{"ttl fitting the remaining life reuses", 28 * time.Minute, time.Hour, false},
		{"ttl beyond any token reuses a token with 9/10 of its life", 5 * time.Minute, 2 * time.Hour, false},
		{"ttl beyond any token refetches below 9/10", 10 * time.Minute, 2 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, emulator.Options{})
			conn := h.connect()
			first := h.issue(conn, time.Minute)
			h.clk.Advance(tt.age)
			cred := h.issue(conn, tt.ttl)
			if fresh := cred.Data["access_token"] != first.Data["access_token"]; fresh != tt.fresh {
				t.Fatalf("fresh token = %v, want %v", fresh, tt.fresh)
			}
			tokenEnd := first.ExpiresAt
			if tt.fresh {
				tokenEnd = h.clk.Now().Add(5400*time.Second - safetyMargin)
			}
			if !cred.ExpiresAt.Equal(tokenEnd) {
				t.Errorf("ExpiresAt = %v, want the token's usable end %v", cred.ExpiresAt, tokenEnd)
			}
		})
	}
}

func TestFreshTokenShorterThanTTLCapsTheLease(t *testing.T) {
	h := start(t, emulator.Options{})
	cred := h.issue(h.connect(), 24*time.Hour)
	if want := h.clk.Now().Add(89 * time.Minute); !cred.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want the token's usable end %v", cred.ExpiresAt, want)
	}
}

// TestHundredReadsCostOneTokenRequest: 100 creds reads, ten at a time, spread
// over most of one token's life.
func TestHundredReadsCostOneTokenRequest(t *testing.T) {
	h, hold := startHoldingTokens(t)
	conn := h.patient()
	// The first batch overlaps its token request, so it must share it: the
	// request is held until all ten wait for it.
	joined := tokenWaiters(t)
	go func() {
		if err := testutil.Receive(joined, 10, "the first ten reads to wait for the token request"); err != nil {
			t.Error(err)
		}
		hold.Release()
	}()
	tokens := sync.Map{}
	for batch := range 10 {
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				cred, err := h.issueCtx(context.Background(), conn, 5*time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				tokens.Store(cred.Data["access_token"], true)
			})
		}
		wg.Wait()
		if batch == 0 && h.tokenCalls() != 1 {
			t.Fatalf("10 concurrent first reads made %d token requests", h.tokenCalls())
		}
		h.clk.Advance(8 * time.Minute)
	}
	distinct := 0
	tokens.Range(func(any, any) bool { distinct++; return true })
	if n := h.tokenCalls(); n != 1 || distinct != 1 {
		t.Errorf("100 reads made %d token requests and saw %d tokens, want 1 and 1", n, distinct)
	}
}

func TestConcurrentIssuesShareOneTokenRequest(t *testing.T) {
	h, hold := startHoldingTokens(t)
	conn := h.patient()
	// The token request is held until all 100 issues wait for it.
	joined := tokenWaiters(t)
	go func() {
		if err := testutil.Receive(joined, 100, "100 issues to wait for the token request"); err != nil {
			t.Error(err)
		}
		hold.Release()
	}()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := h.issueCtx(context.Background(), conn, 5*time.Minute); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := h.tokenCalls(); n != 1 {
		t.Errorf("100 concurrent issues made %d token requests, want 1", n)
	}
}

func TestCallerGivingUpDoesNotFailOthers(t *testing.T) {
	h, hold := startHoldingTokens(t)
	conn := h.patient()
	joined := tokenWaiters(t)
	impatient, cancel := context.WithCancel(context.Background())
	defer cancel()
	var impatientErr, patientErr error
	impatientDone := make(chan struct{})
	go func() {
		defer close(impatientDone)
		_, impatientErr = h.issueCtx(impatient, conn, time.Minute)
	}()
	// The impatient caller's token request is at Storable; the patient
	// caller joins it; then the impatient one gives up, and only after
	// that does Storable answer.
	testutil.Await(t, hold.Arrived(), 1, "the impatient caller's token request")
	var wg sync.WaitGroup
	wg.Go(func() { _, patientErr = h.issueCtx(context.Background(), conn, time.Minute) })
	testutil.Await(t, joined, 2, "both callers to wait for the token request")
	cancel()
	testutil.Await(t, impatientDone, 1, "the impatient caller to give up")
	hold.Release()
	wg.Wait()
	if !errors.Is(impatientErr, context.Canceled) || patientErr != nil {
		t.Errorf("impatient = %v, patient = %v; want only the impatient caller to fail", impatientErr, patientErr)
	}
	if n := h.tokenCalls(); n != 1 {
		t.Errorf("%d token requests, want 1 shared", n)
	}
}

func TestRefreshTakesTokenCachedSinceCallerLooked(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	// A caller that found no token (seen == nil) may reach refresh just
	// after another caller's request cached one.
	if err := conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := conn.refresh(context.Background(), nil)
	if err != nil || got != conn.currentToken() {
		t.Fatalf("refresh = %v, %v; want the cached token", got, err)
	}
	if n := h.tokenCalls(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestCloseDropsCache(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	if err := conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	h.issue(conn, time.Minute)
	if n := h.tokenCalls(); n != 2 {
		t.Errorf("%d token requests, want a new one after Close", n)
	}
}

func TestRevokeAndRollbackKeepSharedToken(t *testing.T) {
	h := start(t, emulator.Options{})
	conn := h.connect()
	a := h.issue(conn, 5*time.Minute)
	b := h.issue(conn, 5*time.Minute)
	for range 2 {
		if err := conn.Revoke(context.Background(), a.Ref); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	if err := conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-abc123", RoleName: "app"}); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	c := h.issue(conn, 5*time.Minute)
	if !h.works(b) || c.Data["access_token"] != b.Data["access_token"] {
		t.Error("revoking one lease broke the token the others share")
	}
	if !h.works(a) {
		t.Error("the revoked lease's token stopped working; Storable cannot revoke, so the warning would be wrong")
	}
	if n := h.tokenCalls(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestRotateRootIsUnsupported(t *testing.T) {
	h := start(t, emulator.Options{})
	staged := false
	_, err := h.connect().RotateRoot(context.Background(), func(provider.Values) error { staged = true; return nil })
	if !errors.Is(err, provider.ErrRotationUnsupported) || !strings.Contains(err.Error(), "API Integration team") || staged {
		t.Errorf("RotateRoot = %v (staged %v)", err, staged)
	}
}

func TestServerSideReusedTokenKeepsItsCreationTime(t *testing.T) {
	h := start(t, emulator.Options{ReuseTokens: true})
	first := h.issue(h.connect(), time.Minute)
	h.clk.Advance(30 * time.Minute)
	second := h.issue(h.connect(), time.Minute)
	if second.Data["access_token"] != first.Data["access_token"] || !second.ExpiresAt.Equal(first.ExpiresAt) {
		t.Errorf("reused token ends at %v, want its first end %v", second.ExpiresAt, first.ExpiresAt)
	}
}

func TestUpstreamError(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		header      map[string]string
		body        string
		wantCode    string
		wantMessage string
		wantRetry   time.Duration
	}{
		{"gateway forbidden", 403, map[string]string{"Content-Type": "application/json", "X-Amzn-ErrorType": "ForbiddenException"}, `{"message":"Forbidden"}`, "ForbiddenException", "Forbidden", 0},
		{"error type with detail", 401, map[string]string{"X-Amzn-ErrorType": "UnauthorizedException:http://internal.amazon.com/coral/"}, `{"message":"Unauthorized"}`, "UnauthorizedException", "Unauthorized", 0},
		{"AWS capitalised Message", 403, map[string]string{"Content-Type": "application/json"}, `{"Message":"User is not authorized to access this resource"}`, "", "User is not authorized to access this resource", 0},
		{"throttled", 429, map[string]string{"Content-Type": "application/json"}, `{"message":"Too Many Requests"}`, "", "Too Many Requests", 0},
		{"quota with Retry-After", 429, map[string]string{"Retry-After": "30"}, `{"message":"Limit Exceeded"}`, "", "Limit Exceeded", 30 * time.Second},
		{"plain text", 502, map[string]string{"Content-Type": "text/plain"}, "Bad Gateway\n", "", "Bad Gateway", 0},
		{"html", 502, map[string]string{"Content-Type": "text/html"}, "<html>502</html>", "", "", 0},
		{"empty", 500, nil, "", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &provider.Response{Status: tt.status, Header: http.Header{}, Body: []byte(tt.body)}
			for k, v := range tt.header {
				resp.Header.Set(k, v)
			}
			ue := upstreamError("op", resp)
			if ue.Status != tt.status || ue.Code != tt.wantCode || ue.Message != tt.wantMessage || ue.RetryAfter != tt.wantRetry {
				t.Errorf("= %+v, want code %q message %q retry %s", ue, tt.wantCode, tt.wantMessage, tt.wantRetry)
			}
		})
	}
}

// TestTokenResponseHeaders covers answers the emulator does not give but
// Storable might: missing or odd headers and a clock ahead of Vault's.
func TestTokenResponseHeaders(t *testing.T) {
	now := time.Date(2025, 7, 31, 17, 31, 46, 0, time.UTC)
	const body = `{"access_token":"header.payload.sig","token_type":"bearer"}`
	tests := []struct {
		name, createdAt, lifetime, body string
		wantEnd                         time.Time
		wantAssumed                     bool
		wantErr                         string
	}{
		{"both headers", "Thu, 31 Jul 2025 17:00:00 GMT", "5400", body, time.Date(2025, 7, 31, 18, 29, 0, 0, time.UTC), false, ""},
		{"created-at missing: the answer's time", "", "600", body, now.Add(9 * time.Minute), false, ""},
		{"created-at unparsable", "yesterday", "600", body, now.Add(9 * time.Minute), false, ""},
		{"created-at ahead of Vault's clock", "Thu, 31 Jul 2025 17:41:46 GMT", "600", body, now.Add(9 * time.Minute), false, ""},
		{"created-at in RFC 850 form", "Thursday, 31-Jul-25 17:31:00 GMT", "600", body, now.Add(8*time.Minute + 14*time.Second), false, ""},
		{"lifetime missing: 5400 assumed", "Thu, 31 Jul 2025 17:31:46 GMT", "", body, now.Add(89 * time.Minute), true, ""},
		{"lifetime not a number", "Thu, 31 Jul 2025 17:31:46 GMT", "90m", body, now.Add(89 * time.Minute), true, ""},
		{"lifetime zero", "Thu, 31 Jul 2025 17:31:46 GMT", "0", body, now.Add(89 * time.Minute), true, ""},
		{"no token_type: bearer", "", "600", `{"access_token":"t"}`, now.Add(9 * time.Minute), false, ""},
		{"token already past its usable end", "Thu, 31 Jul 2025 16:00:00 GMT", "5400", body, time.Time{}, false, "too soon to lease"},
		{"no access_token", "", "600", `{"token_type":"bearer"}`, time.Time{}, false, "no access_token"},
		{"not JSON", "", "600", `token`, time.Time{}, false, "not the JSON expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tt.createdAt != "" {
					w.Header().Set("X-Token-Created-At", tt.createdAt)
				}
				if tt.lifetime != "" {
					w.Header().Set("X-Token-Lifetime-Seconds", tt.lifetime)
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			h := &harness{t: t, clk: testutil.NewClock(now), log: &testutil.LogBuffer{}}
			h.useClock()
			conn := h.connectTo(srv.URL, provider.Values{fieldClientID: client.ID, fieldClientSecret: client.Secret, fieldAPIKey: client.APIKey})
			cred, err := h.issueCtx(context.Background(), conn, time.Minute)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Issue = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assumed := len(cred.Warnings) == 2 && strings.Contains(cred.Warnings[1], "assumed to live the documented 1h30m0s")
			if !cred.ExpiresAt.Equal(tt.wantEnd) || assumed != tt.wantAssumed || cred.Data["token_type"] != "bearer" {
				t.Errorf("ExpiresAt = %v, warnings %q, type %v; want %v, assumed lifetime %v", cred.ExpiresAt, cred.Warnings, cred.Data["token_type"], tt.wantEnd, tt.wantAssumed)
			}
		})
	}
}

func TestRateLimitIsReportedNotHammered(t *testing.T) {
	h := start(t, emulator.Options{RateLimit: 1})
	conn := h.connect()
	if err := conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waits := recordWaits(conn)
	_, err := h.issueCtx(context.Background(), conn, time.Minute)
	var ue *provider.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 429 || ue.Message != "Too Many Requests" || errors.Is(err, provider.ErrRootRejected) ||
		!strings.Contains(err.Error(), "rate limit is exhausted, retry later") {
		t.Fatalf("Issue over the rate limit = %v", err)
	}
	// Backed off: a wait before each of the three retries, 875 ms at least
	// (jittered halves of 250 ms, 500 ms and 1 s).
	if n := h.tokenCalls(); n != 1+4 || len(waits.All()) != 3 || waits.Total() < 875*time.Millisecond {
		t.Errorf("%d token requests after waits %v, want 1 + 4 backed-off tries", n, waits.All())
	}
	h.clk.Advance(time.Minute)
	h.issue(conn, time.Minute)
}

// pastTimeoutMS outlasts the harness's 500 ms client timeout so far that the
// client always gives up first, whatever the load (the sandbox then
// abandons the request).
const pastTimeoutMS = 60_000

// longestBackoffs is the most provider.Client's backoff asks for over its
// four attempts (jittered waits of at most 250 ms, 500 ms and 1 s).
const longestBackoffs = 1750 * time.Millisecond

func TestUpstreamFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   sandbox.Fault
		calls   int
		wantErr string
	}{
		{"500 is not retried", sandbox.Fault{Status: 500}, 1, "HTTP 500 Internal Server Error: Internal server error"},
		{"503 once is retried", sandbox.Fault{Status: 503, Times: 1}, 2, ""},
		{"503 throughout fails after bounded retries", sandbox.Fault{Status: 503}, 4, "HTTP 503 Service Unavailable: Service Unavailable"},
		{"429 with Retry-After is retried after it", sandbox.Fault{Status: 429, RetryAfter: "1", Times: 1}, 2, ""},
		{"429 without Retry-After throughout", sandbox.Fault{Status: 429}, 4, "rate limit is exhausted"},
		{"429 asking for a long wait is reported at once", sandbox.Fault{Status: 429, RetryAfter: "3600"}, 1, "retry after 1h0m0s"},
		{"dropped connection is retried", sandbox.Fault{Drop: true, Times: 1}, 2, ""},
		{"malformed body", sandbox.Fault{Malformed: true, Times: 1}, 1, "not the JSON expected"},
		{"one attempt past the client timeout is retried", sandbox.Fault{LatencyMS: pastTimeoutMS, Times: 1}, 2, ""},
		{"latency past the client timeout throughout fails", sandbox.Fault{LatencyMS: pastTimeoutMS}, 4, "Client.Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, emulator.Options{})
			conn := h.connect()
			waits := recordWaits(conn)
			tt.fault.Path = "/auth/token"
			h.srv.AddFault(tt.fault)
			cred, err := h.issueCtx(context.Background(), conn, time.Minute)
			if n := h.tokenCalls(); n != tt.calls {
				t.Errorf("%d token requests, want %d", n, tt.calls)
			}
			// One wait before every retry, and no more in all than the
			// backoff schedule: a long Retry-After is reported, not
			// waited out.
			if len(waits.All()) != tt.calls-1 || waits.Total() > longestBackoffs {
				t.Errorf("waits %v for %d token requests, want one before each retry and %s at most in all", waits.All(), tt.calls, longestBackoffs)
			}
			if tt.wantErr == "" {
				if err != nil || !h.works(cred) {
					t.Fatalf("Issue = %v, want a working token", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Issue = %v, want an error containing %q", err, tt.wantErr)
			}
			if err := conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-abc123"}); err != nil {
				t.Fatal(err)
			}
			// A failed request leaves no broken token cached: the next
			// read asks again and gets a working one.
			h.srv.ClearFaults()
			h.srv.ResetCalls()
			if !h.works(h.issue(conn, time.Minute)) || h.tokenCalls() != 1 {
				t.Errorf("after the fault: %d token requests", h.tokenCalls())
			}
		})
	}
}
