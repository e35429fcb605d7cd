package katapult

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
)

var (
	s3KeyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	objkeyPattern  = regexp.MustCompile(`^objkey_[A-Za-z0-9]{16}$`)
)

func TestConnectValidatesSettings(t *testing.T) {
	tests := []struct {
		name    string
		values  provider.Values
		want    string // "" for success
		orgKey  string
		region  string
		tokenID string
	}{
		{"sub-domain", provider.Values{fieldAPIToken: "t", fieldOrganization: "acme"}, "", "sub_domain", defaultRegion, ""},
		{"org id", provider.Values{fieldAPIToken: "t", fieldOrganization: orgID, fieldRegion: "uk-man-1", fieldAPITokenID: "apitoken_x"}, "", "id", "uk-man-1", "apitoken_x"},
		{"no token", provider.Values{fieldOrganization: "acme"}, "api_token is required", "", "", ""},
		{"no organization", provider.Values{fieldAPIToken: "t"}, "organization is required", "", "", ""},
		{"malformed id", provider.Values{fieldAPIToken: "t", fieldOrganization: "org_bad id"}, "looks like an id", "", "", ""},
		{"not a sub-domain", provider.Values{fieldAPIToken: "t", fieldOrganization: "Acme Ltd"}, "is not a sub-domain", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Provider{}.Connect(provider.ConnectionConfig{Name: "c", BaseURL: "http://127.0.0.1:1", Values: tt.values})
			if tt.want != "" {
				if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want invalid input with %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := conn.(*connection)
			if c.org.key != tt.orgKey || c.region != tt.region || c.tokenID != tt.tokenID {
				t.Errorf("org %+v region %q token id %q", c.org, c.region, c.tokenID)
			}
		})
	}
}

func TestValidateRoleChecksBucketNames(t *testing.T) {
	tests := []struct {
		buckets []string
		ok      bool
	}{
		{[]string{"assets", "my.bucket-1"}, true},
		{nil, true},
		{[]string{"ab"}, false},
		{[]string{"Assets"}, false},
		{[]string{"-assets"}, false},
		{[]string{"has space"}, false},
	}
	for _, tt := range tests {
		for _, field := range []string{fieldReadBuckets, fieldWriteBuckets} {
			err := Provider{}.ValidateRole(provider.Values{field: tt.buckets})
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, provider.ErrInvalidInput)) {
				t.Errorf("%s=%v: err = %v, want ok=%v", field, tt.buckets, err, tt.ok)
			}
		}
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name         string
		values       provider.Values
		rootRejected bool
		want         string // "" for success
	}{
		{"user token by sub-domain", provider.Values{fieldAPIToken: userToken, fieldOrganization: subDomain}, false, ""},
		{"org token by id", provider.Values{fieldAPIToken: orgToken, fieldOrganization: orgID}, false, ""},
		{"read-only scope is enough to verify", provider.Values{fieldAPIToken: readOnly, fieldOrganization: subDomain}, false, ""},
		{"unknown token", provider.Values{fieldAPIToken: "not-a-token", fieldOrganization: subDomain}, true, "invalid_api_token"},
		{"another organization", provider.Values{fieldAPIToken: otherOrgTok, fieldOrganization: subDomain}, false, `check organization "acme"`},
		{"unknown organization", provider.Values{fieldAPIToken: userToken, fieldOrganization: "nobody"}, false, "organization_not_found"},
		{"no object storage", provider.Values{fieldAPIToken: noStoreTok, fieldOrganization: "nostorage"}, false, "enable object storage"},
		{"unknown region", provider.Values{fieldAPIToken: userToken, fieldOrganization: subDomain, fieldRegion: "us-nyc-1"}, false, "object_storage_cluster_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			err := h.connect(tt.values).Verify(context.Background())
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, provider.ErrRootRejected) != tt.rootRejected {
				t.Fatalf("err = %v, want %q (root rejected: %v)", err, tt.want, tt.rootRejected)
			}
			if strings.Contains(err.Error(), userToken) {
				t.Error("the error shows the token")
			}
		})
	}
}

func TestVerifyWithoutScopeRejectsRoot(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) {
		o.Tokens = append(o.Tokens, katapult.Token{Secret: "dns-only-token", Organization: subDomain, Scopes: []string{"dns_zones"}})
	})
	err := h.connect(provider.Values{fieldAPIToken: "dns-only-token", fieldOrganization: subDomain}).Verify(context.Background())
	if !errors.Is(err, provider.ErrRootRejected) || codeOf(err) != "scope_not_granted" || !strings.Contains(err.Error(), "object_storage scope") {
		t.Fatalf("err = %v", err)
	}
}

func TestIssueReturnsWorkingCredentials(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-app-abc123", provider.Values{
		fieldAllBucketsRead: true, fieldAllObjectsWrite: true,
		fieldReadBuckets: []string{"assets", "logs"}, fieldWriteBuckets: []any{"logs"},
	})
	d := cred.Data
	if !s3KeyIDPattern.MatchString(d["access_key_id"].(string)) || d["secret_access_key"] == "" {
		t.Errorf("S3 pair = %v / %v", d["access_key_id"], d["secret_access_key"] != "")
	}
	if d["endpoint"] != "https://uk-lon-1.katapultobjects.com:443" || d["state"] != "pending" || !objkeyPattern.MatchString(d["katapult_access_key_id"].(string)) {
		t.Errorf("data = endpoint %v state %v key %v", d["endpoint"], d["state"], d["katapult_access_key_id"])
	}
	if len(d) != 5 {
		t.Errorf("data has %d fields, want 5", len(d))
	}
	if !h.emu.S3CredentialsLive(d["access_key_id"].(string), d["secret_access_key"].(string)) {
		t.Error("the S3 pair does not work at the emulator")
	}
	wantRef := provider.Ref{refKeyID: d["katapult_access_key_id"].(string), refName: "vault-app-abc123", refBuckets: "assets,logs"}
	if len(cred.Ref) != len(wantRef) || cred.Ref[refKeyID] != wantRef[refKeyID] || cred.Ref[refName] != wantRef[refName] || cred.Ref[refBuckets] != wantRef[refBuckets] {
		t.Errorf("ref = %v, want %v", cred.Ref, wantRef)
	}
	if !cred.ExpiresAt.IsZero() {
		t.Error("Katapult keys do not expire, yet ExpiresAt is set")
	}
	key, ok := h.object("access_key", "vault-app-abc123")
	if !ok || !key.Live || key.Extra["all_buckets_read"] != true || key.Extra["all_objects_write"] != true || key.Extra["all_objects_read"] != false {
		t.Fatalf("key = %+v", key)
	}
	if r, w := key.Extra["read_buckets"].([]string), key.Extra["write_buckets"].([]string); strings.Join(r, ",") != "assets,logs" || strings.Join(w, ",") != "logs" {
		t.Errorf("key's buckets: read %v write %v", r, w)
	}
}

func TestIssueAndRevokeCallCounts(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-app-counted", provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"assets", "logs"}})
	want := map[string]int{routeCreate: 1, routeGetBucket: 2, routePatchBkt: 2, routeGenerate: 1}
	if got := h.srv.Calls(); !sameCounts(got, want) {
		t.Errorf("issue calls = %v, want %v", got, want)
	}
	h.srv.ResetCalls()
	if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{routeGetBucket: 2, routePatchBkt: 2, routeDelete: 1}
	if got := h.srv.Calls(); !sameCounts(got, want) {
		t.Errorf("revoke calls = %v, want %v", got, want)
	}
	h.srv.ResetCalls()
	// A second revoke finds the ACLs clean and the key gone: no PATCH.
	if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{routeGetBucket: 2, routeDelete: 1}
	if got := h.srv.Calls(); !sameCounts(got, want) {
		t.Errorf("second revoke calls = %v, want %v", got, want)
	}
}

func sameCounts(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestRevoke(t *testing.T) {
	h := newHarness(t)
	r := provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"logs"}}
	cred := h.issue("vault-app-revoked", r)
	keep := h.issue("vault-app-kept", r)
	if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	if h.emu.S3CredentialsLive(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)) {
		t.Error("revoked S3 pair still works")
	}
	if o, _ := h.object("access_key", "vault-app-revoked"); o.Live {
		t.Error("revoked key still live")
	}
	if n := h.aclEntries(); n != 2 {
		t.Errorf("%d ACL entries, want only the kept key's 2", n)
	}
	t.Run("idempotent", func(t *testing.T) {
		if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown key is gone", func(t *testing.T) {
		if err := h.conn.Revoke(context.Background(), provider.Ref{refKeyID: "objkey_NEVEREXISTED0000"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bucket deleted since", func(t *testing.T) {
		if err := h.conn.Revoke(context.Background(), provider.Ref{refKeyID: keep.Ref[refKeyID], refBuckets: "deleted-bucket,assets,logs"}); err != nil {
			t.Fatal(err)
		}
		h.assertClean()
	})
	t.Run("no key id", func(t *testing.T) {
		if err := h.conn.Revoke(context.Background(), provider.Ref{refName: "x"}); err == nil {
			t.Fatal("revoke without a key id succeeded")
		}
	})
}

func TestRevokeFailureIsAnError(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-app-x", provider.Values{})
	wrong := h.connect(provider.Values{fieldAPIToken: "revoked-token", fieldOrganization: subDomain})
	err := wrong.Revoke(context.Background(), cred.Ref)
	if !errors.Is(err, provider.ErrRootRejected) || provider.StatusOf(err) != 403 {
		t.Fatalf("err = %v, want the 403 invalid_api_token", err)
	}
	if o, _ := h.object("access_key", "vault-app-x"); !o.Live {
		t.Fatal("the key is gone although revoke failed")
	}
}

func TestRollbackDeletesEveryKeyOfTheName(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r := provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"logs"}}
	// What an Issue interrupted after its grants leaves, twice over.
	for range 2 {
		key, err := h.conn.createKey(ctx, "vault-app-interrupted", r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.conn.grantBuckets(ctx, key.ID, r); err != nil {
			t.Fatal(err)
		}
	}
	kept := h.issue("vault-app-other", r)
	// The role lost its buckets since; the key's own bucket lists still lead to them.
	if err := h.conn.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-interrupted", RoleName: "app", Role: provider.Values{}}); err != nil {
		t.Fatal(err)
	}
	if live := h.liveKeys(); len(live) != 1 || live[0] != "vault-app-other" {
		t.Fatalf("live keys = %v", live)
	}
	if n := h.aclEntries(); n != 2 {
		t.Errorf("%d ACL entries, want the other key's 2", n)
	}
	if err := h.conn.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-nothing"}); err != nil {
		t.Fatalf("rollback of nothing: %v", err)
	}
	if err := h.conn.Revoke(ctx, kept.Ref); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
}

func TestRollbackReadsEveryPage(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for i := range listPageSize + 5 {
		name := "vault-app-filler"
		if i == listPageSize+2 {
			name = "vault-app-last-page"
		}
		if _, err := h.conn.createKey(ctx, name, provider.Values{}); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.ResetCalls()
	if err := h.conn.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-last-page"}); err != nil {
		t.Fatal(err)
	}
	if o, _ := h.object("access_key", "vault-app-last-page"); o.Live {
		t.Error("the key on page 2 survived")
	}
	if calls := h.srv.Calls(); calls[routeList] != 2 || calls[routeDelete] != 1 {
		t.Errorf("calls = %v, want 2 pages listed and 1 delete", calls)
	}
}

func TestIssueWithMissingBucketIsTheOperatorsToFix(t *testing.T) {
	h := newHarness(t)
	r := provider.Values{fieldReadBuckets: []string{"assets", "no-such-bucket"}}
	_, err := h.conn.Issue(context.Background(), provider.IssueRequest{Role: r, Name: "vault-app-missing"})
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), `"no-such-bucket"`) || codeOf(err) != codeBucketNotFound {
		t.Fatalf("err = %v", err)
	}
	if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-missing", Role: r}); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
}
