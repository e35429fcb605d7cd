package storyden_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	adminPassword  = "admin-password"
	memberPassword = "member-password"
	alicePassword  = "alice-password"
)

var (
	xidPattern    = regexp.MustCompile(`^[0-9a-v]{20}$`)
	secretPattern = regexp.MustCompile(`^sdpak_[A-Za-z0-9]{44}$`)
)

// seededAccounts: an admin, a plain member and a member who may use
// personal access keys.
func seededAccounts() []storyden.Account {
	return []storyden.Account{
		{Handle: "vault-admin", Password: adminPassword, Admin: true},
		{Handle: "member", Password: memberPassword},
		{Handle: "alice", Password: alicePassword, Permissions: []string{storyden.PermissionUsePersonalAccessKeys}},
	}
}

// newClock is a settable time source for expiry and rate-limit tests.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

type harness struct {
	t      *testing.T
	srv    *sandbox.Server
	emu    *storyden.Emulator
	client *http.Client
}

func start(t *testing.T, opts storyden.Options) *harness {
	t.Helper()
	if opts.Accounts == nil {
		opts.Accounts = seededAccounts()
	}
	emu := storyden.New(opts)
	srv := testutil.StartEmulator(t, emu)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &harness{t: t, srv: srv, emu: emu, client: client}
}

// auth adds a credential to a request.
type auth func(*http.Request)

func session(token string) auth {
	return func(r *http.Request) { r.Header.Set("Cookie", "storyden-session="+token) }
}

func bearer(secret string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) cookie() *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "storyden-session" {
			return c
		}
	}
	return nil
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// send is safe to call from any goroutine.
func (h *harness) send(method, path, body string, auths ...auth) (response, error) {
	req, err := http.NewRequest(method, h.srv.URL()+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, a := range auths {
		a(req)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

func (h *harness) do(method, path, body string, auths ...auth) response {
	h.t.Helper()
	r, err := h.send(method, path, body, auths...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (h *harness) expect(want int, method, path, body string, auths ...auth) response {
	h.t.Helper()
	r := h.do(method, path, body, auths...)
	if r.status != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

func credentials(handle, password string) string {
	b, _ := json.Marshal(map[string]string{"identifier": handle, "token": password})
	return string(b)
}

func (h *harness) signIn(handle, password string) string {
	h.t.Helper()
	c := h.expect(200, "POST", "/api/auth/password/signin", credentials(handle, password)).cookie()
	if c == nil {
		h.t.Fatal("sign-in set no session cookie")
	}
	return c.Value
}

type issuedKey struct {
	ID        string     `json:"id"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
	Enabled   bool       `json:"enabled"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
	Secret    string     `json:"secret"`
}

func (h *harness) createKey(sess, name string, expiresAt *time.Time) issuedKey {
	h.t.Helper()
	body := map[string]any{"name": name}
	if expiresAt != nil {
		body["expires_at"] = expiresAt.Format(time.RFC3339)
	}
	b, _ := json.Marshal(body)
	var k issuedKey
	h.expect(200, "POST", "/api/auth/access-keys", string(b), session(sess)).decode(h.t, &k)
	return k
}

type listedKey struct {
	ID      string  `json:"id"`
	Enabled bool    `json:"enabled"`
	Name    string  `json:"name"`
	Secret  *string `json:"secret"`
}

func (h *harness) listKeys(auths ...auth) []listedKey {
	h.t.Helper()
	var list struct{ Keys []listedKey }
	h.expect(200, "GET", "/api/auth/access-keys", "", auths...).decode(h.t, &list)
	return list.Keys
}

func (h *harness) handleOf(a auth) string {
	h.t.Helper()
	var acc struct{ Handle string }
	h.expect(200, "GET", "/api/accounts", "", a).decode(h.t, &acc)
	return acc.Handle
}

type problemBody struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Detail  string `json:"detail"`
	TraceID string `json:"trace_id"`
}

func TestSignInSetsSecureSessionCookie(t *testing.T) {
	h := start(t, storyden.Options{})
	r := h.expect(200, "POST", "/api/auth/password/signin", credentials("vault-admin", adminPassword))
	var body struct{ ID string }
	r.decode(t, &body)
	if !xidPattern.MatchString(body.ID) {
		t.Errorf("id = %q, want an xid", body.ID)
	}
	c := r.cookie()
	if c == nil {
		t.Fatal("no storyden-session cookie")
	}
	// Secure is what stops a cookie jar replaying it to http://127.0.0.1.
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != 7776000 {
		t.Errorf("cookie attributes = %+v", c)
	}
	if len(c.Value) != 43 {
		t.Errorf("session token has %d characters, want 43", len(c.Value))
	}
	if got := h.handleOf(session(c.Value)); got != "vault-admin" {
		t.Errorf("session belongs to %q", got)
	}
}

func TestSignInErrors(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		kind       string
	}{
		{"short password", credentials("vault-admin", "short"), 400, "invalid-argument"},
		{"unknown handle", credentials("nobody", "long-enough"), 404, "not-found"},
		{"wrong password", credentials("vault-admin", "wrong-password"), 401, "unauthenticated"},
		{"not json", `{`, 400, "invalid-argument"},
		{"missing token", `{"identifier":"vault-admin"}`, 400, "invalid-argument"},
	}
	h := start(t, storyden.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.expect(tt.status, "POST", "/api/auth/password/signin", tt.body)
			var p problemBody
			r.decode(t, &p)
			if p.Type != "urn:storyden:problem:"+tt.kind || r.cookie() != nil {
				t.Errorf("type = %q (cookie %v), want kind %s and no cookie", p.Type, r.cookie(), tt.kind)
			}
		})
	}
}

func TestSignUpMakesFirstAccountAdmin(t *testing.T) {
	h := start(t, storyden.Options{Accounts: []storyden.Account{}})
	isAdmin := func(handle string) bool {
		var acc struct{ Admin bool }
		sess := h.expect(200, "POST", "/api/auth/password/signup", credentials(handle, "password-123")).cookie().Value
		h.expect(200, "GET", "/api/accounts", "", session(sess)).decode(t, &acc)
		return acc.Admin
	}
	if !isAdmin("first") {
		t.Error("first account is not admin")
	}
	if isAdmin("second") {
		t.Error("second account is admin")
	}
	h.expect(409, "POST", "/api/auth/password/signup", credentials("first", "password-123"))
	h.expect(400, "POST", "/api/auth/password/signup", credentials("third", "short"))
	h.signIn("second", "password-123")
}

func TestAccountNeedsCredentials(t *testing.T) {
	h := start(t, storyden.Options{})
	h.expect(401, "GET", "/api/accounts", "")
	for _, token := range []string{
		"invalid",
		"sdpak_",
		"sdpak_123",
		"wrong_123456789012abcdefghijklmnopqrstuvwxyz123456",
		"sdpak_123456789012!@#$%^&*()abcdefghijklmnopqrstuvwxyz",
		"sdpak_" + strings.Repeat("A", 44),
		"eyJhbGciOiJIUzI1NiJ9.e30.sig",
	} {
		h.expect(401, "GET", "/api/accounts", "", bearer(token))
	}
	h.expect(401, "GET", "/api/accounts", "", session("not-a-session"))
}

func TestCreateSaysDisabledListTellsTruth(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	k := h.createKey(sess, "vault-app-1", nil)
	if k.Enabled || !k.UpdatedAt.IsZero() || k.ExpiresAt != nil || k.Name != "vault-app-1" {
		t.Errorf("create answer = %+v, want enabled:false, zero updatedAt, no expires_at", k)
	}
	if !xidPattern.MatchString(k.ID) || !secretPattern.MatchString(k.Secret) {
		t.Errorf("id %q or secret %q malformed", k.ID, k.Secret)
	}
	keys := h.listKeys(session(sess))
	if len(keys) != 1 || keys[0].ID != k.ID || !keys[0].Enabled || keys[0].Secret != nil {
		t.Errorf("list = %+v, want the key enabled and without secret", keys)
	}
}

func TestRevokedKeyIsAGuest(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	k := h.createKey(sess, "vault-app-1", nil)
	if got := h.handleOf(bearer(k.Secret)); got != "alice" {
		t.Fatalf("key authenticates as %q", got)
	}
	r := h.expect(204, "DELETE", "/api/auth/access-keys/"+k.ID, "", session(sess))
	if len(r.body) != 0 {
		t.Errorf("204 with body %q", r.body)
	}
	h.expect(401, "GET", "/api/accounts", "", bearer(k.Secret))
	if keys := h.listKeys(session(sess)); len(keys) != 1 || keys[0].Enabled {
		t.Errorf("list after revoke = %+v, want the key disabled", keys)
	}
	h.expect(204, "DELETE", "/api/auth/access-keys/"+k.ID, "", session(sess))
}

func TestRevokeErrors(t *testing.T) {
	h := start(t, storyden.Options{})
	alice := h.signIn("alice", alicePassword)
	admin := h.signIn("vault-admin", adminPassword)
	k := h.createKey(alice, "alices", nil)
	other := h.createKey(alice, "keeps-working", nil)
	tests := []struct {
		name, id string
		auth     auth
		status   int
	}{
		{"unknown id", "cc5lnd2s1s4652adtu50", session(alice), 404},
		{"malformed id", "not-an-xid", session(alice), 404},
		{"someone else's key", k.ID, session(admin), 404},
		{"guest", k.ID, func(*http.Request) {}, 401},
		{"member without permission", k.ID, session(h.signIn("member", memberPassword)), 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.expect(tt.status, "DELETE", "/api/auth/access-keys/"+tt.id, "", tt.auth)
		})
	}
	// An access key may revoke its owner's keys, itself included.
	h.expect(204, "DELETE", "/api/auth/access-keys/"+k.ID, "", bearer(other.Secret))
	h.handleOf(bearer(other.Secret))
}

// TestRevokeOfMissingKeyTellsItselfFromUnknownRoute: a revoke of a key
// Storyden does not have answers 404 with ent's "authentication not found"
// (the reference's observation of v1.26.15), an unknown route 404 with
// Echo's "Not Found": the plugin counts only the first as already gone.
func TestRevokeOfMissingKeyTellsItselfFromUnknownRoute(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			h := start(t, storyden.Options{LegacyErrors: legacy})
			admin := h.signIn("vault-admin", adminPassword)
			for _, tc := range []struct{ path, detail string }{
				{"/api/auth/access-keys/cc5lnd2s1s4652adtu50", "ent: authentication not found"},
				{"/api/admin/access-keys/cc5lnd2s1s4652adtu50", "ent: authentication not found"},
				{"/api/v2/access-keys/cc5lnd2s1s4652adtu50", "code=404, message=Not Found"},
			} {
				r := h.expect(404, "DELETE", tc.path, "", session(admin))
				var body map[string]string
				r.decode(t, &body)
				detail, kind := body["detail"], body["type"]
				if legacy {
					detail, kind = body["error"], "urn:storyden:problem:not-found"
				}
				if detail != tc.detail || kind != "urn:storyden:problem:not-found" {
					t.Errorf("DELETE %s: body %v, want detail %q", tc.path, body, tc.detail)
				}
			}
		})
	}
}

func TestAccessKeyCannotCreateKeys(t *testing.T) {
	h := start(t, storyden.Options{})
	k := h.createKey(h.signIn("alice", alicePassword), "parent", nil)
	r := h.expect(403, "POST", "/api/auth/access-keys", `{"name":"child"}`, bearer(k.Secret))
	var p problemBody
	r.decode(t, &p)
	if p.Title != "invalid security scheme for operation" || p.Type != "urn:storyden:problem:permission-denied" {
		t.Errorf("problem = %+v", p)
	}
	h.expect(401, "POST", "/api/auth/access-keys", `{"name":"guest"}`)
	h.listKeys(bearer(k.Secret)) // listing with a key is allowed
}

func TestMemberWithoutPermissionIsForbidden(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("member", memberPassword)
	h.expect(403, "POST", "/api/auth/access-keys", `{"name":"x"}`, session(sess))
	h.expect(403, "GET", "/api/auth/access-keys", "", session(sess))
	h.createKey(h.signIn("vault-admin", adminPassword), "admins-may", nil)
}

func TestCreateAccessKeyRejectsBadBodies(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	for _, body := range []string{``, `{`, `{}`, `{"name":""}`, `{"name":5}`, `{"name":"x","expires_at":"tomorrow"}`} {
		h.expect(400, "POST", "/api/auth/access-keys", body, session(sess))
	}
	h.expect(200, "POST", "/api/auth/access-keys", `{"name":"x","expires_at":null}`, session(sess))
}

func TestExpiredKeysAreDead(t *testing.T) {
	clk := newClock()
	h := start(t, storyden.Options{Now: clk.Now})
	sess := h.signIn("alice", alicePassword)

	past := clk.Now().Add(-time.Hour)
	dead := h.createKey(sess, "dead-on-arrival", &past)
	h.expect(401, "GET", "/api/accounts", "", bearer(dead.Secret))

	future := clk.Now().Add(10 * time.Minute)
	k := h.createKey(sess, "ten-minutes", &future)
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(future) {
		t.Errorf("expires_at = %v, want %v", k.ExpiresAt, future)
	}
	h.handleOf(bearer(k.Secret))
	clk.Advance(11 * time.Minute)
	h.expect(401, "GET", "/api/accounts", "", bearer(k.Secret))

	for _, o := range h.srv.Objects() {
		if o.State != "expired" || o.Live {
			t.Errorf("object %s: state %q live %v, want expired", o.Name, o.State, o.Live)
		}
	}
}

func TestPasswordChangeRetiresOldPassword(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("vault-admin", adminPassword)
	k := h.createKey(sess, "root-key", nil)
	change := func(old, new string) string {
		b, _ := json.Marshal(map[string]string{"old": old, "new": new})
		return string(b)
	}
	h.expect(403, "PATCH", "/api/auth/password", change(adminPassword, "rotated-password"), bearer(k.Secret))
	h.expect(401, "PATCH", "/api/auth/password", change("wrong-password", "rotated-password"), session(sess))
	h.expect(400, "PATCH", "/api/auth/password", change(adminPassword, "short"), session(sess))
	h.expect(401, "PATCH", "/api/auth/password", change(adminPassword, "rotated-password"))

	r := h.expect(200, "PATCH", "/api/auth/password", change(adminPassword, "rotated-password"), session(sess))
	fresh := r.cookie()
	if fresh == nil || fresh.Value == sess {
		t.Fatalf("password change sent cookie %v, want a new session", fresh)
	}
	h.handleOf(session(fresh.Value))
	h.expect(401, "POST", "/api/auth/password/signin", credentials("vault-admin", adminPassword))
	h.signIn("vault-admin", "rotated-password")
}

func TestLogoutRevokesSession(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("vault-admin", adminPassword)
	r := h.expect(302, "POST", "/api/auth/logout?redirect=https://evil.example/after", "", session(sess))
	if c := r.cookie(); c == nil || c.Value != "" || c.MaxAge >= 0 {
		t.Errorf("logout cookie = %+v, want a cleared one", c)
	}
	if loc := r.header.Get("Location"); loc != "http://localhost:3000/after" {
		t.Errorf("Location = %q, want the path only, on Storyden's default web address", loc)
	}
	h.expect(401, "GET", "/api/accounts", "", session(sess))
}

func TestAdminAccessKeys(t *testing.T) {
	h := start(t, storyden.Options{})
	alice := h.signIn("alice", alicePassword)
	admin := h.signIn("vault-admin", adminPassword)
	k := h.createKey(alice, "alices", nil)

	h.expect(403, "GET", "/api/admin/access-keys", "", session(alice))
	h.expect(403, "DELETE", "/api/admin/access-keys/"+k.ID, "", session(alice))
	h.expect(401, "GET", "/api/admin/access-keys", "")

	var list struct {
		Keys []struct {
			ID        string
			CreatedBy struct{ Handle string } `json:"created_by"`
		}
	}
	h.expect(200, "GET", "/api/admin/access-keys", "", session(admin)).decode(t, &list)
	if len(list.Keys) != 1 || list.Keys[0].ID != k.ID || list.Keys[0].CreatedBy.Handle != "alice" {
		t.Fatalf("admin list = %+v", list)
	}
	h.expect(204, "DELETE", "/api/admin/access-keys/"+k.ID, "", session(admin))
	h.expect(404, "DELETE", "/api/admin/access-keys/cc5lnd2s1s4652adtu50", "", session(admin))
	if keys := h.listKeys(session(alice)); keys[0].Enabled {
		t.Error("admin revoke left the key enabled")
	}
}

func TestErrorBodyFormats(t *testing.T) {
	t.Run("problem details", func(t *testing.T) {
		h := start(t, storyden.Options{})
		r := h.expect(401, "POST", "/api/auth/password/signin", credentials("vault-admin", "wrong-password"))
		var p problemBody
		r.decode(t, &p)
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("Content-Type = %q", ct)
		}
		want := problemBody{
			Type:    "urn:storyden:problem:unauthenticated",
			Title:   "The provided password did not match the account.",
			Detail:  "mismatch: password mismatch",
			TraceID: "unknown",
		}
		if p != want {
			t.Errorf("problem = %+v, want %+v", p, want)
		}
	})
	t.Run("legacy", func(t *testing.T) {
		h := start(t, storyden.Options{LegacyErrors: true})
		r := h.expect(404, "POST", "/api/auth/password/signin", credentials("nobody", "long-enough"))
		var body map[string]string
		r.decode(t, &body)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if body["message"] != "No account was found with the provided handle." || body["error"] == "" || len(body) != 2 {
			t.Errorf("legacy body = %v", body)
		}
	})
}

func TestFaultBodyMatchesErrorFormat(t *testing.T) {
	tests := []struct {
		name     string
		legacy   bool
		status   int
		wantType string
		wantBody string
	}{
		{"problem 503", false, 503, "application/problem+json", `"type":"urn:storyden:problem:internal","title":"Service Unavailable"`},
		{"problem 502", false, 502, "application/problem+json", `"type":"urn:storyden:problem:cancelled"`},
		{"legacy 500", true, 500, "application/json", `"message":"Internal Server Error"`},
		{"429 is the limiter's plain text", false, 429, "text/plain; charset=utf-8", "Too Many Requests\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, body := storyden.New(storyden.Options{LegacyErrors: tt.legacy}).FaultBody(tt.status)
			if ct != tt.wantType || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("FaultBody(%d) = %q %s", tt.status, ct, body)
			}
		})
	}
}

func TestRateLimitPerClient(t *testing.T) {
	clk := newClock()
	h := start(t, storyden.Options{RateLimit: 3, Now: clk.Now})
	for want := 2; want >= 0; want-- {
		r := h.expect(401, "GET", "/api/accounts", "")
		if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(want) || r.header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("remaining = %q limit = %q, want %d of 3", got, r.header.Get("X-RateLimit-Limit"), want)
		}
		if _, err := http.ParseTime(r.header.Get("X-RateLimit-Reset")); err != nil {
			t.Fatalf("X-RateLimit-Reset: %v", err)
		}
	}
	r := h.expect(429, "GET", "/api/nowhere", "")
	if string(r.body) != "Too Many Requests\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("429 body %q type %q", r.body, r.header.Get("Content-Type"))
	}
	if retry, err := http.ParseTime(r.header.Get("Retry-After")); err != nil || !retry.After(clk.Now()) {
		t.Errorf("Retry-After = %q (%v)", r.header.Get("Retry-After"), err)
	}
	clk.Advance(61 * time.Minute)
	h.expect(404, "GET", "/api/nowhere", "")
}

func TestObjectsListKeysNotAccounts(t *testing.T) {
	clk := newClock()
	h := start(t, storyden.Options{Now: clk.Now})
	sess := h.signIn("alice", alicePassword)
	live := h.createKey(sess, "live", nil)
	revoked := h.createKey(sess, "revoked", nil)
	past := clk.Now().Add(-time.Second)
	expired := h.createKey(sess, "expired", &past)
	h.expect(204, "DELETE", "/api/auth/access-keys/"+revoked.ID, "", session(sess))

	want := map[string]string{live.ID: "enabled", revoked.ID: "revoked", expired.ID: "expired"}
	objects := h.srv.Objects()
	if len(objects) != len(want) {
		t.Fatalf("objects = %+v", objects)
	}
	for _, o := range objects {
		if o.Kind != "access_key" || o.Owner != "alice" || want[o.ID] != o.State || o.Live != (o.State == "enabled") {
			t.Errorf("object = %+v, want state %q", o, want[o.ID])
		}
	}
	dump, _ := json.Marshal(objects)
	for _, secret := range []string{live.Secret, revoked.Secret, alicePassword, "sdpak_"} {
		if bytes.Contains(dump, []byte(secret)) {
			t.Errorf("objects leak %q", secret)
		}
	}
}

func TestMalformedCreateStillCreatesKey(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	h.srv.AddFault(sandbox.Fault{Method: "POST", Path: "/api/auth/access-keys", Malformed: true, Times: 1})
	r := h.expect(200, "POST", "/api/auth/access-keys", `{"name":"lost-answer"}`, session(sess))
	var k issuedKey
	if err := json.Unmarshal(r.body, &k); err == nil {
		t.Fatalf("malformed answer decoded: %q", r.body)
	}
	objects := h.srv.Objects()
	if len(objects) != 1 || objects[0].Name != "lost-answer" || !objects[0].Live {
		t.Fatalf("objects = %+v, want the key created anyway", objects)
	}
}

func TestCallsCountByRouteTemplate(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	for range 2 {
		k := h.createKey(sess, "k", nil)
		h.expect(204, "DELETE", "/api/auth/access-keys/"+k.ID, "", session(sess))
	}
	calls := h.srv.Calls()
	if calls["DELETE /api/auth/access-keys/{id}"] != 2 || calls["POST /api/auth/access-keys"] != 2 || calls["POST /api/auth/password/signin"] != 1 {
		t.Fatalf("calls = %v", calls)
	}
}

func TestResetRestoresSeededState(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	h.createKey(sess, "gone-after-reset", nil)
	h.expect(200, "POST", "/api/auth/password/signup", credentials("newcomer", "password-123"))
	h.srv.Reset()
	if n := len(h.srv.Objects()); n != 0 {
		t.Errorf("%d objects after reset", n)
	}
	h.expect(401, "GET", "/api/accounts", "", session(sess))
	h.expect(404, "POST", "/api/auth/password/signin", credentials("newcomer", "password-123"))
	h.signIn("alice", alicePassword)
}

func TestConcurrentKeyLifecycles(t *testing.T) {
	h := start(t, storyden.Options{})
	sess := h.signIn("alice", alicePassword)
	lifecycle := func() error {
		r, err := h.send("POST", "/api/auth/access-keys", `{"name":"parallel"}`, session(sess))
		var k issuedKey
		if err == nil {
			err = json.Unmarshal(r.body, &k)
		}
		if err != nil {
			return err
		}
		steps := []struct {
			method, path string
			auth         auth
			want         int
		}{
			{"GET", "/api/accounts", bearer(k.Secret), 200},
			{"DELETE", "/api/auth/access-keys/" + k.ID, session(sess), 204},
			{"GET", "/api/accounts", bearer(k.Secret), 401},
		}
		for _, s := range steps {
			if r, err := h.send(s.method, s.path, "", s.auth); err != nil || r.status != s.want {
				return fmt.Errorf("%s %s = %d (%v), want %d", s.method, s.path, r.status, err, s.want)
			}
		}
		_ = h.srv.Objects()
		return nil
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if err := lifecycle(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, o := range h.srv.Objects() {
		if o.Live {
			t.Errorf("key %s still live", o.ID)
		}
	}
	if n := len(h.srv.Objects()); n != 40 {
		t.Errorf("%d objects, want 40", n)
	}
}
