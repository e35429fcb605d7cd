package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devstoryden"
)

// The tests in this file run the plugin through real Vault against the real
// Storyden server (github.com/Southclaws/storyden, built by
// scripts/build-storyden.sh; STORYDEN_BIN overrides), one server per test on
// 127.0.0.1 with SQLite in the test's temp folder.

// sdRealPassword is the first account's password on every real server.
const sdRealPassword = "e2e-real-storyden-admin-password"

var (
	storydenBinOnce sync.Once
	storydenBin     string
	storydenBinErr  error
)

// storydenBinary is $STORYDEN_BIN, else the cached build, which this call
// makes when it is missing: the tests never skip for want of the server.
func storydenBinary(t *testing.T) string {
	t.Helper()
	storydenBinOnce.Do(func() { storydenBin, storydenBinErr = devstoryden.Binary("..") })
	if storydenBinErr != nil {
		t.Fatal(storydenBinErr)
	}
	return storydenBin
}

// realStoryden is a real Storyden server of the test's own whose first
// account, the admin, is the one Vault's connection uses.
type realStoryden struct {
	t      *testing.T
	server *devstoryden.Server
	url    string
	mount  string
	// observer is an access key made by hand before Vault saw the account.
	// Keys may list the account's keys, so it still can after Vault rotates
	// the password.
	observer string
}

func newRealStoryden(t *testing.T) *realStoryden {
	t.Helper()
	registerSecret("the real storyden root password", sdRealPassword)
	srv, err := devstoryden.Start(storydenBinary(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("--- last lines of %s's storyden log ---\n%s", t.Name(), tailLines(srv.Log(), 40))
		}
	})
	if err := srv.SignUp(sdAdmin, sdRealPassword); err != nil {
		t.Fatal(err)
	}
	f := &realStoryden{t: t, server: srv, url: srv.URL, mount: newMount(t, "storyden-real")}
	f.observer = f.createKeyByHand("observer")
	return f
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// configure writes config/main (the password on stdin) with extra fields,
// and a role app.
func (f *realStoryden) configure(extra ...string) {
	f.t.Helper()
	args := append([]string{"write", f.mount + "/config/main", "provider=storyden", "base_url=" + f.url,
		"allow_http=true", "username=" + sdAdmin, "password=-"}, extra...)
	mustCLI(f.t, sdRealPassword, args...)
	mustCLI(f.t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
}

func (f *realStoryden) issue() *api.Secret {
	f.t.Helper()
	secret := cliJSON(f.t, "read", f.mount+"/creds/app")
	if secret.LeaseID == "" || secret.Data["access_key"] == nil || secret.Data["access_key_id"] == nil {
		f.t.Fatalf("creds returned no lease or key: %+v", secret)
	}
	return secret
}

// works reports whether an issued key authenticates GET /api/accounts.
func (f *realStoryden) works(secret *api.Secret) bool {
	f.t.Helper()
	status, err := storydenemu.ProbeKey(f.url, fmt.Sprint(secret.Data["access_key"]))
	if err != nil {
		f.t.Fatal(err)
	}
	if status != http.StatusOK && status != http.StatusUnauthorized {
		f.t.Fatalf("GET /api/accounts with an issued key: HTTP %d", status)
	}
	return status == http.StatusOK
}

// listedKey is an entry of the server's own key list.
type listedKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Enabled   bool       `json:"enabled"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// keys is the account's key list as the server reports it, read with the
// observer key.
func (f *realStoryden) keys() []listedKey {
	f.t.Helper()
	status, body := sdRequest(f.t, http.MethodGet, f.url+"/api/auth/access-keys", "Bearer "+f.observer, nil)
	if status != http.StatusOK {
		f.t.Fatalf("list access keys: HTTP %d %s", status, body)
	}
	var list struct {
		Keys []listedKey `json:"keys"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		f.t.Fatalf("list access keys: %v: %s", err, body)
	}
	return list.Keys
}

// key is the listed key with id; the test fails when there is none.
func (f *realStoryden) key(id any) listedKey {
	f.t.Helper()
	for _, k := range f.keys() {
		if k.ID == fmt.Sprint(id) {
			return k
		}
	}
	f.t.Fatalf("the server does not list key %v", id)
	return listedKey{}
}

// liveVaultKeys counts the enabled keys whose names Vault gives.
func (f *realStoryden) liveVaultKeys() int {
	f.t.Helper()
	n := 0
	for _, k := range f.keys() {
		if k.Enabled && strings.HasPrefix(k.Name, "vault-") {
			n++
		}
	}
	return n
}

// createKeyByHand mints a key with a password session, as an operator would
// in Storyden's UI, and returns its secret.
func (f *realStoryden) createKeyByHand(name string) string {
	f.t.Helper()
	_, session, err := storydenemu.ProbeSignIn(f.url, sdAdmin, sdRealPassword)
	if err != nil || session == nil {
		f.t.Fatalf("sign in as %s: %v", sdAdmin, err)
	}
	status, body := sdRequest(f.t, http.MethodPost, f.url+"/api/auth/access-keys", "",
		map[string]string{"name": name}, "Cookie", "storyden-session="+session.Value)
	var key struct {
		Secret string `json:"secret"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &key) != nil || key.Secret == "" {
		f.t.Fatalf("create access key %s by hand: HTTP %d", name, status)
	}
	return key.Secret
}

// sdRequest sends one request to a Storyden server with an Authorization
// header (when given), a JSON body (when not nil) and extra header pairs.
func sdRequest(t *testing.T, method, url, authorization string, body any, header ...string) (int, []byte) {
	t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		t.Fatal(err)
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
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// TestRealStoryden_Lifecycle: config verify, issue, renew, revoke and the
// revoke of a key already revoked by hand, through real Vault against the
// real server.
func TestRealStoryden_Lifecycle(t *testing.T) {
	t.Parallel()
	f := newRealStoryden(t)
	wantCLIError(t, cli(t, "not-the-password", "write", f.mount+"/config/main", "provider=storyden", "base_url="+f.url,
		"allow_http=true", "username="+sdAdmin, "password=-"), "400", "verify_connection failed")
	f.configure()

	before := time.Now()
	secret := f.issue()
	after := time.Now()
	status, body := sdRequest(t, http.MethodGet, f.url+"/api/accounts", "Bearer "+fmt.Sprint(secret.Data["access_key"]), nil)
	var account struct {
		Handle string `json:"handle"`
		Admin  bool   `json:"admin"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &account) != nil || account.Handle != sdAdmin || !account.Admin {
		t.Fatalf("GET /api/accounts with the issued key: HTTP %d %s", status, body)
	}
	listed := f.key(secret.Data["access_key_id"])
	if !listed.Enabled || !strings.HasPrefix(listed.Name, "vault-app-") || listed.ExpiresAt == nil ||
		listed.ExpiresAt.Before(before.Add(time.Hour).Truncate(time.Second)) || listed.ExpiresAt.After(after.Add(time.Hour)) {
		t.Fatalf("the server lists the issued key as %+v; want enabled, named vault-app-…, expiring an hour after the issue (%s to %s)", listed, before, after)
	}

	renewed := cliJSON(t, "lease", "renew", "-increment=10m", secret.LeaseID)
	if renewed.LeaseDuration != 600 || !f.works(secret) {
		t.Fatalf("renewed lease duration %d, want 600, and the key still working", renewed.LeaseDuration)
	}

	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if f.works(secret) {
		t.Fatal("the key still authenticates after vault lease revoke")
	}
	if k := f.key(secret.Data["access_key_id"]); k.Enabled {
		t.Fatalf("the server lists the revoked key as %+v, want enabled:false", k)
	}

	// A key an operator already revoked: the lease's revoke succeeds and the
	// lease is gone.
	second := f.issue()
	if status, err := storydenemu.ProbeRevoke(f.url, sdAdmin, sdRealPassword, fmt.Sprint(second.Data["access_key_id"])); err != nil || status != http.StatusNoContent {
		t.Fatalf("revoke by hand: HTTP %d %v", status, err)
	}
	mustCLI(t, "", "lease", "revoke", "-sync", second.LeaseID)
	if r := cli(t, "", "lease", "lookup", second.LeaseID); r.err == nil {
		t.Fatal("the lease still exists after revoking a key already revoked upstream")
	}
	if n := f.liveVaultKeys(); n != 0 {
		t.Fatalf("%d keys of Vault's still enabled upstream", n)
	}
}

// TestRealStoryden_RotateRoot: after rotate-root the old password is refused
// at sign-in, keys issued before keep working, and issue and revoke go on with
// the password only Vault knows.
func TestRealStoryden_RotateRoot(t *testing.T) {
	t.Parallel()
	f := newRealStoryden(t)
	f.configure()
	before := f.issue()
	mustCLI(t, "", "write", "-f", f.mount+"/rotate-root/main")
	f.checkRotated(before)
}

// checkRotated checks a rotated root: the old password refused, the key
// issued before still working, a new issue working, and both revoked.
func (f *realStoryden) checkRotated(before *api.Secret) {
	f.t.Helper()
	if status, _, err := storydenemu.ProbeSignIn(f.url, sdAdmin, sdRealPassword); err != nil || status != http.StatusUnauthorized {
		f.t.Fatalf("the old password signs in with HTTP %d (%v), want 401", status, err)
	}
	if !f.works(before) {
		f.t.Fatal("a key issued before the rotation stopped working")
	}
	after := f.issue()
	if !f.works(after) {
		f.t.Fatal("a key issued after the rotation does not work")
	}
	mustCLI(f.t, "", "lease", "revoke", "-sync", before.LeaseID)
	mustCLI(f.t, "", "lease", "revoke", "-sync", after.LeaseID)
	if f.works(before) || f.works(after) || f.liveVaultKeys() != 0 {
		f.t.Fatal("keys still work after revoking both leases")
	}
}

// TestRealStoryden_ScheduledRotation: on Vault Community the plugin's periodic
// function, which Vault runs about once a minute, rotates a connection whose
// rotation_period has passed. The wait is for Vault's tick, polled through
// the config read, which costs the server nothing.
func TestRealStoryden_ScheduledRotation(t *testing.T) {
	t.Parallel()
	f := newRealStoryden(t)
	f.configure("rotation_period=1m")
	before := f.issue()
	eventually(t, 3*time.Minute+30*time.Second, "the scheduled rotation", func() bool {
		read, err := vault.client.Logical().Read(f.mount + "/config/main")
		if err != nil {
			t.Fatal(err)
		}
		return read != nil && read.Data["last_vault_rotation"] != nil
	})
	read := cliJSON(t, "read", f.mount+"/config/main")
	if read.Data["last_rotation_error"] != nil {
		t.Fatalf("after the scheduled rotation: %v", read.Data)
	}
	f.checkRotated(before)
}

// TestRealStoryden_InventoryAndTidy: the inventory matches the server's key
// list; tidy finds a key of this connection that Vault does not know and
// disables it, and leaves alone the keys of other mounts and the operator's.
func TestRealStoryden_InventoryAndTidy(t *testing.T) {
	t.Parallel()
	f := newRealStoryden(t)
	f.configure()
	live := f.issue()
	inventory := cliJSON(t, "read", f.mount+"/inventory/main")
	objects, _ := inventory.Data["objects"].([]any)
	if fmt.Sprint(inventory.Data["count"]) != "1" || len(objects) != 1 {
		t.Fatalf("inventory: %v", inventory.Data)
	}
	liveName := fmt.Sprint(objects[0].(map[string]any)["name"])
	if k := f.key(live.Data["access_key_id"]); k.Name != liveName {
		t.Fatalf("the inventory names the key %s, the server %s", liveName, k.Name)
	}
	// A key with this connection's tag and this cluster's in its name, and a
	// key of another mount on the same account.
	tag := fmt.Sprint(cliJSON(t, "read", f.mount+"/config/main").Data["object_name_tag"])
	tags := liveName[len(liveName)-14 : len(liveName)-8]
	if !strings.HasPrefix(tags, tag) {
		t.Fatalf("the live key %s does not carry the connection's tag %s", liveName, tag)
	}
	orphan, foreign := "vault-app-"+tags+"byhand01", "vault-app-0therm0unt01"
	orphanKey, foreignKey := f.createKeyByHand(orphan), f.createKeyByHand(foreign)

	dry := cliJSON(t, "write", "-f", f.mount+"/tidy/main")
	if !strings.Contains(fmt.Sprint(dry.Data["unknown_upstream"]), orphan) || !strings.Contains(fmt.Sprint(dry.Data["foreign_upstream"]), foreign) ||
		f.liveVaultKeys() != 3 {
		t.Fatalf("dry run: %v", dry.Data)
	}
	wet := cliJSON(t, "write", f.mount+"/tidy/main", "dry_run=false", "safety_buffer=0")
	if !strings.Contains(fmt.Sprint(wet.Data["deleted"]), orphan) {
		t.Fatalf("tidy: %v", wet.Data)
	}
	for _, k := range []struct {
		name, secret string
		want         bool
	}{{orphan, orphanKey, false}, {foreign, foreignKey, true}, {"observer", f.observer, true}, {"the lease's key", fmt.Sprint(live.Data["access_key"]), true}} {
		if status, err := storydenemu.ProbeKey(f.url, k.secret); err != nil || (status == http.StatusOK) != k.want {
			t.Fatalf("after tidy, %s answers HTTP %d (%v); want working=%v", k.name, status, err, k.want)
		}
	}
	if n := f.liveVaultKeys(); n != 2 {
		t.Fatalf("%d keys named vault-… enabled after tidy, want the lease's and the other mount's", n)
	}
}

// TestRealStoryden_LeasesFollowTheApplicationToken: revoking the token an
// application read its key with (or its parent) disables the key upstream.
func TestRealStoryden_LeasesFollowTheApplicationToken(t *testing.T) {
	t.Parallel()
	f := newRealStoryden(t)
	f.configure()
	leaseFollowsToken(t, f.mount, f.works)
}
