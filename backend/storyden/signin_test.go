package storyden

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Two issues share one sign-in. The first caller gives up while the sign-in
// is held at the emulator; the second must still get its credential, from
// that same sign-in (Storyden, like StorX, limits sign-ins).
func TestSignIn_OneCallerGivingUpDoesNotFailTheOthersSharingIt(t *testing.T) {
	const handle, password = "vault-admin", "signin-test-admin-password"
	emu, hold := testutil.HoldFirst(emulator.New(emulator.Options{Accounts: []emulator.Account{{Handle: handle, Password: password, Admin: true}}}),
		http.MethodPost, "/api/auth/password/signin")
	srv := testutil.StartEmulator(t, emu)
	t.Cleanup(hold.Release)
	conn, err := Provider{}.Connect(provider.ConnectionConfig{
		Name: "main", BaseURL: srv.URL(), Values: provider.Values{fieldUsername: handle, fieldPassword: password},
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ctx context.Context, name string) (*provider.Credential, error) {
		return conn.Issue(ctx, provider.IssueRequest{RoleName: "app", Name: name, TTL: time.Hour, ExpiresAt: time.Now().Add(time.Hour)})
	}

	got := testutil.FirstWaiterGivesUp(t, hold,
		func(ctx context.Context) error { _, err := issue(ctx, "vault-app-first"); return err },
		func() (*provider.Credential, error) { return issue(context.Background(), "vault-app-second") })
	if got.Data["access_key"] == "" {
		t.Fatal("the second caller got no access key")
	}
	if n := srv.Calls()["POST /api/auth/password/signin"]; n != 1 {
		t.Errorf("%d sign-ins, want the one both callers share", n)
	}
}
