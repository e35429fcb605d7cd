package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/automatedrotationutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	adminHandle   = "vault-admin"
	adminPassword = "unit-test-admin-password"
	memberHandle  = "member"
	memberPass    = "unit-test-member-password"
)

// testEnv is one backend with in-memory storage and a Storyden emulator.
type testEnv struct {
	t        *testing.T
	b        *backend
	storage  *logical.InmemStorage
	upstream *sandbox.Server
	// logs collects every log line the backend writes, at trace level, so
	// tests can prove no secret is ever logged.
	logs *testutil.LogBuffer
	// events records what the backend sends to Vault's event bus.
	events *eventRecorder
}

// eventRecorder stands for Vault's event bus, or with unimplemented set
// for OpenBao's plugin host, which has no events service.
type eventRecorder struct {
	mu            sync.Mutex
	events        []recordedEvent
	unimplemented bool
}

type recordedEvent struct {
	eventType string
	metadata  map[string]any
}

func (r *eventRecorder) SendEvent(_ context.Context, eventType logical.EventType, ev *logical.EventData) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unimplemented {
		return status.Error(codes.Unimplemented, "unknown service pb.Events")
	}
	r.events = append(r.events, recordedEvent{string(eventType), ev.Metadata.AsMap()})
	return nil
}

func (r *eventRecorder) of(eventType string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, ev := range r.events {
		if ev.eventType == eventType {
			out = append(out, ev.metadata)
		}
	}
	return out
}

func newTestEnv(t *testing.T, opts ...func(*storydenemu.Options)) *testEnv {
	t.Helper()
	emuOpts := storydenemu.Options{Accounts: []storydenemu.Account{
		{Handle: adminHandle, Password: adminPassword, Admin: true},
		{Handle: memberHandle, Password: memberPass},
	}}
	for _, o := range opts {
		o(&emuOpts)
	}
	srv := testutil.StartEmulator(t, storydenemu.New(emuOpts))

	logs := &testutil.LogBuffer{}
	config := logical.TestBackendConfig()
	storage := &logical.InmemStorage{}
	config.StorageView = storage
	// JSON, as sdk/plugin.Serve makes a plugin log to Vault.
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs, JSONFormat: true})
	events := &eventRecorder{}
	config.EventsSender = events
	config.System = &testSystemView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
	b := newBackend(defaultRegistry())
	b.httpClient = &http.Client{Timeout: 5 * time.Second}
	if err := b.Setup(context.Background(), config); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	env := &testEnv{t: t, b: b, storage: storage, upstream: srv, logs: logs, events: events}
	t.Cleanup(env.assertNoSecretsLogged)
	return env
}

// testSystemView answers rotation-manager calls as Vault Community does,
// unless enterprise is set: then it accepts and records registrations; or
// openBao: then it answers each with gRPC Unimplemented, as OpenBao's plugin
// host does, and counts them in unimplemented.
type testSystemView struct {
	logical.StaticSystemView
	enterprise    bool
	openBao       bool
	mu            sync.Mutex
	registered    map[string]*rotation.RotationJobConfigureRequest
	unimplemented map[string]int
	// ttlAsks counts MaxLeaseTTL and DefaultLeaseTTL calls (under mu).
	ttlAsks int
	// holdMax, when set (under mu), runs before MaxLeaseTTL answers.
	holdMax func()
	// replicationAsks counts ReplicationState calls: round trips to Vault
	// when the engine runs as a plugin.
	replicationAsks atomic.Int64
}

// MaxLeaseTTL answers as Vault does for the mount; tests tune it with
// setMountMax. holdMax runs between the read and the answer, as if the
// answer were still on its way.
func (s *testSystemView) MaxLeaseTTL() time.Duration {
	s.mu.Lock()
	s.ttlAsks++
	max, hold := s.MaxLeaseTTLVal, s.holdMax
	s.mu.Unlock()
	if hold != nil {
		hold()
	}
	return max
}

// DefaultLeaseTTL answers as Vault does for the mount.
func (s *testSystemView) DefaultLeaseTTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttlAsks++
	return s.DefaultLeaseTTLVal
}

// setMountMax tunes the mount's max_lease_ttl; issues under way may see
// either value, as under Vault.
func (s *testSystemView) setMountMax(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.MaxLeaseTTLVal = d
}

// holdMaxWith makes MaxLeaseTTL run hold before it answers.
func (s *testSystemView) holdMaxWith(hold func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdMax = hold
}

// takeTTLAsks returns the TTL questions asked since the last call.
func (s *testSystemView) takeTTLAsks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.ttlAsks
	s.ttlAsks = 0
	return n
}

func (s *testSystemView) ReplicationState() consts.ReplicationState {
	s.replicationAsks.Add(1)
	return s.StaticSystemView.ReplicationState()
}

// answerUnimplemented reports whether the call is one OpenBao does not know.
func (s *testSystemView) answerUnimplemented(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.openBao {
		return nil
	}
	if s.unimplemented == nil {
		s.unimplemented = map[string]int{}
	}
	s.unimplemented[method]++
	return status.Errorf(codes.Unimplemented, "unknown method %s for service pb.SystemView", method)
}

func (s *testSystemView) RegisterRotationJob(_ context.Context, req *rotation.RotationJobConfigureRequest) (string, error) {
	if err := s.answerUnimplemented("RegisterRotationJob"); err != nil {
		return "", err
	}
	if !s.enterprise {
		return "", automatedrotationutil.ErrRotationManagerUnsupported
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered == nil {
		s.registered = map[string]*rotation.RotationJobConfigureRequest{}
	}
	s.registered[req.ReqPath] = req
	return "rotation-id", nil
}

func (s *testSystemView) DeregisterRotationJob(_ context.Context, req *rotation.RotationJobDeregisterRequest) error {
	if err := s.answerUnimplemented("DeregisterRotationJob"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.registered, req.ReqPath)
	return nil
}

func (s *testSystemView) GetRotationInformation(_ context.Context, req *rotation.RotationInfoRequest) (*rotation.RotationInfoResponse, error) {
	if err := s.answerUnimplemented("GetRotationInformation"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.registered[req.ReqPath]
	if !s.enterprise || !ok {
		return nil, automatedrotationutil.ErrRotationManagerUnsupported
	}
	next := time.Now().Add(job.RotationPeriod)
	return &rotation.RotationInfoResponse{NextVaultRotation: next, TTL: int64(job.RotationPeriod.Seconds())}, nil
}

func (e *testEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	return e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage, MountPoint: "apikeys/"})
}

// mustOK fails the test unless the request succeeded without an error response.
func (e *testEnv) mustOK(op logical.Operation, path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("%s %s: err=%v resp=%v", op, path, err, respError(resp))
	}
	return resp
}

// mustBadRequest fails the test unless the request got a 400 whose message contains want.
func (e *testEnv) mustBadRequest(op logical.Operation, path string, data map[string]any, want string) {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if err != nil {
		e.t.Fatalf("%s %s: want a 400 response, got error %v", op, path, err)
	}
	if resp == nil || !resp.IsError() {
		e.t.Fatalf("%s %s: want a 400 response, got %#v", op, path, resp)
	}
	if msg := respError(resp); !strings.Contains(msg, want) {
		e.t.Fatalf("%s %s: error %q does not contain %q", op, path, msg, want)
	}
}

func respError(resp *logical.Response) string {
	if resp == nil || resp.Data == nil {
		return ""
	}
	msg, _ := resp.Data["error"].(string)
	return msg
}

func (e *testEnv) storydenConfig(extra map[string]any) map[string]any {
	data := map[string]any{
		"provider": "storyden",
		"base_url": e.upstream.URL(),
		// The emulator serves plain HTTP on loopback.
		"allow_http": true,
		"username":   adminHandle,
		"password":   adminPassword,
	}
	for k, v := range extra {
		data[k] = v
	}
	return data
}

// setup writes connection "main" and role "app".
func (e *testEnv) setup(roleExtra map[string]any) {
	e.t.Helper()
	e.mustOK(logical.CreateOperation, "config/main", e.storydenConfig(nil))
	role := map[string]any{"connection": "main", "ttl": "10m", "max_ttl": "1h"}
	for k, v := range roleExtra {
		role[k] = v
	}
	e.mustOK(logical.CreateOperation, "roles/app", role)
}

// issue reads creds/app and returns the response.
func (e *testEnv) issue() *logical.Response {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "creds/app", nil)
	if resp == nil || resp.Secret == nil {
		e.t.Fatalf("creds/app returned no secret: %#v", resp)
	}
	return resp
}

func (e *testEnv) revoke(resp *logical.Response) error {
	e.t.Helper()
	r, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: e.storage,
		Secret: roundTrip(e.t, resp.Secret), Data: resp.Data,
	})
	if err == nil && r != nil && r.IsError() {
		return r.Error()
	}
	return err
}

func (e *testEnv) renew(resp *logical.Response, issued time.Time, increment time.Duration) (*logical.Response, error) {
	e.t.Helper()
	secret := roundTrip(e.t, resp.Secret)
	secret.IssueTime = issued
	secret.Increment = increment
	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation, Storage: e.storage, Secret: secret, Data: resp.Data,
	})
}

// roundTrip passes internal data through JSON as Vault's lease store does.
func roundTrip(t *testing.T, s *logical.Secret) *logical.Secret {
	t.Helper()
	entry, err := logical.StorageEntryJSON("x", s.InternalData)
	if err != nil {
		t.Fatal(err)
	}
	var internal map[string]any
	if err := entry.DecodeJSON(&internal); err != nil {
		t.Fatal(err)
	}
	copied := *s
	copied.InternalData = internal
	return &copied
}

// keyWorks reports whether an issued access key authenticates at Storyden.
func (e *testEnv) keyWorks(key string) bool {
	e.t.Helper()
	status, err := storydenemu.ProbeKey(e.upstream.URL(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return status == http.StatusOK
}

// signInStatus tries a password at Storyden directly.
func (e *testEnv) signInStatus(handle, password string) int {
	e.t.Helper()
	status, _, err := storydenemu.ProbeSignIn(e.upstream.URL(), handle, password)
	if err != nil {
		e.t.Fatal(err)
	}
	return status
}

func (e *testEnv) liveKeys() []sandbox.Object {
	var live []sandbox.Object
	for _, o := range e.upstream.Objects() {
		if o.Live {
			live = append(live, o)
		}
	}
	return live
}

// walCount is the issues on record as in flight: WAL entries (written by
// older versions) and pending inventory entries.
func (e *testEnv) walCount() int {
	e.t.Helper()
	n, err := inFlightRecords(context.Background(), e.storage)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// inFlightRecords counts the WAL entries and pending inventory entries in s.
func inFlightRecords(ctx context.Context, s logical.Storage) (int, error) {
	keys, err := s.List(ctx, "wal/")
	if err != nil {
		return 0, err
	}
	pending, err := scanPending(ctx, s)
	return len(keys) + len(pending), err
}

func (e *testEnv) storedPassword(name string) string {
	e.t.Helper()
	entry, err := getConnection(context.Background(), e.storage, name)
	if err != nil || entry == nil {
		e.t.Fatalf("connection %s: %v", name, err)
	}
	return entry.Values.String("password")
}

// assertNoSecretsLogged checks every log line against the passwords the test
// used and any sdpak_ key.
func (e *testEnv) assertNoSecretsLogged() {
	logs := e.logs.String()
	for _, secret := range []string{adminPassword, memberPass, "sdpak_"} {
		if strings.Contains(logs, secret) {
			e.t.Errorf("a secret (%.6s…) appears in the logs", secret)
		}
	}
	for _, pw := range e.rotatedPasswords() {
		if strings.Contains(logs, pw) {
			e.t.Errorf("a rotated password appears in the logs")
		}
	}
}

func (e *testEnv) rotatedPasswords() []string {
	names, _ := e.storage.List(context.Background(), configStoragePrefix)
	var out []string
	for _, n := range names {
		if entry, _ := getConnection(context.Background(), e.storage, n); entry != nil && entry.Values.String("password") != "" {
			out = append(out, entry.Values.String("password"))
		}
	}
	return out
}

// errInjectedStorage is the failure inventoryFaultStorage injects.
var errInjectedStorage = errors.New("injected storage failure")

// inventoryFaultStorage fails every write (put or delete) under inventory/
// while armed, and lets everything else through: the inventory write alone
// fails, as a storage backend that refuses a write now and then does.
type inventoryFaultStorage struct {
	logical.Storage
	armed atomic.Bool
	// hits counts the writes it failed.
	hits atomic.Int64
}

// fail arms or disarms the fault and returns the writes failed so far.
func (s *inventoryFaultStorage) fail(on bool) int64 {
	s.armed.Store(on)
	return s.hits.Load()
}

func (s *inventoryFaultStorage) faulted(key string) bool {
	if s.armed.Load() && strings.HasPrefix(key, inventoryStoragePrefix) {
		s.hits.Add(1)
		return true
	}
	return false
}

// Put implements logical.Storage.
func (s *inventoryFaultStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if s.faulted(e.Key) {
		return errInjectedStorage
	}
	return s.Storage.Put(ctx, e)
}

// Delete implements logical.Storage.
func (s *inventoryFaultStorage) Delete(ctx context.Context, key string) error {
	if s.faulted(key) {
		return errInjectedStorage
	}
	return s.Storage.Delete(ctx, key)
}

// passInventoryTime moves every recorded lease end and creation time of a
// connection's inventory back by d, as if d had passed before the next tidy.
func passInventoryTime(t *testing.T, s logical.Storage, connection string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	entries, err := listInventory(ctx, s, connection)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		entry.LeaseExpiresAt, entry.CreatedAt = entry.LeaseExpiresAt.Add(-d), entry.CreatedAt.Add(-d)
		if err := putInventory(ctx, s, connection, entry); err != nil {
			t.Fatal(err)
		}
	}
}

// putLegacyWAL writes a WAL entry as schema 2 issues did before the pending
// inventory entry replaced it.
func putLegacyWAL(ctx context.Context, s logical.Storage, entry walIssue) (string, error) {
	entry.SchemaVersion = 2
	return framework.PutWAL(ctx, s, walKindIssue, entry)
}
