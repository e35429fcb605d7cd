package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// The issue router's system view answers the replication check with a
// made-up state: that is only sound while no operation it routes asks to be
// forwarded.
func TestIssueRouter_NoOperationAsksToBeForwarded(t *testing.T) {
	b := newBackend(defaultRegistry())
	for _, p := range b.issueRouter.Paths {
		for op, handler := range p.Operations {
			props := handler.Properties()
			if props.ForwardPerformanceStandby || props.ForwardPerformanceSecondary {
				t.Errorf("%s %s asks to be forwarded; the issue router would answer the replication check wrongly", op, p.Pattern)
			}
		}
	}
}

// An issue costs no replication-state round trip; the same request through
// the engine's router cost one.
func TestIssueRouter_CredsAskVaultNoReplicationState(t *testing.T) {
	e := newTestEnv(t)
	e.setup(nil)
	sys := e.b.System().(*testSystemView)
	sys.replicationAsks.Store(0)
	e.issue()
	resp := e.mustOK(logical.UpdateOperation, "creds/app", map[string]any{"unknown": "x"})
	if got := sys.replicationAsks.Load(); got != 0 {
		t.Fatalf("two issues asked Vault for the replication state %d times, want 0", got)
	}
	// The framework still handles the request: unknown fields are warned about.
	if !strings.Contains(strings.Join(resp.Warnings, " "), "unknown") {
		t.Fatalf("warnings %q do not name the ignored field", resp.Warnings)
	}
}

// Only the issue operations take the short way: help and the paths that ask
// to be forwarded still go through the engine's router and its check.
func TestIssueRouter_OtherRequestsKeepTheReplicationCheck(t *testing.T) {
	e := newTestEnv(t)
	e.setup(nil)
	sys := e.b.System().(*testSystemView)
	sys.replicationAsks.Store(0)
	e.mustOK(logical.UpdateOperation, "config/main", e.storydenConfig(nil))
	if sys.replicationAsks.Load() == 0 {
		t.Fatal("a config write skipped the framework's forwarding check")
	}
	help := e.mustOK(logical.HelpOperation, "creds/app", nil)
	if help.Data["help"] == nil {
		t.Fatalf("help of creds/ answered %#v", help.Data)
	}
	if _, err := e.request(logical.DeleteOperation, "creds/app", nil); err != logical.ErrUnsupportedOperation {
		t.Fatalf("delete of creds/app: %v, want %v", err, logical.ErrUnsupportedOperation)
	}
}
