package storjgrant

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"storj.io/common/grant"
	"storj.io/common/macaroon"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storjsat"
)

// env is a satellite, its auth service double behind the sandbox server
// (which counts calls), and a root grant of the satellite.
type env struct {
	sat  *storjsat.Satellite
	auth *storjsat.AuthService
	srv  *sandbox.Server
	root string
}

func newEnv(t *testing.T, opts storjsat.RootOptions) *env {
	t.Helper()
	sat, err := storjsat.Start(context.Background(), storjsat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sat.Close)
	auth := storjsat.NewAuthService(sat, "https://gateway.example")
	srv, err := sandbox.Start(auth, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	root, err := sat.NewRootGrant("correct horse", opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{sat: sat, auth: auth, srv: srv, root: root}
}

func (e *env) open(t *testing.T, grant string) *Connection {
	t.Helper()
	c, err := Open(Config{Provider: "storj", Product: "Storj", AuthURL: e.srv.URL(), Grant: grant,
		Connection: provider.ConnectionConfig{Name: "test", HTTPClient: &http.Client{Timeout: 10 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) authCalls() int { return e.srv.TotalCalls() }

func issue(t *testing.T, c *Connection, role provider.Values, ttl time.Duration) *provider.Credential {
	t.Helper()
	cred, err := c.Issue(context.Background(), provider.IssueRequest{RoleName: "r", Role: role, Name: "vault-r-x", ExpiresAt: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestIssueOneCallAndRevoke(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	c := e.open(t, e.root)
	before := e.authCalls()
	cred := issue(t, c, provider.Values{FieldBuckets: []string{"photos"}, FieldPermissions: []string{"download", "list"}}, time.Hour)
	if got := e.authCalls() - before; got != 1 {
		t.Fatalf("upstream calls per credential = %d, want 1", got)
	}
	if e.sat.RevokeCalls() != 0 {
		t.Fatal("Issue called the satellite")
	}
	id, _ := cred.Data["access_key_id"].(string)
	if _, ok := e.auth.S3Secret(id); !ok {
		t.Fatal("the issued credential does not resolve at the auth service")
	}
	for _, k := range []string{"access_key_id", "secret_access_key", "endpoint", "access_grant"} {
		if s, _ := cred.Data[k].(string); s == "" {
			t.Errorf("credential data lacks %s", k)
		}
	}
	for k, v := range cred.Ref {
		if strings.Contains(e.root, v) || strings.Contains(cred.Data["access_grant"].(string), v) && len(v) > 20 {
			t.Errorf("ref %s holds part of a grant", k)
		}
	}
	if err := c.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, ok := e.auth.S3Secret(id); ok {
		t.Fatal("the credential still resolves after revoke")
	}
	if err := e.sat.CheckGrant(context.Background(), cred.Data["access_grant"].(string)); !errors.Is(err, storjsat.ErrRevoked) {
		t.Fatalf("child grant after revoke: %v, want revoked", err)
	}
	// Revoking again is success.
	if err := c.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if err := e.sat.CheckGrant(context.Background(), e.root); err != nil {
		t.Fatalf("the parent grant died with its child: %v", err)
	}
}

// TestChildScope: the child's caveat carries the role's permissions,
// bucket and NotAfter.
func TestChildScope(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	c := e.open(t, e.root)
	cred := issue(t, c, provider.Values{FieldBuckets: []string{"photos"}, FieldPrefix: "cats/", FieldPermissions: []string{"download"}}, time.Hour)
	raw, err := base64.RawURLEncoding.DecodeString(cred.Ref[refCaveat])
	if err != nil {
		t.Fatal(err)
	}
	var cav macaroon.Caveat
	if err := cav.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if cav.DisallowReads || !cav.DisallowWrites || !cav.DisallowLists || !cav.DisallowDeletes {
		t.Errorf("caveat permissions %+v, want download only", cav)
	}
	if len(cav.AllowedPaths) != 1 || string(cav.AllowedPaths[0].Bucket) != "photos" || len(cav.AllowedPaths[0].EncryptedPathPrefix) == 0 {
		t.Errorf("caveat paths %v, want one prefix in photos", cav.AllowedPaths)
	}
	if cav.NotAfter == nil || !cav.NotAfter.Equal(cred.ExpiresAt) {
		t.Errorf("caveat NotAfter %v, want the credential's expiry %v", cav.NotAfter, cred.ExpiresAt)
	}
}

func TestIssueRefusesShortLease(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	c := e.open(t, e.root)
	_, err := c.Issue(context.Background(), provider.IssueRequest{Name: "vault-r-x", ExpiresAt: time.Now().Add(30 * time.Second)})
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "within a minute") {
		t.Fatalf("Issue = %v, want ErrInvalidInput about the minute", err)
	}
	if e.authCalls() != 0 {
		t.Fatal("a refused lease reached the auth service")
	}
}

func TestVerify(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	if err := e.open(t, e.root).Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.authCalls(); got != 1 {
		t.Fatalf("Verify made %d calls, want 1", got)
	}
	other := newEnv(t, storjsat.RootOptions{})
	err := e.open(t, other.root).Verify(context.Background())
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "disallowed satellite") {
		t.Fatalf("Verify with another satellite's grant = %v", err)
	}
	if strings.Contains(err.Error(), other.root) {
		t.Fatal("the error quotes the grant")
	}
}

func TestOpenRefusesBadGrants(t *testing.T) {
	tests := []struct {
		name, grant, want string
	}{
		{name: "empty", grant: "", want: "access_grant is required"},
		{name: "not a grant", grant: "not-a-grant-at-all", want: "not a serialized access grant"},
		{name: "satellite without node id", grant: grantWithoutNodeID(t), want: "without a node id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(Config{Provider: "storj", Product: "Storj", Grant: tt.grant})
			if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want %q", err, tt.want)
			}
			if tt.grant != "" && strings.Contains(err.Error(), tt.grant) {
				t.Fatal("the error quotes the grant")
			}
		})
	}
}

// TestRevokeAfterParentReplaced: a connection whose grant changed cannot
// rebuild the child and says so, instead of revoking nothing.
func grantWithoutNodeID(t *testing.T) string {
	t.Helper()
	key, err := macaroon.NewAPIKey([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := (&grant.Access{SatelliteAddress: "127.0.0.1:7777", APIKey: key, EncAccess: grant.NewEncryptionAccess()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRevokeAfterParentReplaced(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	cred := issue(t, e.open(t, e.root), nil, time.Hour)
	other, err := e.sat.NewRootGrant("x", storjsat.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = e.open(t, other).Revoke(context.Background(), cred.Ref)
	if err == nil || !strings.Contains(err.Error(), "was replaced") {
		t.Fatalf("Revoke = %v, want the replaced-grant refusal", err)
	}
	if e.sat.RevokeCalls() != 0 {
		t.Fatal("the satellite was asked anyway")
	}
}

// TestRevokePastNotAfterNeedsNoCall: a child past its NotAfter is dead.
func TestRevokePastNotAfterNeedsNoCall(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	c := e.open(t, e.root)
	cred := issue(t, c, nil, time.Hour)
	cred.Ref[refNotAfter] = "1000"
	if err := c.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	if e.sat.RevokeCalls() != 0 {
		t.Fatal("the satellite was asked about a dead child")
	}
}

// TestAuditableProjectRefusesChildren: the satellite refuses locally
// derived children of an auditable key at use; the gateway sees it.
func TestAuditableProjectRefusesChildren(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{Auditable: true})
	cred := issue(t, e.open(t, e.root), nil, time.Hour)
	err := e.sat.CheckGrant(context.Background(), cred.Data["access_grant"].(string))
	if !errors.Is(err, storjsat.ErrUnregisteredTail) {
		t.Fatalf("CheckGrant = %v, want the auditable refusal", err)
	}
}

func TestRevokeUnreachableSatellite(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	c := e.open(t, e.root)
	cred := issue(t, c, nil, time.Hour)
	e.sat.Close()
	err := c.Revoke(context.Background(), cred.Ref)
	var ue *provider.UpstreamError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "NotAfter") {
		t.Fatalf("Revoke = %v, want an upstream error", err)
	}
	if strings.Contains(err.Error(), e.root) {
		t.Fatal("the error quotes the grant")
	}
}

func TestRotateRootUnsupported(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	_, err := e.open(t, e.root).RotateRoot(context.Background(), nil)
	if !errors.Is(err, provider.ErrRotationUnsupported) || !strings.Contains(err.Error(), "make a new grant") {
		t.Fatalf("RotateRoot = %v", err)
	}
}

func TestCheckMaxTTL(t *testing.T) {
	for _, tt := range []struct {
		ttl time.Duration
		ok  bool
	}{{0, true}, {59 * time.Second, false}, {time.Minute, true}, {time.Hour, true}} {
		if err := CheckMaxTTL(tt.ttl); (err == nil) != tt.ok {
			t.Errorf("CheckMaxTTL(%s) = %v", tt.ttl, err)
		}
	}
}

// recorder is a provider.Observer that keeps the statuses of revoke calls.
type recorder struct{ revokes []int }

func (r *recorder) UpstreamCall(op string, status int, _ time.Duration) {
	if op == "revoke" {
		r.revokes = append(r.revokes, status)
	}
}
func (r *recorder) UpstreamRateLimited(string) {}
func (r *recorder) UpstreamRetry(string)       {}

// TestRevokeObservedAndRefusalsNamed: the DRPC revoke reaches the metrics
// as 200, and a satellite refusal comes back with its DRPC code: here the
// parent is itself a locally derived key of an auditable project, whose
// unregistered tail the satellite refuses in the header.
func TestRevokeObservedAndRefusalsNamed(t *testing.T) {
	e := newEnv(t, storjsat.RootOptions{})
	rec := &recorder{}
	open := func(grant string) *Connection {
		c, err := Open(Config{Provider: "storj", Product: "Storj", AuthURL: e.srv.URL(), Grant: grant,
			Connection: provider.ConnectionConfig{Name: "test", Observer: rec}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open(e.root)
	if err := c.Revoke(context.Background(), issue(t, c, nil, time.Hour).Ref); err != nil {
		t.Fatal(err)
	}
	auditableRoot, err := e.sat.NewRootGrant("x", storjsat.RootOptions{Auditable: true})
	if err != nil {
		t.Fatal(err)
	}
	derived := issue(t, open(auditableRoot), nil, 2*time.Hour).Data["access_grant"].(string)
	c = open(derived)
	err = c.Revoke(context.Background(), issue(t, c, nil, time.Hour).Ref)
	var ue *provider.UpstreamError
	if !errors.As(err, &ue) || ue.Code != "PermissionDenied" || !strings.Contains(err.Error(), "unregistered tail not allowed for auditable API key") {
		t.Fatalf("Revoke = %v, want the satellite's PermissionDenied", err)
	}
	if len(rec.revokes) != 2 || rec.revokes[0] != http.StatusOK || rec.revokes[1] != http.StatusForbidden {
		t.Fatalf("observed revoke statuses %v, want [200 403]", rec.revokes)
	}
}
