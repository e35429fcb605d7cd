package storx

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Two issues share one developer login. The first caller gives up while the
// login is held at the emulator; the second must still get its credential,
// from that same login: StorX allows five logins per IP, then one per five
// minutes.
func TestLogin_OneCallerGivingUpDoesNotFailTheOthersSharingIt(t *testing.T) {
	e := newEnv(t)
	emu, hold := testutil.HoldFirst(e.sat, http.MethodPost, pathDeveloperToken)
	held := testutil.StartEmulator(t, emu)
	t.Cleanup(hold.Release)
	opened, err := New().Connect(provider.ConnectionConfig{
		Name: "held", BaseURL: held.URL(),
		Values:     provider.Values{fieldEmail: devEmail, fieldPassword: devPassword, fieldPassphrase: passphrase, fieldAuthURL: e.authSrv.URL()},
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Logger:     hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs}),
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := opened.(*connection)
	t.Cleanup(conn.Close)

	testutil.FirstWaiterGivesUp(t, hold,
		func(ctx context.Context) error { _, err := conn.Issue(ctx, e.issueRequest(nil)); return err },
		func() (*provider.Credential, error) { return e.issue(conn, e.issueRequest(nil)) })
	if n := held.Calls()[routeToken]; n != 1 {
		t.Errorf("%d developer logins, want the one both callers share", n)
	}
}
