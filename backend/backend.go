// Package backend is the Vault secrets engine: paths, validation, TTLs, WAL
// and lease data. Everything upstream-specific lives in a provider package
// behind provider.Provider; registry.go lists them.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Version is the plugin's version, set at build time with
// -ldflags "-X github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend.Version=vX.Y.Z".
var Version = "v0.0.0-dev"

// operationPrefix names every OpenAPI operation of this engine.
const operationPrefix = "apikeys"

// defaultWALRollbackMinAge is well above the slowest issue (Vault cuts
// requests at 90 s), so a rollback never races a create that is still running.
const defaultWALRollbackMinAge = 10 * time.Minute

// walRollbackMinAgeEnv overrides it, for tests that crash Vault on purpose
// (vault plugin register -env APIKEYS_WAL_ROLLBACK_MIN_AGE=5s). It must be a
// Go duration of a second or more; anything else is ignored.
const walRollbackMinAgeEnv = "APIKEYS_WAL_ROLLBACK_MIN_AGE"

func walRollbackMinAge() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(walRollbackMinAgeEnv)); err == nil && d >= time.Second {
		return d
	}
	return defaultWALRollbackMinAge
}

// requestBudget bounds the upstream work of one request. Vault cancels a
// request after 90 s by default, but the plugin's context often carries no
// deadline; with this one, providers can tell in advance when a wait (a
// rate-limit window, a provisioning retry) would overrun and fail clearly.
const requestBudget = 80 * time.Second

// withRequestBudget gives ctx a deadline of requestBudget unless it already
// has an earlier one.
func withRequestBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < requestBudget {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestBudget)
}

const backendHelp = `
The apikeys secrets engine keeps the root credential of a third-party API in
Vault and issues short-lived, leased credentials from it. Each lease's
credential is deleted upstream when the lease ends.

Write a connection to config/NAME, a role to roles/NAME, then read
creds/ROLE. rotate-root/NAME replaces a connection's root credential upstream.
`

// backend is the engine.
type backend struct {
	*framework.Backend
	// issueRouter serves creds/; see issuerouter.go.
	issueRouter *framework.Backend

	providers *registry
	conns     *connectionCache
	// entries caches decoded roles and connections; see entrycache.go.
	entries *entryCache
	// entryLocks serialize the writers of one stored entry: every write of a
	// connection (config writes and deletes, root rotations, pending-root
	// recovery, schedule state) and the rotations of a static role. Issues
	// and revokes only read, and never wait for them.
	entryLocks []*locksutil.LockEntry
	// connLockContended, when set, is called by a connection writer that
	// found the connection's lock held, before it waits; tests use it to
	// force interleavings.
	connLockContended func(name string)
	// httpClient is the template of every connection's HTTP client: its
	// Timeout bounds one exchange. It has no Transport: each connection's
	// is built from its transport settings. Tests swap the template, and
	// set a Transport on it to stand in for the network.
	httpClient *http.Client
	// now is the clock of the rotation schedule; tests move it.
	now func() time.Time
	// periodicBudget bounds one tick of the periodic function, and
	// itemBudget its work on one connection or static role; tests shrink
	// them. See periodic.
	periodicBudget, itemBudget time.Duration
	// recoveries backs off pending-root recoveries that failed.
	recoveries *backoffs
	// mountTTLs keeps the mount's lease TTLs Vault last answered; see leasettls.go.
	mountTTLs lastMountTTLs
	// cluster caches this cluster's tag; see cluster.go.
	cluster clusterTagCache
	// live counts the live credentials of each connection for the caps of
	// max_live_credentials; see livecap.go.
	live *liveCounts
	// metrics counts operations and upstream calls; see metrics.go.
	metrics *metrics
	// pending knows this node's issues in flight; see pending.go.
	pending *pendingIndex
	// events sends events and debug lines after the response; see events.go.
	events *eventQueue
}

// Factory returns a new, set-up instance of the engine.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(defaultRegistry())
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend(providers *registry) *backend {
	b := &backend{
		providers:  providers,
		conns:      newConnectionCache(),
		entries:    newEntryCache(),
		entryLocks: locksutil.CreateLocks(),
		httpClient: &http.Client{Timeout: provider.DefaultRequestTimeout},
		now:        time.Now,

		periodicBudget: defaultPeriodicBudget,
		itemBudget:     defaultItemBudget,
		recoveries:     newBackoffs(),
		live:           newLiveCounts(),
		metrics:        newMetrics(),
		pending:        newPendingIndex(),
		events:         newEventQueue(),
	}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			LocalStorage:    []string{framework.WALPrefix, inventoryStoragePrefix, clusterStoragePrefix},
			SealWrapStorage: []string{configStoragePrefix, staticRoleStoragePrefix},
		},
		Paths: framework.PathAppend(
			b.pathConfig(),
			b.pathRoles(),
			b.pathCreds(),
			b.pathMetrics(),
			b.pathRotateRoot(),
			b.pathStaticRoles(),
			b.pathStaticCreds(),
			b.pathInventory(),
		),
		Secrets:           []*framework.Secret{b.secretCredential()},
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge(),
		PeriodicFunc:      b.periodic,
		RotateCredential:  b.rotateCredential,
		Invalidate:        b.invalidate,
		Clean:             b.clean,
		RunningVersion:    Version,
	}
	b.issueRouter = b.newIssueRouter()
	return b
}

// HandleRequest checks the request's field values before the framework
// does (see inputProblem). Every write of the request goes through storage
// that keeps the entry cache in step with it.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if problem := b.inputProblem(req); problem != "" {
		return logical.ErrorResponse(problem), nil
	}
	req.Storage = b.tracked(req.Storage)
	if routesToIssue(req) {
		growStack()
		return b.issueRouter.HandleRequest(ctx, req)
	}
	resp, err := b.Backend.HandleRequest(ctx, req)
	if req.Operation == logical.RollbackOperation {
		// Beside the framework's WAL rollback: issues interrupted mid-create.
		err = errors.Join(err, b.rollbackPending(ctx, req))
	}
	return resp, err
}

// HandleExistenceCheck checks the request's field values before the
// framework does: Vault asks this before a write, and the framework's own
// check would answer with the value quoted.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if problem := b.inputProblem(req); problem != "" {
		return false, false, errutil.UserError{Err: problem}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// invalidate drops the cached entry of a role or connection another node
// changed, and the cached upstream session of such a connection.
func (b *backend) invalidate(_ context.Context, key string) {
	if cachedKey(key) {
		b.entries.drop(key)
	}
	if name, ok := strings.CutPrefix(key, configStoragePrefix); ok {
		b.conns.drop(name)
	}
	if rest, ok := strings.CutPrefix(key, inventoryStoragePrefix); ok {
		connection, _, _ := strings.Cut(rest, "/")
		b.live.invalidate(connection)
	}
}

func (b *backend) clean(_ context.Context) {
	b.flushEvents()
	b.conns.dropAll()
	b.live.dropAll()
	b.entries.dropAll()
}

// Vault runs the periodic function and then the WAL rollback in one
// operation bounded at 90 s. The periodic work stops within its budget so
// that one hung upstream can never cancel the rollback of the whole mount;
// each connection or static role gets a slice, so one cannot starve the rest.
const (
	defaultPeriodicBudget = 30 * time.Second
	defaultItemBudget     = 10 * time.Second
)

// periodic runs on Vault's rollback tick (once a minute); only the node that
// may write resolves interrupted rotations and runs rotation schedules.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	// Rotations write connections: they must reach the entry cache however
	// the periodic function was called.
	s := b.tracked(req.Storage)
	ctx, cancel := context.WithTimeout(ctx, b.periodicBudget)
	defer cancel()
	return errors.Join(b.maintainRoots(ctx, s), b.rotateDueStatics(ctx, s))
}

// withinItemBudget runs one item of periodic work on its slice of ctx, or
// reports that the tick's budget ran out before it.
func (b *backend) withinItemBudget(ctx context.Context, what string, work func(context.Context) error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: waits for the next tick, this one's budget of %s is spent", what, b.periodicBudget)
	}
	itemCtx, cancel := context.WithTimeout(ctx, b.itemBudget)
	defer cancel()
	return work(itemCtx)
}
