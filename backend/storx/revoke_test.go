package storx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

func TestRevokeKillsTheS3Credential(t *testing.T) {
	e := newEnv(t)
	cred := e.mustIssue(e.issueRequest(nil))
	id, secret := cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)
	if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	if err := e.auth.VerifyS3Credential(id, secret); err == nil {
		t.Error("the S3 credential still works after revoke")
	}
	e.expectNothingLive()
	// Idempotent: the key is gone, StorX still answers 200.
	if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Errorf("second revoke: %v", err)
	}
	e.expectCalls(map[string]int{routeDelete: 2})
}

func TestRevokeTreatsGoneAsSuccess(t *testing.T) {
	e := newEnv(t)
	cred := e.mustIssue(e.issueRequest(nil))
	tests := []struct {
		name string
		ref  provider.Ref
	}{
		{"a key that never existed", provider.Ref{refUserEmail: appUserEmail, refProjectID: cred.Ref[refProjectID], refKeyName: "vault-app-never"}},
		{"a user StorX does not know", provider.Ref{refUserEmail: "ghost@example.com", refProjectID: cred.Ref[refProjectID], refKeyName: "vault-app-ghost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.conn.Revoke(context.Background(), tt.ref); err != nil {
				t.Fatalf("Revoke = %v, want success", err)
			}
		})
	}
	if apiKeys, _ := e.live(); len(apiKeys) != 1 {
		t.Errorf("live keys: %v, want the issued one untouched", apiKeys)
	}
}

// StorX's handler panics and drops the connection on a delete-by-name
// without a name, so the provider never sends one.
func TestRevokeNeverDeletesWithoutAName(t *testing.T) {
	e := newEnv(t)
	cred := e.mustIssue(e.issueRequest(nil))
	for _, missing := range []string{refKeyName, refUserEmail, refProjectID} {
		ref := provider.Ref{}
		for k, v := range cred.Ref {
			if k != missing {
				ref[k] = v
			}
		}
		if err := e.conn.Revoke(context.Background(), ref); err == nil {
			t.Errorf("Revoke without %s succeeded", missing)
		}
	}
	if err := e.conn.deleteByName(context.Background(), appUserEmail, cred.Ref[refProjectID], ""); err == nil {
		t.Error("deleteByName without a name succeeded")
	}
	e.expectCalls(map[string]int{routeDelete: 0})
	if n := e.sat.NamelessDeletes(); n != 0 {
		t.Errorf("the emulator saw %d delete-by-name calls without a name", n)
	}
}

func TestRevokeReportsRealFailures(t *testing.T) {
	tests := []struct {
		name       string
		fault      sandbox.Fault
		wantErr    string
		wantDelete int
	}{
		{"500 is not retried", sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Status: http.StatusInternalServerError},
			"HTTP 500", 1},
		{"503 is retried, and fails when it lasts", sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Status: http.StatusServiceUnavailable},
			"HTTP 503", 4},
		{"a dropped connection is retried, and fails when it lasts", sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Drop: true},
			"EOF", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cred := e.mustIssue(e.issueRequest(nil))
			e.resetCalls()
			e.satSrv.AddFault(tt.fault)
			err := e.conn.Revoke(context.Background(), cred.Ref)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Revoke = %v, want an error with %q", err, tt.wantErr)
			}
			e.checkNoSecrets(err.Error())
			e.expectCalls(map[string]int{routeDelete: tt.wantDelete})
			if apiKeys, _ := e.live(); len(apiKeys) != 1 {
				t.Fatalf("live keys after a failed revoke: %v", apiKeys)
			}
			e.satSrv.ClearFaults()
			if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
				t.Fatalf("Revoke after the fault cleared: %v", err)
			}
			e.expectNothingLive()
		})
	}
}

func TestRevokeRetriesOnceOnA401(t *testing.T) {
	e := newEnv(t)
	cred := e.mustIssue(e.issueRequest(nil))
	e.resetCalls()
	e.satSrv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Status: http.StatusUnauthorized, Times: 1})
	if err := e.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	e.expectCalls(map[string]int{routeDelete: 2, routeUserToken: 1, routeToken: 0})
	e.expectNothingLive()

	cred = e.mustIssue(e.issueRequest(nil))
	e.resetCalls()
	e.satSrv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Status: http.StatusUnauthorized})
	if err := e.conn.Revoke(context.Background(), cred.Ref); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("Revoke = %v, want the second 401", err)
	}
	e.expectCalls(map[string]int{routeDelete: 2, routeUserToken: 1})
}

func TestRollback(t *testing.T) {
	grantFails := sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", Status: http.StatusInternalServerError}
	tests := []struct {
		name string
		// fresh rolls back on a new connection, as after a Vault restart.
		fresh     bool
		fault     *sandbox.Fault
		role      provider.Values
		wantCalls map[string]int
	}{
		{name: "a key an interrupted issue left, same process", fault: &grantFails,
			wantCalls: map[string]int{routeDelete: 1, routeUserToken: 0, routeProjects: 0}},
		{name: "a key an interrupted issue left, after a restart", fault: &grantFails, fresh: true,
			wantCalls: map[string]int{routeToken: 1, routeUserToken: 1, routeProjects: 1, routeDelete: 1, routeCreate: 0}},
		{name: "an issue that never reached create-key needs no call",
			fault:     &sandbox.Fault{Path: pathUserToken, Status: http.StatusInternalServerError},
			wantCalls: map[string]int{routeDelete: 0, routeUserToken: 0, routeToken: 0}},
		{name: "a user StorX does not know has no key", fresh: true, role: provider.Values{fieldUserEmail: "ghost@example.com"},
			wantCalls: map[string]int{routeUserToken: 1, routeDelete: 0, routeCreate: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			req := e.issueRequest(tt.role)
			if tt.fault != nil {
				e.satSrv.AddFault(*tt.fault)
				if _, err := e.issue(e.conn, req); err == nil {
					t.Fatal("Issue succeeded despite the fault")
				}
				e.satSrv.ClearFaults()
			}
			conn := e.conn
			if tt.fresh {
				conn = e.freshConnection()
			}
			e.resetCalls()
			if err := conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			e.expectCalls(tt.wantCalls)
			e.expectNothingLive()
		})
	}
}

func TestRollbackReportsFailures(t *testing.T) {
	e := newEnv(t)
	req := e.issueRequest(nil)
	e.satSrv.AddFault(sandbox.Fault{Method: http.MethodGet, Path: "/api/v0/api-keys/", Status: http.StatusInternalServerError, Times: 1})
	if _, err := e.issue(e.conn, req); err == nil {
		t.Fatal("Issue succeeded despite the fault")
	}
	e.satSrv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: pathDeleteByName, Status: http.StatusInternalServerError})
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err == nil {
		t.Fatal("Rollback succeeded although the delete failed")
	}
	if err := e.conn.Rollback(context.Background(), provider.RollbackRequest{Name: req.Name}); err == nil || !strings.Contains(err.Error(), "user_email") {
		t.Fatalf("Rollback without the role's user_email = %v", err)
	}
	e.satSrv.ClearFaults()
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
		t.Fatal(err)
	}
	e.expectNothingLive()
}

func TestRotateRootIsUnsupported(t *testing.T) {
	e := newEnv(t)
	staged := false
	_, err := e.conn.RotateRoot(context.Background(), func(provider.Values) error { staged = true; return nil })
	if !errors.Is(err, provider.ErrRotationUnsupported) || !strings.Contains(err.Error(), "StorX console") || !strings.Contains(err.Error(), "config/sandbox") {
		t.Fatalf("RotateRoot = %v", err)
	}
	if staged || len(e.calls()) != 0 {
		t.Errorf("RotateRoot staged a root (%t) or called StorX (%v)", staged, e.calls())
	}
}
