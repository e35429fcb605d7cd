package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// clusterView is one cluster's storage under performance replication: keys
// under the backend's LocalStorage prefixes live in the cluster's own
// storage, the rest in the replicated storage, which only the primary may
// write. standby makes every write fail, as on a performance standby.
type clusterView struct {
	replicated, local logical.Storage
	localPrefixes     []string
	secondary         bool
	standby           bool
}

func (c *clusterView) route(key string) (logical.Storage, bool) {
	for _, p := range c.localPrefixes {
		if strings.HasPrefix(key, p) {
			return c.local, !c.standby
		}
	}
	return c.replicated, !c.standby && !c.secondary
}

func (c *clusterView) List(ctx context.Context, prefix string) ([]string, error) {
	s, _ := c.route(prefix)
	return s.List(ctx, prefix)
}

func (c *clusterView) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s, _ := c.route(key)
	return s.Get(ctx, key)
}

func (c *clusterView) Put(ctx context.Context, e *logical.StorageEntry) error {
	s, writable := c.route(e.Key)
	if !writable {
		return logical.ErrReadOnly
	}
	return s.Put(ctx, e)
}

func (c *clusterView) Delete(ctx context.Context, key string) error {
	s, writable := c.route(key)
	if !writable {
		return logical.ErrReadOnly
	}
	return s.Delete(ctx, key)
}

// otherCluster is a second backend on the same replicated storage and
// upstream, with storage of its own for its local paths.
func (e *testEnv) otherCluster(state consts.ReplicationState, standby bool) (*backend, *clusterView) {
	e.t.Helper()
	b := newBackend(defaultRegistry())
	view := &clusterView{replicated: e.storage, local: &logical.InmemStorage{}, localPrefixes: b.PathsSpecial.LocalStorage,
		secondary: state.HasState(consts.ReplicationPerformanceSecondary), standby: standby}
	config := logical.TestBackendConfig()
	config.StorageView = view
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	config.System = &testSystemView{StaticSystemView: logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour, ReplicationStateVal: state,
	}}
	b.httpClient = &http.Client{Timeout: 5 * time.Second}
	if err := b.Setup(context.Background(), config); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, view
}

func handle(b *backend, s logical.Storage, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: s, MountPoint: "apikeys/"})
}

// TestPerformanceSecondaryIssuesAndTidiesOnlyItsOwn: a performance
// secondary issues, renews and revokes with its own local storage, and tidy
// on either cluster never deletes the other's live credentials.
func TestPerformanceSecondaryIssuesAndTidiesOnlyItsOwn(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	primaryKey := env.issue()
	secondary, view := env.otherCluster(consts.ReplicationPerformanceSecondary, false)

	resp, err := handle(secondary, view, logical.ReadOperation, "creds/app", nil)
	if err != nil || resp == nil || resp.IsError() || resp.Secret == nil {
		t.Fatalf("issue on a performance secondary: %v %v", resp, err)
	}
	secondaryKey := resp.Data["access_key"].(string)
	if !env.keyWorks(secondaryKey) {
		t.Fatal("the secondary's key does not work upstream")
	}
	if names, _ := view.local.List(context.Background(), inventoryStoragePrefix+"main/"); len(names) != 1 {
		t.Fatalf("the secondary's inventory holds %v", names)
	}

	// Tidy with no safety buffer deletes every unknown object it claims.
	for _, c := range []struct {
		name string
		b    *backend
		s    logical.Storage
	}{{"primary", env.b, env.storage}, {"secondary", secondary, view}} {
		report, err := handle(c.b, c.s, logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
		if err != nil || report.IsError() {
			t.Fatalf("tidy on the %s: %v %v", c.name, report, err)
		}
		if deleted := namesOf(report.Data["deleted"]); len(deleted) != 0 {
			t.Fatalf("tidy on the %s deleted %v", c.name, deleted)
		}
		if foreign := namesOf(report.Data["foreign_upstream"]); len(foreign) != 1 {
			t.Errorf("tidy on the %s does not report the other cluster's key as foreign: %v", c.name, foreign)
		}
	}
	if !env.keyWorks(secondaryKey) || !env.keyWorks(primaryKey.Data["access_key"].(string)) {
		t.Fatal("tidy deleted another cluster's live credential")
	}

	resp.Secret = roundTrip(t, resp.Secret)
	resp.Secret.IssueTime = time.Now()
	if renewed, err := secondary.HandleRequest(context.Background(), &logical.Request{Operation: logical.RenewOperation, Storage: view, Secret: resp.Secret, Data: resp.Data}); err != nil || renewed.IsError() {
		t.Fatalf("renew on the secondary: %v %v", renewed, err)
	}
	if revoked, err := secondary.HandleRequest(context.Background(), &logical.Request{Operation: logical.RevokeOperation, Storage: view, Secret: resp.Secret, Data: resp.Data}); err != nil || (revoked != nil && revoked.IsError()) {
		t.Fatalf("revoke on the secondary: %v %v", revoked, err)
	}
	if env.keyWorks(secondaryKey) {
		t.Fatal("the secondary's revoke left its key live")
	}
}

// TestPerformanceStandbyForwardsBeforeCreating: where nothing may be written
// (a performance standby), issuing fails with exactly logical.ErrReadOnly,
// which makes Vault forward the request, and creates nothing upstream.
func TestPerformanceStandbyForwardsBeforeCreating(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	for _, clusterTagStored := range []bool{false, true} {
		if clusterTagStored {
			env.issue()
		}
		standby, view := env.otherCluster(consts.ReplicationPerformanceStandby, true)
		view.local = env.storage
		before := len(env.liveKeys())
		resp, err := handle(standby, view, logical.ReadOperation, "creds/app", nil)
		if err == nil || err.Error() != logical.ErrReadOnly.Error() || !errors.Is(err, logical.ErrReadOnly) {
			t.Fatalf("cluster tag stored=%v: want exactly %v, got %v %v", clusterTagStored, logical.ErrReadOnly, resp, err)
		}
		if after := len(env.liveKeys()); after != before {
			t.Fatalf("cluster tag stored=%v: %d keys were created upstream before the read-only error", clusterTagStored, after-before)
		}
	}
}
