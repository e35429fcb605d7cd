package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	dstoremu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/katapultschema"
)

const (
	reloadClients = 8
	reloadCount   = 3
	// reloadSpacing is how many operations the clients complete before each
	// reload and after the last, so that every reload meets requests in
	// flight and the new plugin process serves in between.
	reloadSpacing = 24
)

// reloadRoles are the roles (and connections) the clients use in turn.
var reloadRoles = []string{"dstor", "storyden", "katapult"}

// reloadLoad is what the clients did: the leases they kept, and every
// request that failed.
type reloadLoad struct {
	mu       sync.Mutex
	kept     map[string][]*api.Secret // by role
	issued   map[string]int           // by role
	failures []string
	// spans are when each request ran, to tell how many a reload met.
	spans [][2]time.Time
	done  atomic.Int64
}

// during counts the requests that ran while [from, to] did.
func (l *reloadLoad) during(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.spans {
		if s[0].Before(to) && s[1].After(from) {
			n++
		}
	}
	return n
}

// timed runs one request and records when it ran.
func (l *reloadLoad) timed(request func() error) error {
	began := time.Now()
	err := request()
	l.mu.Lock()
	l.spans = append(l.spans, [2]time.Time{began, time.Now()})
	l.mu.Unlock()
	return err
}

func (l *reloadLoad) fail(op string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, op+": "+err.Error())
}

// TestPluginReloadUnderLoad reloads a mount's plugin three times while 8
// clients issue and revoke credentials of dStor, Storyden and Katapult on
// it. Vault drains a mount's requests before it reloads its plugin and holds
// new ones until the new process serves, so every request must succeed, or
// fail with an error that says what failed. Afterwards every live upstream
// key must belong to a live lease, and revoking every lease must leave
// nothing live upstream but dStor's tokens, which dStor cannot revoke.
func TestPluginReloadUnderLoad(t *testing.T) {
	t.Parallel()
	start := time.Now()
	// A server of its own: the plugin is multiplexed, and reloading one
	// mount restarts the process that serves every mount of the plugin,
	// failing the requests other tests have in flight there.
	v := startOwnVault(t, "")
	if out, err := v.script("../scripts/register-plugin.sh", v.addPlugin(t, pluginPath, pluginName)); err != nil {
		t.Fatalf("register the plugin: %v\n%s", err, out)
	}
	const mount = "reload"
	v.mustCLI(t, "", "secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName)
	dstor := startEmulator(t, dstoremu.New(dstoremu.Options{APIKeys: []dstoremu.APIKey{{Key: dsAPIKey}}}))
	storyden := startEmulator(t, storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{{Handle: sdAdmin, Password: sdPassword, Admin: true}}}))
	katapult := startEmulator(t, katapultschema.Checked(t, katapultemu.New(katapultemu.Options{
		Organizations: []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"shared"}}},
		Tokens:        []katapultemu.Token{{Secret: kpToken, Organization: "acme", User: "ops"}},
		// Short, so that a Katapult issue waits on the key a little.
		ProvisioningDelay: 300 * time.Millisecond,
	})))
	for label, secret := range map[string]string{"the dstor API key": dsAPIKey, "the storyden root password": sdPassword, "the katapult API token": kpToken} {
		registerSecret(label, secret)
	}
	prefix := mount + "/creds"
	v.mustCLI(t, dsAPIKey, "write", mount+"/config/dstor", "provider=dstor", "base_url="+dstor.URL()+"/v1", "allow_http=true", "api_key=-")
	v.mustCLI(t, sdPassword, "write", mount+"/config/storyden", "provider=storyden", "base_url="+storyden.URL(), "allow_http=true",
		"username="+sdAdmin, "password=-")
	v.mustCLI(t, kpToken, "write", mount+"/config/katapult", "provider=katapult", "base_url="+katapult.URL()+"/core/v1", "allow_http=true",
		"organization=acme", "api_token=-")
	// Long leases: only the revokes end them.
	v.mustCLI(t, "", "write", mount+"/roles/dstor", "connection=dstor", "ttl=30m", "max_ttl=1h")
	v.mustCLI(t, "", "write", mount+"/roles/storyden", "connection=storyden", "ttl=30m", "max_ttl=1h")
	v.mustCLI(t, "", "write", mount+"/roles/katapult", "connection=katapult", "ttl=30m", "max_ttl=1h",
		"read_buckets=shared", "write_buckets=shared")

	// The config write's verification token, which dStor cannot revoke either.
	dstorBefore := liveObjects(dstor, "temp_token")

	// A client that never retries on its own, so every failure shows.
	client, err := v.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(v.Token)
	client.SetMaxRetries(0)
	load := &reloadLoad{kept: map[string][]*api.Secret{}, issued: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range reloadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				load.run(client, mount, reloadRoles[(w+i)%len(reloadRoles)], i%2 == 1)
			}
		}()
	}
	for r := 1; r <= reloadCount+1; r++ {
		eventually(t, 2*time.Minute, fmt.Sprintf("%d operations done", r*reloadSpacing), func() bool {
			return load.done.Load() >= int64(r*reloadSpacing)
		})
		if r > reloadCount {
			break
		}
		began := time.Now()
		v.mustCLI(t, "", reloadMount(mount)...)
		ended := time.Now()
		t.Logf("reload %d took %s (the CLI included), after %d operations; %d requests ran while it did",
			r, ended.Sub(began).Round(time.Millisecond), load.done.Load(), load.during(began, ended))
	}
	close(stop)
	wg.Wait()

	t.Logf("%d operations, %d failed, in %s", load.done.Load(), len(load.failures), time.Since(start).Round(time.Second))
	for _, f := range load.failures {
		t.Logf("failed: %s", f)
		if !clearFailure(f) {
			t.Errorf("a request failed without saying what failed: %s", f)
		}
	}

	// Every live key upstream belongs to a live lease, and every lease the
	// clients kept is live upstream.
	leases := map[string]int{}
	for _, role := range reloadRoles {
		leases[role] = len(leasesUnder(t, v.client, prefix+"/"+role+"/"))
	}
	for role, upstream := range map[string]*sandbox.Server{"storyden": storyden, "katapult": katapult} {
		live := map[string]bool{}
		for _, o := range upstream.Objects() {
			if o.Kind == "access_key" && o.Live {
				live[o.ID] = true
			}
		}
		if len(live) != leases[role] {
			t.Errorf("%s: %d live keys upstream, %d leases in Vault", role, len(live), leases[role])
		}
		idField := map[string]string{"storyden": "access_key_id", "katapult": "katapult_access_key_id"}[role]
		for _, s := range load.kept[role] {
			if id := fmt.Sprint(s.Data[idField]); !live[id] {
				t.Errorf("%s: the key %s of live lease %s is gone upstream", role, id, s.LeaseID)
			}
		}
	}
	if n := liveObjects(dstor, "temp_token"); n != dstorBefore+load.issued["dstor"] {
		t.Errorf("%d live dStor tokens, want %d before the load and the %d issued", n, dstorBefore, load.issued["dstor"])
	}

	v.mustCLI(t, "", "lease", "revoke", "-sync", "-prefix", prefix)
	for _, role := range reloadRoles {
		if left := leasesUnder(t, v.client, prefix+"/"+role+"/"); len(left) != 0 {
			t.Errorf("%d %s leases left after revoking the prefix", len(left), role)
		}
	}
	if n := liveObjects(storyden, "access_key") + liveObjects(katapult, "access_key"); n != 0 {
		t.Errorf("%d Storyden or Katapult keys live after every lease was revoked", n)
	}
	t.Logf("the test took %s", time.Since(start).Round(time.Second))
}

// run issues one credential of role and, when revoke is set, revokes it;
// it keeps what it does not revoke.
func (l *reloadLoad) run(client *api.Client, mount, role string, revoke bool) {
	var secret *api.Secret
	err := l.timed(func() (err error) {
		secret, err = client.Logical().Read(mount + "/creds/" + role)
		return err
	})
	if err != nil {
		l.fail("issue "+role, err)
		return
	}
	if secret == nil || secret.LeaseID == "" {
		l.fail("issue "+role, fmt.Errorf("no lease in the answer"))
		return
	}
	for _, k := range []string{"access_key", "secret_access_key", "access_token"} {
		if v, ok := secret.Data[k].(string); ok && v != "" {
			registerSecret("an issued "+role+" "+k, v)
		}
	}
	l.mu.Lock()
	l.issued[role]++
	l.mu.Unlock()
	if revoke {
		if err := l.timed(func() error { return client.Sys().Revoke(secret.LeaseID) }); err != nil {
			l.fail("revoke "+secret.LeaseID, err)
			revoke = false
		}
	}
	if !revoke {
		l.mu.Lock()
		l.kept[role] = append(l.kept[role], secret)
		l.mu.Unlock()
	}
	l.done.Add(1)
}

// clearFailure reports whether a failed request's error names an HTTP
// status and says more than a transport or plugin-process failure.
func clearFailure(f string) bool {
	if !codePattern.MatchString(f) {
		return false
	}
	for _, opaque := range []string{"rpc error", "EOF", "connection refused", "transport is closing", "plugin shut down", "context canceled"} {
		if strings.Contains(f, opaque) {
			return false
		}
	}
	return true
}
