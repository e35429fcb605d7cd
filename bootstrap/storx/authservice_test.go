package storx_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

var (
	accessKeyIDPattern = regexp.MustCompile(`^[a-z2-7]{28}$`)
	secretKeyPattern   = regexp.MustCompile(`^[a-z2-7]{53}$`)
)

// issued is one API key with its grant and S3 credential.
type issued struct {
	user  user
	name  string
	creds s3Credential
}

func (h *harness) issue(name, query string) issued {
	h.t.Helper()
	u := h.user("app-" + name + "@example.com")
	key, _ := h.createKey(u, name)
	grant := h.grant(u, "api-key="+key+"&passphrase="+url.QueryEscape(passphrase)+query)
	return issued{user: u, name: name, creds: h.s3(grant)}
}

func (h *harness) s3Object(id string) sandbox.Object {
	h.t.Helper()
	for _, o := range h.authSrv.Objects() {
		if o.ID == id {
			return o
		}
	}
	h.t.Fatalf("no S3 credential %s", id)
	return sandbox.Object{}
}

func TestAccessMintsS3Credentials(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	if !accessKeyIDPattern.MatchString(i.creds.AccessKeyID) || !secretKeyPattern.MatchString(i.creds.SecretKey) || i.creds.Endpoint != "https://gateway.storx.io" {
		t.Errorf("credentials = %+v", i.creds)
	}
	if err := h.auth.VerifyS3Credential(i.creds.AccessKeyID, i.creds.SecretKey); err != nil {
		t.Errorf("VerifyS3Credential: %v", err)
	}
	if err := h.auth.VerifyS3Credential(i.creds.AccessKeyID, "wrong"); err == nil {
		t.Error("a wrong secret verified")
	}
	if o := h.s3Object(i.creds.AccessKeyID); !o.Live || o.Kind != "s3_credential" || o.Name != "vault-app-1" || o.Owner != "app-vault-app-1@example.com" || o.State != "active" {
		t.Errorf("object = %+v", o)
	}
}

func TestS3CredentialDiesWithItsAPIKey(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	h.expect(http.StatusOK, http.MethodDelete, "/api/v0/api-keys/delete-by-name?name=vault-app-1&projectID="+i.user.project, "", userCookie(i.user.token))
	if err := h.auth.VerifyS3Credential(i.creds.AccessKeyID, i.creds.SecretKey); err == nil || !strings.Contains(err.Error(), "api_key_deleted") {
		t.Errorf("VerifyS3Credential = %v, want api_key_deleted", err)
	}
	if o := h.s3Object(i.creds.AccessKeyID); o.Live || o.State != "api_key_deleted" {
		t.Errorf("object = %+v", o)
	}
}

func TestS3CredentialDiesWithItsGrant(t *testing.T) {
	h := start(t, storx.Options{})
	expiry := h.clock.Now().Add(time.Hour)
	i := h.issue("vault-app-1", "&bucket=all&allow_download&expiry="+url.QueryEscape(expiry.Format(time.DateTime)))
	if o := h.s3Object(i.creds.AccessKeyID); !o.Live || o.ExpiresAt == nil || !o.ExpiresAt.Equal(expiry) {
		t.Errorf("object = %+v", o)
	}
	h.clock.Advance(time.Hour)
	if err := h.auth.VerifyS3Credential(i.creds.AccessKeyID, i.creds.SecretKey); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("VerifyS3Credential = %v, want expired", err)
	}
	if o := h.s3Object(i.creds.AccessKeyID); o.Live || o.State != "expired" {
		t.Errorf("object = %+v", o)
	}
}

func TestAccessErrorsArePlainText(t *testing.T) {
	h := start(t, storx.Options{})
	u := h.user("app@example.com")
	key, _ := h.createKey(u, "k")
	soon := url.QueryEscape(h.clock.Now().Add(50 * time.Second).Format(time.DateTime))
	shortGrant := h.grant(u, "api-key="+key+"&passphrase=p&bucket=all&allow_list&expiry="+soon)
	tests := []struct {
		name, method, body string
		want               int
		wantText           string
	}{
		{"bad JSON", http.MethodPost, `{"access_grant":`, 422, "unable to decode request body"},
		{"not a grant", http.MethodPost, `{"access_grant":"1nope"}`, 400, "invalid access grant format"},
		{"expires within a minute", http.MethodPost, `{"access_grant":"` + shortGrant + `"}`, 400, "expiration cannot be shorter than a minute"},
		{"too large", http.MethodPost, `{"access_grant":"` + strings.Repeat("1", 70<<10) + `"}`, 413, "request body too large"},
		{"no delete", http.MethodDelete, "", 405, "Method Not Allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.expectAt(h.authSrv.URL(), tt.want, tt.method, "/v1/access", tt.body)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q", ct)
			}
			if !strings.Contains(string(r.body), tt.wantText) {
				t.Errorf("body = %q, want %q", r.body, tt.wantText)
			}
		})
	}
	h.expectAt(h.authSrv.URL(), http.StatusMethodNotAllowed, http.MethodDelete, "/v1/access/abc", "")
	h.expectAt(h.authSrv.URL(), http.StatusUnauthorized, http.MethodGet, "/v1/access/abc", "")
}

func TestAccessRefusesGrantsOfAnotherSatellite(t *testing.T) {
	foreign := start(t, storx.Options{SatelliteAddress: "elsewhere.example:7777"})
	u := foreign.user("app@example.com")
	key, _ := foreign.createKey(u, "k")
	grant := foreign.grant(u, "api-key="+key+"&passphrase=p")
	h := start(t, storx.Options{})
	r := h.expectAt(h.authSrv.URL(), http.StatusBadRequest, http.MethodPost, "/v1/access", `{"access_grant":"`+grant+`"}`)
	if !strings.Contains(string(r.body), "satellite") {
		t.Errorf("body = %q", r.body)
	}
}

func TestAuthServiceFaultBody(t *testing.T) {
	h := start(t, storx.Options{})
	h.authSrv.AddFault(sandbox.Fault{Path: "/v1/access", Status: http.StatusBadGateway})
	r := h.expectAt(h.authSrv.URL(), http.StatusBadGateway, http.MethodPost, "/v1/access", "{}")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || strings.TrimSpace(string(r.body)) != "" {
		t.Errorf("5xx = %q %q, want an empty text/plain body", ct, r.body)
	}
	h.authSrv.ClearFaults()
	h.issue("vault-app-1", "")
	h.authSrv.Reset()
	if len(h.authSrv.Objects()) != 0 {
		t.Error("Reset kept credentials")
	}
}
