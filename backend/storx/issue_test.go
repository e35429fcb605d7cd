package storx

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	emulator "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

var (
	accessKeyIDPattern = regexp.MustCompile(`^[a-z2-7]{28}$`)
	secretKeyPattern   = regexp.MustCompile(`^[a-z2-7]{53}$`)
)

func TestVerify(t *testing.T) {
	tests := []struct {
		name, email, password string
		wantErr               []string
	}{
		{name: "good root", email: devEmail, password: devPassword},
		{name: "wrong password", email: devEmail, password: "wrong-password", wantErr: []string{"HTTP 401", "Your login credentials are incorrect"}},
		{name: "unknown developer", email: "nobody@example.com", password: devPassword, wantErr: []string{"HTTP 401"}},
		{name: "locked out", email: "locked@example.com", password: devPassword, wantErr: []string{"HTTP 401"}},
		{name: "MFA required answers 200 with an error", email: "mfa@example.com", password: devPassword,
			wantErr: []string{"HTTP 200", "A MFA passcode or recovery code is required", "turn MFA off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.addSecrets(tt.password)
			conn := e.connect(tt.email, tt.password, passphrase, &http.Client{Timeout: 5 * time.Second})
			err := conn.Verify(context.Background())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, provider.ErrRootRejected) {
				t.Fatalf("Verify = %v, want ErrRootRejected", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			e.checkNoSecrets(err.Error())
			e.expectCalls(map[string]int{routeToken: 1})
		})
	}
}

// The session Verify opens at config write is the one the first Issue uses.
func TestVerifySessionIsReusedByIssue(t *testing.T) {
	e := newEnv(t)
	if err := e.conn.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.mustIssue(e.issueRequest(nil))
	e.expectCalls(map[string]int{routeToken: 1})
}

func TestIssueReturnsWorkingCredential(t *testing.T) {
	e := newEnv(t)
	req := e.issueRequest(nil)
	req.ExpiresAt = req.ExpiresAt.Add(987 * time.Millisecond)
	cred := e.mustIssue(req)

	if got := cred.Data["access_key_id"].(string); !accessKeyIDPattern.MatchString(got) {
		t.Errorf("access_key_id = %q", got)
	}
	if got := cred.Data["secret_access_key"].(string); !secretKeyPattern.MatchString(got) {
		t.Errorf("secret_access_key has the wrong shape")
	}
	if got := cred.Data["endpoint"]; got != "https://gateway.storx.io" {
		t.Errorf("endpoint = %v", got)
	}
	if got := cred.Data["api_key_name"]; got != req.Name {
		t.Errorf("api_key_name = %v, want %s", got, req.Name)
	}
	if len(cred.Data) != 5 {
		t.Errorf("data has %d fields, want the 5 of the contract: %v", len(cred.Data), keys(cred.Data))
	}
	if want := req.ExpiresAt.UTC().Truncate(time.Second); !cred.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want %s (second precision)", cred.ExpiresAt, want)
	}
	if err := e.auth.VerifyS3Credential(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)); err != nil {
		t.Errorf("the S3 credential does not work at the emulator: %v", err)
	}
	checkRef(t, e, cred, req.Name)
	apiKeys, s3 := e.live()
	if len(apiKeys) != 1 || apiKeys[0] != req.Name || len(s3) != 1 || s3[0] != cred.Data["access_key_id"] {
		t.Errorf("live upstream: api keys %v, s3 credentials %v", apiKeys, s3)
	}
}

func checkRef(t *testing.T, e *env, cred *provider.Credential, name string) {
	t.Helper()
	var key, owner string
	for _, o := range e.satSrv.Objects() {
		if o.Name == name {
			key, owner = o.ID, o.Owner
		}
	}
	want := provider.Ref{refUserEmail: appUserEmail, refKeyName: name, refKeyID: key}
	for k, v := range want {
		if cred.Ref[k] != v {
			t.Errorf("Ref[%s] = %q, want %q", k, cred.Ref[k], v)
		}
	}
	if cred.Ref[refProjectID] == "" || owner != appUserEmail {
		t.Errorf("Ref %v, key owner %q", cred.Ref, owner)
	}
	for _, v := range cred.Ref {
		e.checkNoSecrets(v)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestIssueGrantCarriesTheRoleRestrictions(t *testing.T) {
	tests := []struct {
		name         string
		role         provider.Values
		wantPrefixes []emulator.SharePrefix
		wantPerm     emulator.Permission
	}{
		{name: "all buckets, all permissions", role: nil,
			wantPrefixes: []emulator.SharePrefix{{}},
			wantPerm:     emulator.Permission{Download: true, Upload: true, List: true, Delete: true}},
		{name: "two buckets, read only", role: provider.Values{fieldBuckets: []string{"logs", "media"}, fieldPermissions: []string{"download", "list"}},
			wantPrefixes: []emulator.SharePrefix{{Bucket: "logs"}, {Bucket: "media"}},
			wantPerm:     emulator.Permission{Download: true, List: true}},
		{name: "one bucket and a prefix, upload only", role: provider.Values{fieldBuckets: []any{"media"}, fieldPrefix: "uploads/", fieldPermissions: []any{"upload"}},
			wantPrefixes: []emulator.SharePrefix{{Bucket: "media", Prefix: "uploads/"}},
			wantPerm:     emulator.Permission{Upload: true}},
		{name: "permissions unset after a JSON round trip means all", role: provider.Values{fieldPermissions: nil},
			wantPrefixes: []emulator.SharePrefix{{}},
			wantPerm:     emulator.Permission{Download: true, Upload: true, List: true, Delete: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			req := e.issueRequest(tt.role)
			if _, set := tt.role[fieldPermissions]; set && tt.role[fieldPermissions] == nil {
				delete(req.Role, fieldPermissions)
			}
			cred := e.mustIssue(req)
			g, err := emulator.DecodeGrant(cred.Data["access_grant"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if !equalPrefixes(g.Prefixes, tt.wantPrefixes) {
				t.Errorf("prefixes = %+v, want %+v", g.Prefixes, tt.wantPrefixes)
			}
			perm := *g.Permission
			if perm.Download != tt.wantPerm.Download || perm.Upload != tt.wantPerm.Upload || perm.List != tt.wantPerm.List || perm.Delete != tt.wantPerm.Delete {
				t.Errorf("permission = %+v, want %+v", perm, tt.wantPerm)
			}
			if g.NotAfter() == nil || !g.NotAfter().Equal(cred.ExpiresAt) {
				t.Errorf("grant expiry = %v, want the lease's end %s", g.NotAfter(), cred.ExpiresAt)
			}
		})
	}
}

func equalPrefixes(a, b []emulator.SharePrefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The satellite parses expiry as time.DateTime in UTC, whatever zone the
// lease's end was computed in.
func TestGrantQueryExpiryFormat(t *testing.T) {
	zone := time.FixedZone("UTC+5", 5*60*60)
	q := grantQuery(roleFrom(role(nil)), "key", "phrase", time.Date(2026, 3, 1, 17, 4, 5, 0, zone))
	if got := q.Get("expiry"); got != "2026-03-01 12:04:05" {
		t.Errorf("expiry = %q, want 2026-03-01 12:04:05", got)
	}
	if !strings.Contains(q.Encode(), "expiry=2026-03-01+12%3A04%3A05") {
		t.Errorf("the space and colons are not URL-encoded: %s", q.Encode())
	}
	for _, flag := range []string{"allow_download", "allow_upload", "allow_list", "allow_delete"} {
		if !q.Has(flag) {
			t.Errorf("query lacks %s", flag)
		}
	}
	if q.Get("bucket") != "all" {
		t.Errorf("bucket = %q, want all: restrictions apply only when bucket is present", q.Get("bucket"))
	}
}

// 100 creds reads for one role cost one developer login, one create-user
// and one user session, however concurrent they are.
func TestIssueCachesSessionsAndProject(t *testing.T) {
	e := newEnv(t)
	const issues, workers = 100, 10
	var wg sync.WaitGroup
	errs := make(chan error, issues)
	reqs := make(chan provider.IssueRequest, issues)
	for range issues {
		reqs <- e.issueRequest(nil)
	}
	close(reqs)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range reqs {
				if _, err := e.issue(e.conn, req); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.expectCalls(map[string]int{
		routeToken: 1, routeCreate: 1, routeUserToken: 1, routeProjects: 0,
		routeNewKey: issues, routeGrant: issues, routeAccess: issues,
	})
	t.Logf("calls for %d issues: %v", issues, e.calls())
}

// Sessions are renewed shortly before StorX's expiresAt: the user session
// (30 minutes) first, the developer's (a week) much later.
func TestIssueRenewsSessionsNearExpiry(t *testing.T) {
	e := newEnv(t)
	e.mustIssue(e.issueRequest(nil))
	e.clock.Advance(27 * time.Minute)
	e.mustIssue(e.issueRequest(nil))
	e.expectCalls(map[string]int{routeToken: 1, routeUserToken: 1})
	e.clock.Advance(2 * time.Minute)
	e.mustIssue(e.issueRequest(nil))
	e.expectCalls(map[string]int{routeToken: 1, routeUserToken: 2, routeCreate: 1})
	e.clock.Advance(7 * 24 * time.Hour)
	e.mustIssue(e.issueRequest(nil))
	e.expectCalls(map[string]int{routeToken: 2, routeUserToken: 3, routeCreate: 1})
}

// A session StorX ended early (logout elsewhere, a shorter lifetime than
// it announced) is replaced once, on the 401.
func TestIssueLogsInAgainWhenStorXEndsASession(t *testing.T) {
	storxTime := testutil.NewClock(time.Now().UTC())
	e := newEnv(t, withEmulator(func(o *emulator.Options) { o.Now = storxTime.Now }))
	issue := func() {
		t.Helper()
		req := e.issueRequest(nil)
		req.ExpiresAt = storxTime.Now().Add(time.Hour)
		e.mustIssue(req)
	}
	issue()
	// Only StorX's clock moves: the provider still trusts its sessions.
	storxTime.Advance(31 * time.Minute)
	issue()
	e.expectCalls(map[string]int{routeToken: 1, routeCreate: 1, routeUserToken: 2})
	storxTime.Advance(8 * 24 * time.Hour)
	issue()
	e.expectCalls(map[string]int{routeToken: 2, routeCreate: 1, routeUserToken: 4})
}

func TestIssueForExistingUsers(t *testing.T) {
	t.Run("a user created by hand", func(t *testing.T) {
		e := newEnv(t)
		cred := e.mustIssue(e.issueRequest(provider.Values{fieldUserEmail: handmadeEmail}))
		e.expectCalls(map[string]int{routeCreate: 1, routeUserToken: 1, routeProjects: 1})
		if cred.Ref[refUserEmail] != handmadeEmail {
			t.Errorf("Ref = %v", cred.Ref)
		}
		for _, o := range e.satSrv.Objects() {
			if o.Owner != handmadeEmail {
				t.Errorf("key %s belongs to %q, want %s", o.Name, o.Owner, handmadeEmail)
			}
		}
		// The project is cached now.
		e.mustIssue(e.issueRequest(provider.Values{fieldUserEmail: handmadeEmail}))
		e.expectCalls(map[string]int{routeCreate: 1, routeUserToken: 1, routeProjects: 1})
	})
	t.Run("a second role, or Vault node, with the same user", func(t *testing.T) {
		e := newEnv(t)
		first := e.mustIssue(e.issueRequest(nil))
		other := e.freshConnection()
		second, err := e.issue(other, e.issueRequest(nil))
		if err != nil {
			t.Fatal(err)
		}
		if first.Ref[refProjectID] == "" || second.Ref[refProjectID] == "" {
			t.Fatalf("refs %v %v", first.Ref, second.Ref)
		}
		e.expectCalls(map[string]int{routeCreate: 2, routeProjects: 1})
		owners := map[string]bool{}
		for _, o := range e.satSrv.Objects() {
			owners[o.Owner+" "+o.Extra["project_id"].(string)] = true
		}
		if len(owners) != 1 {
			t.Errorf("the two keys went to different users or projects: %v", owners)
		}
	})
	t.Run("a locked user", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.issue(e.conn, e.issueRequest(provider.Values{fieldUserEmail: lockedUser}))
		if err == nil || !strings.Contains(err.Error(), "is locked") || !strings.Contains(err.Error(), "The activation code is invalid") {
			t.Fatalf("Issue = %v, want the locked-user error", err)
		}
	})
}

// Every grant of one connection uses its one passphrase: two grants share
// the derived encryption key, and another passphrase derives another.
func TestIssueUsesOnePassphrasePerConnection(t *testing.T) {
	e := newEnv(t)
	encryptionKey := func(conn *connection) string {
		t.Helper()
		cred, err := e.issue(conn, e.issueRequest(nil))
		if err != nil {
			t.Fatal(err)
		}
		g, err := emulator.DecodeGrant(cred.Data["access_grant"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return g.EncryptionKey
	}
	first, second := encryptionKey(e.conn), encryptionKey(e.conn)
	if first == "" || first != second {
		t.Errorf("two grants of one connection have different encryption keys")
	}
	e.addSecrets("another passphrase")
	other := e.connect(devEmail, devPassword, "another passphrase", &http.Client{Timeout: 5 * time.Second})
	if encryptionKey(other) == first {
		t.Errorf("another passphrase derived the same encryption key")
	}
}

func TestIssueDuplicateNameFails(t *testing.T) {
	e := newEnv(t)
	req := e.issueRequest(nil)
	e.mustIssue(req)
	_, err := e.issue(e.conn, req)
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Issue = %v, want the duplicate-name 500", err)
	}
	e.resetCalls()
	// The engine rolls back the failed Issue: the first lease's key stays.
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
		t.Fatal(err)
	}
	if apiKeys, _ := e.live(); len(apiKeys) != 1 {
		t.Errorf("live keys after the rollback: %v", apiKeys)
	}
	e.expectCalls(map[string]int{routeDelete: 0})
}

func TestIssueRefusesLeasesShorterThanAMinute(t *testing.T) {
	e := newEnv(t)
	req := e.issueRequest(nil)
	req.ExpiresAt = e.clock.Now().Add(50 * time.Second)
	_, err := e.issue(e.conn, req)
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "max_ttl") {
		t.Fatalf("Issue = %v, want ErrInvalidInput naming max_ttl", err)
	}
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
		t.Fatal(err)
	}
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("upstream calls for a refused lease: %v", calls)
	}
}

// The auth service, not only Vault, checks the minute: with StorX's clock
// ahead, its text/plain 400 is reported as the operator's to fix.
func TestIssueSurfacesTheAuthServiceExpiryFloor(t *testing.T) {
	skewed := testutil.NewClock(time.Now().UTC().Add(59*time.Minute + 30*time.Second))
	e := newEnv(t, withEmulator(func(o *emulator.Options) { o.Now = skewed.Now }))
	req := e.issueRequest(nil)
	_, err := e.issue(e.conn, req)
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "expiration cannot be shorter than a minute") {
		t.Fatalf("Issue = %v, want ErrInvalidInput with the auth service's reason", err)
	}
	if err := e.conn.Rollback(context.Background(), rollbackOf(req)); err != nil {
		t.Fatal(err)
	}
	e.expectNothingLive()
}
