package backend

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// OpenBao's plugin host answers the rotation-manager calls and the events
// service with gRPC Unimplemented: the plugin keeps the schedule itself, as
// on Vault Community, and drops each event with a debug line.
func TestOpenBao_UnimplementedCallsFallBack(t *testing.T) {
	env := newTestEnv(t)
	sys := env.b.System().(*testSystemView)
	sys.openBao = true
	env.events.unimplemented = true
	clock := env.withClock()

	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{"rotation_period": "1m"}))
	env.mustOK(logical.CreateOperation, "roles/app", map[string]any{"connection": "main"})
	read := env.mustOK(logical.ReadOperation, "config/main", nil)
	if read.Data["next_vault_rotation"] != "2026-11-22T12:01:00Z" {
		t.Fatalf("the plugin does not keep the schedule itself: next_vault_rotation=%v", read.Data["next_vault_rotation"])
	}
	if err := env.revoke(env.issue()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(61 * time.Second)
	if err := env.tick(); err != nil || env.passwordChanges() != 1 {
		t.Fatalf("the self-kept schedule did not rotate: %v, %d changes", err, env.passwordChanges())
	}
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": 0})
	if read := env.mustOK(logical.ReadOperation, "config/main", nil); read.Data["next_vault_rotation"] != nil {
		t.Fatalf("switching the schedule off failed: next_vault_rotation=%v", read.Data["next_vault_rotation"])
	}
	// A self-kept schedule has no job to remove; deleting the connection
	// still asks the rotation manager to forget it.
	env.mustOK(logical.DeleteOperation, "config/main", nil)

	for _, method := range []string{"RegisterRotationJob", "DeregisterRotationJob"} {
		if sys.unimplemented[method] == 0 {
			t.Errorf("%s was never asked, so its fallback is not proven", method)
		}
	}
	// Issue and revoke send theirs after the response, so they may come
	// before or after rotate-root's; Cleanup flushes them.
	env.b.Cleanup(context.Background())
	dropped := env.logLines("could not send event")
	var types []string
	for _, line := range dropped {
		if line["@level"] != "debug" || !strings.Contains(line["error"].(string), "Unimplemented") {
			t.Errorf("a dropped event is logged as %v", line)
		}
		types = append(types, line["event"].(string))
	}
	slices.Sort(types)
	if want := []string{eventCredsCreate, eventCredsRevoke, eventRotateRoot}; !slices.Equal(types, want) {
		t.Errorf("dropped events logged: %v, want one line each for %v", types, want)
	}
}
