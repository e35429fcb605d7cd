package storx_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	devEmail    = "dev@example.com"
	devPassword = "developer-password-1"
	handmade    = "handmade@example.com"
	lockedUser  = "locked-user@example.com"
	passphrase  = "correct horse battery staple"
)

type harness struct {
	t       *testing.T
	clock   *testutil.Clock
	sat     *storx.Satellite
	auth    *storx.AuthService
	satSrv  *sandbox.Server
	authSrv *sandbox.Server
	client  *http.Client
}

func start(t *testing.T, opts storx.Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), client: &http.Client{Timeout: 10 * time.Second}}
	if opts.Developers == nil {
		opts.Developers = []storx.Developer{
			{Email: devEmail, Password: devPassword},
			{Email: "locked@example.com", Password: devPassword, LockedOut: true},
			{Email: "mfa@example.com", Password: devPassword, MFA: true},
		}
		opts.Users = []storx.User{{Email: handmade, FullName: "Made By Hand", Developer: devEmail}, {Email: lockedUser, Locked: true}}
	}
	if opts.Now == nil {
		opts.Now = h.clock.Now
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = 100
	}
	h.sat = storx.New(opts)
	h.auth = storx.NewAuthService(h.sat, storx.AuthOptions{})
	h.satSrv = testutil.StartEmulator(t, h.sat)
	h.authSrv = testutil.StartEmulator(t, h.auth)
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (r response) errorMessage(t *testing.T) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	r.json(t, &body)
	return body.Error
}

func (r response) cookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// send makes one request; headers are "Name: value" strings.
func (h *harness) send(base, method, path, body string, headers ...string) (response, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for _, hv := range headers {
		name, value, _ := strings.Cut(hv, ": ")
		req.Header.Add(name, value)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// expect sends to the satellite and checks the status.
func (h *harness) expect(want int, method, path, body string, headers ...string) response {
	h.t.Helper()
	return h.expectAt(h.satSrv.URL(), want, method, path, body, headers...)
}

func (h *harness) expectAt(base string, want int, method, path, body string, headers ...string) response {
	h.t.Helper()
	r, err := h.send(base, method, path, body, headers...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

func devCookie(token string) string  { return "Cookie: _developer_tokenKey=" + token }
func userCookie(token string) string { return "Cookie: _tokenKey=" + token }

// developerToken logs the seeded developer in.
func (h *harness) developerToken() string {
	h.t.Helper()
	r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/token",
		`{"email":"`+devEmail+`","password":"`+devPassword+`","rememberForOneWeek":true}`)
	var body struct{ Token string }
	r.json(h.t, &body)
	return body.Token
}

// newUser creates a user and returns its private project id.
func (h *harness) newUser(dev, email string) string {
	h.t.Helper()
	r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/create-user", `{"email":"`+email+`","fullName":"App"}`, devCookie(dev))
	var body struct {
		Data struct{ ProjectID string }
	}
	r.json(h.t, &body)
	return body.Data.ProjectID
}

func (h *harness) userToken(dev, email string) string {
	h.t.Helper()
	r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/user-token", `{"email":"`+email+`"}`, devCookie(dev))
	var body struct{ Token string }
	r.json(h.t, &body)
	return body.Token
}

// user is a ready user session with its project.
type user struct {
	token, project string
}

func (h *harness) user(email string) user {
	h.t.Helper()
	dev := h.developerToken()
	project := h.newUser(dev, email)
	return user{token: h.userToken(dev, email), project: project}
}

func (h *harness) createKey(u user, name string) (key, id string) {
	h.t.Helper()
	r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/api-keys/create/"+u.project, name, userCookie(u.token))
	var body struct {
		Key     string
		KeyInfo struct{ ID string }
	}
	r.json(h.t, &body)
	return body.Key, body.KeyInfo.ID
}

func (h *harness) grant(u user, query string) string {
	h.t.Helper()
	r := h.expect(http.StatusOK, http.MethodGet, "/api/v0/api-keys/"+u.project+"/access-grant?"+query, "", userCookie(u.token))
	var grant string
	r.json(h.t, &grant)
	return grant
}

type s3Credential struct {
	AccessKeyID string `json:"access_key_id"`
	SecretKey   string `json:"secret_key"`
	Endpoint    string `json:"endpoint"`
}

func (h *harness) s3(grant string) s3Credential {
	h.t.Helper()
	r := h.expectAt(h.authSrv.URL(), http.StatusOK, http.MethodPost, "/v1/access", `{"access_grant":"`+grant+`","public":false}`, "Content-Type: application/json")
	var creds s3Credential
	r.json(h.t, &creds)
	return creds
}

func objectByName(objects []sandbox.Object, name string) (sandbox.Object, bool) {
	for _, o := range objects {
		if o.Name == name {
			return o, true
		}
	}
	return sandbox.Object{}, false
}
