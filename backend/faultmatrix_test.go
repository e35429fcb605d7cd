package backend

// The fault matrix of issue "Reliability", item 1: every provider × every
// upstream fault × issue, revoke, renew and rotate-root, run in process
// through b.HandleRequest against the real emulators on loopback. One more
// column fails the engine's own inventory writes instead of an upstream
// route (issue "Never lose a root…", item 6).
//
// Every cell gets its own backend (in-memory storage) and its own emulators,
// so cells cannot disturb each other and run concurrently. A cell:
//
//  1. configures the connection and role and issues and revokes one
//     credential, so sessions, projects and tokens are cached and the fault
//     meets the route it is aimed at;
//  2. arms the column's fault on the row's route (persistent, Times 0, except
//     the "429 RA=1" column, whose point is that a single 429 asking for a
//     one-second wait is waited out and retried), runs the operation and
//     requires success or an error naming the provider and the operation;
//  3. clears the fault; retries a failed revoke, which must succeed; runs the
//     WAL rollback with immediate (as rollbackAll does) and requires an empty
//     WAL; requires that no live upstream object lacks a live lease; reopens
//     the connection from storage and requires a fresh creds read to work;
//     revokes everything and checks the upstream again;
//  4. requires that no error text and no log line carries a root credential
//     (current, staged or rotated) or an issued secret.
//
// Rows whose operation makes no upstream call by design (renew, revoke of
// dstor and storable, rotate-root of storx, dstor and storable) arm the
// column's fault on every route and require the documented answer and no
// upstream call.
//
// The "inventory write fails" column fails every storage write under
// inventory/ during the operation. What the inventory records must be true:
// an issue or renew it cannot record fails (a renew granted with the old end
// on record would let tidy delete the live credential, so the cell renews
// again once storage recovers, lets 30 minutes pass and requires tidy
// dry_run=false to leave the credential alive upstream); a revoke succeeds
// and leaves a stale entry for tidy; rotate-root writes no inventory.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	storxemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	fmConn = "c"
	fmRole = "app"
	// fmClientTimeout is the backend's HTTP client timeout while a latency
	// fault is armed, and fmLatencyMS the injected delay that outlasts it,
	// so far that the client always gives up first whatever the load (the
	// sandbox then abandons the request).
	// Setup and recovery run with fmNormalTimeout, so that CPU contention
	// cannot fail an unfaulted request.
	fmClientTimeout = time.Second
	fmLatencyMS     = 60_000
	// fmRequestTimeout is the deadline of every request, as Vault puts one
	// on each (max_request_duration, 90 s by default). It bounds the
	// providers' own retry loops, and Katapult's wait for its next rate
	// window, which without a deadline lasts until the next minute.
	fmRequestTimeout = 20 * time.Second
	// fmNormalTimeout is the client timeout outside the latency faults.
	fmNormalTimeout = 5 * time.Second
	fmMaxTTL        = time.Hour
	// fmConcurrentCells bounds the cells running at once over all providers,
	// so that CPU contention on 2 cores does not push unfaulted requests past
	// the 1 s client timeout.
	fmConcurrentCells = 8

	fmStorxEmail      = "dev@example.com"
	fmStorxPassword   = "matrix-storx-developer-password"
	fmStorxPassphrase = "matrix storx grant passphrase"
	fmStorxUser       = "app@example.com"

	fmKatapultToken        = "matrix-katapult-token-secret-0123"
	fmKatapultTokenID      = "apitoken_MATRIX00000000001"
	fmKatapultConsoleToken = "matrix-katapult-console-token-0123"

	fmDstorKey = "matrixDstorKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"

	fmStorableClientID = "matrix-client"
	fmStorableSecret   = "matrix-storable-client-secret"
	fmStorableAPIKey   = "matrixStorableApiKey0123456789abcdefghij"
	fmStorableLifetime = 5400 * time.Second
)

// fmHTTP talks to the emulators' control endpoints and, for the Katapult
// console step, to the API directly.
var fmHTTP = &http.Client{Timeout: 5 * time.Second}

// fmColumn is one fault; its Method and Path are set per row.
type fmColumn struct {
	name  string
	fault sandbox.Fault
	// transient faults are the point of their column: the operation must
	// succeed after the provider's retry.
	transient bool
	// inventory columns fail the engine's inventory writes, not an upstream route.
	inventory bool
}

var fmColumns = []fmColumn{
	{name: "latency", fault: sandbox.Fault{LatencyMS: fmLatencyMS}},
	{name: "500", fault: sandbox.Fault{Status: http.StatusInternalServerError}},
	{name: "503", fault: sandbox.Fault{Status: http.StatusServiceUnavailable}},
	{name: "429 RA=1", fault: sandbox.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1}, transient: true},
	{name: "429 no RA", fault: sandbox.Fault{Status: http.StatusTooManyRequests}},
	{name: "drop", fault: sandbox.Fault{Drop: true}},
	{name: "malformed", fault: sandbox.Fault{Malformed: true}},
	{name: "inventory write fails", inventory: true},
}

const (
	// fmRenewIncrement is what every renew asks for; the lease's max TTL
	// (fmMaxTTL) leaves room for it.
	fmRenewIncrement = 50 * time.Minute
	// fmRenewElapsed passes between a renew and the tidy that follows it: past
	// the lease's first end (10m), before its renewed one.
	fmRenewElapsed = 30 * time.Minute
)

type fmOp int

const (
	fmIssue fmOp = iota
	fmRevoke
	fmRenew
	fmRotate
)

// fmRenewRow is every provider's renew, which never calls the upstream.
var fmRenewRow = fmRow{label: "renew", op: fmRenew, byDesign: "ok, no call"}

// fmRow is one operation of one provider.
type fmRow struct {
	label string
	op    fmOp
	// server, method and path aim the fault; an empty path means the
	// operation makes no upstream call by design.
	server, method, path string
	// opText is what an error of the operation must name; for inventory
	// faults the error must name the inventory instead.
	opText string
	// byDesign is the cell value of a row without an upstream call.
	byDesign string
}

// fmProvider describes one provider's emulators and how to read them.
type fmProvider struct {
	name string
	rows []fmRow
	// start runs the emulators (filling e.servers) and returns the
	// connection's and the role's fields.
	start func(e *fmEnv) (config, role map[string]any)
	// leaseSecrets are the keys of the lease data that hold secrets.
	leaseSecrets []string
	// accounts reports whether a lease's data accounts for a live object.
	accounts func(t *testing.T, server string, o sandbox.Object, data map[string]any) bool
	// tokenLifetime > 0 marks a provider without a revocation API: live
	// tokens no lease holds (the warm-up's, revoked leases', answers lost to
	// a fault) are expected there, but must expire within this bound.
	tokenLifetime time.Duration
	// cachesToken providers reuse an upstream token across issues; the cell
	// drops the cache so that the faulted issue must fetch one.
	cachesToken bool
}

func fmProviders() []*fmProvider {
	storyden := &fmProvider{
		name: "storyden",
		rows: []fmRow{
			{label: "issue", op: fmIssue, server: "main", method: http.MethodPost, path: "/api/auth/access-keys", opText: "create access key"},
			{label: "revoke", op: fmRevoke, server: "main", method: http.MethodDelete, path: "/api/auth/access-keys/", opText: "revoke access key"},
			fmRenewRow,
			{label: "rotate-root", op: fmRotate, server: "main", method: http.MethodPatch, path: "/api/auth/password", opText: "change the password"},
		},
		start: func(e *fmEnv) (map[string]any, map[string]any) {
			srv := e.startEmulator(storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{
				{Handle: adminHandle, Password: adminPassword, Admin: true},
			}}))
			e.servers["main"] = srv
			return map[string]any{"provider": "storyden", "base_url": srv.URL(), "username": adminHandle, "password": adminPassword}, map[string]any{}
		},
		leaseSecrets: []string{"access_key"},
		accounts: func(_ *testing.T, _ string, o sandbox.Object, data map[string]any) bool {
			return o.ID == fmStr(data, "access_key_id")
		},
	}
	storx := &fmProvider{
		name: "storx",
		rows: []fmRow{
			{label: "issue (satellite)", op: fmIssue, server: "main", method: http.MethodPost, path: "/api/v0/api-keys/create/", opText: "create API key"},
			{label: "issue (auth service)", op: fmIssue, server: "auth", method: http.MethodPost, path: "/v1/access", opText: "get S3 credentials from the auth service"},
			{label: "revoke", op: fmRevoke, server: "main", method: http.MethodDelete, path: "/api/v0/api-keys/delete-by-name", opText: "delete API key"},
			fmRenewRow,
			{label: "rotate-root", op: fmRotate, byDesign: "400 by design"},
		},
		start: func(e *fmEnv) (map[string]any, map[string]any) {
			sat := storxemu.New(storxemu.Options{
				Developers: []storxemu.Developer{{Email: fmStorxEmail, Password: fmStorxPassword}},
				RateBurst:  1000,
			})
			e.servers["main"] = e.startEmulator(sat)
			e.servers["auth"] = e.startEmulator(storxemu.NewAuthService(sat, storxemu.AuthOptions{}))
			return map[string]any{
					"provider": "storx", "base_url": e.servers["main"].URL(), "auth_url": e.servers["auth"].URL(),
					"email": fmStorxEmail, "password": fmStorxPassword, "passphrase": fmStorxPassphrase,
				},
				map[string]any{"user_email": fmStorxUser}
		},
		leaseSecrets: []string{"secret_access_key", "access_grant"},
		accounts: func(_ *testing.T, server string, o sandbox.Object, data map[string]any) bool {
			if server == "auth" {
				return o.ID == fmStr(data, "access_key_id")
			}
			return o.Name == fmStr(data, "api_key_name")
		},
	}
	katapult := &fmProvider{
		name: "katapult",
		rows: []fmRow{
			{label: "issue", op: fmIssue, server: "main", method: http.MethodPost, path: "/core/v1/organizations/organization/object_storage/object_storage_cluster/access_keys", opText: "create access key"},
			{label: "revoke", op: fmRevoke, server: "main", method: http.MethodDelete, path: "/core/v1/object_storage/access_keys/access_key", opText: "delete access key"},
			fmRenewRow,
			{label: "rotate-root", op: fmRotate, server: "main", method: http.MethodPost, path: "/core/v1/api_tokens/api_token/regenerate_secret", opText: "regenerate the secret"},
		},
		start: func(e *fmEnv) (map[string]any, map[string]any) {
			srv := e.startEmulator(katapultemu.New(katapultemu.Options{
				Organizations: []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"data"}}},
				Tokens: []katapultemu.Token{
					{ID: fmKatapultTokenID, Secret: fmKatapultToken, Organization: "acme", User: "vault"},
					// The operator's own token, standing for the Katapult console.
					{ID: "apitoken_CONSOLE0000000001", Secret: fmKatapultConsoleToken, Organization: "acme", User: "operator"},
				},
				ProvisioningDelay: -1,
				// Only the plugin's own cleaning can leave bucket ACLs clean.
				DeletedKeysStayInACLs: true,
				// Far from the budget, so that only injected 429s limit.
				RateLimit: 1_000_000,
			}))
			e.servers["main"] = srv
			e.secrets = append(e.secrets, fmKatapultConsoleToken)
			return map[string]any{"provider": "katapult", "base_url": srv.URL() + "/core/v1", "api_token": fmKatapultToken, "organization": "acme"},
				map[string]any{"read_buckets": "data"}
		},
		leaseSecrets: []string{"secret_access_key"},
		accounts: func(_ *testing.T, _ string, o sandbox.Object, data map[string]any) bool {
			return o.ID == fmStr(data, "katapult_access_key_id")
		},
	}
	dstor := &fmProvider{
		name: "dstor",
		rows: []fmRow{
			{label: "issue", op: fmIssue, server: "main", method: http.MethodGet, path: "/v1/dev/temp-token", opText: "mint access token"},
			{label: "revoke", op: fmRevoke, byDesign: "n/a"},
			fmRenewRow,
			{label: "rotate-root", op: fmRotate, byDesign: "400 by design"},
		},
		start: func(e *fmEnv) (map[string]any, map[string]any) {
			srv := e.startEmulator(dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: fmDstorKey}}}))
			e.servers["main"] = srv
			return map[string]any{"provider": "dstor", "base_url": srv.URL() + "/v1", "api_key": fmDstorKey}, map[string]any{}
		},
		leaseSecrets: []string{"access_token"},
		accounts: func(_ *testing.T, _ string, o sandbox.Object, data map[string]any) bool {
			sum := sha256.Sum256([]byte(fmStr(data, "access_token")))
			return o.ID == hex.EncodeToString(sum[:8])
		},
		// Tokens are minted to die at the lease's latest end.
		tokenLifetime: fmMaxTTL,
	}
	storable := &fmProvider{
		name: "storable",
		rows: []fmRow{
			{label: "issue", op: fmIssue, server: "main", method: http.MethodPost, path: "/auth/token", opText: "request an access token"},
			{label: "revoke", op: fmRevoke, byDesign: "n/a"},
			fmRenewRow,
			{label: "rotate-root", op: fmRotate, byDesign: "400 by design"},
		},
		start: func(e *fmEnv) (map[string]any, map[string]any) {
			srv := e.startEmulator(storableemu.New(storableemu.Options{
				Clients:   []storableemu.Client{{ID: fmStorableClientID, Secret: fmStorableSecret, APIKey: fmStorableAPIKey}},
				RateLimit: 1000,
			}))
			e.servers["main"] = srv
			return map[string]any{
				"provider": "storable", "base_url": srv.URL(),
				"client_id": fmStorableClientID, "client_secret": fmStorableSecret, "api_key": fmStorableAPIKey,
			}, map[string]any{}
		},
		leaseSecrets: []string{"access_token"},
		accounts: func(t *testing.T, _ string, o sandbox.Object, data map[string]any) bool {
			token := fmStr(data, "access_token")
			return token != "" && o.ID == fmStr(testutil.JWTClaims(t, token), "jti")
		},
		// Storable sets the lifetime; a token lives 5400 s in the emulator.
		tokenLifetime: fmStorableLifetime,
		cachesToken:   true,
	}
	return []*fmProvider{storyden, storx, katapult, dstor, storable}
}

func fmStr(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// TestFaultMatrix runs every cell and prints the matrix.
func TestFaultMatrix(t *testing.T) {
	providers := fmProviders()
	m := newFMMatrix(providers)
	slots := make(chan struct{}, fmConcurrentCells)
	t.Run("cells", func(t *testing.T) {
		for _, p := range providers {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				var wg sync.WaitGroup
				for _, row := range p.rows {
					for _, col := range fmColumns {
						wg.Add(1)
						go func() {
							defer wg.Done()
							slots <- struct{}{}
							defer func() { <-slots }()
							t.Run(row.label+"/"+col.name, func(t *testing.T) {
								outcome := "?"
								defer func() { m.set(p.name+" "+row.label, col.name, outcome, t.Failed()) }()
								fmRunCell(t, p, row, col, m, &outcome)
							})
						}()
					}
				}
				wg.Wait()
			})
		}
	})
	t.Log("fault matrix (rows: provider and operation; columns: fault on the operation's route):\n" + m.String())
}

// fmEnv is one cell's backend and emulators.
type fmEnv struct {
	t       *testing.T
	p       *fmProvider
	col     fmColumn
	b       *backend
	storage *inventoryFaultStorage
	logs    *testutil.LogBuffer
	servers map[string]*sandbox.Server
	// secrets are checked against every error text and log line.
	secrets []string
	// fixtureVars fill @@name@@ in the v0.1.0 fixtures (schema_test.go).
	fixtureVars map[string]string
	// errors are the texts of every failed request.
	errors []string
	// live are the leases issued and not revoked.
	live []*logical.Response
	// tls, when set, serves every emulator over HTTPS with it.
	tls *tls.Config
}

func newFMEnv(t *testing.T, p *fmProvider, col fmColumn) *fmEnv {
	t.Helper()
	e, config, role := startFMEnv(t, p, col, nil)
	// The emulators serve plain HTTP on loopback.
	config["allow_http"] = true
	e.configure(config, role)
	return e
}

// startFMEnv starts a cell's emulators (over HTTPS with tlsConfig when it is
// set) and backend, and returns the connection's and the role's fields
// without writing them.
func startFMEnv(t *testing.T, p *fmProvider, col fmColumn, tlsConfig *tls.Config) (e *fmEnv, config, role map[string]any) {
	t.Helper()
	e = &fmEnv{t: t, p: p, col: col, servers: map[string]*sandbox.Server{}, logs: &testutil.LogBuffer{}, tls: tlsConfig}
	config, role = p.start(e)

	conf := logical.TestBackendConfig()
	e.storage = &inventoryFaultStorage{Storage: &logical.InmemStorage{}}
	conf.StorageView = e.storage
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	conf.EventsSender = &eventRecorder{}
	conf.System = &testSystemView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
	e.b = newBackend(defaultRegistry())
	e.b.httpClient = &http.Client{Timeout: fmNormalTimeout}
	if err := e.b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.b.Cleanup(context.Background()) })
	t.Cleanup(e.checkSecrets)
	return e, config, role
}

// configure notes the connection's secrets and writes it and the role.
func (e *fmEnv) configure(config, role map[string]any) {
	e.t.Helper()
	e.noteSecrets(config)
	e.must(logical.CreateOperation, "config/"+fmConn, config)
	role["connection"], role["ttl"], role["max_ttl"] = fmConn, "10m", fmMaxTTL.String()
	e.must(logical.CreateOperation, "roles/"+fmRole, role)
}

// noteSecrets adds the secret fields of a connection write.
func (e *fmEnv) noteSecrets(config map[string]any) {
	if prov, ok := e.b.providers.get(e.p.name); ok {
		for _, f := range prov.ConnectionFields() {
			if s := fmStr(config, f.Name); f.Secret && s != "" {
				e.secrets = append(e.secrets, s)
			}
		}
	}
}

// startEmulator serves emu for the cell's length, over HTTPS when the cell
// has a TLS configuration.
func (e *fmEnv) startEmulator(emu sandbox.Emulator) *sandbox.Server {
	if e.tls != nil {
		return testutil.StartTLSEmulator(e.t, emu, e.tls)
	}
	return testutil.StartEmulator(e.t, emu)
}

func (e *fmEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fmRequestTimeout)
	defer cancel()
	return e.b.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage, MountPoint: "apikeys/"})
}

// failure is the text of a failed request, "" when it succeeded; it is kept
// for the secrets check.
func (e *fmEnv) failure(resp *logical.Response, err error) string {
	msg := ""
	switch {
	case err != nil:
		msg = err.Error()
	case resp != nil && resp.IsError():
		msg = resp.Error().Error()
	}
	if msg != "" {
		e.errors = append(e.errors, msg)
	}
	return msg
}

func (e *fmEnv) must(op logical.Operation, path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if msg := e.failure(resp, err); msg != "" {
		e.t.Fatalf("%s %s: %s", op, path, msg)
	}
	return resp
}

// issue reads creds/app; it returns the error text when that failed.
func (e *fmEnv) issue() (*logical.Response, string) {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "creds/"+fmRole, nil)
	if msg := e.failure(resp, err); msg != "" {
		return nil, msg
	}
	if resp == nil || resp.Secret == nil {
		e.t.Fatalf("creds/%s returned no lease: %#v", fmRole, resp)
	}
	for _, k := range e.p.leaseSecrets {
		if s := fmStr(resp.Data, k); s != "" {
			e.secrets = append(e.secrets, s)
		} else {
			e.t.Errorf("the lease has no %s", k)
		}
	}
	e.live = append(e.live, resp)
	return resp, ""
}

func (e *fmEnv) mustIssue() *logical.Response {
	e.t.Helper()
	resp, msg := e.issue()
	if msg != "" {
		e.t.Fatalf("creds/%s: %s", fmRole, msg)
	}
	return resp
}

// revoke revokes a lease as Vault's expiration manager does; it returns the
// error text when that failed.
func (e *fmEnv) revoke(lease *logical.Response) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fmRequestTimeout)
	defer cancel()
	resp, err := e.b.HandleRequest(ctx, &logical.Request{
		Operation: logical.RevokeOperation, Storage: e.storage, Secret: roundTrip(e.t, lease.Secret), Data: lease.Data,
	})
	if msg := e.failure(resp, err); msg != "" {
		return msg
	}
	e.live = slices.DeleteFunc(e.live, func(r *logical.Response) bool { return r == lease })
	return ""
}

func (e *fmEnv) mustRevoke(lease *logical.Response) {
	e.t.Helper()
	if msg := e.revoke(lease); msg != "" {
		e.t.Fatalf("revoke: %s", msg)
	}
}

// renew renews a lease by fmRenewIncrement as Vault's expiration manager
// does; it returns the error text when that failed.
func (e *fmEnv) renew(lease *logical.Response) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fmRequestTimeout)
	defer cancel()
	secret := roundTrip(e.t, lease.Secret)
	secret.IssueTime, secret.Increment = time.Now(), fmRenewIncrement
	return e.failure(e.b.HandleRequest(ctx, &logical.Request{
		Operation: logical.RenewOperation, Storage: e.storage, Secret: secret, Data: lease.Data,
	}))
}

// leaseLives reports whether every emulator still holds a live object the
// lease accounts for.
func (e *fmEnv) leaseLives(lease *logical.Response) bool {
	for server, srv := range e.servers {
		if !slices.ContainsFunc(srv.Objects(), func(o sandbox.Object) bool {
			return o.Live && o.Kind != "bucket" && e.p.accounts(e.t, server, o, lease.Data)
		}) {
			return false
		}
	}
	return true
}

// setClientTimeout gives the backend a new HTTP client and reopens the
// connection, so that every following upstream call uses it. Providers keep
// the client they were opened with, so nothing in flight sees the change.
func (e *fmEnv) setClientTimeout(d time.Duration) {
	e.b.httpClient = &http.Client{Timeout: d}
	e.reopen()
}

// reopen drops the cached provider connection, as Vault's invalidation (or
// a restart) does: the next request signs in again with the stored root.
func (e *fmEnv) reopen() {
	e.b.Invalidate(context.Background(), configStoragePrefix+fmConn)
}

func (e *fmEnv) arm(row fmRow) {
	f := e.col.fault
	f.Method, f.Path = row.method, row.path
	e.servers[row.server].AddFault(f)
}

// armEverywhere arms the column's fault on every route of every emulator.
func (e *fmEnv) armEverywhere() {
	for _, srv := range e.servers {
		srv.AddFault(e.col.fault)
	}
}

// faultStats sums, over the armed faults, the requests that matched one and
// those the fault answered.
func (e *fmEnv) faultStats() (matched, applied int) {
	e.t.Helper()
	for _, srv := range e.servers {
		resp, err := fmHTTP.Get(srv.URL() + "/_sandbox/faults")
		if err != nil {
			e.t.Fatal(err)
		}
		var body struct {
			Faults []struct {
				Matched int `json:"matched"`
				Applied int `json:"applied"`
			} `json:"faults"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, f := range body.Faults {
			matched += f.Matched
			applied += f.Applied
		}
	}
	return matched, applied
}

func (e *fmEnv) clearFaults() {
	for _, srv := range e.servers {
		srv.ClearFaults()
	}
}

func (e *fmEnv) connection() *connectionEntry {
	e.t.Helper()
	entry, err := getConnection(context.Background(), e.storage, fmConn)
	if err != nil || entry == nil {
		e.t.Fatalf("connection %s: %v", fmConn, err)
	}
	return entry
}

// noteRootSecrets adds the stored and staged root credentials.
func (e *fmEnv) noteRootSecrets() {
	entry, err := getConnection(context.Background(), e.storage, fmConn)
	if err != nil || entry == nil {
		return
	}
	prov, ok := e.b.providers.get(e.p.name)
	if !ok {
		return
	}
	for _, f := range prov.ConnectionFields() {
		for _, values := range []map[string]any{entry.Values, entry.PendingRoot} {
			if s := fmStr(values, f.Name); f.Secret && s != "" {
				e.secrets = append(e.secrets, s)
			}
		}
	}
}

// walCount is the issues on record as in flight: WAL entries (written by
// older versions) and pending inventory entries.
func (e *fmEnv) walCount() int {
	e.t.Helper()
	n, err := inFlightRecords(context.Background(), e.storage)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// checkClearError requires an error text to name the provider and the
// operation. Secrets are checked for every text when the cell ends.
func (e *fmEnv) checkClearError(row fmRow, msg string) {
	e.t.Helper()
	low := strings.ToLower(msg)
	if !strings.Contains(low, e.p.name) {
		e.t.Errorf("the error does not name the provider %s: %s", e.p.name, msg)
	}
	if !strings.Contains(low, strings.ToLower(row.opText)) {
		e.t.Errorf("the error does not name the operation (%q): %s", row.opText, msg)
	}
}

// checkOrphans requires every live upstream object to belong to a live
// lease. Providers without revocation may hold unleased tokens that expire
// soon enough; Katapult's bucket ACLs may only hold live leases' keys.
func (e *fmEnv) checkOrphans(stage string) {
	e.t.Helper()
	now := time.Now()
	var liveKatapultKeys []string
	for _, lease := range e.live {
		if id := fmStr(lease.Data, "katapult_access_key_id"); id != "" {
			liveKatapultKeys = append(liveKatapultKeys, id)
		}
	}
	for server, srv := range e.servers {
		for _, o := range srv.Objects() {
			if !o.Live {
				continue
			}
			if o.Kind == "bucket" {
				for _, acl := range []string{"read_key_ids", "write_key_ids"} {
					ids, _ := o.Extra[acl].([]string)
					for _, id := range ids {
						if !slices.Contains(liveKatapultKeys, id) {
							e.t.Errorf("%s: bucket %s's %s holds %s, which no live lease accounts for", stage, o.Name, acl, id)
						}
					}
				}
				continue
			}
			if slices.ContainsFunc(e.live, func(lease *logical.Response) bool { return e.p.accounts(e.t, server, o, lease.Data) }) {
				continue
			}
			if e.p.tokenLifetime > 0 {
				if o.ExpiresAt == nil || o.ExpiresAt.After(now.Add(e.p.tokenLifetime+time.Minute)) {
					e.t.Errorf("%s: unleased %s token %s (no revocation API) does not expire within %s: expires %v", stage, e.p.name, o.ID, e.p.tokenLifetime, o.ExpiresAt)
				}
				continue
			}
			e.t.Errorf("%s: orphaned upstream object on %s: %s %q (id %s, state %s); no live lease accounts for it", stage, server, o.Kind, o.Name, o.ID, o.State)
		}
	}
}

// checkSecrets requires that no error text and no log line carries a root
// credential or an issued secret, as is or URL-encoded.
func (e *fmEnv) checkSecrets() {
	e.noteRootSecrets()
	texts := map[string]string{"the logs": e.logs.String()}
	for i, msg := range e.errors {
		texts[fmt.Sprintf("error %d (%.60s…)", i+1, msg)] = msg
	}
	for _, secret := range e.secrets {
		for where, text := range texts {
			if strings.Contains(text, secret) || strings.Contains(text, url.QueryEscape(secret)) {
				e.t.Errorf("a secret (%.4s…) appears in %s", secret, where)
			}
		}
	}
}

// fmRunCell runs one cell and stores its value in *outcome as soon as it is known.
func fmRunCell(t *testing.T, p *fmProvider, row fmRow, col fmColumn, m *fmMatrix, outcome *string) {
	e := newFMEnv(t, p, col)
	// Warm-up: sessions, project and user exist, so the fault meets its route.
	e.mustRevoke(e.mustIssue())

	switch {
	case col.inventory:
		*outcome = e.runInventoryFault(row)
	case row.path == "":
		*outcome = e.runByDesign(row)
	default:
		*outcome = e.runUnderFault(row, m)
	}

	// After the fault: failed issues are rolled back, nothing is orphaned
	// upstream, and the stored root still works.
	e.failure(e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation, Storage: e.storage, Data: map[string]any{"immediate": true},
	}))
	if n := e.walCount(); n != 0 {
		t.Errorf("%d WAL entries left after the rollback", n)
	}
	e.checkOrphans("after the fault cleared")
	e.reopen()
	if _, msg := e.issue(); msg != "" {
		t.Errorf("the connection's root no longer works: a fresh creds read after the fault cleared failed: %s", msg)
	}
	for len(e.live) > 0 {
		if msg := e.revoke(e.live[0]); msg != "" {
			t.Fatalf("revoke at the end: %s", msg)
		}
	}
	e.checkOrphans("after revoking every lease")
}

// runUnderFault runs the row's operation with the fault armed on its route.
func (e *fmEnv) runUnderFault(row fmRow, m *fmMatrix) string {
	t := e.t
	var lease *logical.Response
	if row.op == fmRevoke {
		lease = e.mustIssue()
	}
	latency := e.col.fault.LatencyMS > 0
	if latency {
		e.setClientTimeout(fmClientTimeout)
	} else if row.op == fmIssue && e.p.cachesToken {
		e.reopen()
	}
	e.arm(row)
	var msg string
	switch row.op {
	case fmIssue:
		_, msg = e.issue()
	case fmRevoke:
		msg = e.revoke(lease)
	case fmRotate:
		msg = e.failure(e.request(logical.UpdateOperation, "rotate-root/"+fmConn, nil))
		e.noteRootSecrets()
	}
	matched, applied := e.faultStats()
	e.clearFaults()

	outcome := "error"
	switch {
	case msg != "":
	case matched > applied:
		// A request on the route got through after the fault: the
		// provider retried.
		outcome = "ok after retry"
	default:
		outcome = "ok"
	}
	if applied == 0 {
		t.Errorf("the fault on %s %s never hit (%d matching requests)", row.method, row.path, matched)
	}
	switch {
	case e.col.transient && outcome != "ok after retry":
		t.Errorf("a single 429 asking for a 1 s wait must be waited out and retried; got %s %s", outcome, msg)
	case !e.col.transient && !e.col.fault.Malformed && outcome != "error":
		// The upstream never acted (or never answered), so success
		// would be a swallowed failure.
		t.Errorf("the operation reported success although every attempt met the fault (%d of %d)", applied, matched)
	}
	if msg != "" {
		e.checkClearError(row, msg)
	}
	t.Logf("%s (fault hit %d of %d matching requests) %s", outcome, applied, matched, msg)
	if latency {
		// Let every request the latency fault still holds end before the
		// upstream is inspected (their clients gave up, so they end at
		// once, unhandled), instead of sleeping past the latency.
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Failsafe)
		for name, srv := range e.servers {
			if err := srv.WaitIdle(ctx); err != nil {
				t.Errorf("the %s emulator is still handling a request: %v", name, err)
			}
		}
		cancel()
		e.setClientTimeout(fmNormalTimeout)
	}
	if e.p.name == "katapult" && e.col.fault.Status == http.StatusTooManyRequests && e.col.fault.RetryAfter == "" {
		// A 429 without Retry-After makes the Katapult client hold every
		// call until the next minute's rate window. Reopening the
		// connection stands in for that minute passing.
		e.reopen()
	}

	switch row.op {
	case fmRevoke:
		if msg != "" {
			if retry := e.revoke(lease); retry != "" {
				t.Errorf("revoke retried after the fault cleared failed again: %s", retry)
			}
		}
	case fmRotate:
		if msg != "" && strings.Contains(msg, "answer was lost") {
			outcome += "*"
			m.note(e.p.name + " rotate-root / " + e.col.name + ": the upstream applied the rotation but its answer (the only copy of the new secret) was lost; " +
				"the error says so and tells the operator to regenerate the secret in the console; the test checks that claim and does that before the root check")
			e.recoverLostKatapultRoot()
		}
		if err := e.b.periodic(context.Background(), &logical.Request{Storage: e.storage}); err != nil {
			t.Errorf("the periodic check after the rotation failed: %v", err)
		}
		if entry := e.connection(); entry.PendingRoot != nil {
			t.Errorf("a staged root is left after the periodic check")
		}
	}
	return outcome
}

// recoverLostKatapultRoot checks that the stored API token is dead, as the
// error claimed, then does what the error asks: regenerate the secret in the
// console (here: with the operator's own token) and write it to the
// connection.
func (e *fmEnv) recoverLostKatapultRoot() {
	t := e.t
	e.reopen()
	if _, msg := e.issue(); msg == "" || !strings.Contains(msg, "invalid_api_token") {
		t.Errorf("rotate-root said the old API token no longer works, but a creds read gave %q", msg)
	}
	body := `{"api_token":{"id":"` + fmKatapultTokenID + `"}}`
	req, err := http.NewRequest(http.MethodPost, e.servers["main"].URL()+"/core/v1/api_tokens/api_token/regenerate_secret", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fmKatapultConsoleToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := fmHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token struct {
			Secret string `json:"secret"`
		} `json:"api_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token.Secret == "" {
		t.Fatalf("regenerate in the console: %d %v", resp.StatusCode, err)
	}
	e.secrets = append(e.secrets, out.Token.Secret)
	e.must(logical.UpdateOperation, "config/"+fmConn, map[string]any{"api_token": out.Token.Secret})
}

// runInventoryFault runs the row's operation while every inventory write
// fails.
func (e *fmEnv) runInventoryFault(row fmRow) string {
	t := e.t
	// Only providers whose issues leave an object upstream keep an inventory.
	records := e.b.mayLeaveObjects(e.p.name)
	var lease *logical.Response
	if row.op == fmRevoke || row.op == fmRenew {
		lease = e.mustIssue()
	}
	e.storage.fail(true)
	before := e.storage.hits.Load()
	var msg string
	switch row.op {
	case fmIssue:
		_, msg = e.issue()
	case fmRevoke:
		msg = e.revoke(lease)
	case fmRenew:
		msg = e.renew(lease)
	case fmRotate:
		msg = e.failure(e.request(logical.UpdateOperation, "rotate-root/"+fmConn, nil))
		e.noteRootSecrets()
	}
	hits := e.storage.fail(false) - before
	t.Logf("%d inventory writes failed; %s", hits, msg)

	switch {
	case row.op == fmRotate:
		if hits != 0 {
			t.Errorf("rotate-root wrote to the inventory (%d writes)", hits)
		}
		if row.byDesign != "" {
			if !strings.Contains(msg, "cannot rotate") {
				t.Errorf("rotate-root answered %q, want the provider's 'cannot rotate'", msg)
			}
			return row.byDesign
		}
		if msg != "" {
			t.Errorf("rotate-root failed although it needs no inventory write: %s", msg)
		}
		return "ok, no write"
	case !records:
		// dStor and Storable create nothing deletable and record nothing
		// (revoke still tries to drop an entry, and may fail to: harmless).
		if msg != "" {
			t.Errorf("the operation failed although the provider records nothing in the inventory: %s", msg)
		}
		return "ok, no entry"
	case hits == 0:
		t.Errorf("the operation wrote nothing to the inventory")
	}
	switch row.op {
	case fmRevoke:
		// The credential is gone upstream; the stale entry is tidy's to drop.
		if msg != "" {
			t.Errorf("revoke failed over its inventory entry, which only records what it deleted: %s", msg)
		}
		return "ok, entry stale"
	case fmIssue:
		if msg == "" || !strings.Contains(msg, "inventory") {
			t.Errorf("an issue the inventory could not record must fail and say so; got %q", msg)
		}
		return "error"
	}
	// Renew: refused until recorded, so tidy never takes the renewed lease
	// for one that ended.
	if msg == "" || !strings.Contains(msg, "inventory") {
		t.Errorf("a renew the inventory could not record must fail and say so, or Vault extends the lease while the inventory keeps its old end; got %q", msg)
	} else if retry := e.renew(lease); retry != "" {
		t.Errorf("renew retried once storage recovered failed: %s", retry)
	}
	passInventoryTime(t, e.storage, fmConn, fmRenewElapsed)
	e.must(logical.UpdateOperation, "tidy/"+fmConn, map[string]any{"dry_run": false, "safety_buffer": 0})
	if !e.leaseLives(lease) {
		t.Errorf("tidy deleted the credential of a live, renewed lease")
	}
	return "error, tidy spares"
}

// runByDesign runs an operation that makes no upstream call, with the fault
// armed on every route.
func (e *fmEnv) runByDesign(row fmRow) string {
	t := e.t
	var lease *logical.Response
	if row.op == fmRevoke || row.op == fmRenew {
		lease = e.mustIssue()
	}
	e.armEverywhere()
	switch row.op {
	case fmRevoke:
		if msg := e.revoke(lease); msg != "" {
			t.Errorf("revoke of a provider without an upstream revocation failed: %s", msg)
		}
	case fmRenew:
		if msg := e.renew(lease); msg != "" {
			t.Errorf("renew failed although it needs nothing from the upstream: %s", msg)
		}
	case fmRotate:
		req := &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root/" + fmConn}
		resp, err := e.request(req.Operation, req.Path, nil)
		msg := e.failure(resp, err)
		if code, _ := logical.RespondErrorCommon(req, resp, err); code != http.StatusBadRequest || !strings.Contains(msg, "cannot rotate") {
			t.Errorf("rotate-root answered %d %q, want 400 saying the provider cannot rotate", code, msg)
		} else {
			e.checkClearError(fmRow{opText: "rotate"}, msg)
		}
	default:
		t.Fatalf("no by-design behaviour for row %s", row.label)
	}
	matched, _ := e.faultStats()
	e.clearFaults()
	if matched != 0 {
		t.Errorf("%d upstream calls, want none", matched)
	}
	return row.byDesign
}

// fmMatrix collects the cells' values.
type fmMatrix struct {
	rows []string
	mu   sync.Mutex
	// cells maps row and column to the value.
	cells map[[2]string]string
	notes []string
}

func newFMMatrix(providers []*fmProvider) *fmMatrix {
	m := &fmMatrix{cells: map[[2]string]string{}}
	for _, p := range providers {
		for _, r := range p.rows {
			m.rows = append(m.rows, p.name+" "+r.label)
		}
	}
	return m
}

func (m *fmMatrix) set(row, col, value string, failed bool) {
	if failed {
		value += " FAIL"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells[[2]string{row, col}] = value
}

func (m *fmMatrix) note(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Contains(m.notes, s) {
		m.notes = append(m.notes, s)
	}
}

func (m *fmMatrix) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	header := append([]string{"provider / operation"}, fmColumnNames()...)
	widths := make([]int, len(header))
	table := [][]string{header}
	for _, row := range m.rows {
		line := []string{row}
		for _, col := range fmColumns {
			v, ok := m.cells[[2]string{row, col.name}]
			if !ok {
				v = "-"
			}
			line = append(line, v)
		}
		table = append(table, line)
	}
	for _, line := range table {
		for i, v := range line {
			widths[i] = max(widths[i], len(v))
		}
	}
	var b strings.Builder
	for n, line := range table {
		for i, v := range line {
			fmt.Fprintf(&b, "| %-*s ", widths[i], v)
		}
		b.WriteString("|\n")
		if n == 0 {
			for _, w := range widths {
				b.WriteString("|" + strings.Repeat("-", w+2))
			}
			b.WriteString("|\n")
		}
	}
	fmt.Fprintf(&b, "latency: %d ms against a %s client timeout; 429 RA=1: one 429 with Retry-After: 1, then the route answers again; "+
		"every other fault lasts until cleared; inventory write fails: every storage write under inventory/ fails during the operation. "+
		"FAIL: an assertion of the cell failed.\n", fmLatencyMS, fmClientTimeout)
	for _, n := range m.notes {
		b.WriteString("* " + n + "\n")
	}
	return b.String()
}

func fmColumnNames() []string {
	names := make([]string, 0, len(fmColumns))
	for _, c := range fmColumns {
		names = append(names, c.name)
	}
	return names
}
