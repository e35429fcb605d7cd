package katapult

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/katapultschema"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	subDomain   = "acme"
	orgID       = "org_ACME0000000000001"
	userToken   = "user-token-secret-0123456789"
	userTokenID = "apitoken_USER000000000001"
	orgToken    = "org-token-secret-0123456789"
	orgTokenID  = "apitoken_ORG0000000000001"
	readOnly    = "read-only-token-secret-0123"
	otherOrgTok = "other-org-token-secret-0123"
	noStoreTok  = "no-storage-token-secret-012"
)

// Emulator routes, as the sandbox counts them.
const (
	routeCreate     = "POST /core/v1/organizations/organization/object_storage/object_storage_cluster/access_keys"
	routeGenerate   = "POST /core/v1/object_storage/access_keys/access_key/generate_credentials"
	routeDelete     = "DELETE /core/v1/object_storage/access_keys/access_key"
	routeList       = "GET /core/v1/organizations/organization/object_storage/access_keys"
	routeGetBucket  = "GET /core/v1/object_storage/object_storage_cluster/buckets/bucket"
	routePatchBkt   = "PATCH /core/v1/object_storage/object_storage_cluster/buckets/bucket"
	routeAccount    = "GET /core/v1/organizations/organization/object_storage/object_storage_cluster"
	routeUser       = "GET /core/v1/users/current"
	routeRegenerate = "POST /core/v1/api_tokens/api_token/regenerate_secret"
)

func seededOrgs() []katapult.Organization {
	return []katapult.Organization{
		{ID: orgID, SubDomain: subDomain, Name: "Acme", Buckets: []string{"assets", "logs", "backups"}},
		{ID: "org_NOSTORAGE000000001", SubDomain: "nostorage", Name: "No Storage", NoObjectStorage: true},
		{ID: "org_OTHER00000000001", SubDomain: "other", Name: "Other", Buckets: []string{"others-bucket"}},
	}
}

func seededTokens() []katapult.Token {
	return []katapult.Token{
		{ID: userTokenID, Secret: userToken, Organization: subDomain, User: "alice"},
		{ID: orgTokenID, Secret: orgToken, Organization: subDomain},
		{ID: "apitoken_READONLY00000001", Secret: readOnly, Organization: subDomain, User: "bob", Scopes: []string{katapult.ScopeObjectStorageRead}},
		{ID: "apitoken_OTHER0000000001", Secret: otherOrgTok, Organization: "other", User: "carol"},
		{ID: "apitoken_NOSTORAGE000001", Secret: noStoreTok, Organization: "nostorage", User: "dave"},
	}
}

// harness is one Katapult emulator on loopback and a connection to it.
type harness struct {
	t    *testing.T
	emu  *katapult.Emulator
	srv  *sandbox.Server
	conn *connection
	// logs collects the provider's log lines at trace level, so tests can
	// prove no secret is ever logged.
	logs *testutil.LogBuffer
}

// newHarness starts an emulator whose keys provision at once (opts may say
// otherwise) and connects with the user token. Deleted keys stay in bucket
// ACLs there, so only the plugin's own cleaning can leave them clean.
func newHarness(t *testing.T, opts ...func(*katapult.Options)) *harness {
	t.Helper()
	return newHookedHarness(t, nil, opts...)
}

// newHookedHarness is newHarness with before, when set, run on every
// request ahead of the emulator (see testutil.Hooked).
func newHookedHarness(t *testing.T, before func(*http.Request), opts ...func(*katapult.Options)) *harness {
	t.Helper()
	fastRetries(t)
	emuOpts := katapult.Options{Organizations: seededOrgs(), Tokens: seededTokens(), ProvisioningDelay: -1, DeletedKeysStayInACLs: true}
	for _, o := range opts {
		o(&emuOpts)
	}
	emu := katapult.New(emuOpts)
	// Katapult's published schema judges every request and answer.
	var served sandbox.Emulator = katapultschema.Checked(t, emu)
	if before != nil {
		served = testutil.Hooked{Emulator: served, Before: before}
	}
	srv := testutil.StartEmulator(t, served)
	h := &harness{t: t, emu: emu, srv: srv, logs: &testutil.LogBuffer{}}
	h.conn = h.connect(provider.Values{fieldAPIToken: userToken, fieldOrganization: subDomain})
	t.Cleanup(h.assertNoSecretsLogged)
	return h
}

// connect opens a connection with values, region defaulted as the engine does.
func (h *harness) connect(values provider.Values) *connection {
	h.t.Helper()
	conn, err := Provider{}.Connect(provider.ConnectionConfig{
		Name:       "test",
		BaseURL:    h.srv.URL() + "/core/v1",
		Values:     values,
		HTTPClient: &http.Client{Timeout: time.Second},
		Logger:     hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: h.logs}),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return conn.(*connection)
}

// fastRetries shortens every wait of the package for one test.
func fastRetries(t *testing.T) {
	t.Helper()
	saved := []time.Duration{provisioningTimeout, deleteRetryTimeout, firstRetryWait, maxRetryWait}
	provisioningTimeout, deleteRetryTimeout, firstRetryWait, maxRetryWait = 5*time.Second, 5*time.Second, 10*time.Millisecond, 40*time.Millisecond
	t.Cleanup(func() {
		provisioningTimeout, deleteRetryTimeout, firstRetryWait, maxRetryWait = saved[0], saved[1], saved[2], saved[3]
	})
}

// recordSleeps replaces the package's sleep with one that returns at once
// (advancing clock, when given) and records every wait.
func recordSleeps(t *testing.T, clock *testutil.Clock) *[]time.Duration {
	t.Helper()
	var mu sync.Mutex
	waits := &[]time.Duration{}
	savedSleep, savedNow := sleep, timeNow
	sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		*waits = append(*waits, d)
		mu.Unlock()
		if clock != nil {
			clock.Advance(d)
		}
		return ctx.Err()
	}
	if clock != nil {
		timeNow = clock.Now
	}
	t.Cleanup(func() { sleep, timeNow = savedSleep, savedNow })
	return waits
}

func (h *harness) issue(name string, r provider.Values) *provider.Credential {
	h.t.Helper()
	cred, err := h.conn.Issue(context.Background(), provider.IssueRequest{RoleName: "app", Role: r, Name: name})
	if err != nil {
		h.t.Fatalf("issue %s: %v", name, err)
	}
	return cred
}

// object returns the emulator's object of that kind and name.
func (h *harness) object(kind, name string) (sandbox.Object, bool) {
	for _, o := range h.srv.Objects() {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return sandbox.Object{}, false
}

// liveKeys returns the names of the access keys that still exist.
func (h *harness) liveKeys() []string {
	var names []string
	for _, o := range h.srv.Objects() {
		if o.Kind == "access_key" && o.Live {
			names = append(names, o.Name)
		}
	}
	return names
}

// aclEntries counts the key ids every bucket ACL still holds.
func (h *harness) aclEntries() int {
	n := 0
	for _, o := range h.srv.Objects() {
		if o.Kind == "bucket" {
			n += len(o.Extra["read_key_ids"].([]string)) + len(o.Extra["write_key_ids"].([]string))
		}
	}
	return n
}

// assertClean fails unless no key lives and no ACL names a key.
func (h *harness) assertClean() {
	h.t.Helper()
	if live := h.liveKeys(); len(live) != 0 {
		h.t.Errorf("live access keys left: %v", live)
	}
	if n := h.aclEntries(); n != 0 {
		h.t.Errorf("%d ACL entries left", n)
	}
}

func (h *harness) assertNoSecretsLogged() {
	logs := h.logs.String()
	for _, secret := range []string{userToken, orgToken, "s3_secret", "Bearer"} {
		if strings.Contains(logs, secret) {
			h.t.Errorf("logs contain %q", secret)
		}
	}
}
