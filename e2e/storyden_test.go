package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

const (
	sdAdmin    = "vault-admin"
	sdPassword = "e2e-storyden-admin-password"
)

// storydenFixture is a mount configured against a fresh Storyden emulator.
type storydenFixture struct {
	t        *testing.T
	mount    string
	upstream *sandbox.Server
}

func newStoryden(t *testing.T) *storydenFixture {
	t.Helper()
	srv, err := sandbox.Start(storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{
		{Handle: sdAdmin, Password: sdPassword, Admin: true},
	}}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	registerSecret("the storyden root password", sdPassword)
	return &storydenFixture{t: t, mount: newMount(t, "storyden"), upstream: srv}
}

// configure writes config/main through the CLI, the password on stdin.
func (f *storydenFixture) configure() {
	f.t.Helper()
	mustCLI(f.t, sdPassword, "write", f.mount+"/config/main", "provider=storyden",
		"base_url="+f.upstream.URL(), "allow_http=true", "username="+sdAdmin, "password=-")
	mustCLI(f.t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
}

func (f *storydenFixture) issue() *api.Secret {
	f.t.Helper()
	secret := cliJSON(f.t, "read", f.mount+"/creds/app")
	if secret.LeaseID == "" || secret.Data["access_key"] == nil {
		f.t.Fatalf("creds returned no lease or key: %+v", secret)
	}
	return secret
}

func (f *storydenFixture) keyStatus(secret *api.Secret) int {
	f.t.Helper()
	status, err := storydenemu.ProbeKey(f.upstream.URL(), secret.Data["access_key"].(string))
	if err != nil {
		f.t.Fatal(err)
	}
	return status
}

func (f *storydenFixture) liveKeys() int {
	n := 0
	for _, o := range f.upstream.Objects() {
		if o.Live {
			n++
		}
	}
	return n
}

func TestStoryden_Lifecycle(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	mountInfo := cliJSON(t, "read", "sys/mounts/"+f.mount)
	if mountInfo.Data["running_plugin_version"] != pluginVersion || mountInfo.Data["running_sha256"] == "" {
		t.Fatalf("the mount does not run the registered version %s: %v", pluginVersion, mountInfo.Data)
	}

	// The config read carries no secret, neither as a field nor anywhere in the body.
	raw := mustCLI(t, "", "read", f.mount+"/config/main")
	if strings.Contains(raw, sdPassword) || strings.Contains(raw, `"password"`) {
		t.Fatalf("config read shows the password: %s", raw)
	}
	var read api.Secret
	if err := json.Unmarshal([]byte(raw), &read); err != nil || read.Data["username"] != sdAdmin || read.Data["provider"] != "storyden" {
		t.Fatalf("config read: %v %s", err, raw)
	}

	// The expiry is read against the times around the issue, so that no
	// bound depends on how long the issue took.
	before := time.Now()
	secret := f.issue()
	after := time.Now()
	if f.keyStatus(secret) != http.StatusOK {
		t.Fatal("the issued key does not authenticate at Storyden")
	}
	if secret.LeaseDuration != 300 || !secret.Renewable {
		t.Fatalf("lease %ds renewable=%v, want 300s renewable", secret.LeaseDuration, secret.Renewable)
	}
	expires, err := time.Parse(time.RFC3339, secret.Data["expires_at"].(string))
	// Storyden keeps whole seconds.
	if err != nil || expires.Before(before.Add(time.Hour).Truncate(time.Second)) || expires.After(after.Add(time.Hour)) {
		t.Fatalf("expires_at %v is not the lease's max end, an hour after the issue (%s to %s)", secret.Data["expires_at"], before, after)
	}

	renewed := cliJSON(t, "lease", "renew", "-increment=10m", secret.LeaseID)
	if renewed.LeaseDuration != 600 {
		t.Fatalf("renewed lease duration %d, want 600", renewed.LeaseDuration)
	}

	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if f.keyStatus(secret) != http.StatusUnauthorized {
		t.Fatal("the key still authenticates after vault lease revoke")
	}
	if n := f.liveKeys(); n != 0 {
		t.Fatalf("%d live keys upstream after revoke", n)
	}
}

func TestStoryden_RevokeAfterRoleDeletedAndAfterManualDelete(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	first, second := f.issue(), f.issue()
	mustCLI(t, "", "delete", f.mount+"/roles/app")
	mustCLI(t, "", "lease", "revoke", "-sync", first.LeaseID)
	if f.keyStatus(first) != http.StatusUnauthorized {
		t.Fatal("revoke after the role was deleted left the key working")
	}
	if status, err := storydenemu.ProbeRevoke(f.upstream.URL(), sdAdmin, sdPassword, second.Data["access_key_id"].(string)); err != nil || status != http.StatusNoContent {
		t.Fatalf("manual delete: %d %v", status, err)
	}
	mustCLI(t, "", "lease", "revoke", "-sync", second.LeaseID)
	if r := cli(t, "", "lease", "lookup", second.LeaseID); r.err == nil {
		t.Fatal("the lease still exists after revoking a key already gone upstream")
	}
}

// TestStoryden_RevokeBoundToIssuingAccount: through real Vault, moving a
// connection with a live lease needs confirm_account_change=true; the
// lease's revoke then fails, saying so, while the key keeps working on the
// instance that issued it, and succeeds once the connection points back.
func TestStoryden_RevokeBoundToIssuingAccount(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	secret := f.issue()
	elsewhere := newStoryden(t).upstream

	move := []string{"write", f.mount + "/config/main", "base_url=" + elsewhere.URL()}
	wantCLIError(t, cli(t, "", move...), "400", "confirm_account_change=true")
	mustCLI(t, "", append(move, "confirm_account_change=true")...)

	wantCLIError(t, cli(t, "", "lease", "revoke", "-sync", secret.LeaseID), "400", "now points at another upstream account")
	if f.keyStatus(secret) != http.StatusOK {
		t.Fatal("the key stopped working though its revoke failed")
	}

	mustCLI(t, "", "write", f.mount+"/config/main", "base_url="+f.upstream.URL(), "confirm_account_change=true")
	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if f.keyStatus(secret) != http.StatusUnauthorized {
		t.Fatal("the key still authenticates after the revoke succeeded")
	}
}

func TestStoryden_FailingUpstreamDeleteIsRetried(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	f.configure()

	// The plugin returns the upstream failure to Vault, which keeps the lease
	// and retries the revoke on its own schedule until the upstream recovers.
	secret := f.issue()
	f.upstream.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: "/api/auth/access-keys/", Status: http.StatusInternalServerError})
	wantCLIError(t, cli(t, "", "lease", "revoke", "-sync", secret.LeaseID), "400", "HTTP 500")
	mustCLI(t, "", "lease", "revoke", secret.LeaseID) // queued: Vault retries it on its own
	eventually(t, 10*time.Second, "the failed revoke reaching Vault's log", func() bool {
		return strings.Contains(vault.Log(), "failed to revoke lease: lease_id="+secret.LeaseID) &&
			strings.Contains(vault.Log(), "HTTP 500")
	})
	mustCLI(t, "", "lease", "lookup", secret.LeaseID)
	if f.keyStatus(secret) != http.StatusOK {
		t.Fatal("the key should still work while the upstream delete fails")
	}
	f.upstream.ClearFaults()
	eventually(t, 2*time.Minute, "Vault's retried revoke after the upstream recovered", func() bool {
		return f.keyStatus(secret) == http.StatusUnauthorized && cli(t, "", "lease", "lookup", secret.LeaseID).err != nil
	})

	// An expiring lease whose first revoke fails is retried the same way.
	// The key itself expires upstream only at max_ttl, so it stops working
	// because the retried revoke deleted it (and a max_ttl of a second or
	// two would leave a busy machine's issue under a second of upstream
	// life, which the engine refuses as too short for a lease).
	mustCLI(t, "", "write", f.mount+"/roles/short", "connection=main", "ttl=2s", "max_ttl=1h")
	short := cliJSON(t, "read", f.mount+"/creds/short")
	// Aimed at this key only: a late duplicate retry of the first lease's
	// revoke would otherwise take the one failure.
	f.upstream.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: "/api/auth/access-keys/" + short.Data["access_key_id"].(string),
		Status: http.StatusInternalServerError, Times: 1})
	eventually(t, 2*time.Minute, "the expiration manager's retried revoke", func() bool {
		return f.keyStatus(short) == http.StatusUnauthorized
	})
	if !strings.Contains(vault.Log(), "failed to revoke lease: lease_id="+short.LeaseID) {
		t.Fatal("the expiring lease's first revoke did not fail as injected")
	}
}

func TestStoryden_BadInputIs400AndStoresNothing(t *testing.T) {
	f := newStoryden(t)
	url := f.upstream.URL()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"field of another provider", []string{"config/c", "provider=storyden", "base_url=" + url, "allow_http=true", "username=" + sdAdmin, "password=" + sdPassword, "region=uk"}, "region is a field of provider katapult, not storyden"},
		{"unknown field", []string{"config/c", "provider=storyden", "base_url=" + url, "allow_http=true", "username=" + sdAdmin, "password=" + sdPassword, "colour=blue"}, "colour is not a known field"},
		{"bad url", []string{"config/c", "provider=storyden", "base_url=not-a-url", "username=" + sdAdmin, "password=" + sdPassword}, "base_url is not valid"},
		{"url with /api", []string{"config/c", "provider=storyden", "base_url=" + url + "/api", "allow_http=true", "username=" + sdAdmin, "password=" + sdPassword}, "without /api"},
		{"wrong password", []string{"config/c", "provider=storyden", "base_url=" + url, "allow_http=true", "username=" + sdAdmin, "password=not-the-password"}, "verify_connection failed"},
		{"bad name", []string{"config/bad!name", "provider=storyden", "base_url=" + url, "allow_http=true", "username=" + sdAdmin, "password=" + sdPassword}, "is not valid"},
		{"password given twice", []string{"config/c", "provider=storyden", "base_url=" + url, "allow_http=true", "username=" + sdAdmin, "password=" + sdPassword, "password=also-" + sdPassword}, "password must be a single string"},
		{"http without allow_http", []string{"config/c", "provider=storyden", "base_url=" + url, "username=" + sdAdmin, "password=" + sdPassword}, "set allow_http=true if this is a test sandbox"},
		{"role without connection", []string{"roles/r", "ttl=1m"}, "connection is required"},
		{"role ttl above max", []string{"roles/r", "connection=c", "ttl=2h", "max_ttl=1h"}, "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"write", f.mount + "/" + tc.args[0]}, tc.args[1:]...)
			r := cli(t, "", args...)
			wantCLIError(t, r, "400", tc.want)
			if strings.Contains(r.stderr, sdPassword) {
				t.Fatalf("the error quotes the password: %s", r.stderr)
			}
		})
	}
	for _, list := range []string{"config", "roles"} {
		if r := cli(t, "", "list", f.mount+"/"+list); r.err == nil && strings.TrimSpace(r.stdout) != "[]" {
			t.Fatalf("failed writes stored %s: %s", list, r.stdout)
		}
	}
	f.configure()
	wantCLIError(t, cli(t, "", "write", f.mount+"/roles/app", "ttl=2h", "max_ttl=1h"), "400", "ttl (2h0m0s) is longer than max_ttl (1h0m0s)")
	wantCLIError(t, cli(t, "", "write", f.mount+"/config/main", "provider=katapult"), "400", "provider cannot change")
}

func TestStoryden_RotateRoot(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	before := f.issue()
	mustCLI(t, "", "write", "-f", f.mount+"/rotate-root/main")
	if status, _, _ := storydenemu.ProbeSignIn(f.upstream.URL(), sdAdmin, sdPassword); status != http.StatusUnauthorized {
		t.Fatalf("the old password still signs in (%d)", status)
	}
	// The new root is never shown, but it works: issue and revoke go on.
	after := f.issue()
	mustCLI(t, "", "lease", "revoke", "-sync", before.LeaseID)
	mustCLI(t, "", "lease", "revoke", "-sync", after.LeaseID)
	if f.liveKeys() != 0 {
		t.Fatal("keys left after revoking both leases")
	}
	if raw := mustCLI(t, "", "read", f.mount+"/config/main"); !strings.Contains(raw, "last_vault_rotation") {
		t.Fatalf("config read does not show last_vault_rotation: %s", raw)
	}
}

func TestStoryden_HundredReadsCostHundredCreatesAndAtMostOneSignIn(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	f.upstream.ResetCalls()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	work := make(chan int, 100)
	for i := 0; i < 100; i++ {
		work <- i
	}
	close(work)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				_, err := vault.client.Logical().Read(f.mount + "/creds/app")
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls := f.upstream.Calls()
	creates, signins := calls["POST /api/auth/access-keys"], calls["POST /api/auth/password/signin"]
	t.Logf("100 creds reads through Vault cost %d creates and %d sign-ins upstream", creates, signins)
	if creates != 100 || signins > 1 {
		t.Fatalf("calls %v: want 100 creates and at most one sign-in", calls)
	}
	if _, err := vault.client.Logical().Write("sys/leases/revoke-prefix/"+f.mount+"/creds/app", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "revoke-prefix of 100 leases", func() bool { return f.liveKeys() == 0 })
}

func TestStoryden_ScheduledRotationOnCommunity(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	mustCLI(t, sdPassword, "write", f.mount+"/config/main", "provider=storyden",
		"base_url="+f.upstream.URL(), "allow_http=true", "username="+sdAdmin, "password=-", "rotation_period=1m")
	mustCLI(t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
	read := cliJSON(t, "read", f.mount+"/config/main")
	next, err := time.Parse(time.RFC3339, fmt.Sprint(read.Data["next_vault_rotation"]))
	if err != nil || time.Until(next) > time.Minute+5*time.Second {
		t.Fatalf("next_vault_rotation %v on Vault Community: %v", read.Data["next_vault_rotation"], err)
	}

	// Vault's periodic tick runs once a minute: the rotation lands within two
	// ticks of the period ending, and creds keep issuing throughout.
	var leases []*api.Secret
	eventually(t, 3*time.Minute+30*time.Second, "the scheduled rotation", func() bool {
		leases = append(leases, f.issue())
		status, _, err := storydenemu.ProbeSignIn(f.upstream.URL(), sdAdmin, sdPassword)
		return err == nil && status == http.StatusUnauthorized
	})
	read = cliJSON(t, "read", f.mount+"/config/main")
	if read.Data["last_vault_rotation"] == nil || read.Data["last_rotation_error"] != nil {
		t.Fatalf("after the scheduled rotation: %v", read.Data)
	}
	leases = append(leases, f.issue())
	for _, lease := range leases {
		mustCLI(t, "", "lease", "revoke", "-sync", lease.LeaseID)
	}
	if n := f.liveKeys(); n != 0 {
		t.Fatalf("%d keys left after revoking every lease issued across the rotation", n)
	}
}

// TestStoryden_LiveCapIs429ThroughVault: over max_live_credentials a creds
// read fails with HTTP 429 through real Vault and the plugin's gRPC, names
// the role, the cap and the live count, and creates nothing upstream; a
// revoke frees the slot, and the role read shows the count.
func TestStoryden_LiveCapIs429ThroughVault(t *testing.T) {
	f := newStoryden(t)
	f.configure()
	mustCLI(t, "", "write", f.mount+"/roles/app", "max_live_credentials=2")
	first := f.issue()
	f.issue()
	r := cli(t, "", "read", f.mount+"/creds/app")
	wantCLIError(t, r, "429", `role "app" has 2 live of its max_live_credentials=2 on this cluster`)
	if n := f.liveKeys(); n != 2 {
		t.Fatalf("%d keys live upstream under a cap of 2", n)
	}
	if role := cliJSON(t, "read", f.mount+"/roles/app"); fmt.Sprint(role.Data["live_credentials"]) != "2" {
		t.Fatalf("role read: live_credentials=%v, want 2", role.Data["live_credentials"])
	}
	mustCLI(t, "", "lease", "revoke", "-sync", first.LeaseID)
	f.issue()
}
