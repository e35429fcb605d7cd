// Command floorplugin is the smallest external secrets plugin the SDK makes:
// `make bench` mounts it beside the engine to measure the floor any
// external plugin pays, against which the engine's ratios are read. It
// answers from memory and never calls back into Vault:
//
//	plain  a read answered with data, no lease
//	lease  a read answered with a lease (Vault registers it; revoke is a no-op)
//	issue  the lease after the callbacks a credential with one upstream
//	       object cannot do without, and nothing else: a storage write
//	       before the create with the mount's maximum TTL asked alongside
//	       it, a storage write after it, and an event sent after answering
//	upstream
//	       issue with its create: one HTTP exchange through net/http with
//	       the loopback server the bench names in the plugin's registered
//	       environment (APIKEYS_BENCH_FLOOR_UPSTREAM), whose answer is
//	       decoded for its secret: the floor of a credential like Storyden's
//
// plain and lease use framework Operations, so each pays the framework's own
// per-request callback (ReplicationState); issue is routed through the
// legacy Callbacks, which skip it, as the engine's creds path does
// (backend/issuerouter.go). The process runs with the engine's runtime
// settings (internal/pluginruntime: its garbage collector and GOMAXPROCS), so
// that the engine is compared with the floor by its code alone.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/pluginruntime"
)

// secretType is the type of the leases the "lease" path returns.
const secretType = "floor"

func main() {
	pluginruntime.Tune()
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
	for pattern, create := range map[string]func(context.Context) (string, error){"issue": nil, "upstream": createUpstream} {
		b.Paths = append(b.Paths, &framework.Path{Pattern: pattern,
			//lint:ignore SA1019 the one router of the SDK without a replication-state round trip per request, as the engine's creds path
			Callbacks: map[logical.Operation]framework.OperationFunc{
				logical.ReadOperation: func(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
					return issue(ctx, b, req, create)
				},
			}})
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// record stands for an inventory entry: about the size of the engine's.
var record = []byte(`{"schema_version":3,"name":"vault-app-abcdefghijklmnop","role":"app","provider":"floor","state":"pending","created_at":"2026-12-02T00:00:00Z","role_values":{"name_prefix":"vault"}}`)

// upstreamURL is where createUpstream sends its request.
var upstreamURL = os.Getenv("APIKEYS_BENCH_FLOOR_UPSTREAM")

// upstreamClient keeps a connection per concurrent issue, as the engine's
// clients do.
var upstreamClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}()

// createBody is about the size of the engine's Storyden create request.
var createBody = []byte(`{"name":"vault-app-abcdefghijklmnop","expires_at":"2026-12-02T01:00:00Z"}`)

// createUpstream is one create upstream: the request, and the answer read
// for its secret.
func createUpstream(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, upstreamURL, bytes.NewReader(createBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := upstreamClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var created struct {
		Secret string `json:"secret"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upstream answered %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil {
		return "", err
	}
	return created.Secret, nil
}

// issue answers a lease after the callbacks of a credential, and create
// (when set) between the two storage writes.
func issue(ctx context.Context, b *framework.Backend, req *logical.Request, create func(context.Context) (string, error)) (*logical.Response, error) {
	maxTTL := make(chan time.Duration, 1)
	go func() { maxTTL <- b.System().MaxLeaseTTL() }()
	if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "pending", Value: record}); err != nil {
		return nil, err
	}
	value := "floor"
	if create != nil {
		secret, err := create(ctx)
		if err != nil {
			return nil, err
		}
		value = secret
	}
	ttl := min(<-maxTTL, time.Hour)
	if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "live", Value: record}); err != nil {
		return nil, err
	}
	go func() {
		_ = logical.SendEvent(context.Background(), b, "floor/issue", "connection", "main", "provider", "floor", "role", "app", "object", "vault-app-abcdefghijklmnop")
	}()
	resp := b.Secret(secretType).Response(map[string]any{"value": value}, nil)
	resp.Secret.TTL, resp.Secret.MaxTTL = ttl, ttl
	return resp, nil
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("floor plugin shutting down", "error", err)
	os.Exit(1)
}
