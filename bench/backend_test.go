// Package bench holds Go benchmarks of the engine in process, for profiling
// what `make bench` (bench/cmd/bench) measures through a real Vault, whose
// plugin process cannot easily be profiled:
//
//	go test ./bench -run '^$' -bench . -benchmem -cpuprofile cpu.out
//	go tool pprof -top bench.test cpu.out
//
// The backend runs on logical.InmemStorage with the sandbox emulators on
// loopback. Storage operations, system-view calls and events are counted
// per credential: under Vault each one is a gRPC round trip from the plugin
// process back to the server.
package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/automatedrotationutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// countingStorage counts what the engine asks of Vault's storage.
type countingStorage struct {
	logical.Storage
	gets, puts, deletes, lists atomic.Int64
}

func (s *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	return s.Storage.Get(ctx, key)
}

func (s *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.puts.Add(1)
	return s.Storage.Put(ctx, e)
}

func (s *countingStorage) Delete(ctx context.Context, key string) error {
	s.deletes.Add(1)
	return s.Storage.Delete(ctx, key)
}

func (s *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	s.lists.Add(1)
	return s.Storage.List(ctx, prefix)
}

func (s *countingStorage) reset() {
	s.gets.Store(0)
	s.puts.Store(0)
	s.deletes.Store(0)
	s.lists.Store(0)
}

// countingSystem counts the system-view calls an issue makes (each is a
// gRPC call to Vault when the engine runs as a plugin).
type countingSystem struct {
	logical.SystemView
	calls atomic.Int64
}

func (s *countingSystem) DefaultLeaseTTL() time.Duration {
	s.calls.Add(1)
	return s.SystemView.DefaultLeaseTTL()
}

func (s *countingSystem) MaxLeaseTTL() time.Duration {
	s.calls.Add(1)
	return s.SystemView.MaxLeaseTTL()
}

func (s *countingSystem) ReplicationState() consts.ReplicationState {
	s.calls.Add(1)
	return s.SystemView.ReplicationState()
}

// DeregisterRotationJob answers as Vault Community does: there is no
// rotation manager, so nothing was registered.
func (s *countingSystem) DeregisterRotationJob(context.Context, *rotation.RotationJobDeregisterRequest) error {
	return nil
}

func (s *countingSystem) RegisterRotationJob(context.Context, *rotation.RotationJobConfigureRequest) (string, error) {
	return "", automatedrotationutil.ErrRotationManagerUnsupported
}

func (s *countingSystem) GetRotationInformation(context.Context, *rotation.RotationInfoRequest) (*rotation.RotationInfoResponse, error) {
	return nil, automatedrotationutil.ErrRotationManagerUnsupported
}

// countingEvents stands for Vault's event bus.
type countingEvents struct{ sent atomic.Int64 }

func (e *countingEvents) SendEvent(context.Context, logical.EventType, *logical.EventData) error {
	e.sent.Add(1)
	return nil
}

type env struct {
	b       logical.Backend
	storage *countingStorage
	sys     *countingSystem
	events  *countingEvents
}

func newEnv(tb testing.TB, emu sandbox.Emulator, config func(url string) map[string]any) *env {
	tb.Helper()
	srv, err := sandbox.Start(emu, "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	conf := logical.TestBackendConfig()
	e := &env{
		storage: &countingStorage{Storage: &logical.InmemStorage{}},
		sys:     &countingSystem{SystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}},
		events:  &countingEvents{},
	}
	conf.StorageView, conf.System, conf.EventsSender = e.storage, e.sys, e.events
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: hclog.DefaultOutput})
	ctx := context.Background()
	if e.b, err = backend.Factory(ctx, conf); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.b.Cleanup(ctx) })
	e.request(tb, logical.UpdateOperation, "config/main", config(srv.URL()))
	e.request(tb, logical.UpdateOperation, "roles/app", map[string]any{"connection": "main", "ttl": "1h", "max_ttl": "2h"})
	return e
}

func (e *env) request(tb testing.TB, op logical.Operation, path string, data map[string]any) *logical.Response {
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage})
	if err != nil || (resp != nil && resp.IsError()) {
		tb.Fatalf("%s %s: %v %v", op, path, err, resp)
	}
	return resp
}

var providers = map[string]func() (sandbox.Emulator, func(string) map[string]any){
	"storyden": func() (sandbox.Emulator, func(string) map[string]any) {
		emu := storyden.New(storyden.Options{RateLimit: 1 << 30, Accounts: []storyden.Account{{Handle: "bench", Password: "bench-password", Admin: true}}})
		return emu, func(url string) map[string]any {
			return map[string]any{"provider": "storyden", "base_url": url, "allow_http": true, "username": "bench", "password": "bench-password"}
		}
	},
	"dstor": func() (sandbox.Emulator, func(string) map[string]any) {
		key := "benchDstorApiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
		return dstor.New(dstor.Options{APIKeys: []dstor.APIKey{{Key: key}}}), func(url string) map[string]any {
			return map[string]any{"provider": "dstor", "base_url": url + "/v1", "allow_http": true, "api_key": key}
		}
	},
	"storable": func() (sandbox.Emulator, func(string) map[string]any) {
		c := storable.Client{ID: "bench", Secret: "bench-client-secret", APIKey: "benchStorableApiKey0123456789abcdefghijk"}
		return storable.New(storable.Options{Clients: []storable.Client{c}}), func(url string) map[string]any {
			return map[string]any{"provider": "storable", "base_url": url, "allow_http": true, "client_id": c.ID, "client_secret": c.Secret, "api_key": c.APIKey}
		}
	},
}

// BenchmarkCreds issues credentials in process and reports, per credential,
// what under Vault costs a round trip between the plugin and the server.
func BenchmarkCreds(b *testing.B) {
	for _, name := range []string{"storyden", "dstor", "storable"} {
		b.Run(name, func(b *testing.B) {
			emu, config := providers[name]()
			e := newEnv(b, emu, config)
			e.request(b, logical.ReadOperation, "creds/app", nil) // sign in, fetch the token
			e.storage.reset()
			e.sys.calls.Store(0)
			e.events.sent.Store(0)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				e.request(b, logical.ReadOperation, "creds/app", nil)
				n++
			}
			per := func(v int64) float64 { return float64(v) / float64(n) }
			b.ReportMetric(per(e.storage.gets.Load()), "storage-gets/op")
			b.ReportMetric(per(e.storage.puts.Load()+e.storage.deletes.Load()), "storage-writes/op")
			b.ReportMetric(per(e.sys.calls.Load()), "sysview-calls/op")
			b.ReportMetric(per(e.events.sent.Load()), "events/op")
		})
	}
}

// BenchmarkRoleRead is the cheapest plugin request: one storage read.
func BenchmarkRoleRead(b *testing.B) {
	emu, config := providers["storable"]()
	e := newEnv(b, emu, config)
	b.ReportAllocs()
	for b.Loop() {
		e.request(b, logical.ReadOperation, "roles/app", nil)
	}
}
