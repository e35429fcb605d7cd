package storable_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

var (
	alice = storable.Client{ID: "alice-client", Secret: "alice-secret", APIKey: "5XOZWgBi472xX72v6inMA6zX8xRxjbH47sqZK0eI"}
	bob   = storable.Client{ID: "bob-client", Secret: "bob-secret", APIKey: "bobZWgBi472xX72v6inMA6zX8xRxjbH47sqZK0eI"}
)

type harness struct {
	t   *testing.T
	srv *sandbox.Server
	// clk is a settable time source shared with the emulator.
	clk *testutil.Clock
}

func start(t *testing.T, opts storable.Options) *harness {
	t.Helper()
	clk := testutil.NewClock(time.Date(2025, 7, 31, 17, 31, 46, 0, time.UTC))
	opts.Clients = []storable.Client{alice, bob}
	opts.Now = clk.Now
	srv := testutil.StartEmulator(t, storable.New(opts))
	return &harness{t: t, srv: srv, clk: clk}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) message(t *testing.T) string {
	t.Helper()
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 {
		t.Fatalf("error body %q is not {\"message\"}", r.body)
	}
	return body["message"]
}

func (h *harness) send(method, path string, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL()+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func tokenRequest(c storable.Client) map[string]string {
	return map[string]string{"Authorization": basic(c.ID, c.Secret), "x-api-key": c.APIKey}
}

// token requests a token for c and checks the documented response shape.
func (h *harness) token(c storable.Client) (string, response) {
	h.t.Helper()
	r := h.send("POST", "/auth/token", tokenRequest(c))
	if r.status != http.StatusOK {
		h.t.Fatalf("token = %d %s", r.status, r.body)
	}
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 2 || body["access_token"] == "" || body["token_type"] != "bearer" {
		h.t.Fatalf("token body %s (%v)", r.body, err)
	}
	return body["access_token"], r
}

func (h *harness) info(token, apiKey string) response {
	h.t.Helper()
	return h.send("GET", "/sample-api/v1/info", map[string]string{"Authorization": "Bearer " + token, "x-api-key": apiKey})
}

func TestTokenResponseMatchesGuide(t *testing.T) {
	h := start(t, storable.Options{})
	token, r := h.token(alice)
	if got := r.header.Get("X-Token-Created-At"); got != "Thu, 31 Jul 2025 17:31:46 GMT" {
		t.Errorf("x-token-created-at = %q", got)
	}
	if got := r.header.Get("X-Token-Lifetime-Seconds"); got != "5400" {
		t.Errorf("x-token-lifetime-seconds = %q", got)
	}
	parts := strings.Split(token, ".")
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if len(parts) != 3 || !strings.HasPrefix(string(header), `{"alg":"RS256","kid":"jwk`) {
		t.Errorf("token header %s, want the documented RS256 JWT", header)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		ClientID string `json:"client_id"`
		Iat, Exp int64
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.ClientID != alice.ID || claims.Exp-claims.Iat != 5400 {
		t.Errorf("claims %s (%v)", payload, err)
	}
	if r := h.info(token, alice.APIKey); r.status != http.StatusOK {
		t.Errorf("info with a fresh token = %d %s", r.status, r.body)
	}
	if again, _ := h.token(alice); again == token {
		t.Error("a second request got the same token; only ReuseTokens does that")
	}
}

func TestTokenErrors(t *testing.T) {
	h := start(t, storable.Options{})
	tests := []struct {
		name      string
		header    map[string]string
		status    int
		message   string
		errorType string
	}{
		{"no api key", map[string]string{"Authorization": basic(alice.ID, alice.Secret)}, 403, "Forbidden", "ForbiddenException"},
		{"unknown api key", map[string]string{"Authorization": basic(alice.ID, alice.Secret), "x-api-key": "nope"}, 403, "Forbidden", "ForbiddenException"},
		{"no basic auth", map[string]string{"x-api-key": alice.APIKey}, 401, "Unauthorized", "UnauthorizedException"},
		{"wrong secret", map[string]string{"Authorization": basic(alice.ID, "wrong"), "x-api-key": alice.APIKey}, 401, "Unauthorized", "UnauthorizedException"},
		{"another client's key", map[string]string{"Authorization": basic(alice.ID, alice.Secret), "x-api-key": bob.APIKey}, 401, "Unauthorized", "UnauthorizedException"},
		{"another client's id", map[string]string{"Authorization": basic(bob.ID, alice.Secret), "x-api-key": alice.APIKey}, 401, "Unauthorized", "UnauthorizedException"},
		{"bearer instead of basic", map[string]string{"Authorization": "Bearer x", "x-api-key": alice.APIKey}, 401, "Unauthorized", "UnauthorizedException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.send("POST", "/auth/token", tt.header)
			if r.status != tt.status || r.message(t) != tt.message || r.header.Get("X-Amzn-ErrorType") != tt.errorType {
				t.Errorf("= %d %s %q, want %d %q %s", r.status, r.body, r.header.Get("X-Amzn-ErrorType"), tt.status, tt.message, tt.errorType)
			}
		})
	}
	if n := len(h.srv.Objects()); n != 0 {
		t.Errorf("%d tokens issued by refused requests", n)
	}
}

func TestUnknownRoutesAreMissingAuthenticationToken(t *testing.T) {
	h := start(t, storable.Options{})
	for _, route := range [][2]string{{"GET", "/auth/token"}, {"POST", "/v1/auth/token"}, {"GET", "/"}} {
		r := h.send(route[0], route[1], tokenRequest(alice))
		if r.status != http.StatusForbidden || r.message(t) != "Missing Authentication Token" {
			t.Errorf("%s %s = %d %s", route[0], route[1], r.status, r.body)
		}
	}
}

func TestSampleAPIChecksKeyAndToken(t *testing.T) {
	h := start(t, storable.Options{})
	token, _ := h.token(alice)
	bobs, _ := h.token(bob)
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["exp"] = claims["exp"].(float64) + 86400
	longer, _ := json.Marshal(claims)
	tests := []struct {
		name, token, apiKey string
		status              int
	}{
		{"valid", token, alice.APIKey, 200},
		{"no api key", token, "", 403},
		{"unknown api key", token, "nope", 403},
		{"another client's token", bobs, alice.APIKey, 401},
		{"garbage token", "garbage", alice.APIKey, 401},
		{"payload swapped", parts[0] + "." + strings.Split(bobs, ".")[1] + "." + parts[2], alice.APIKey, 401},
		{"exp extended", parts[0] + "." + base64.RawURLEncoding.EncodeToString(longer) + "." + parts[2], alice.APIKey, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := h.info(tt.token, tt.apiKey); r.status != tt.status {
				t.Errorf("= %d %s, want %d", r.status, r.body, tt.status)
			}
		})
	}
	h.clk.Advance(5400 * time.Second)
	if r := h.info(token, alice.APIKey); r.status != http.StatusUnauthorized {
		t.Errorf("expired token = %d, want 401", r.status)
	}
}

func TestLifetimeOption(t *testing.T) {
	h := start(t, storable.Options{TokenLifetime: 10 * time.Minute})
	token, r := h.token(alice)
	if r.header.Get("X-Token-Lifetime-Seconds") != "600" {
		t.Errorf("lifetime header %q", r.header.Get("X-Token-Lifetime-Seconds"))
	}
	h.clk.Advance(599 * time.Second)
	if h.info(token, alice.APIKey).status != http.StatusOK {
		t.Error("token died early")
	}
	h.clk.Advance(time.Second)
	if h.info(token, alice.APIKey).status != http.StatusUnauthorized {
		t.Error("token outlived its lifetime")
	}
}

func TestRateLimitIsPerClientIP(t *testing.T) {
	h := start(t, storable.Options{RateLimit: 2})
	h.token(alice)
	h.token(bob)
	r := h.send("POST", "/auth/token", tokenRequest(alice))
	if r.status != http.StatusTooManyRequests || r.message(t) != "Too Many Requests" || r.header.Get("Retry-After") != "" {
		t.Fatalf("third request = %d %s (Retry-After %q), want a bare 429", r.status, r.body, r.header.Get("Retry-After"))
	}
}

func TestRateLimitWindowResets(t *testing.T) {
	h := start(t, storable.Options{RateLimit: 1})
	token, _ := h.token(alice)
	if r := h.send("POST", "/auth/token", tokenRequest(alice)); r.status != http.StatusTooManyRequests {
		t.Fatalf("second request = %d", r.status)
	}
	if r := h.info(token, alice.APIKey); r.status != http.StatusOK {
		t.Errorf("sample API throttled: %d", r.status)
	}
	h.clk.Advance(time.Minute)
	h.token(alice)
}

func TestReuseTokensKeepsCreationTime(t *testing.T) {
	h := start(t, storable.Options{ReuseTokens: true})
	first, r1 := h.token(alice)
	h.clk.Advance(30 * time.Minute)
	second, r2 := h.token(alice)
	if second != first || r2.header.Get("X-Token-Created-At") != r1.header.Get("X-Token-Created-At") {
		t.Errorf("reuse gave a new token or creation time: %q vs %q", r2.header.Get("X-Token-Created-At"), r1.header.Get("X-Token-Created-At"))
	}
	h.clk.Advance(time.Hour)
	if third, _ := h.token(alice); third == first {
		t.Error("an expired token was handed out again")
	}
	objects := h.srv.Objects()
	if len(objects) != 2 || objects[0].Extra["served"] != 2 || objects[0].Live || !objects[1].Live {
		t.Errorf("objects = %+v", objects)
	}
}

func TestObjectsTrackTokensWithoutRevealingThem(t *testing.T) {
	h := start(t, storable.Options{})
	a, _ := h.token(alice)
	b, _ := h.token(bob)
	objects := h.srv.Objects()
	if len(objects) != 2 || objects[0].Owner != alice.ID || objects[1].Owner != bob.ID {
		t.Fatalf("objects = %+v", objects)
	}
	want := h.clk.Now().Add(5400 * time.Second)
	for _, o := range objects {
		if o.Kind != "access_token" || !o.Live || o.State != "valid" || !o.ExpiresAt.Equal(want) || o.ID == "" {
			t.Errorf("object = %+v", o)
		}
	}
	dump, _ := json.Marshal(objects)
	for _, secret := range []string{a, b, alice.Secret, alice.APIKey} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("objects reveal %q", secret)
		}
	}
	h.srv.Reset()
	if n := len(h.srv.Objects()); n != 0 {
		t.Errorf("%d objects after reset", n)
	}
	if h.info(a, alice.APIKey).status != http.StatusOK {
		t.Error("a token stopped working after reset")
	}
}

func TestFaultBodyIsGatewayMessage(t *testing.T) {
	tests := map[int]string{
		429: "Too Many Requests",
		500: "Internal server error",
		502: "Internal server error",
		503: "Service Unavailable",
		504: "Endpoint request timed out",
	}
	for status, want := range tests {
		ct, body := storable.New(storable.Options{}).FaultBody(status)
		var m map[string]string
		if ct != "application/json" || json.Unmarshal(body, &m) != nil || m["message"] != want {
			t.Errorf("FaultBody(%d) = %q %s, want %q", status, ct, body, want)
		}
	}
}

func TestCallsCountByRoute(t *testing.T) {
	h := start(t, storable.Options{})
	token, _ := h.token(alice)
	h.info(token, alice.APIKey)
	h.info(token, alice.APIKey)
	if calls := h.srv.Calls(); calls["POST /auth/token"] != 1 || calls["GET /sample-api/v1/info"] != 2 {
		t.Errorf("calls = %v", calls)
	}
}
