package katapult

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
)

func TestRegenerateCredentialsReplacesThePair(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-static-key", provider.Values{})
	id := cred.Data["katapult_access_key_id"].(string)
	data, err := h.conn.RegenerateCredentials(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"access_key_id", "secret_access_key", "endpoint", "katapult_access_key_id", "state"} {
		if data[field] == "" || data[field] == nil {
			t.Errorf("%s is empty", field)
		}
	}
	if len(data) != 5 || data["katapult_access_key_id"] != id || data["endpoint"] != "https://uk-lon-1.katapultobjects.com:443" {
		t.Errorf("data = %v", data)
	}
	if h.emu.S3CredentialsLive(cred.Data["access_key_id"].(string), cred.Data["secret_access_key"].(string)) {
		t.Error("the old pair still works")
	}
	if !h.emu.S3CredentialsLive(data["access_key_id"].(string), data["secret_access_key"].(string)) {
		t.Error("the new pair does not work")
	}
}

func TestRegenerateCredentialsWaitsOutProvisioning(t *testing.T) {
	h := newHarness(t, func(o *katapult.Options) { o.ProvisioningDelay = 100 * time.Millisecond })
	key, err := h.conn.createKey(context.Background(), "vault-static-new", provider.Values{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.conn.RegenerateCredentials(context.Background(), key.ID); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.Calls()[routeGenerate]; n < 2 {
		t.Errorf("generate_credentials called %d times", n)
	}
}

func TestStaticKeyLookups(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-static-key", provider.Values{})
	id := cred.Data["katapult_access_key_id"].(string)
	if err := h.conn.LookupAccessKey(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(string) error{
		"lookup": func(id string) error { return h.conn.LookupAccessKey(context.Background(), id) },
		"regenerate": func(id string) error {
			_, err := h.conn.RegenerateCredentials(context.Background(), id)
			return err
		},
	} {
		err := call("objkey_NOSUCHKEY0000000")
		if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "no such access key") {
			t.Errorf("%s of a missing key: %v", name, err)
		}
	}
	wrong := h.connect(provider.Values{fieldAPIToken: "revoked", fieldOrganization: subDomain})
	if err := wrong.LookupAccessKey(context.Background(), id); errors.Is(err, provider.ErrInvalidInput) || !errors.Is(err, provider.ErrRootRejected) {
		t.Errorf("lookup with a bad token: %v", err)
	}
}
