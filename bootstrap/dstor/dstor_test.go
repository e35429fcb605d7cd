package dstor_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	goodKey     = "5xikF8a5wcJeqVrtQE8OffKvtR9qaRxPXXJAedhIiNFWJbNsGqsdPfJ5eDYY7n92"
	disabledKey = "disabledF8a5wcJeqVrtQE8OffKvtR9qaRxPXXJAedhIiNFWJbNsGqsdPfJ5eDYY"
	account     = "0b6e2f43-5d0c-4f5e-9a57-0d6a3c0c8d11"
)

type harness struct {
	t   *testing.T
	srv *sandbox.Server
	// clk is a settable time source shared with the emulator.
	clk *testutil.Clock
}

func start(t *testing.T) *harness {
	t.Helper()
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	emu := dstor.New(dstor.Options{Now: clk.Now, APIKeys: []dstor.APIKey{
		{Key: goodKey, Account: account},
		{Key: disabledKey, Disabled: true},
	}})
	srv := testutil.StartEmulator(t, emu)
	return &harness{t: t, srv: srv, clk: clk}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (h *harness) get(path string, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL()+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
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

// mint asks for a token and returns it, failing the test on anything but 200.
func (h *harness) mint(header map[string]string) string {
	h.t.Helper()
	r := h.get("/v1/dev/temp-token", header)
	if r.status != http.StatusOK {
		h.t.Fatalf("temp-token = %d %s", r.status, r.body)
	}
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 || body["access_token"] == "" {
		h.t.Fatalf("temp-token body %s (%v), want only access_token", r.body, err)
	}
	return body["access_token"]
}

func (h *harness) status(token string) int {
	h.t.Helper()
	return h.get("/v1/upload/get-status/", map[string]string{"Authorization": "Bearer " + token}).status
}

func TestTokenHasDocumentedClaims(t *testing.T) {
	h := start(t)
	now := h.clk.Now().Unix()
	token := h.mint(map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(now+3600, 10)})
	got := testutil.JWTClaims(t, token)
	want := map[string]any{
		"d": false, "o": false, "s": false, "t": nil,
		"iat": float64(now), "exp": float64(now + 3600),
		"aud": "dstor.cloud", "iss": "dstor.cloud", "sub": account,
	}
	if len(got) != len(want) {
		t.Fatalf("claims = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("claim %s = %v, want %v", k, got[k], v)
		}
	}
	if h.status(token) != http.StatusOK {
		t.Error("fresh token refused")
	}
}

func TestExpirationHeader(t *testing.T) {
	h := start(t)
	now := h.clk.Now().Unix()
	tests := []struct {
		name, value string
		wantExp     int64
	}{
		{"integer", strconv.FormatInt(now+60, 10), now + 60},
		{"float, as some clients send", strconv.FormatInt(now+3600, 10) + ".75", now + 3600},
		{"absent means one year", "", now + 365*24*3600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]string{"api-key": goodKey}
			if tt.value != "" {
				header["x-expiration"] = tt.value
			}
			if exp := testutil.JWTClaims(t, h.mint(header))["exp"]; exp != float64(tt.wantExp) {
				t.Errorf("exp = %v, want %d", exp, tt.wantExp)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	h := start(t)
	now := h.clk.Now().Unix()
	future := strconv.FormatInt(now+60, 10)
	tests := []struct {
		name   string
		header map[string]string
		status int
		// message is part of the {"message"} body.
		message string
	}{
		{"no key", map[string]string{"x-expiration": future}, 401, "Unauthorized"},
		{"unknown key", map[string]string{"api-key": "nope", "x-expiration": future}, 401, "Unauthorized"},
		{"disabled key", map[string]string{"api-key": disabledKey}, 401, "Unauthorized"},
		{"x-api-key is not the header", map[string]string{"x-api-key": goodKey}, 401, "Unauthorized"},
		{"expiration in the past", map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(now-1, 10)}, 400, "in the past"},
		{"expiration now", map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(now, 10)}, 400, "in the past"},
		{"expiration not a number", map[string]string{"api-key": goodKey, "x-expiration": "tomorrow"}, 400, "unix timestamp"},
		{"expiration out of range", map[string]string{"api-key": goodKey, "x-expiration": "1e300"}, 400, "unix timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.get("/v1/dev/temp-token", tt.header)
			var body map[string]string
			if r.status != tt.status || json.Unmarshal(r.body, &body) != nil || !strings.Contains(body["message"], tt.message) {
				t.Errorf("= %d %s, want %d with a message containing %q", r.status, r.body, tt.status, tt.message)
			}
		})
	}
	if n := len(h.srv.Objects()); n != 0 {
		t.Errorf("%d tokens issued by refused requests", n)
	}
}

func TestProtectedRouteChecksTokens(t *testing.T) {
	h := start(t)
	token := h.mint(map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(h.clk.Now().Unix()+600, 10)})
	parts := strings.Split(token, ".")
	forged := map[string]any{"exp": 4102444800, "aud": "dstor.cloud", "sub": account}
	forgedPayload, _ := json.Marshal(forged)
	other := dstor.New(dstor.Options{APIKeys: []dstor.APIKey{{Key: goodKey}}})
	otherSrv := testutil.StartEmulator(t, other)
	foreign := (&harness{t: t, srv: otherSrv}).mint(map[string]string{"api-key": goodKey})

	for name, header := range map[string]map[string]string{
		"no token":        {},
		"not bearer":      {"Authorization": "Basic " + token},
		"garbage":         {"Authorization": "Bearer garbage"},
		"forged payload":  {"Authorization": "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString(forgedPayload) + "." + parts[2]},
		"other emulator":  {"Authorization": "Bearer " + foreign},
		"api key instead": {"Authorization": "Bearer " + goodKey},
	} {
		if r := h.get("/v1/upload/get-status/", header); r.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, r.status)
		}
	}
	if h.status(token) != http.StatusOK {
		t.Fatal("valid token refused")
	}
	h.clk.Advance(10 * time.Minute)
	if h.status(token) != http.StatusUnauthorized {
		t.Error("token accepted at its exp")
	}
}

func TestObjectsTrackTokensWithoutRevealingThem(t *testing.T) {
	h := start(t)
	now := h.clk.Now()
	short := h.mint(map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(now.Unix()+60, 10)})
	long := h.mint(map[string]string{"api-key": goodKey, "x-expiration": strconv.FormatInt(now.Unix()+3600, 10)})
	h.clk.Advance(2 * time.Minute)
	objects := h.srv.Objects()
	if len(objects) != 2 {
		t.Fatalf("objects = %+v", objects)
	}
	wantExpiry := []time.Time{now.Add(time.Minute), now.Add(time.Hour)}
	wantLive := []bool{false, true}
	for i, o := range objects {
		if o.Kind != "temp_token" || o.Owner != account || o.Live != wantLive[i] || o.ExpiresAt == nil || !o.ExpiresAt.Equal(wantExpiry[i]) || o.ID == "" {
			t.Errorf("object %d = %+v", i, o)
		}
		if o.Extra["x_expiration"] != strconv.FormatInt(wantExpiry[i].Unix(), 10) {
			t.Errorf("object %d x_expiration = %v", i, o.Extra["x_expiration"])
		}
	}
	dump, _ := json.Marshal(objects)
	for _, secret := range []string{short, long, goodKey} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("objects reveal %q", secret)
		}
	}
}

func TestResetForgetsTokensThatStillWork(t *testing.T) {
	h := start(t)
	token := h.mint(map[string]string{"api-key": goodKey})
	h.srv.Reset()
	if n := len(h.srv.Objects()); n != 0 {
		t.Errorf("%d objects after reset", n)
	}
	if h.status(token) != http.StatusOK {
		t.Error("a stateless token stopped working after reset")
	}
}

func TestUnknownRouteIsPlainText404(t *testing.T) {
	h := start(t)
	r := h.get("/dev/temp-token", map[string]string{"api-key": goodKey})
	if r.status != http.StatusNotFound || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || string(r.body) != "404 page not found" {
		t.Errorf("= %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
}

func TestFaultBodyIsJSONMessage(t *testing.T) {
	for _, status := range []int{429, 500, 503} {
		ct, body := dstor.New(dstor.Options{}).FaultBody(status)
		var m map[string]string
		if !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &m) != nil || m["message"] != http.StatusText(status) {
			t.Errorf("FaultBody(%d) = %q %s", status, ct, body)
		}
	}
}

func TestCallsCountByRoute(t *testing.T) {
	h := start(t)
	token := h.mint(map[string]string{"api-key": goodKey})
	h.mint(map[string]string{"api-key": goodKey})
	h.status(token)
	calls := h.srv.Calls()
	if calls["GET /v1/dev/temp-token"] != 2 || calls["GET /v1/upload/get-status/"] != 1 {
		t.Errorf("calls = %v", calls)
	}
}
