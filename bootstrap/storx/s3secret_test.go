package storx_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

func TestS3SecretAnswersWhileTheCredentialIsLive(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	j := h.issue("vault-app-2", "")
	if secret, ok := h.auth.S3Secret(i.creds.AccessKeyID); !ok || secret != i.creds.SecretKey {
		t.Fatalf("S3Secret of a live credential = %v", ok)
	}
	if _, ok := h.auth.S3Secret("nosuchaccesskeyid"); ok {
		t.Error("an unknown id resolved")
	}
	if _, ok := h.auth.S3Secret(""); ok {
		t.Error("an empty id resolved")
	}
	h.expect(http.StatusOK, http.MethodDelete, "/api/v0/api-keys/delete-by-name?name=vault-app-1&projectID="+i.user.project, "", userCookie(i.user.token))
	if _, ok := h.auth.S3Secret(i.creds.AccessKeyID); ok {
		t.Error("a credential whose API key was deleted still resolves")
	}
	if secret, ok := h.auth.S3Secret(j.creds.AccessKeyID); !ok || secret != j.creds.SecretKey {
		t.Error("deleting one API key killed another's credential")
	}
}

func TestS3SecretStopsWhenTheGrantExpires(t *testing.T) {
	h := start(t, storx.Options{})
	expiry := h.clock.Now().Add(time.Hour)
	i := h.issue("vault-app-1", "&bucket=all&allow_download&expiry="+url.QueryEscape(expiry.Format(time.DateTime)))
	h.clock.Advance(59 * time.Minute)
	if _, ok := h.auth.S3Secret(i.creds.AccessKeyID); !ok {
		t.Fatal("not live a minute before the grant expires")
	}
	h.clock.Advance(time.Minute)
	if _, ok := h.auth.S3Secret(i.creds.AccessKeyID); ok {
		t.Error("an expired grant's credential still resolves")
	}
}

func TestS3SecretForgetsCredentialsOnReset(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	h.authSrv.Reset()
	if _, ok := h.auth.S3Secret(i.creds.AccessKeyID); ok {
		t.Error("a credential survived Reset")
	}
}
