package storx_test

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
)

func TestS3SecretAnswersWhileTheCredentialIsLive(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	j := h.issue("vault-app-2", "")
	if secret, err := h.auth.S3Secret(i.creds.AccessKeyID); err != nil || secret != i.creds.SecretKey {
		t.Fatalf("S3Secret of a live credential: %v", err)
	}
	for _, id := range []string{"nosuchaccesskeyid", ""} {
		if _, err := h.auth.S3Secret(id); !errors.Is(err, s3gateway.ErrUnknownKey) {
			t.Errorf("S3Secret(%q) = %v, want ErrUnknownKey", id, err)
		}
	}
	h.expect(http.StatusOK, http.MethodDelete, "/api/v0/api-keys/delete-by-name?name=vault-app-1&projectID="+i.user.project, "", userCookie(i.user.token))
	// The S3 credentials outlive their API key: the gateway still knows
	// them, and the satellite refuses.
	if secret, err := h.auth.S3Secret(i.creds.AccessKeyID); !errors.Is(err, s3gateway.ErrAccessDenied) || secret != i.creds.SecretKey {
		t.Errorf("a credential whose API key was deleted: %v, want ErrAccessDenied with its secret", err)
	}
	if secret, err := h.auth.S3Secret(j.creds.AccessKeyID); err != nil || secret != j.creds.SecretKey {
		t.Error("deleting one API key killed another's credential")
	}
}

func TestS3SecretStopsWhenTheGrantExpires(t *testing.T) {
	h := start(t, storx.Options{})
	expiry := h.clock.Now().Add(time.Hour)
	i := h.issue("vault-app-1", "&bucket=all&allow_download&expiry="+url.QueryEscape(expiry.Format(time.DateTime)))
	h.clock.Advance(59 * time.Minute)
	if _, err := h.auth.S3Secret(i.creds.AccessKeyID); err != nil {
		t.Fatalf("not live a minute before the grant expires: %v", err)
	}
	h.clock.Advance(time.Minute)
	if _, err := h.auth.S3Secret(i.creds.AccessKeyID); !errors.Is(err, s3gateway.ErrAccessDenied) {
		t.Errorf("an expired grant's credential: %v, want ErrAccessDenied", err)
	}
}

func TestS3SecretForgetsCredentialsOnReset(t *testing.T) {
	h := start(t, storx.Options{})
	i := h.issue("vault-app-1", "")
	h.authSrv.Reset()
	if _, err := h.auth.S3Secret(i.creds.AccessKeyID); !errors.Is(err, s3gateway.ErrUnknownKey) {
		t.Errorf("a credential survived Reset: %v", err)
	}
}
