package backend

import (
	"reflect"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// The lease an issue answers with is built without framework.Secret.Response
// (which copies the internal data): it must stay what that function makes,
// or renew and revoke of new leases would no longer be routed as before.
func TestLeaseResponse_IsTheFrameworks(t *testing.T) {
	secret := newBackend(defaultRegistry()).secretCredential()
	lease := leaseInternal{
		Connection: "main", Provider: "storyden", Role: "app", Name: "vault-app-x",
		Ref: provider.Ref{"id": "k1", "name": "vault-app-x"}, TTL: time.Hour, MaxTTL: 2 * time.Hour,
		ExpiresAt: time.Unix(1_800_000_000, 0), ConnectionTag: "tag", Fingerprint: "fp",
	}
	data := map[string]any{"access_key": "secret"}

	got := lease.response(secret, data)
	want := secret.Response(data, lease.internalData(secret.Type))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lease response\n got %#v\nwant %#v", got.Secret, want.Secret)
	}
	if got.Secret.InternalData[internalSecretType] != secretCredentialType || !got.Secret.Renewable {
		t.Fatalf("the lease must be renewable and of type %q: %#v", secretCredentialType, got.Secret)
	}
}
