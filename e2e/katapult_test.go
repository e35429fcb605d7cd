package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/katapultschema"
)

const kpToken = "e2e-katapult-api-token-secret"

type katapultFixture struct {
	t        *testing.T
	mount    string
	emu      *katapultemu.Emulator
	upstream *sandbox.Server
}

func newKatapult(t *testing.T) *katapultFixture {
	t.Helper()
	emu := katapultemu.New(katapultemu.Options{
		Organizations:     []katapultemu.Organization{{SubDomain: "acme", Buckets: []string{"shared"}}},
		Tokens:            []katapultemu.Token{{Secret: kpToken, Organization: "acme", User: "ops"}},
		ProvisioningDelay: 2 * time.Second,
	})
	// Katapult's published schema judges every request and answer.
	srv, err := sandbox.Start(katapultschema.Checked(t, emu), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	registerSecret("the katapult API token", kpToken)
	f := &katapultFixture{t: t, mount: newMount(t, "katapult"), emu: emu, upstream: srv}
	mustCLI(t, kpToken, "write", f.mount+"/config/main", "provider=katapult",
		"base_url="+srv.URL()+"/core/v1", "allow_http=true", "organization=acme", "api_token=-")
	mustCLI(t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h",
		"read_buckets=shared", "write_buckets=shared")
	return f
}

func (f *katapultFixture) issue() *api.Secret {
	f.t.Helper()
	secret := cliJSON(f.t, "read", f.mount+"/creds/app")
	registerSecret("an issued katapult secret", fmt.Sprint(secret.Data["secret_access_key"]))
	return secret
}

func (f *katapultFixture) s3Works(secret *api.Secret) bool {
	return f.emu.S3CredentialsLive(fmt.Sprint(secret.Data["access_key_id"]), fmt.Sprint(secret.Data["secret_access_key"]))
}

// aclOf returns the read and write key ids on a bucket's ACL.
func (f *katapultFixture) aclOf(bucket string) (read, write []any) {
	for _, o := range f.upstream.Objects() {
		if o.Kind == "bucket" && o.Name == bucket {
			return toAny(o.Extra["read_key_ids"]), toAny(o.Extra["write_key_ids"])
		}
	}
	f.t.Fatalf("no bucket %s upstream", bucket)
	return nil, nil
}

func toAny(v any) []any {
	switch l := v.(type) {
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out
	case []any:
		return l
	}
	return nil
}

func TestKatapult_ConcurrentLeasesShareABucketACL(t *testing.T) {
	t.Parallel()
	f := newKatapult(t)
	var wg sync.WaitGroup
	leases := make([]*api.Secret, 2)
	for i := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i] = f.issue()
		}()
	}
	wg.Wait()
	read, write := f.aclOf("shared")
	for _, lease := range leases {
		if !f.s3Works(lease) {
			t.Fatal("issued S3 credentials do not work upstream")
		}
		id := lease.Data["katapult_access_key_id"]
		if !containsAny(read, id) || !containsAny(write, id) {
			t.Fatalf("key %v missing from the bucket ACL (read %v, write %v): a concurrent lease clobbered it", id, read, write)
		}
	}
	for _, lease := range leases {
		mustCLI(t, "", "lease", "revoke", "-sync", lease.LeaseID)
		if f.s3Works(lease) {
			t.Fatal("S3 credentials still work after revoke")
		}
	}
	if read, write := f.aclOf("shared"); len(read)+len(write) != 0 {
		t.Fatalf("the bucket ACL is not clean after both revokes: read %v write %v", read, write)
	}
	if n := liveObjects(f.upstream, "access_key"); n != 0 {
		t.Fatalf("%d access keys left upstream", n)
	}
}

func TestKatapult_RotateRoot(t *testing.T) {
	t.Parallel()
	f := newKatapult(t)
	before := f.issue()
	mustCLI(t, "", "write", "-f", f.mount+"/rotate-root/main")
	req, _ := http.NewRequest(http.MethodGet, f.upstream.URL()+"/core/v1/users/current", nil)
	req.Header.Set("Authorization", "Bearer "+kpToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old API token still works after rotate-root (%d)", resp.StatusCode)
	}
	after := f.issue()
	mustCLI(t, "", "lease", "revoke", "-sync", before.LeaseID)
	mustCLI(t, "", "lease", "revoke", "-sync", after.LeaseID)
	if n := liveObjects(f.upstream, "access_key"); n != 0 {
		t.Fatalf("%d access keys left after revoking across a rotation", n)
	}
}
