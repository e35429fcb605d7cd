package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	storxemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/katapultschema"
)

const (
	// releasedVersion and releasedCommit are the first release, built from
	// this clone's own git history.
	releasedVersion = "v0.1.0"
	releasedCommit  = "0af98862e4300374c1f3c4da2ccc37d3e59dfd86"
	// upgradeVersion is this tree's plugin in the upgrade test's catalog,
	// fixed rather than pluginVersion (make's VERSION, which anyone may set
	// to v0.1.0), since the catalog holds this tree beside the release.
	upgradeVersion = "v0.2.0-dev"
	upgradeMount   = "apikeys"
)

// upgradeProviders are the connections (and roles) of the upgrade mount,
// one per provider, each named after its provider.
var upgradeProviders = []string{"storx", "dstor", "katapult", "storable", "storyden"}

// upgradeEnv is a Vault of the test's own, whose catalog holds the release
// and this tree, with the five upstreams.
type upgradeEnv struct {
	t     *testing.T
	v     *vaultServer
	mount string
	// uuid is the mount's storage folder, read through sys/raw.
	uuid                                string
	storxSat, storxAuth                 *sandbox.Server
	storxAuthEmu                        *storxemu.AuthService
	dstor, katapult, storable, storyden *sandbox.Server
	katapultEmu                         *katapultemu.Emulator
}

// TestUpgrade_ReleaseToThisTreeAndBack runs the first release (v0.1.0) at a
// mount with live leases of all five providers, a Katapult static role, a
// root rotation schedule and a WAL entry left by an interrupted issue, then
// switches the mount to this tree's plugin the way an operator upgrades:
// vault secrets tune -plugin-version, then vault plugin reload. Every old
// lease must renew and revoke upstream, every config and role read the same,
// the schedule keep its next rotation, and the WAL entry be rolled back.
//
// Then it switches back to v0.1.0 and forward again. v0.1.0 predates the
// schema check, so it cannot refuse entries this tree wrote; what a downgrade
// must not do is lose anything. The test proves that v0.1.0 reads the
// configs and roles this tree wrote, revokes its leases, and that after the
// switch forward everything is as this tree left it.
func TestUpgrade_ReleaseToThisTreeAndBack(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e := newUpgradeEnv(t)
	m := e.mount
	e.v.mustCLI(t, "", "secrets", "enable", "-path="+m, "-plugin-version="+releasedVersion, pluginName)
	e.uuid = fmt.Sprint(e.v.cliJSON(t, "read", "sys/mounts/"+m).Data["uuid"])
	e.wantRunning(releasedVersion)
	e.configure()

	// v0.1.0: a lease of each provider, the state to compare, and an issue
	// interrupted after Storyden created its key.
	old := e.issueAll()
	before := e.snapshot()
	if next := before["config/storyden"]["next_vault_rotation"]; next == nil || next == "" {
		t.Fatalf("the Storyden connection shows no next_vault_rotation: %v", before["config/storyden"])
	}
	orphan, walID := e.leavePendingWAL()
	t.Logf("v0.1.0 set up in %s", time.Since(start).Round(time.Second))

	// Upgrade.
	switched := time.Now()
	e.switchTo(upgradeVersion, reloadMount(m)...)
	e.compare(before, e.snapshot(), "after the upgrade")
	e.renewAndRevoke(old)
	// Vault's rollback manager calls the plugin once a minute; this tree's
	// plugin is registered with a WAL minimum age of 5 s, v0.1.0 with the
	// default 10 minutes, so only the new plugin can have removed the key.
	eventually(t, 3*time.Minute, "the WAL rollback removing "+orphan.Name, func() bool {
		return !isLive(e.storyden, orphan.ID) && len(e.walEntries()) == 0
	})
	if !strings.Contains(e.v.Log(), "_"+upgradeVersion+": removed what an interrupted issue left upstream") {
		t.Fatalf("the %s plugin did not log the rollback", upgradeVersion)
	}
	t.Logf("after the upgrade, WAL entry %s (v0.1.0's) rolled back %s after the switch", walID, time.Since(switched).Round(time.Second))

	// This tree writes what a downgrade meets: a config and a role and a
	// static role rewritten (schema 3), and leases of its own.
	e.write("config/storyden", map[string]any{"allowed_roles": "storyden"})
	e.write("roles/katapult", map[string]any{"ttl": "6m"})
	e.write("static-roles/backup", map[string]any{"rotation_period": "25h"})
	if entry := e.rawEntry("config/storyden"); !strings.Contains(entry, `"schema_version":3`) {
		t.Fatalf("this tree stored a connection without schema_version 3: the downgrade proves nothing")
	}
	current := e.issueAll()
	written := e.snapshot()

	// Downgrade: v0.1.0 reads it all and revokes this tree's leases.
	e.switchTo(releasedVersion, reloadMount(m)...)
	e.compare(written, e.snapshot(), "after the downgrade to v0.1.0")
	e.renewAndRevoke(current)
	again := e.issueAll()

	// And forward again: nothing was lost.
	e.switchTo(upgradeVersion, reloadEveryMount...)
	e.compare(written, e.snapshot(), "after switching forward again")
	e.renewAndRevoke(again)

	e.v.mustCLI(t, "", "lease", "revoke", "-sync", "-prefix", m+"/creds")
	if n := liveObjects(e.storxSat, "api_key") + liveObjects(e.storyden, "access_key"); n != 0 {
		t.Errorf("%d StorX or Storyden keys live after every lease was revoked", n)
	}
	// The static role's key is the one Katapult key that stays.
	if n := liveObjects(e.katapult, "access_key"); n != 1 {
		t.Errorf("%d Katapult keys live, want the static role's one", n)
	}
	t.Logf("upgrade, downgrade and upgrade again took %s", time.Since(start).Round(time.Second))
}

// newUpgradeEnv builds both plugins, starts a Vault with raw storage reads
// on, registers the release without and this tree with a short WAL minimum
// age, and starts the upstreams.
func newUpgradeEnv(t *testing.T) *upgradeEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	v := startOwnVault(t, "raw_storage_endpoint = true\n")
	released, err := devvault.ReleasedPlugin(ctx, "..", releasedCommit, releasedVersion)
	if err != nil {
		t.Fatal(err)
	}
	releasedFile := pluginName + "_" + releasedVersion
	released = v.addPlugin(t, released, releasedFile)
	currentFile := pluginName + "_" + upgradeVersion
	current, err := devvault.BuildPlugin(ctx, "..", v.pluginDir, currentFile, upgradeVersion)
	if err != nil {
		t.Fatal(err)
	}
	v.mustCLI(t, "", "plugin", "register", "-sha256="+sha256File(t, released), "-version="+releasedVersion,
		"-command="+releasedFile, "secret", pluginName)
	v.mustCLI(t, "", "plugin", "register", "-sha256="+sha256File(t, current), "-version="+upgradeVersion,
		"-command="+currentFile, "-env="+walMinAgeEnv+"=5s", "secret", pluginName)

	e := &upgradeEnv{t: t, v: v, mount: upgradeMount}
	// Every plugin process signs in to StorX afresh (sessions are cached per
	// process), and this test starts four within a minute or two: StorX's
	// own limit (5 sign-ins, then 1 every 5 minutes) would refuse the last.
	sat := storxemu.New(storxemu.Options{Developers: []storxemu.Developer{{Email: sxDeveloper, Password: sxPassword}}, RateBurst: 20})
	e.storxAuthEmu = storxemu.NewAuthService(sat, storxemu.AuthOptions{})
	e.storxSat, e.storxAuth = startEmulator(t, sat), startEmulator(t, e.storxAuthEmu)
	e.dstor = startEmulator(t, dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: dsAPIKey}}}))
	e.katapultEmu = katapultemu.New(katapultemu.Options{
		Organizations:     []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"shared"}}},
		Tokens:            []katapultemu.Token{{Secret: kpToken, Organization: "acme", User: "ops"}},
		ProvisioningDelay: -1,
	})
	e.katapult = startEmulator(t, katapultschema.Checked(t, e.katapultEmu))
	e.storable = startEmulator(t, storableemu.New(storableemu.Options{Clients: []storableemu.Client{{ID: sbClientID, Secret: sbClientSecret, APIKey: sbAPIKey}}}))
	e.storyden = startEmulator(t, storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{{Handle: sdAdmin, Password: sdPassword, Admin: true}}}))
	for label, secret := range map[string]string{
		"the storx developer password": sxPassword, "the storx passphrase": sxPassphrase, "the dstor API key": dsAPIKey,
		"the katapult API token": kpToken, "the storable client secret": sbClientSecret, "the storable api key": sbAPIKey,
		"the storyden root password": sdPassword,
	} {
		registerSecret(label, secret)
	}
	return e
}

// configure writes the five connections (Storyden's with a rotation
// schedule), a role on each, and a Katapult static role.
func (e *upgradeEnv) configure() {
	for path, data := range map[string]map[string]any{
		"config/storx": {"provider": "storx", "base_url": e.storxSat.URL(), "auth_url": e.storxAuth.URL(), "email": sxDeveloper,
			"password": sxPassword, "passphrase": sxPassphrase},
		"config/dstor": {"provider": "dstor", "base_url": e.dstor.URL() + "/v1", "api_key": dsAPIKey},
		"config/katapult": {"provider": "katapult", "base_url": e.katapult.URL() + "/core/v1", "organization": "acme",
			"api_token": kpToken},
		"config/storable": {"provider": "storable", "base_url": e.storable.URL(), "client_id": sbClientID,
			"client_secret": sbClientSecret, "api_key": sbAPIKey},
		"config/storyden": {"provider": "storyden", "base_url": e.storyden.URL(), "username": sdAdmin, "password": sdPassword,
			"rotation_period": "24h"},
	} {
		e.write(path, data)
	}
	for path, data := range map[string]map[string]any{
		"roles/storx": {"connection": "storx", "ttl": "5m", "max_ttl": "1h", "user_email": sxUser, "buckets": "photos",
			"permissions": "download,list"},
		"roles/dstor":    {"connection": "dstor", "ttl": "10m", "max_ttl": "30m"},
		"roles/katapult": {"connection": "katapult", "ttl": "5m", "max_ttl": "1h", "read_buckets": "shared", "write_buckets": "shared"},
		"roles/storable": {"connection": "storable", "ttl": "5m", "max_ttl": "1h"},
		"roles/storyden": {"connection": "storyden", "ttl": "5m", "max_ttl": "1h"},
		"static-roles/backup": {"connection": "katapult", "katapult_access_key_id": e.katapultKeyByHand(),
			"rotation_period": "24h"},
	} {
		e.write(path, data)
	}
}

// write writes data at the mount's path through the HTTP API.
func (e *upgradeEnv) write(path string, data map[string]any) {
	e.t.Helper()
	if _, err := e.v.client.Logical().Write(e.mount+"/"+path, data); err != nil {
		e.t.Fatalf("write %s: %v", path, err)
	}
}

// read reads the mount's path through the HTTP API.
func (e *upgradeEnv) read(path string) *api.Secret {
	e.t.Helper()
	secret, err := e.v.client.Logical().Read(e.mount + "/" + path)
	if err != nil || secret == nil {
		e.t.Fatalf("read %s: %v", path, err)
	}
	return secret
}

// katapultKeyByHand creates an access key outside Vault, for the static role.
func (e *upgradeEnv) katapultKeyByHand() string {
	e.t.Helper()
	id, err := katapultemu.ProbeCreateKey(e.katapult.URL(), kpToken, "acme", "backup-job")
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// wantRunning fails unless the mount runs version.
func (e *upgradeEnv) wantRunning(version string) {
	e.t.Helper()
	info := e.v.cliJSON(e.t, "read", "sys/mounts/"+e.mount)
	if info.Data["running_plugin_version"] != version {
		e.t.Fatalf("the mount runs %v, want %s", info.Data["running_plugin_version"], version)
	}
}

// switchTo moves the mount to version as an operator does: tune, then
// reload the plugin with the CLI arguments reload.
func (e *upgradeEnv) switchTo(version string, reload ...string) {
	e.t.Helper()
	e.v.mustCLI(e.t, "", "secrets", "tune", "-plugin-version="+version, e.mount)
	e.v.mustCLI(e.t, "", reload...)
	e.wantRunning(version)
}

// reloadMount reloads one mount's plugin. In the root namespace, Vault
// 1.21.0's `vault plugin reload -mounts=…` drops the mounts and calls
// sys/plugins/reload/unknown, which answers 404; this is the call it
// should make.
func reloadMount(mount string) []string {
	return []string{"write", "sys/plugins/reload/backend", "mounts=" + mount}
}

// reloadEveryMount reloads every mount of the plugin, the other way that
// works in the root namespace.
var reloadEveryMount = []string{"plugin", "reload", "-type=secret", "-plugin=" + pluginName}

// issueAll reads a credential of each provider, and checks each works upstream.
func (e *upgradeEnv) issueAll() map[string]*api.Secret {
	e.t.Helper()
	leases := map[string]*api.Secret{}
	for _, p := range upgradeProviders {
		secret := e.read("creds/" + p)
		for _, k := range []string{"secret_access_key", "access_grant", "access_token", "access_key"} {
			if v, ok := secret.Data[k].(string); ok && v != "" {
				registerSecret("an issued "+p+" "+k, v)
			}
		}
		if secret.LeaseID == "" || !e.works(p, secret) {
			e.t.Fatalf("the %s credential has no lease or does not work upstream: lease %q", p, secret.LeaseID)
		}
		leases[p] = secret
	}
	return leases
}

// works reports whether an issued credential is accepted upstream.
func (e *upgradeEnv) works(p string, s *api.Secret) bool {
	e.t.Helper()
	str := func(k string) string { return fmt.Sprint(s.Data[k]) }
	switch p {
	case "storx":
		return e.storxAuthEmu.VerifyS3Credential(str("access_key_id"), str("secret_access_key")) == nil
	case "katapult":
		return e.katapultEmu.S3CredentialsLive(str("access_key_id"), str("secret_access_key"))
	case "storyden":
		status, err := storydenemu.ProbeKey(e.storyden.URL(), str("access_key"))
		if err != nil {
			e.t.Fatal(err)
		}
		return status == http.StatusOK
	case "dstor":
		return bearerStatus(e.t, e.dstor.URL()+"/v1/upload/get-status/", str("access_token"), nil) == http.StatusOK
	case "storable":
		return bearerStatus(e.t, e.storable.URL()+"/sample-api/v1/info", str("access_token"), map[string]string{"x-api-key": sbAPIKey}) == http.StatusOK
	}
	e.t.Fatalf("no check for provider %s", p)
	return false
}

// renewAndRevoke renews every lease, revokes it, and checks the upstream
// credential is gone. dStor and Storable cannot revoke upstream by design:
// their tokens stay valid until they expire, and their leases say so.
func (e *upgradeEnv) renewAndRevoke(leases map[string]*api.Secret) {
	e.t.Helper()
	for _, p := range upgradeProviders {
		s := leases[p]
		renewed, err := e.v.client.Sys().Renew(s.LeaseID, 600)
		if err != nil || renewed.LeaseDuration <= 0 {
			e.t.Fatalf("renew the %s lease: %v", p, err)
		}
		if err := e.v.client.Sys().Revoke(s.LeaseID); err != nil {
			e.t.Fatalf("revoke the %s lease: %v", p, err)
		}
		revocable := p != "dstor" && p != "storable"
		if works := e.works(p, s); works == revocable {
			e.t.Fatalf("after the revoke the %s credential works upstream: %v, want %v", p, works, !revocable)
		}
	}
}

// snapshot reads every config, role and the static role, and the static
// role's credential without its ttl, which counts down.
func (e *upgradeEnv) snapshot() map[string]map[string]any {
	e.t.Helper()
	paths := []string{"static-roles/backup", "static-creds/backup"}
	for _, p := range upgradeProviders {
		paths = append(paths, "config/"+p, "roles/"+p)
	}
	out := map[string]map[string]any{}
	for _, path := range paths {
		data := e.read(path).Data
		if path == "static-creds/backup" {
			delete(data, "ttl")
			registerSecret("the static role's secret", fmt.Sprint(data["secret_access_key"]))
		}
		out[path] = data
	}
	return out
}

// fieldsSinceRelease are read fields that v0.1.0 does not show: a read on one
// side of a switch may have them and the other not.
var fieldsSinceRelease = []string{"allow_http", "ca_cert", "client_cert", "tls_server_name", "proxy_url", "max_live_credentials", "live_credentials"}

// compare fails for every read that differs from before, apart from the
// fields one of the two versions does not know.
func (e *upgradeEnv) compare(before, after map[string]map[string]any, when string) {
	e.t.Helper()
	known := func(data map[string]any) map[string]any {
		out := maps.Clone(data)
		for _, k := range fieldsSinceRelease {
			delete(out, k)
		}
		return out
	}
	for path, want := range before {
		if got := after[path]; !reflect.DeepEqual(known(got), known(want)) {
			wantJSON, _ := json.Marshal(redacted(want))
			gotJSON, _ := json.Marshal(redacted(got))
			e.t.Errorf("%s, %s reads differently:\n before %s\n after  %s", when, path, wantJSON, gotJSON)
		}
	}
}

// redacted hides the one secret a compared read holds.
func redacted(data map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range data {
		out[k] = v
		if k == "secret_access_key" {
			out[k] = "(redacted)"
		}
	}
	return out
}

// leavePendingWAL interrupts a Storyden issue after Storyden created the
// key: the create's answer is held, and the client gives up once the key
// exists, so the plugin sees its request cancelled; its immediate clean-up
// then fails at the key list (HTTP 500). What remains is v0.1.0's WAL entry
// and the live key, for the WAL rollback to remove.
func (e *upgradeEnv) leavePendingWAL() (sandbox.Object, string) {
	t := e.t
	t.Helper()
	liveBefore := map[string]bool{}
	for _, o := range liveKeyObjects(e.storyden) {
		liveBefore[o.ID] = true
	}
	newKeys := func() []sandbox.Object {
		var keys []sandbox.Object
		for _, o := range liveKeyObjects(e.storyden) {
			if !liveBefore[o.ID] {
				keys = append(keys, o)
			}
		}
		return keys
	}
	lists := e.storyden.Calls()["GET /api/auth/access-keys"]
	e.storyden.AddFault(sandbox.Fault{Method: http.MethodGet, Path: "/api/auth/access-keys", Status: http.StatusInternalServerError, Times: 1})
	e.storyden.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", LatencyAfterMS: 60_000, Times: 1})
	client, err := e.v.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(e.v.Token)
	client.SetMaxRetries(0)
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	read := make(chan error, 1)
	go func() {
		_, err := client.Logical().ReadWithContext(ctx, e.mount+"/creds/storyden")
		read <- err
	}()
	eventually(t, 30*time.Second, "Storyden creating the held key", func() bool { return len(newKeys()) > 0 })
	giveUp()
	if err := <-read; err == nil {
		t.Fatal("the held creds read succeeded")
	}
	eventually(t, 30*time.Second, "the plugin's own clean-up trying the key list", func() bool {
		return e.storyden.Calls()["GET /api/auth/access-keys"] > lists
	})
	orphan, wal := newKeys(), e.walEntries()
	if len(orphan) != 1 || len(wal) != 1 {
		t.Fatalf("after the interrupted issue: new live keys %+v, WAL entries %v; want one of each", orphan, wal)
	}
	if entry := e.rawEntry("wal/" + wal[0]); strings.Contains(entry, "schema_version") || !strings.Contains(entry, orphan[0].Name) {
		t.Fatalf("the WAL entry is not v0.1.0's for %s", orphan[0].Name)
	}
	return orphan[0], wal[0]
}

// walEntries lists the mount's WAL entries, from Vault's raw storage.
func (e *upgradeEnv) walEntries() []string {
	e.t.Helper()
	secret, err := e.v.client.Logical().List("sys/raw/logical/" + e.uuid + "/wal/")
	if err != nil {
		e.t.Fatalf("list the WAL: %v", err)
	}
	var ids []string
	if secret != nil {
		for _, k := range secret.Data["keys"].([]any) {
			ids = append(ids, fmt.Sprint(k))
		}
	}
	slices.Sort(ids)
	return ids
}

// rawEntry is the JSON the plugin stored at key.
func (e *upgradeEnv) rawEntry(key string) string {
	e.t.Helper()
	secret, err := e.v.client.Logical().Read("sys/raw/logical/" + e.uuid + "/" + key)
	if err != nil || secret == nil {
		e.t.Fatalf("read %s from raw storage: %v", key, err)
	}
	return fmt.Sprint(secret.Data["value"])
}
