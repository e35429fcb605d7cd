// Command floorplugin is the smallest external secrets plugin the SDK makes:
// `make bench` mounts it beside the engine to measure the floor any
// external plugin pays, against which the engine's ratios are read. It
// answers from memory and never calls back into Vault:
//
//	plain  a read answered with data, no lease
//	lease  a read answered with a lease (Vault registers it; revoke is a no-op)
//
// Its paths use framework Operations, as the engine's do, so it pays the
// framework's own per-request callback (ReplicationState) as they do.
package main

import (
	"context"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

// secretType is the type of the leases the "lease" path returns.
const secretType = "floor"

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{BackendType: logical.TypeLogical, RunningVersion: "v0.0.0-floor"}
	b.Secrets = []*framework.Secret{{
		Type: secretType,
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
		Renew: func(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
			return &logical.Response{Secret: req.Secret}, nil
		},
	}}
	b.Paths = []*framework.Path{
		{Pattern: "plain", Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				return &logical.Response{Data: map[string]any{"value": "floor"}}, nil
			}},
		}},
		{Pattern: "lease", Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				resp := b.Secret(secretType).Response(map[string]any{"value": "floor"}, nil)
				resp.Secret.TTL, resp.Secret.MaxTTL = time.Hour, time.Hour
				return resp, nil
			}},
		}},
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("floor plugin shutting down", "error", err)
	os.Exit(1)
}
