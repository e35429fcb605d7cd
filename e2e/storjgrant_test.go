package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3grant"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storjsat"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/authservice"
)

// grantStack is a satellite stand-in serving RevokeAPIKey over DRPC, the
// real Storj auth service allowing it, and an S3 gateway that resolves keys
// through that auth service and asks the satellite about each grant.
type grantStack struct {
	sat  *storjsat.Satellite
	auth *authservice.Server
	gw   *sandbox.Server
	root string
}

func newGrantStack(t *testing.T) *grantStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := authservice.Binary("..")
	if err != nil {
		t.Fatalf("the auth service binary (scripts/build-authservice.sh, or AUTHSERVICE_BIN): %v", err)
	}
	sat, err := storjsat.Start(ctx, storjsat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sat.Close)
	// The gateway must exist before the auth service, which hands out its
	// address; the resolver, which needs the auth service, comes after.
	var resolver s3grant.Pending
	gw := startS3Gateway(t, "s3-storj", resolver.Resolve, "photos")
	auth, err := authservice.Start(ctx, authservice.Options{Bin: bin, Dir: t.TempDir(), AllowedSatellites: []string{sat.NodeURL()}, Endpoint: gw.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = auth.Close() })
	r, err := s3grant.New(s3grant.Options{AuthURL: auth.URL(), AuthToken: auth.AuthToken(), Checker: sat})
	if err != nil {
		t.Fatal(err)
	}
	resolver.Store(r)
	root, err := sat.NewRootGrant("e2e passphrase", storjsat.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	registerSecret("the storj root access grant", root)
	return &grantStack{sat: sat, auth: auth, gw: gw, root: root}
}

// TestStorjGrant_S3WorksUntilRevoked runs both grant-mode connections (the
// storj provider and storx with access_grant) through real Vault and the
// real auth service: config write with verify, creds, aws-sdk-go-v2 PUT,
// LIST and GET, vault lease revoke, S3 refused afterwards; then
// rotate-root, a short role and tidy's report.
func TestStorjGrant_S3WorksUntilRevoked(t *testing.T) {
	t.Parallel()
	s := newGrantStack(t)
	mount := newMount(t, "storj")
	secrets := fmt.Sprintf(`{"access_grant":%q}`, s.root)
	mustCLI(t, secrets, "write", mount+"/config/sj", "-", "provider=storj", "base_url="+s.auth.URL(), "allow_http=true")
	mustCLI(t, secrets, "write", mount+"/config/sx", "-", "provider=storx", "auth_url="+s.auth.URL(), "allow_http=true")
	for _, conn := range []string{"sj", "sx"} {
		t.Run(conn, func(t *testing.T) {
			s.gw.Reset() // s3Lifecycle wants the bucket to itself
			mustCLI(t, "", "write", mount+"/roles/"+conn, "connection="+conn, "ttl=5m", "max_ttl=1h",
				"buckets=photos", "permissions=upload,download,list")
			secret := cliJSON(t, "read", mount+"/creds/"+conn)
			for _, k := range []string{"secret_access_key", "access_grant"} {
				registerSecret("an issued grant-mode "+k, fmt.Sprint(secret.Data[k]))
			}
			before := s.sat.RevokeCalls()
			s3Lifecycle(t, s.gw, "us-east-1", "photos", secret, "AccessDenied")
			if s.sat.RevokeCalls() != before+1 {
				t.Fatalf("the lease revoke made %d satellite calls, want 1", s.sat.RevokeCalls()-before)
			}
			wantCLIError(t, cli(t, "", "write", "-f", mount+"/rotate-root/"+conn), "400", "make a new grant")
			wantCLIError(t, cli(t, "", "write", mount+"/roles/short-"+conn, "connection="+conn, "max_ttl=30s"), "400", "under a minute")
			report := cliJSON(t, "write", "-f", mount+"/tidy/"+conn)
			if report.Data["upstream_listable"] != false || !contains(fmt.Sprint(report.Data["note"]), "cannot list") {
				t.Fatalf("tidy report %v does not say the upstream is not listable", report.Data)
			}
		})
	}
}
