package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storableemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
)

const (
	dsAPIKey       = "e2eDstorApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
	sbClientID     = "e2e-storable-client"
	sbClientSecret = "e2e-storable-client-secret"
	sbAPIKey       = "e2eStorableApiKey0123456789abcdefghijklm"
)

func startEmulator(t *testing.T, emu sandbox.Emulator) *sandbox.Server {
	t.Helper()
	srv, err := sandbox.Start(emu, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// bearerStatus calls an upstream route with a bearer token (and extra headers).
func bearerStatus(t *testing.T, url, token string, headers map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func hasWarning(secret *api.Secret, part string) bool {
	for _, w := range secret.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// newDstorMount mounts the plugin with connection "main" on a new dStor
// emulator and role "app" of the given CLI fields.
func newDstorMount(t *testing.T, roleFields ...string) (string, *sandbox.Server) {
	t.Helper()
	srv := startEmulator(t, dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: dsAPIKey}}}))
	registerSecret("the dstor API key", dsAPIKey)
	mount := newMount(t, "dstor")
	mustCLI(t, dsAPIKey, "write", mount+"/config/main", "provider=dstor", "base_url="+srv.URL()+"/v1", "allow_http=true", "api_key=-")
	mustCLI(t, "", append([]string{"write", mount + "/roles/app", "connection=main"}, roleFields...)...)
	return mount, srv
}

func TestDstor_TokenLeaseIsHonestAboutRevocation(t *testing.T) {
	t.Parallel()
	mount, srv := newDstorMount(t, "ttl=10m", "max_ttl=30m")

	// The expiry is read against the times around the issue and the renew,
	// so that no bound depends on how long either took.
	before := time.Now()
	secret := cliJSON(t, "read", mount+"/creds/app")
	after := time.Now()
	token := fmt.Sprint(secret.Data["access_token"])
	registerSecret("an issued dstor token", token)
	if bearerStatus(t, srv.URL()+"/v1/upload/get-status/", token, nil) != http.StatusOK {
		t.Fatal("the issued token does not work at dStor")
	}
	expires, err := time.Parse(time.RFC3339, fmt.Sprint(secret.Data["expires_at"]))
	// x-expiration is in whole seconds.
	if err != nil || expires.Before(before.Add(30*time.Minute).Truncate(time.Second)) || expires.After(after.Add(30*time.Minute)) {
		t.Fatalf("expires_at %v is not the lease's max end, 30m after the issue (%s to %s): %v", secret.Data["expires_at"], before, after, err)
	}
	if !hasWarning(secret, "expires_at") {
		t.Fatalf("the creds response does not say the token outlives revocation: %v", secret.Warnings)
	}
	renewStart := time.Now()
	renewed := cliJSON(t, "lease", "renew", "-increment=2h", secret.LeaseID)
	if time.Duration(renewed.LeaseDuration)*time.Second > expires.Sub(renewStart)+time.Second {
		t.Fatalf("a renew passed the token's expiry: %ds", renewed.LeaseDuration)
	}
	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if bearerStatus(t, srv.URL()+"/v1/upload/get-status/", token, nil) != http.StatusOK {
		t.Fatal("dStor cannot revoke; the token is expected to keep working until expires_at")
	}
	wantCLIError(t, cli(t, "", "write", "-f", mount+"/rotate-root/main"), "400", "rotate it in the provider's console, then write config/main")

	// Without max_ttl, on a mount whose maximum is the system's (32 days), a
	// token nothing can revoke is still bounded: 24h, and the write says so.
	if written := mustCLI(t, "", "write", mount+"/roles/unbounded", "connection=main", "ttl=48h"); !strings.Contains(written, "cannot revoke") {
		t.Fatalf("a dstor role without max_ttl was written without a warning: %s", written)
	}
	unbounded := cliJSON(t, "read", mount+"/creds/unbounded")
	registerSecret("an issued dstor token", fmt.Sprint(unbounded.Data["access_token"]))
	expires, err = time.Parse(time.RFC3339, fmt.Sprint(unbounded.Data["expires_at"]))
	if err != nil || time.Until(expires) > 24*time.Hour {
		t.Fatalf("a token of a role without max_ttl expires at %v, past 24h: %v", unbounded.Data["expires_at"], err)
	}
	if lease := time.Duration(unbounded.LeaseDuration) * time.Second; lease > 24*time.Hour {
		t.Fatalf("a lease of a role without max_ttl lasts %s, past 24h", lease)
	}
}

func TestStorable_CachedTokenAndLeaseCappedAtItsLife(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, storableemu.New(storableemu.Options{Clients: []storableemu.Client{{ID: sbClientID, Secret: sbClientSecret, APIKey: sbAPIKey}}}))
	registerSecret("the storable client secret", sbClientSecret)
	registerSecret("the storable api key", sbAPIKey)
	mount := newMount(t, "storable")
	secrets := fmt.Sprintf(`{"client_secret":%q,"api_key":%q}`, sbClientSecret, sbAPIKey)
	mustCLI(t, secrets, "write", mount+"/config/main", "-", "provider=storable", "base_url="+srv.URL(), "allow_http=true", "client_id="+sbClientID)
	mustCLI(t, "", "write", mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
	mustCLI(t, "", "write", mount+"/roles/long", "connection=main", "ttl=3h", "max_ttl=6h")

	var wg sync.WaitGroup
	var mu sync.Mutex
	tokens := map[string]bool{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				secret, err := vault.client.Logical().Read(mount + "/creds/app")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				tokens[fmt.Sprint(secret.Data["access_token"])] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	calls := srv.Calls()["POST /auth/token"]
	t.Logf("config write + 100 storable creds reads cost %d token requests", calls)
	if calls != 1 || len(tokens) != 1 {
		t.Fatalf("token requests = %d, distinct tokens = %d: want one of each", calls, len(tokens))
	}
	for token := range tokens {
		registerSecret("an issued storable token", token)
	}

	long := cliJSON(t, "read", mount+"/creds/long")
	if long.LeaseDuration > 90*60 || long.LeaseDuration < 60*60 {
		t.Fatalf("a 3h role got a %ds lease; the token lives 90 minutes", long.LeaseDuration)
	}
	token := fmt.Sprint(long.Data["access_token"])
	mustCLI(t, "", "lease", "revoke", "-sync", long.LeaseID)
	if bearerStatus(t, srv.URL()+"/sample-api/v1/info", token, map[string]string{"x-api-key": sbAPIKey}) != http.StatusOK {
		t.Fatal("Storable cannot revoke; the shared token is expected to keep working")
	}
	if !hasWarning(long, "shared") {
		t.Fatalf("the creds response does not say the token is shared and outlives revocation: %v", long.Warnings)
	}
}
