package katapult_test

import (
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
)

func TestS3SecretAnswersForTheCurrentPairOfALiveKey(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	k := h.createKey("vault-app-1")
	if secret, ok := h.emu.S3Secret(""); ok || secret != "" {
		t.Error("an empty id resolved before any pair exists")
	}
	first := h.generate(k.ID)
	if secret, ok := h.emu.S3Secret(*first.S3ID); !ok || secret != *first.S3Secret {
		t.Fatalf("S3Secret of the current pair = %v", ok)
	}
	second := h.generate(k.ID)
	if _, ok := h.emu.S3Secret(*first.S3ID); ok {
		t.Error("a replaced pair still resolves")
	}
	if secret, ok := h.emu.S3Secret(*second.S3ID); !ok || secret != *second.S3Secret {
		t.Error("the new pair does not resolve")
	}
	if _, ok := h.emu.S3Secret("00000000000000000000000000000000"); ok {
		t.Error("an unknown id resolved")
	}
	h.expect(200, userToken, "DELETE", keyPath, idBody("access_key", k.ID))
	if _, ok := h.emu.S3Secret(*second.S3ID); ok {
		t.Error("a deleted key's pair still resolves")
	}
	if h.emu.S3CredentialsLive(*second.S3ID, *second.S3Secret) {
		t.Error("S3CredentialsLive disagrees with S3Secret")
	}
}

func TestS3SecretForgetsPairsOnReset(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	creds := h.generate(h.createKey("vault-app-1").ID)
	if _, ok := h.emu.S3Secret(*creds.S3ID); !ok {
		t.Fatal("not live")
	}
	h.srv.Reset()
	if _, ok := h.emu.S3Secret(*creds.S3ID); ok {
		t.Error("a pair survived Reset")
	}
}
