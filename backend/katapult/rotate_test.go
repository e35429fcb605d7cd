package katapult

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// stager records what RotateRoot stages and what the connection used then.
type stager struct {
	staged   []provider.Values
	failures int
}

func (s *stager) stage(v provider.Values) error {
	s.staged = append(s.staged, v)
	if s.failures > 0 {
		s.failures--
		return errors.New("storage is sealed")
	}
	return nil
}

func TestRotateRootRegeneratesTheSecret(t *testing.T) {
	tests := []struct {
		name   string
		values provider.Values
		// userLookups is how often GET /users/current is called.
		userLookups int
	}{
		{"user token finds its own id", provider.Values{fieldAPIToken: userToken, fieldOrganization: subDomain}, 1},
		{"org token with api_token_id", provider.Values{fieldAPIToken: orgToken, fieldOrganization: subDomain, fieldAPITokenID: orgTokenID}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			conn := h.connect(tt.values)
			var s stager
			next, err := conn.RotateRoot(context.Background(), s.stage)
			if err != nil {
				t.Fatal(err)
			}
			secret := next.String(fieldAPIToken)
			if len(s.staged) != 1 || s.staged[0].String(fieldAPIToken) != secret || len(next) != 1 || secret == tt.values.String(fieldAPIToken) {
				t.Fatalf("staged %v, returned %v", s.staged, next)
			}
			if err := h.connect(tt.values).Verify(context.Background()); !errors.Is(err, provider.ErrRootRejected) {
				t.Errorf("the old secret still works: %v", err)
			}
			fresh := tt.values.Clone()
			fresh[fieldAPIToken] = secret
			if err := h.connect(fresh).Verify(context.Background()); err != nil {
				t.Errorf("the new secret does not work: %v", err)
			}
			if err := conn.Verify(context.Background()); err != nil {
				t.Errorf("the rotated connection does not work: %v", err)
			}
			// A second rotation reuses the token id.
			if _, err := conn.RotateRoot(context.Background(), s.stage); err != nil {
				t.Fatal(err)
			}
			if calls := h.srv.Calls(); calls[routeUser] != tt.userLookups || calls[routeRegenerate] != 2 {
				t.Errorf("calls = %v", calls)
			}
			if strings.Contains(h.logs.String(), secret) {
				t.Error("the new secret was logged")
			}
		})
	}
}

func TestRotateRootWithOrgTokenNeedsItsID(t *testing.T) {
	h := newHarness(t)
	conn := h.connect(provider.Values{fieldAPIToken: orgToken, fieldOrganization: subDomain})
	var s stager
	_, err := conn.RotateRoot(context.Background(), s.stage)
	if !errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "set api_token_id") {
		t.Fatalf("err = %v", err)
	}
	if len(s.staged) != 0 || h.srv.Calls()[routeRegenerate] != 0 {
		t.Error("rotated without knowing the token id")
	}
	if err := conn.Verify(context.Background()); err != nil {
		t.Errorf("the token stopped working: %v", err)
	}
}

func TestRotateRootRefusals(t *testing.T) {
	tests := []struct {
		name   string
		values provider.Values
		want   string
	}{
		{"without the api_tokens scope", provider.Values{fieldAPIToken: readOnly, fieldOrganization: subDomain}, "api_tokens scope"},
		{"wrong api_token_id", provider.Values{fieldAPIToken: userToken, fieldOrganization: subDomain, fieldAPITokenID: "apitoken_NOSUCHTOKEN00001"}, "set api_token_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var s stager
			_, err := h.connect(tt.values).RotateRoot(context.Background(), s.stage)
			if err == nil || !strings.Contains(err.Error(), tt.want) || len(s.staged) != 0 {
				t.Fatalf("err = %v, staged %v", err, s.staged)
			}
			if err := h.connect(tt.values).Verify(context.Background()); err != nil {
				t.Errorf("the token stopped working: %v", err)
			}
		})
	}
}

func TestRotateRootRetriesStaging(t *testing.T) {
	h := newHarness(t)
	recordSleeps(t, nil)
	s := stager{failures: stageAttempts - 1}
	next, err := h.conn.RotateRoot(context.Background(), s.stage)
	if err != nil || len(s.staged) != stageAttempts {
		t.Fatalf("err = %v after %d stagings", err, len(s.staged))
	}
	if next.String(fieldAPIToken) != s.staged[0].String(fieldAPIToken) {
		t.Error("returned values differ from the staged ones")
	}
}

func TestRotateRootStagingFailureKeepsTheNewSecretInUse(t *testing.T) {
	h := newHarness(t)
	recordSleeps(t, nil)
	s := stager{failures: stageAttempts}
	_, err := h.conn.RotateRoot(context.Background(), s.stage)
	if err == nil || !strings.Contains(err.Error(), "write config/test api_token=") || len(s.staged) != stageAttempts {
		t.Fatalf("err = %v after %d stagings", err, len(s.staged))
	}
	if strings.Contains(err.Error(), s.staged[0].String(fieldAPIToken)) {
		t.Error("the error shows the new secret")
	}
	if err := h.conn.Verify(context.Background()); err != nil {
		t.Errorf("the connection lost the new secret: %v", err)
	}
}

func TestRotateRootWithLostAnswer(t *testing.T) {
	tests := []struct {
		name  string
		fault sandbox.Fault
		// regenerated tells whether Katapult regenerated the secret.
		regenerated bool
		want        string
	}{
		{"dropped before Katapult acted", sandbox.Fault{Method: "POST", Path: "/core/v1/api_tokens/", Drop: true}, false, "was not changed and still works"},
		{"answer cut after Katapult acted", sandbox.Fault{Method: "POST", Path: "/core/v1/api_tokens/", Malformed: true}, true, "regenerate the secret in the Katapult console"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.AddFault(tt.fault)
			var s stager
			_, err := h.conn.RotateRoot(context.Background(), s.stage)
			if err == nil || !strings.Contains(err.Error(), tt.want) || len(s.staged) != 0 {
				t.Fatalf("err = %v, staged %v", err, s.staged)
			}
			if calls := h.srv.Calls()[routeRegenerate]; calls != 1 {
				t.Errorf("regenerate called %d times; it must never be repeated", calls)
			}
			stillWorks := h.conn.Verify(context.Background()) == nil
			if stillWorks == tt.regenerated {
				t.Errorf("old secret works: %v, want %v", stillWorks, !tt.regenerated)
			}
		})
	}
}
