package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storxemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

const (
	sxDeveloper  = "vault-developer@e2e.storx.test"
	sxPassword   = "e2e-storx-developer-password"
	sxPassphrase = "e2e storx grant passphrase"
	sxUser       = "app@e2e.storx.test"
)

type storxFixture struct {
	t         *testing.T
	mount     string
	satellite *sandbox.Server
	auth      *sandbox.Server
	authEmu   *storxemu.AuthService
}

// newStorx starts both StorX emulators with StorX's real rate limit on the
// developer endpoints (5, then 1 per 5 minutes) and configures a mount.
func newStorx(t *testing.T) *storxFixture {
	t.Helper()
	sat := storxemu.New(storxemu.Options{Developers: []storxemu.Developer{{Email: sxDeveloper, Password: sxPassword}}})
	authEmu := storxemu.NewAuthService(sat, storxemu.AuthOptions{})
	satSrv, err := sandbox.Start(sat, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { satSrv.Close() })
	authSrv, err := sandbox.Start(authEmu, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { authSrv.Close() })
	registerSecret("the storx developer password", sxPassword)
	registerSecret("the storx passphrase", sxPassphrase)
	f := &storxFixture{t: t, mount: newMount(t, "storx"), satellite: satSrv, auth: authSrv, authEmu: authEmu}
	secrets := fmt.Sprintf(`{"password":%q,"passphrase":%q}`, sxPassword, sxPassphrase)
	mustCLI(t, secrets, "write", f.mount+"/config/main", "-", "provider=storx",
		"base_url="+satSrv.URL(), "auth_url="+authSrv.URL(), "allow_http=true", "email="+sxDeveloper)
	mustCLI(t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h",
		"user_email="+sxUser, "buckets=photos", "permissions=download,list")
	return f
}

func (f *storxFixture) issue() *api.Secret {
	f.t.Helper()
	secret := cliJSON(f.t, "read", f.mount+"/creds/app")
	for _, k := range []string{"secret_access_key", "access_grant"} {
		registerSecret("an issued storx "+k, fmt.Sprint(secret.Data[k]))
	}
	return secret
}

func (f *storxFixture) s3Works(secret *api.Secret) bool {
	return f.authEmu.VerifyS3Credential(fmt.Sprint(secret.Data["access_key_id"]), fmt.Sprint(secret.Data["secret_access_key"])) == nil
}

func TestStorx_LifecycleAndSharedPassphrase(t *testing.T) {
	t.Parallel()
	f := newStorx(t)
	raw := mustCLI(t, "", "read", f.mount+"/config/main")
	for _, secret := range []string{sxPassword, sxPassphrase} {
		if contains(raw, secret) {
			t.Fatalf("config read shows a secret: %s", raw)
		}
	}
	// The grant's end is read against the times around the issue, so that
	// no bound depends on how long the issue took.
	before := time.Now()
	first := f.issue()
	after := time.Now()
	second := f.issue()
	if !f.s3Works(first) || !f.s3Works(second) {
		t.Fatal("issued S3 credentials are not accepted by the auth service")
	}
	g1, err1 := storxemu.DecodeGrant(fmt.Sprint(first.Data["access_grant"]))
	g2, err2 := storxemu.DecodeGrant(fmt.Sprint(second.Data["access_grant"]))
	if err1 != nil || err2 != nil || g1.EncryptionKey == "" || g1.EncryptionKey != g2.EncryptionKey {
		t.Fatalf("two leases of one role must share the connection's passphrase-derived key: %v %v", err1, err2)
	}
	if g1.Permission == nil || !g1.Permission.Download || g1.Permission.Upload || g1.Permission.NotAfter == nil ||
		g1.Permission.NotAfter.Before(before.Add(time.Hour).Truncate(time.Second)) || g1.Permission.NotAfter.After(after.Add(time.Hour)) {
		t.Fatalf("the grant does not carry the role's permissions and the lease's max end: %+v", g1.Permission)
	}
	renewed := cliJSON(t, "lease", "renew", "-increment=10m", first.LeaseID)
	if renewed.LeaseDuration != 600 {
		t.Fatalf("renew: %d", renewed.LeaseDuration)
	}
	mustCLI(t, "", "lease", "revoke", "-sync", first.LeaseID)
	if f.s3Works(first) {
		t.Fatal("S3 credentials still work after revoke")
	}
	if !f.s3Works(second) {
		t.Fatal("revoking one lease killed another")
	}
	mustCLI(t, "", "delete", f.mount+"/roles/app")
	mustCLI(t, "", "lease", "revoke", "-sync", second.LeaseID)
	if f.s3Works(second) {
		t.Fatal("revoke after the role was deleted left the credentials working")
	}
	wantCLIError(t, cli(t, "", "write", "-f", f.mount+"/rotate-root/main"), "400", "provider storx cannot rotate its root credential")
}

func TestStorx_HundredReadsCostOneLoginAndOneUserToken(t *testing.T) {
	t.Parallel()
	f := newStorx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
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
	calls := f.satellite.Calls()
	logins, userTokens := calls["POST /api/v0/developer/auth/token"], calls["POST /api/v0/developer/auth/user-token"]
	t.Logf("100 storx creds reads: %d developer logins, %d user-tokens, %d API keys, %d S3 credentials", logins, userTokens,
		calls["POST /api/v0/api-keys/create/{projectID}"], f.auth.Calls()["POST /v1/access"])
	if logins > 1 || userTokens > 1 || calls["POST /api/v0/api-keys/create/{projectID}"] != 100 {
		t.Fatalf("calls %v: want at most one developer login and one user-token for 100 reads", calls)
	}
	if _, err := vault.client.Logical().Write("sys/leases/revoke-prefix/"+f.mount+"/creds/app", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "revoke-prefix of 100 storx leases", func() bool { return liveObjects(f.satellite, "api_key") == 0 })
}
