package storx_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]+=*$`)

func TestDeveloperLogin(t *testing.T) {
	tests := []struct {
		name, body string
		wantStatus int
		wantError  string
	}{
		{"wrong password", `{"email":"dev@example.com","password":"nope"}`, 401, "Your login credentials are incorrect, please try again"},
		{"unknown developer", `{"email":"x@example.com","password":"nope"}`, 401, "Your login credentials are incorrect, please try again"},
		{"locked-out account", `{"email":"locked@example.com","password":"` + devPassword + `"}`, 401, "Your login credentials are incorrect, please try again"},
		{"MFA answers 200 with an error", `{"email":"mfa@example.com","password":"` + devPassword + `"}`, 200, "A MFA passcode or recovery code is required"},
		{"bad JSON glues the Go error to the prefix", `{"email":`, 500, "There was an error processing your requestunexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, storx.Options{})
			r := h.expect(tt.wantStatus, http.MethodPost, "/api/v0/developer/auth/token", tt.body)
			if got := r.errorMessage(t); got != tt.wantError {
				t.Errorf("error = %q, want %q", got, tt.wantError)
			}
			if r.cookie("_developer_tokenKey") != nil {
				t.Error("a failed login set the session cookie")
			}
		})
	}
}

func TestDeveloperLoginSession(t *testing.T) {
	for _, remember := range []bool{true, false} {
		h := start(t, storx.Options{})
		body := `{"email":"DEV@example.com","password":"` + devPassword + `","rememberForOneWeek":` + map[bool]string{true: "true", false: "false"}[remember] + `}`
		r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/token", body)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var got struct {
			Token     string
			ExpiresAt time.Time
		}
		r.json(t, &got)
		want := 30 * time.Minute
		if remember {
			want = 7 * 24 * time.Hour
		}
		if !tokenPattern.MatchString(got.Token) || !got.ExpiresAt.Equal(h.clock.Now().Add(want)) {
			t.Errorf("remember=%t: token %q expires %s, want %s", remember, got.Token, got.ExpiresAt, h.clock.Now().Add(want))
		}
		c := r.cookie("_developer_tokenKey")
		if c == nil || c.Value != got.Token || c.Path != "/" || c.SameSite != http.SameSiteStrictMode || c.HttpOnly || c.Secure {
			t.Errorf("cookie = %+v", c)
		}
	}
}

func TestDeveloperLockoutAfterRepeatedFailures(t *testing.T) {
	h := start(t, storx.Options{})
	for range 3 {
		h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/developer/auth/token", `{"email":"dev@example.com","password":"nope"}`)
	}
	good := `{"email":"dev@example.com","password":"` + devPassword + `"}`
	h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/developer/auth/token", good)
	h.clock.Advance(time.Minute)
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/token", good)
}

// The satellite reads sessions from cookies only, and each cookie opens only
// its own routes.
func TestSessionsAreCookiesOnly(t *testing.T) {
	h := start(t, storx.Options{})
	dev := h.developerToken()
	createUser := `{"email":"app@example.com","fullName":"App"}`
	r := h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/developer/auth/create-user", createUser, "Authorization: Bearer "+dev)
	if msg := r.errorMessage(t); !strings.HasPrefix(msg, "unauthorized: ") {
		t.Errorf("error = %q", msg)
	}
	if c := r.cookie("_developer_tokenKey"); c == nil || c.MaxAge >= 0 {
		t.Errorf("the 401 does not clear the cookie: %+v", c)
	}
	h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/developer/auth/create-user", createUser, userCookie(dev))
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/create-user", createUser, devCookie(dev))
	u := h.userToken(dev, "app@example.com")
	h.expect(http.StatusUnauthorized, http.MethodGet, "/api/v0/projects", "", devCookie(u))
	h.expect(http.StatusUnauthorized, http.MethodGet, "/api/v0/projects", "", "Authorization: Bearer "+u)
	h.expect(http.StatusOK, http.MethodGet, "/api/v0/projects", "", userCookie(u))
	h.clock.Advance(30 * time.Minute)
	h.expect(http.StatusUnauthorized, http.MethodGet, "/api/v0/projects", "", userCookie(u))
}

func TestCreateUser(t *testing.T) {
	h := start(t, storx.Options{})
	dev := h.developerToken()
	r := h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/create-user", `{"email":"app@example.com","fullName":"App"}`, devCookie(dev))
	var created struct {
		Message string
		Data    struct{ ID, FullName, Email, ProjectID string }
	}
	r.json(t, &created)
	if created.Message != "user created" || created.Data.Email != "app@example.com" || created.Data.FullName != "App" || created.Data.ID == "" || created.Data.ProjectID == "" {
		t.Errorf("create-user = %s", r.body)
	}
	tests := []struct {
		name, email string
		wantStatus  int
		wantError   string
	}{
		{"again", "app@example.com", 401, "There was an error processing your requestunauthorized: user already verified"},
		{"a user made by hand", handmade, 401, "There was an error processing your requestunauthorized: user already verified"},
		{"a locked user", lockedUser, 401, "The activation code is invalid"},
		{"not an email", "app", 400, "validation: Invalid email."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.expect(tt.wantStatus, http.MethodPost, "/api/v0/developer/auth/create-user", `{"email":"`+tt.email+`"}`, devCookie(dev))
			if got := r.errorMessage(t); got != tt.wantError {
				t.Errorf("error = %q, want %q", got, tt.wantError)
			}
		})
	}
}

func TestUserToken(t *testing.T) {
	h := start(t, storx.Options{})
	dev := h.developerToken()
	r := h.expect(http.StatusInternalServerError, http.MethodPost, "/api/v0/developer/auth/user-token", `{"email":"ghost@example.com"}`, devCookie(dev))
	if got := r.errorMessage(t); got != "There was an error processing your requestsql: no rows in result set" {
		t.Errorf("unknown email: %q", got)
	}
	r = h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/developer/auth/user-token", `{"email":"`+lockedUser+`"}`, devCookie(dev))
	if got := r.errorMessage(t); got != "Your login credentials are incorrect, please try again" {
		t.Errorf("locked user: %q", got)
	}
	r = h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/user-token", `{"email":"`+handmade+`"}`, devCookie(dev))
	if c := r.cookie("_tokenKey"); c == nil || !tokenPattern.MatchString(c.Value) {
		t.Errorf("user cookie = %+v", c)
	}
}

func TestRateLimitOnDeveloperAuthEndpoints(t *testing.T) {
	h := start(t, storx.Options{RateBurst: 2, RateInterval: 5 * time.Minute})
	login := `{"email":"dev@example.com","password":"` + devPassword + `"}`
	dev := h.developerToken()
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/user-token", `{"email":"`+handmade+`"}`, devCookie(dev))
	for _, path := range []string{"token", "create-user", "user-token"} {
		r := h.expect(http.StatusTooManyRequests, http.MethodPost, "/api/v0/developer/auth/"+path, login, devCookie(dev))
		if got := r.errorMessage(t); got != "You've exceeded your request limit. Please try again later." {
			t.Errorf("%s: error = %q", path, got)
		}
		if r.header.Get("Retry-After") != "" {
			t.Errorf("%s: StorX sends no Retry-After", path)
		}
	}
	// Other routes and other client IPs are not limited.
	h.expect(http.StatusUnauthorized, http.MethodGet, "/api/v0/projects", "")
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/token", login, "X-Forwarded-For: 192.0.2.7, 127.0.0.1")
	// One token per interval.
	h.clock.Advance(5 * time.Minute)
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/developer/auth/token", login)
	h.expect(http.StatusTooManyRequests, http.MethodPost, "/api/v0/developer/auth/token", login)
}

func TestProjectsAndKeys(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	r := h.expect(http.StatusOK, http.MethodGet, "/api/v0/projects", "", userCookie(u.token))
	var projects []struct{ ID, Name, OwnerID string }
	r.json(t, &projects)
	if len(projects) != 1 || projects[0].Name != "My Project" || projects[0].ID == u.project {
		t.Fatalf("projects = %s (want one My Project shown by its public id)", r.body)
	}
	byPublic := user{token: u.token, project: projects[0].ID}

	r = h.expect(http.StatusOK, http.MethodPost, "/api/v0/api-keys/create/"+u.project, "vault-app-1", userCookie(u.token))
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("create key Content-Type = %q, want Go's sniffed text/plain", ct)
	}
	var created struct {
		Key     string
		KeyInfo struct{ ID, Name, ProjectID, ProjectPublicID string }
	}
	r.json(t, &created)
	if created.KeyInfo.Name != "vault-app-1" || created.KeyInfo.ProjectPublicID != byPublic.project || created.Key == "" {
		t.Errorf("create key = %s", r.body)
	}
	r = h.expect(http.StatusInternalServerError, http.MethodPost, "/api/v0/api-keys/create/"+byPublic.project, "vault-app-1", userCookie(u.token))
	if got := r.errorMessage(t); got != "validation: An API Key with this name already exists in this project, please use a different name" {
		t.Errorf("duplicate name: %q", got)
	}
	h.expect(http.StatusBadRequest, http.MethodPost, "/api/v0/api-keys/create/not-a-uuid", "x", userCookie(u.token))
	other := h.user("other@example.com")
	h.expect(http.StatusUnauthorized, http.MethodPost, "/api/v0/api-keys/create/"+u.project, "x", userCookie(other.token))

	r = h.expect(http.StatusOK, http.MethodGet, "/api/v0/api-keys/api-key-names?projectID="+byPublic.project, "", userCookie(u.token))
	if strings.TrimSpace(string(r.body)) != `["vault-app-1"]` {
		t.Errorf("names = %s", r.body)
	}
	r = h.expect(http.StatusBadRequest, http.MethodGet, "/api/v0/api-keys/list-paged?projectID="+u.project+"&page=1&order=1&orderDirection=1", "", userCookie(u.token))
	if got := r.errorMessage(t); got != "parameter 'limit' can't be empty" {
		t.Errorf("list-paged without limit: %q", got)
	}
	r = h.expect(http.StatusOK, http.MethodGet, "/api/v0/api-keys/list-paged?projectID="+u.project+"&limit=10&page=1&order=1&orderDirection=1&search=app", "", userCookie(u.token))
	var page struct {
		APIKeys    []struct{ Name string }
		TotalCount int
	}
	r.json(t, &page)
	if page.TotalCount != 1 || len(page.APIKeys) != 1 || page.APIKeys[0].Name != "vault-app-1" {
		t.Errorf("list-paged = %s", r.body)
	}
}

func TestAccessGrant(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	key, keyID := h.createKey(u, "vault-app-1")
	base := "api-key=" + key + "&passphrase=" + url.QueryEscape(passphrase)

	r := h.expect(http.StatusOK, http.MethodGet, "/api/v0/api-keys/"+u.project+"/access-grant?"+base+"&bucket=all&allow_download", "", userCookie(u.token))
	if !strings.HasPrefix(string(r.body), `"1`) || !strings.HasSuffix(string(r.body), "\"\n") {
		t.Errorf("the grant is not a JSON string with a trailing newline: %q", r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want Go's sniffed text/plain", ct)
	}

	expiry := url.QueryEscape("2026-03-01 13:00:00")
	tests := []struct {
		name, query  string
		wantPrefixes []storx.SharePrefix
		wantPerm     *storx.Permission
	}{
		{"no bucket: unrestricted", base, nil, nil},
		{"all buckets", base + "&bucket=all&allow_list&allow_delete", []storx.SharePrefix{{}}, &storx.Permission{List: true, Delete: true}},
		{"two buckets ignore the prefix", base + "&bucket=a1,b2&prefix=p/&allow_upload", []storx.SharePrefix{{Bucket: "a1"}, {Bucket: "b2"}}, &storx.Permission{Upload: true}},
		{"one bucket and a prefix", base + "&bucket=media&prefix=p/&allow_download", []storx.SharePrefix{{Bucket: "media", Prefix: "p/"}}, &storx.Permission{Download: true}},
		{"expiry without flags allows nothing", base + "&bucket=all&expiry=" + expiry, []storx.SharePrefix{{}}, &storx.Permission{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := storx.DecodeGrant(h.grant(u, tt.query))
			if err != nil {
				t.Fatal(err)
			}
			if g.APIKeyID != keyID || g.ProjectID != u.project || g.SatelliteAddress == "" {
				t.Errorf("grant = %+v", g)
			}
			if len(g.Prefixes) != len(tt.wantPrefixes) || (tt.wantPerm == nil) != (g.Permission == nil) {
				t.Fatalf("grant restrictions = %+v %+v", g.Prefixes, g.Permission)
			}
			for i := range g.Prefixes {
				if g.Prefixes[i] != tt.wantPrefixes[i] {
					t.Errorf("prefix %d = %+v, want %+v", i, g.Prefixes[i], tt.wantPrefixes[i])
				}
			}
			if p := g.Permission; p != nil && (p.Download != tt.wantPerm.Download || p.Upload != tt.wantPerm.Upload || p.List != tt.wantPerm.List || p.Delete != tt.wantPerm.Delete) {
				t.Errorf("permission = %+v, want %+v", *p, *tt.wantPerm)
			}
		})
	}
	g, _ := storx.DecodeGrant(h.grant(u, base+"&bucket=all&expiry="+expiry))
	if want := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC); g.NotAfter() == nil || !g.NotAfter().Equal(want) {
		t.Errorf("expiry = %v, want %s read as UTC", g.NotAfter(), want)
	}

	errorTests := []struct {
		name, query, want string
	}{
		{"no api-key", "passphrase=x", "missing api-key query param"},
		{"bucket without flag or expiry", base + "&bucket=all", "missing permission query param"},
		{"an expiry that is not time.DateTime", base + "&bucket=all&allow_list&expiry=2026-03-01T13:00:00Z", "missing permission query param"},
		{"a malformed API key", "api-key=0OIl&passphrase=x", "invalid api key format"},
	}
	for _, tt := range errorTests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.expect(http.StatusBadRequest, http.MethodGet, "/api/v0/api-keys/"+u.project+"/access-grant?"+tt.query, "", userCookie(u.token))
			if got := r.errorMessage(t); got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

// The encryption key in a grant is derived from the passphrase and the
// project: one passphrase gives one key per project.
func TestGrantEncryptionKeyFollowsPassphraseAndProject(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	other := h.user("other@example.com")
	encryptionKey := func(owner user, phrase string) string {
		t.Helper()
		key, _ := h.createKey(owner, "k-"+phrase+"-"+time.Now().String())
		g, err := storx.DecodeGrant(h.grant(owner, "api-key="+key+"&passphrase="+url.QueryEscape(phrase)))
		if err != nil {
			t.Fatal(err)
		}
		return g.EncryptionKey
	}
	first, second := encryptionKey(u, passphrase), encryptionKey(u, passphrase)
	if first != second {
		t.Error("two grants with one passphrase have different keys")
	}
	if encryptionKey(u, "another") == first {
		t.Error("another passphrase gives the same key")
	}
	if encryptionKey(other, passphrase) == first {
		t.Error("another project gives the same key")
	}
}

func TestDeleteByName(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	h.createKey(u, "vault-app-1")
	del := func(query string) response {
		t.Helper()
		return h.expect(http.StatusOK, http.MethodDelete, "/api/v0/api-keys/delete-by-name?"+query, "", userCookie(u.token))
	}
	if r := del("name=vault-app-1&projectID=" + u.project); len(r.body) != 0 {
		t.Errorf("body = %q, want empty", r.body)
	}
	if o, ok := objectByName(h.satSrv.Objects(), "vault-app-1"); !ok || o.Live || o.State != "deleted" || o.Kind != "api_key" || o.Owner != "app@example.com" {
		t.Errorf("object = %+v", o)
	}
	// Gone, or never there: still 200 with an empty body.
	if r := del("name=vault-app-1&projectID=" + u.project); len(r.body) != 0 {
		t.Errorf("body = %q, want empty", r.body)
	}
	// The name is free again.
	h.createKey(u, "vault-app-1")
	r := h.expect(http.StatusBadRequest, http.MethodDelete, "/api/v0/api-keys/delete-by-name?name=x", "", userCookie(u.token))
	if got := r.errorMessage(t); got != "Project ID was not provided." {
		t.Errorf("no project: %q", got)
	}
	if _, err := h.send(h.satSrv.URL(), http.MethodDelete, "/api/v0/api-keys/delete-by-name?projectID="+u.project, "", userCookie(u.token)); err == nil {
		t.Error("a delete-by-name without a name got an answer; StorX drops the connection")
	}
	if n := h.sat.NamelessDeletes(); n != 1 {
		t.Errorf("NamelessDeletes = %d, want 1", n)
	}
	live := 0
	for _, o := range h.satSrv.Objects() {
		if o.Live {
			live++
		}
	}
	if live != 1 {
		t.Errorf("live keys = %d, want the re-created one only", live)
	}
}

func TestDeleteByIDs(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	_, id := h.createKey(u, "vault-app-1")
	h.expect(http.StatusOK, http.MethodDelete, "/api/v0/api-keys/delete-by-ids", `{"ids":["`+id+`"]}`, userCookie(u.token))
	h.expect(http.StatusInternalServerError, http.MethodDelete, "/api/v0/api-keys/delete-by-ids", `{"ids":["`+id+`"]}`, userCookie(u.token))
}

func TestCSRFProtection(t *testing.T) {
	h := start(t, storx.Options{CSRF: true})
	u := h.user("app@example.com")
	h.expect(http.StatusForbidden, http.MethodPost, "/api/v0/api-keys/create/"+u.project, "k", userCookie(u.token))
	h.expect(http.StatusForbidden, http.MethodPost, "/api/v0/api-keys/create/"+u.project, "k", "Cookie: _tokenKey="+u.token+"; csrf_token=a", "X-CSRF-Token: b")
	h.expect(http.StatusOK, http.MethodPost, "/api/v0/api-keys/create/"+u.project, "k", "Cookie: _tokenKey="+u.token+"; csrf_token=a", "X-CSRF-Token: a")
}

func TestSatelliteFaultBodyAndReset(t *testing.T) {
	h := start(t, storx.Options{})
	h.satSrv.AddFault(sandbox.Fault{Path: "/api/v0/projects", Status: http.StatusTooManyRequests, Times: 1})
	r := h.expect(http.StatusTooManyRequests, http.MethodGet, "/api/v0/projects", "")
	if got := r.errorMessage(t); got != "You've exceeded your request limit. Please try again later." {
		t.Errorf("fault body = %q", got)
	}
	u := h.user("app@example.com")
	h.createKey(u, "vault-app-1")
	h.satSrv.Reset()
	if len(h.satSrv.Objects()) != 0 {
		t.Error("Reset kept API keys")
	}
	h.expect(http.StatusUnauthorized, http.MethodGet, "/api/v0/projects", "", userCookie(u.token))
	h.developerToken()
}
