package backend

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// The framework asks Vault for the replication state on every request it
// routes through a path's Operations, before looking at whether the
// operation asks to be forwarded (ForwardPerformanceStandby,
// ForwardPerformanceSecondary). For an external plugin that is a gRPC round
// trip to Vault, and for an operation that asks for neither it is thrown
// away. The issue router serves creds/ with the same framework (field
// checks, warnings, response handling) without that round trip: its system
// view answers the question itself, which is safe because none of its
// operations asks to be forwarded (TestIssueRouter_NoOperationAsksToBeForwarded).
// Everything else, help and OpenAPI of creds/ included, goes through the
// engine's own router, and the engine's handlers ask Vault as before.

// newIssueRouter routes the engine's issue operations.
func (b *backend) newIssueRouter() *framework.Backend {
	return &framework.Backend{BackendType: logical.TypeLogical, Paths: b.pathCreds()}
}

// routesToIssue reports whether the issue router serves req.
func routesToIssue(req *logical.Request) bool {
	return (req.Operation == logical.ReadOperation || req.Operation == logical.UpdateOperation) &&
		strings.HasPrefix(req.Path, credsPathPrefix)
}

// Setup sets up both routers; the issue router's system view answers the
// framework's replication check without asking Vault.
func (b *backend) Setup(ctx context.Context, conf *logical.BackendConfig) error {
	if err := b.Backend.Setup(ctx, conf); err != nil {
		return err
	}
	issueConf := *conf
	issueConf.System = unforwardedView{conf.System}
	return b.issueRouter.Setup(ctx, &issueConf)
}

// unforwardedView is the issue router's system view.
type unforwardedView struct{ logical.SystemView }

// ReplicationState answers the framework's check of whether to forward an
// operation that never asks to be forwarded: any answer gives the same
// result, so none is asked of Vault.
func (unforwardedView) ReplicationState() consts.ReplicationState { return consts.ReplicationUnknown }
