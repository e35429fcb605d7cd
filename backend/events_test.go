package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestEvents_IssueRevokeAndRotate(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	if err := env.revoke(resp); err != nil {
		t.Fatal(err)
	}
	env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)
	name := env.leaseName(resp)
	for eventType, want := range map[string]map[string]any{
		eventCredsCreate: {"connection": "main", "provider": "storyden", "role": "app", "object": name},
		eventCredsRevoke: {"connection": "main", "provider": "storyden", "role": "app", "object": name},
		eventRotateRoot:  {"connection": "main", "provider": "storyden"},
	} {
		got := env.events.of(eventType)
		if len(got) != 1 {
			t.Fatalf("%s sent %d times", eventType, len(got))
		}
		for k, v := range want {
			if got[0][k] != v {
				t.Errorf("%s %s = %v, want %v", eventType, k, got[0][k], v)
			}
		}
	}
}
