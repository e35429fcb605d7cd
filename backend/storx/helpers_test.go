package storx

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	devEmail       = "dev@example.com"
	devPassword    = "developer-password-1"
	passphrase     = "correct horse battery staple"
	handmadeEmail  = "handmade@example.com"
	lockedUser     = "locked-user@example.com"
	appUserEmail   = "app@example.com"
	routeToken     = "POST /api/v0/developer/auth/token"
	routeCreate    = "POST /api/v0/developer/auth/create-user"
	routeUserToken = "POST /api/v0/developer/auth/user-token"
	routeProjects  = "GET /api/v0/projects"
	routeNewKey    = "POST /api/v0/api-keys/create/{projectID}"
	routeGrant     = "GET /api/v0/api-keys/{project_id}/access-grant"
	routeDelete    = "DELETE /api/v0/api-keys/delete-by-name"
	routeAccess    = "POST /v1/access"
	pathNewKey     = "/api/v0/api-keys/create/"
	pathAccess     = "/v1/access"
)

// env is the provider wired to both emulators, each on its own loopback port.
type env struct {
	t *testing.T
	// clock is the shared, settable time of the provider and the emulators.
	clock   *testutil.Clock
	sat     *emulator.Satellite
	auth    *emulator.AuthService
	satSrv  *sandbox.Server
	authSrv *sandbox.Server
	conn    *connection
	// logs collects log output from concurrent requests.
	logs *testutil.LogBuffer
	// secrets are checked against every log line when the test ends.
	secretsMu sync.Mutex
	secrets   []string
}

type envOption func(*emulator.Options, *http.Client)

func withEmulator(f func(*emulator.Options)) envOption {
	return func(o *emulator.Options, _ *http.Client) { f(o) }
}

func withClientTimeout(d time.Duration) envOption {
	return func(_ *emulator.Options, c *http.Client) { c.Timeout = d }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	clk := testutil.NewClock(time.Now().UTC().Truncate(time.Second))
	oldNow := timeNow
	timeNow = clk.Now
	t.Cleanup(func() { timeNow = oldNow })
	emuOpts := emulator.Options{
		Developers: []emulator.Developer{
			{Email: devEmail, Password: devPassword},
			{Email: "locked@example.com", Password: devPassword, LockedOut: true},
			{Email: "mfa@example.com", Password: devPassword, MFA: true},
		},
		Users: []emulator.User{
			{Email: handmadeEmail, FullName: "Made By Hand", Developer: devEmail},
			{Email: lockedUser, FullName: "Locked", Locked: true},
		},
		// Plenty, so that only the tests of the limit meet it.
		RateBurst: 100,
		Now:       clk.Now,
	}
	httpClient := &http.Client{Timeout: 10 * time.Second}
	for _, o := range opts {
		o(&emuOpts, httpClient)
	}
	e := &env{t: t, clock: clk, logs: &testutil.LogBuffer{}}
	e.sat = emulator.New(emuOpts)
	e.auth = emulator.NewAuthService(e.sat, emulator.AuthOptions{})
	e.satSrv = testutil.StartEmulator(t, e.sat)
	e.authSrv = testutil.StartEmulator(t, e.auth)
	e.conn = e.connect(devEmail, devPassword, passphrase, httpClient)
	e.addSecrets(devPassword, passphrase)
	t.Cleanup(e.checkLogs)
	return e
}

// connect opens a connection as the engine does, with a trace logger.
func (e *env) connect(email, password, phrase string, httpClient *http.Client) *connection {
	e.t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	conn, err := New().Connect(provider.ConnectionConfig{
		Name:       "sandbox",
		BaseURL:    e.satSrv.URL(),
		Values:     provider.Values{fieldEmail: email, fieldPassword: password, fieldPassphrase: phrase, fieldAuthURL: e.authSrv.URL()},
		HTTPClient: httpClient,
		Logger:     logger,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(conn.Close)
	return conn.(*connection)
}

// freshConnection is a second Vault node, or Vault after a restart: same
// root, no cached session or project.
func (e *env) freshConnection() *connection {
	return e.connect(devEmail, devPassword, passphrase, &http.Client{Timeout: 10 * time.Second})
}

func (e *env) addSecrets(secrets ...string) {
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	e.secrets = append(e.secrets, secrets...)
}

func (e *env) checkLogs() {
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	if s, found := containsSecret(e.logs.String(), e.secrets); found {
		e.t.Errorf("a secret appears in the logs: %q", s)
	}
}

// containsSecret looks for each secret as is and URL-encoded, the form it
// takes in a query string.
func containsSecret(text string, secrets []string) (string, bool) {
	for _, s := range secrets {
		if s != "" && (strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s))) {
			return s, true
		}
	}
	return "", false
}

// checkNoSecrets fails if text carries a secret the test has seen.
func (e *env) checkNoSecrets(text string) {
	e.t.Helper()
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	if _, found := containsSecret(text, e.secrets); found {
		e.t.Errorf("a secret appears in %q", text)
	}
}

func role(values provider.Values) provider.Values {
	out := provider.Values{fieldUserEmail: appUserEmail, fieldPermissions: allPermissions}
	for k, v := range values {
		out[k] = v
	}
	return out
}

var nameCounter struct {
	mu sync.Mutex
	n  int
}

// issueRequest is what the engine sends: a unique name and a lease max an
// hour away.
func (e *env) issueRequest(values provider.Values) provider.IssueRequest {
	nameCounter.mu.Lock()
	nameCounter.n++
	n := nameCounter.n
	nameCounter.mu.Unlock()
	return provider.IssueRequest{
		RoleName: "app", Role: role(values), Name: fmt.Sprintf("vault-app-%012d", n),
		TTL: 10 * time.Minute, ExpiresAt: e.clock.Now().Add(time.Hour),
	}
}

// issue issues with conn and records the credential's secrets.
func (e *env) issue(conn *connection, req provider.IssueRequest) (*provider.Credential, error) {
	cred, err := conn.Issue(context.Background(), req)
	if err != nil {
		e.checkNoSecrets(err.Error())
		return nil, err
	}
	e.addSecrets(cred.Data["secret_access_key"].(string), cred.Data["access_grant"].(string))
	return cred, nil
}

func (e *env) mustIssue(req provider.IssueRequest) *provider.Credential {
	e.t.Helper()
	cred, err := e.issue(e.conn, req)
	if err != nil {
		e.t.Fatalf("issue %s: %v", req.Name, err)
	}
	return cred
}

// calls merges both emulators' call counts.
func (e *env) calls() map[string]int {
	out := e.satSrv.Calls()
	for k, v := range e.authSrv.Calls() {
		out[k] += v
	}
	return out
}

func (e *env) resetCalls() {
	e.satSrv.ResetCalls()
	e.authSrv.ResetCalls()
}

// live lists the names (api keys) or ids (S3 credentials) of live objects.
func (e *env) live() (apiKeys, s3Credentials []string) {
	for _, o := range e.satSrv.Objects() {
		if o.Live {
			apiKeys = append(apiKeys, o.Name)
		}
	}
	for _, o := range e.authSrv.Objects() {
		if o.Live {
			s3Credentials = append(s3Credentials, o.ID)
		}
	}
	return apiKeys, s3Credentials
}

func (e *env) expectNothingLive() {
	e.t.Helper()
	keys, creds := e.live()
	if len(keys) > 0 || len(creds) > 0 {
		e.t.Fatalf("left upstream: api keys %v, s3 credentials %v", keys, creds)
	}
}

func (e *env) expectCalls(want map[string]int) {
	e.t.Helper()
	got := e.calls()
	for route, n := range want {
		if got[route] != n {
			e.t.Errorf("%s called %d times, want %d (all calls: %v)", route, got[route], n, got)
		}
	}
}

func rollbackOf(req provider.IssueRequest) provider.RollbackRequest {
	return provider.RollbackRequest{Name: req.Name, RoleName: req.RoleName, Role: req.Role}
}
