package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// appToken creates a token whose policy allows only reading creds/app of a
// mount (and making child tokens), as an application would hold.
func appToken(t *testing.T, mount string, extra ...string) string {
	t.Helper()
	policy := fmt.Sprintf(`path "%s/creds/app" { capabilities = ["read"] }
path "auth/token/create" { capabilities = ["update"] }`, mount)
	mustCLI(t, policy, "policy", "write", mount+"-app", "-")
	args := append([]string{"token", "create", "-policy=" + mount + "-app", "-ttl=1h"}, extra...)
	secret := cliJSON(t, args...)
	if secret.Auth == nil || secret.Auth.ClientToken == "" {
		t.Fatalf("token create: %+v", secret)
	}
	return secret.Auth.ClientToken
}

// readAs reads a path with another token through the HTTP API.
func readAs(t *testing.T, token, path string) (*api.Secret, error) {
	t.Helper()
	client, err := vault.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(token)
	return client.Logical().Read(path)
}

// issuedCheck reports whether a credential still works upstream.
type issuedCheck func(*api.Secret) bool

// leaseFollowsToken proves that revoking an application's token (and a
// parent's, for its child) revokes the credentials it obtained, upstream.
func leaseFollowsToken(t *testing.T, mount string, works issuedCheck) {
	t.Helper()
	parent := appToken(t, mount)
	own, err := readAs(t, parent, mount+"/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	client, _ := vault.client.Clone()
	client.SetToken(parent)
	child, err := client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{mount + "-app"}})
	if err != nil {
		t.Fatal(err)
	}
	childCreds, err := readAs(t, child.Auth.ClientToken, mount+"/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAs(t, parent, mount+"/roles/app"); err == nil {
		t.Fatal("the application token may read more than creds/app")
	}
	if !works(own) || !works(childCreds) {
		t.Fatal("credentials read with the application token do not work upstream")
	}
	mustCLI(t, "", "token", "revoke", parent)
	eventually(t, time.Minute, "the upstream revocation of the token's credentials", func() bool {
		return !works(own) && !works(childCreds)
	})
}

func TestLeasesFollowTheApplicationToken(t *testing.T) {
	t.Run("storyden", func(t *testing.T) {
		t.Parallel()
		f := newStoryden(t)
		f.configure()
		leaseFollowsToken(t, f.mount, func(s *api.Secret) bool {
			status, _ := storydenemu.ProbeKey(f.upstream.URL(), fmt.Sprint(s.Data["access_key"]))
			return status == http.StatusOK
		})
	})
	t.Run("storx", func(t *testing.T) {
		t.Parallel()
		f := newStorx(t)
		leaseFollowsToken(t, f.mount, f.s3Works)
	})
	t.Run("katapult", func(t *testing.T) {
		t.Parallel()
		f := newKatapult(t)
		leaseFollowsToken(t, f.mount, f.s3Works)
	})
}

// A batch token cannot own leases of its own: Vault ties the credential's
// lease to the batch token's life (it is revoked when the batch token's
// parent is, and cannot outlive the batch token).
func TestBatchTokenLeaseIsBoundByTheBatchToken(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	f.configure()
	batch := appToken(t, f.mount, "-type=batch", "-ttl=2m")
	secret, err := readAs(t, batch, f.mount+"/creds/app")
	if err != nil {
		t.Fatalf("a batch token's creds read: %v", err)
	}
	if secret.LeaseDuration > 120 {
		t.Fatalf("a lease of %ds outlives its 2m batch token", secret.LeaseDuration)
	}
	status, _ := storydenemu.ProbeKey(f.upstream.URL(), fmt.Sprint(secret.Data["access_key"]))
	if status != http.StatusOK {
		t.Fatal("the batch token's credential does not work")
	}
}

func TestTidyRemovesOrphansThroughVault(t *testing.T) {
	t.Parallel()
	f := newStoryden(t)
	f.configure()
	live := f.issue()
	inventory := cliJSON(t, "read", f.mount+"/inventory/main")
	if fmt.Sprint(inventory.Data["count"]) != "1" {
		t.Fatalf("inventory: %v", inventory.Data)
	}
	// A copy of this connection's keys (its tag and this cluster's in the
	// name, as the live key's), and a key of another mount on the same
	// account, which tidy must leave alone.
	tag := fmt.Sprint(cliJSON(t, "read", f.mount+"/config/main").Data["object_name_tag"])
	liveName := fmt.Sprint(inventory.Data["objects"].([]any)[0].(map[string]any)["name"])
	tags := liveName[len(liveName)-14 : len(liveName)-8]
	if !strings.HasPrefix(tags, tag) {
		t.Fatalf("the live key %s does not carry the connection's tag %s", liveName, tag)
	}
	orphan := "vault-app-" + tags + "byhand01"
	for _, name := range []string{orphan, "vault-app-0therm0unt01"} {
		if _, err := storydenemu.ProbeCreateKey(f.upstream.URL(), sdAdmin, sdPassword, name); err != nil {
			t.Fatal(err)
		}
	}
	dry := cliJSON(t, "write", "-f", f.mount+"/tidy/main")
	if !strings.Contains(fmt.Sprint(dry.Data["unknown_upstream"]), orphan) || !strings.Contains(fmt.Sprint(dry.Data["foreign_upstream"]), "vault-app-0therm0unt01") || f.liveKeys() != 3 {
		t.Fatalf("dry run: %v", dry.Data)
	}
	wet := cliJSON(t, "write", f.mount+"/tidy/main", "dry_run=false", "safety_buffer=0")
	if !strings.Contains(fmt.Sprint(wet.Data["deleted"]), orphan) || f.liveKeys() != 2 || f.keyStatus(live) != http.StatusOK {
		t.Fatalf("tidy: %v; %d live keys", wet.Data, f.liveKeys())
	}
}
