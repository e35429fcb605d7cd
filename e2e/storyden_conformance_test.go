package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devstoryden"
)

// TestRealStoryden_EmulatorAgrees plays one exchange with the API the plugin
// uses against the real server and against bootstrap/storyden, each fresh,
// and fails on every answer where they differ: status, content type, problem
// type, and the facts of the body the plugin or the tests rely on.
func TestRealStoryden_EmulatorAgrees(t *testing.T) {
	t.Parallel()
	srv, err := devstoryden.Start(storydenBinary(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	emu, err := sandbox.Start(storydenemu.New(storydenemu.Options{WebAddress: devstoryden.WebAddress}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })

	real, emulated := storydenExchange(t, srv.URL), storydenExchange(t, emu.URL())
	for i := range real {
		if i >= len(emulated) || real[i] != emulated[i] {
			other := "(nothing)"
			if i < len(emulated) {
				other = emulated[i]
			}
			t.Errorf("Storyden: %s\n emulator: %s", real[i], other)
		}
	}
	if len(emulated) > len(real) {
		t.Errorf("the emulator answered %d steps, Storyden %d", len(emulated), len(real))
	}
}

// sdExchange records one server's answers, one line per step.
type sdExchange struct {
	t    *testing.T
	base string
	out  []string
}

// sdAnswer is one answer with its body decoded, when it is JSON.
type sdAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func (x *sdExchange) do(method, path, authorization string, body any, header ...string) sdAnswer {
	x.t.Helper()
	payload := ""
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			x.t.Fatal(err)
		}
		payload = string(data)
	}
	req, err := http.NewRequest(method, x.base+path, strings.NewReader(payload))
	if err != nil {
		x.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		x.t.Fatal(err)
	}
	a := sdAnswer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// note records a step: its status, the media type, the problem type of an
// error, and facts.
func (x *sdExchange) note(step string, a sdAnswer, facts ...string) {
	media, _, _ := strings.Cut(a.header.Get("Content-Type"), ";")
	line := fmt.Sprintf("%s: HTTP %d %s", step, a.status, media)
	if a.status >= 400 {
		line += fmt.Sprintf(" type=%v", a.body["type"])
	}
	if len(facts) > 0 {
		line += " [" + strings.Join(facts, " ") + "]"
	}
	x.out = append(x.out, line)
}

func (a sdAnswer) cookie() *http.Cookie {
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "storyden-session" {
			return c
		}
	}
	return nil
}

// cookieFacts are the session cookie's attributes the plugin depends on.
func cookieFacts(c *http.Cookie) string {
	if c == nil {
		return "no-cookie"
	}
	return fmt.Sprintf("cookie(len=%d secure=%v httponly=%v samesite=%v path=%s)", len(c.Value), c.Secure, c.HttpOnly, c.SameSite, c.Path)
}

// keyFacts are the facts of an access key view.
func keyFacts(k map[string]any) string {
	secret := fmt.Sprint(k["secret"])
	_, hasExpiry := k["expires_at"]
	return fmt.Sprintf("key(idlen=%d enabled=%v updatedAt=%v expires=%v secret=%v/%d)", len(fmt.Sprint(k["id"])), k["enabled"],
		k["updatedAt"], hasExpiry, strings.HasPrefix(secret, "sdpak_"), len(secret))
}

// listFacts are the names in a key list, sorted, with whether each is enabled.
func listFacts(a sdAnswer) string {
	keys, _ := a.body["keys"].([]any)
	var out []string
	for _, k := range keys {
		m, _ := k.(map[string]any)
		out = append(out, fmt.Sprintf("%v=%v", m["name"], m["enabled"]))
	}
	sort.Strings(out)
	return "keys(" + strings.Join(out, ",") + ")"
}

// storydenExchange is the exchange both servers answer, from a fresh start.
func storydenExchange(t *testing.T, base string) []string {
	t.Helper()
	x := &sdExchange{t: t, base: base}
	creds := func(handle, password string) map[string]string {
		return map[string]string{"identifier": handle, "token": password}
	}
	const handle, password = "conformance", "conformance-password-1"

	a := x.do(http.MethodPost, "/api/auth/password/signup", "", creds(handle, password))
	x.note("sign up the first account", a, cookieFacts(a.cookie()), fmt.Sprint("idlen=", len(fmt.Sprint(a.body["id"]))))
	x.note("sign up the same handle", x.do(http.MethodPost, "/api/auth/password/signup", "", creds(handle, password)))
	x.note("sign in, wrong password", x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, "wrong-password-1")))
	x.note("sign in, unknown handle", x.do(http.MethodPost, "/api/auth/password/signin", "", creds("nobody-here", password)))
	x.note("sign in, short password", x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, "short")))
	a = x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, password))
	session := a.cookie()
	x.note("sign in", a, cookieFacts(session))
	if session == nil {
		return x.out
	}
	cookie := []string{"Cookie", "storyden-session=" + session.Value}

	x.note("who am I, guest", x.do(http.MethodGet, "/api/accounts", "", nil))
	a = x.do(http.MethodGet, "/api/accounts", "", nil, cookie...)
	x.note("who am I, session", a, fmt.Sprintf("handle=%v admin=%v", a.body["handle"], a.body["admin"]))

	a = x.do(http.MethodPost, "/api/auth/access-keys", "", map[string]any{"name": "first"}, cookie...)
	x.note("create key, session", a, keyFacts(a.body))
	first := fmt.Sprint(a.body["secret"])
	firstID := fmt.Sprint(a.body["id"])
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	a = x.do(http.MethodPost, "/api/auth/access-keys", "", map[string]any{"name": "born-expired", "expires_at": past}, cookie...)
	x.note("create key, expiry in the past", a, keyFacts(a.body))
	expired := fmt.Sprint(a.body["secret"])
	x.note("create key, no name", x.do(http.MethodPost, "/api/auth/access-keys", "", map[string]any{}, cookie...))
	x.note("create key, with a key", x.do(http.MethodPost, "/api/auth/access-keys", "Bearer "+first, map[string]any{"name": "second"}))

	a = x.do(http.MethodGet, "/api/accounts", "Bearer "+first, nil)
	x.note("who am I, key", a, fmt.Sprintf("handle=%v", a.body["handle"]))
	x.note("who am I, expired key", x.do(http.MethodGet, "/api/accounts", "Bearer "+expired, nil))
	x.note("who am I, unknown key", x.do(http.MethodGet, "/api/accounts", "Bearer sdpak_"+strings.Repeat("a", 44), nil))
	x.note("who am I, malformed key", x.do(http.MethodGet, "/api/accounts", "Bearer sdpak_short", nil))
	a = x.do(http.MethodGet, "/api/auth/access-keys", "Bearer "+first, nil)
	x.note("list keys, key", a, listFacts(a))

	x.note("revoke key", x.do(http.MethodDelete, "/api/auth/access-keys/"+firstID, "", nil, cookie...))
	x.note("revoke key again", x.do(http.MethodDelete, "/api/auth/access-keys/"+firstID, "", nil, cookie...))
	a = x.do(http.MethodDelete, "/api/auth/access-keys/cc5lnd2s1s4652adtu50", "", nil, cookie...)
	x.note("revoke unknown key", a, fmt.Sprintf("detail-says-not-found=%v", strings.Contains(fmt.Sprint(a.body["detail"]), "authentication not found")))
	a = x.do(http.MethodDelete, "/api/auth/access-keys/not-an-id", "", nil, cookie...)
	x.note("revoke malformed id", a, fmt.Sprintf("detail-says-not-found=%v", strings.Contains(fmt.Sprint(a.body["detail"]), "authentication not found")))
	a = x.do(http.MethodDelete, "/api/admin/access-keys/not-an-id", "", nil, cookie...)
	x.note("admin revoke malformed id", a, fmt.Sprintf("detail-says-not-found=%v", strings.Contains(fmt.Sprint(a.body["detail"]), "authentication not found")))
	x.note("who am I, revoked key", x.do(http.MethodGet, "/api/accounts", "Bearer "+first, nil))
	a = x.do(http.MethodGet, "/api/auth/access-keys", "", nil, cookie...)
	x.note("list keys, session", a, listFacts(a))
	a = x.do(http.MethodGet, "/api/admin/access-keys", "", nil, cookie...)
	x.note("admin list keys", a, listFacts(a))

	a = x.do(http.MethodPost, "/api/auth/access-keys", "", map[string]any{"name": "third"}, cookie...)
	third := fmt.Sprint(a.body["secret"])
	x.note("change password, key", x.do(http.MethodPatch, "/api/auth/password", "Bearer "+third, map[string]string{"old": password, "new": "next-password-2"}))
	x.note("change password, wrong old", x.do(http.MethodPatch, "/api/auth/password", "", map[string]string{"old": "wrong-password-1", "new": "next-password-2"}, cookie...))
	a = x.do(http.MethodPatch, "/api/auth/password", "", map[string]string{"old": password, "new": "next-password-2"}, cookie...)
	x.note("change password", a, cookieFacts(a.cookie()))
	x.note("who am I, session from before the change", x.do(http.MethodGet, "/api/accounts", "", nil, cookie...))
	x.note("who am I, key from before the change", x.do(http.MethodGet, "/api/accounts", "Bearer "+third, nil))
	x.note("sign in, old password", x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, password)))
	x.note("sign in, new password", x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, "next-password-2")))
	a = x.do(http.MethodPost, "/api/auth/password/signin", "", creds(handle, "next-password-2"))
	other := []string{"Cookie", "storyden-session=" + a.cookie().Value}
	a = x.do(http.MethodPost, "/api/auth/logout?redirect=https://elsewhere.example/after?x=1", "", nil, other...)
	x.note("log out, redirect", a, "location="+a.header.Get("Location"))
	a = x.do(http.MethodPost, "/api/auth/logout", "", nil, cookie...)
	x.note("log out", a, "location="+a.header.Get("Location"))
	x.note("who am I, logged-out session", x.do(http.MethodGet, "/api/accounts", "", nil, cookie...))
	return x.out
}
