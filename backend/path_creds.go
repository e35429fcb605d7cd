package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

const fieldRole = "role"

// credsPathPrefix starts every path of creds/.
const credsPathPrefix = "creds/"

// cleanupTimeout bounds the immediate rollback after a failed issue; it runs
// on its own context because the request's may already be cancelled.
const cleanupTimeout = 30 * time.Second

// uniqueAlphabet and uniqueLen make the suffix of upstream object names:
// the connection's tag, the cluster's tag, then 8 random base-36
// characters (about 41 bits per connection and cluster).
const (
	uniqueAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	uniqueLen      = objectTagLen + clusterTagLen + 8
)

func (b *backend) pathCreds() []*framework.Path {
	return []*framework.Path{{
		Pattern:      credsPathPrefix + framework.MatchAllRegex(fieldRole),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "generate"},
		Fields: map[string]*framework.FieldSchema{
			fieldRole: {Type: framework.TypeString, Required: true, Description: "Name of the role."},
		},
		// Each operation gets its own OpenAPI operation id, named as Vault's
		// AWS engine names its GET and POST on creds/.
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathCredsIssue, Summary: "Issue a new leased credential.",
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "credentials"}},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathCredsIssue, Summary: "Issue a new leased credential (for clients that POST).",
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "credentials-with-parameters"}},
		},
		HelpSynopsis: "Issue a leased credential for a role.",
		HelpDescription: `Each read mints a new credential upstream and returns it with a lease.
When the lease ends (TTL, vault lease revoke, token revocation) the
credential is deleted upstream where the provider's API allows it.`,
	}}
}

// issuePlan is everything decided before the upstream call.
type issuePlan struct {
	roleName string
	role     *roleEntry
	connName string
	// conn is the connection entry the plan was checked against.
	conn *connectionEntry
	*ttlPlan
}

func (b *backend) pathCredsIssue(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	var known *mountTTLs
	for {
		plan, msg, err := b.planIssue(ctx, req.Storage, d.Get(fieldRole).(string), known)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			return logical.ErrorResponse(msg), nil
		}
		conn, err := b.openLive(plan.connName, plan.conn)
		if err != nil {
			return nil, err
		}
		resp, err := b.issue(ctx, req.Storage, plan, conn)
		var changed *ttlsChangedError
		if errors.As(err, &changed) && known == nil {
			b.Logger().Debug("the mount's lease TTLs changed during the issue; issuing again under the new ones", "role", plan.roleName, "max_lease_ttl", changed.fresh.max.String())
			// Once more, under the answer Vault just gave.
			known = &changed.fresh
			continue
		}
		if outcome := countedOutcome(resp, err); outcome != "" {
			b.metrics.count(opIssue, plan.connName, plan.conn.Provider, plan.roleName, outcome)
		}
		return resp, err
	}
}

// countedOutcome is the outcome an issue or renewal counts as, or "" when it
// is not counted here: a performance standby forwards the request to the
// active node, which counts it. Only a max_live_credentials cap answers 429.
func countedOutcome(resp *logical.Response, err error) string {
	var coded logical.HTTPCodedError
	switch {
	case errors.Is(err, logical.ErrReadOnly):
		return ""
	case errors.As(err, &coded) && coded.Code() == http.StatusTooManyRequests:
		return outcomeCapReached
	case err != nil || resp.IsError():
		return outcomeFailure
	}
	return outcomeSuccess
}

// planIssue loads the role and its connection and fixes the lease's TTLs
// (known: see planTTLs). A problem the caller must fix comes back as a
// message.
func (b *backend) planIssue(ctx context.Context, s logical.Storage, roleName string, known *mountTTLs) (*issuePlan, string, error) {
	if err := validateName("role", roleName); err != nil {
		return nil, err.Error(), nil
	}
	role, err := b.cachedRole(ctx, s, roleName)
	if err != nil {
		return nil, "", err
	}
	if role == nil {
		return nil, fmt.Sprintf("role %q does not exist: write roles/%s first", roleName, roleName), nil
	}
	conn, err := b.cachedConnection(ctx, s, role.Connection)
	if err != nil {
		return nil, "", err
	}
	switch {
	case conn == nil:
		return nil, fmt.Sprintf("role %q uses connection %q, which does not exist: write config/%s or point the role at another connection", roleName, role.Connection, role.Connection), nil
	case conn.Provider != role.Provider:
		return nil, fmt.Sprintf("role %q was written for provider %s but connection %q is now %s: write the role again", roleName, role.Provider, role.Connection, conn.Provider), nil
	case !conn.allowsRole(roleName):
		return nil, fmt.Sprintf("connection %q no longer allows role %q: add the role to its allowed_roles", role.Connection, roleName), nil
	}
	ttls, err := b.planTTLs(ctx, role, known)
	if err != nil {
		return nil, "", err
	}
	return &issuePlan{roleName: roleName, role: role, connName: role.Connection, conn: conn, ttlPlan: ttls}, "", nil
}

// irrevocableMaxTTL bounds the leases of a role without max_ttl whose
// provider cannot revoke its credentials: with the mount's maximum instead
// (32 days unless tuned) such a credential would outlive its lease by as much,
// with nothing able to end it sooner.
const irrevocableMaxTTL = 24 * time.Hour

// roleMaxTTL is the max TTL a role asks for: its max_ttl, else
// irrevocableMaxTTL when its provider cannot revoke, else 0 (the mount's).
func (b *backend) roleMaxTTL(providerName string, maxTTL time.Duration) time.Duration {
	if maxTTL == 0 && b.cannotRevoke(providerName) {
		return irrevocableMaxTTL
	}
	return maxTTL
}

// setsNoExpiry reports whether the provider's credentials carry no expiry
// from the lease.
func (b *backend) setsNoExpiry(providerName string) bool {
	p, _ := b.providers.get(providerName)
	free, ok := p.(provider.ExpiryFree)
	return ok && free.SetsNoExpiry()
}

// cannotRevoke reports whether the provider's credentials cannot be revoked upstream.
func (b *backend) cannotRevoke(providerName string) bool {
	p, _ := b.providers.get(providerName)
	irrevocable, ok := p.(provider.Irrevocable)
	return ok && irrevocable.CannotRevoke()
}

// issue creates the credential upstream under a WAL entry, so that a crash or
// failure at any point leaves nothing behind upstream for long.
func (b *backend) issue(ctx context.Context, s logical.Storage, plan *issuePlan, conn provider.Connection) (*logical.Response, error) {
	entry := plan.conn
	// Before anything is written: on a performance standby this first write
	// of a new cluster fails with logical.ErrReadOnly, and Vault forwards.
	cluster, err := b.clusterTag(ctx, s)
	if err != nil {
		return nil, err
	}
	reserved, err := b.reserveLive(ctx, s, plan)
	if err != nil {
		var capped *capReachedError
		if errors.As(err, &capped) {
			return capped.errorResponse()
		}
		return nil, err
	}
	// A failed issue frees its slot; a successful one committed it first.
	defer reserved.release()
	random, err := provider.RandomString(uniqueLen-len(entry.Tag)-len(cluster), uniqueAlphabet)
	if err != nil {
		return nil, err
	}
	unique := entry.Tag + cluster + random
	now := time.Now()
	objectName := fmt.Sprintf("%s-%s-%s", b.namePrefix(plan.role), plan.roleName, unique)
	inFlight := &inventoryEntry{Name: objectName, Role: plan.roleName, Provider: entry.Provider, RoleValues: plan.role.Values, CreatedAt: now.UTC()}
	// false: nothing to roll back, for the provider or this connection
	pending := b.mayLeaveObjects(entry.Provider) && !rollbackFree(conn)
	if !pending && rollbackFree(conn) && b.onPerformanceStandby() {
		// Its one write comes after the create; refused here, it would
		// cost the upstream a credential and a revoke before Vault forwards.
		return nil, logical.ErrReadOnly
	}
	if pending {
		// The one write before the create. ErrReadOnly comes back
		// unwrapped: on a performance standby Vault then forwards.
		if err := b.putPending(ctx, s, plan.connName, inFlight); err != nil {
			return nil, err
		}
	}
	issueReq := provider.IssueRequest{RoleName: plan.roleName, Role: plan.role.Values, Name: objectName, TTL: plan.ttl}
	if plan.maxTTL > 0 {
		issueReq.ExpiresAt = now.Add(plan.maxTTL)
	}
	// The create's calls are logged with the outcome: on success in the
	// debug line written after the answer, else as trace lines now.
	calls := &provider.CallLog{}
	traceCalls := func() { b.traceCalls(calls, entry.Provider, plan.connName) }
	cred, err := conn.Issue(provider.WithCallLog(ctx, calls), issueReq)
	if err != nil {
		traceCalls()
		b.rollbackNow(s, plan.connName, pending, conn, inFlight, answeredDefinitely(err))
		return errorResponseFor(err)
	}
	if err := expiresTooSoon(entry.Provider, objectName, cred); err != nil {
		traceCalls()
		b.rollbackNow(s, plan.connName, pending, conn, inFlight, true)
		return errorResponseFor(err)
	}
	if err := plan.confirm(ctx); err != nil {
		traceCalls()
		b.discard(s, plan.connName, pending, conn, inFlight, cred.Ref)
		return nil, err
	}
	// conn was opened for this provider, so the registry has it.
	prov, _ := b.providers.get(entry.Provider)
	lease := newLeaseInternal(plan, prov, objectName, cred)
	resp := lease.response(b.Secret(secretCredentialType), cred.Data)
	resp.Secret.TTL, resp.Secret.MaxTTL = plan.ttl, plan.maxTTL
	if !cred.ExpiresAt.IsZero() {
		untilExpiry := time.Until(cred.ExpiresAt).Truncate(time.Second)
		resp.Secret.TTL = min(resp.Secret.TTL, untilExpiry)
		if resp.Secret.MaxTTL == 0 || resp.Secret.MaxTTL > untilExpiry {
			resp.Secret.MaxTTL = untilExpiry
		}
	}
	for _, w := range append(plan.warnings, cred.Warnings...) {
		resp.AddWarning(w)
	}
	if err := b.recordIssued(ctx, s, plan, pending, inFlight, cred, now.Add(resp.Secret.TTL)); err != nil {
		// A pending entry left behind would later delete this live
		// credential, so the credential goes now and the caller retries.
		traceCalls()
		b.discard(s, plan.connName, pending, conn, inFlight, cred.Ref)
		return nil, err
	}
	if reserved != nil && cred.ObjectID != "" {
		reserved.commit(objectName)
	} else if cred.ObjectID != "" {
		b.live.record(plan.connName, objectName, plan.roleName)
	}
	b.afterResponse(func() {
		b.Logger().Debug("issued credential", "connection", plan.connName, "provider", entry.Provider, "role", plan.roleName, "object", objectName, "ttl", resp.Secret.TTL.String(), "upstream", calls.String())
	}, eventCredsCreate, "connection", plan.connName, "provider", entry.Provider, "role", plan.roleName, "object", objectName)
	return resp, nil
}

// recordIssued is the one write after a successful create: the pending
// entry becomes the live inventory entry, or, for a credential with no
// upstream object id to record, is dropped.
func (b *backend) recordIssued(ctx context.Context, s logical.Storage, plan *issuePlan, pending bool, e *inventoryEntry, cred *provider.Credential, leaseEnd time.Time) error {
	if cred.ObjectID == "" {
		if !pending {
			return nil
		}
		if err := b.dropPending(ctx, s, plan.connName, e.Name); err != nil {
			return fmt.Errorf("clear the pending inventory entry of %s: %w", e.Name, err)
		}
		return nil
	}
	live := &inventoryEntry{
		Name: e.Name, ObjectID: cred.ObjectID, Role: plan.roleName, Provider: e.Provider, Ref: cred.Ref,
		CreatedAt: e.CreatedAt, LeaseExpiresAt: leaseEnd.UTC(),
	}
	if err := putInventory(ctx, s, plan.connName, live); err != nil {
		return fmt.Errorf("record %s in the inventory: %w", e.Name, err)
	}
	b.pending.remove(plan.connName, e.Name)
	return nil
}

// reserveLive takes the issue's slot under the caps of its role and
// connection. An issue bound by no cap takes none and never loads the
// inventory: it is bound by the caps it read, as is an issue that read its
// role just before a cap was written. A performance standby takes none
// either: its WAL write fails with logical.ErrReadOnly and Vault forwards
// the request to the active node, whose count alone is kept in step with
// every issue and revoke of the cluster.
func (b *backend) reserveLive(ctx context.Context, s logical.Storage, plan *issuePlan) (*slot, error) {
	roleCap, connCap := plan.role.MaxLiveCredentials, plan.conn.MaxLiveCredentials
	if (roleCap == 0 && connCap == 0) || !b.countsLive(plan.conn.Provider) || b.onPerformanceStandby() {
		return nil, nil
	}
	return b.live.reserve(ctx, s, plan.connName, plan.roleName, roleCap, connCap)
}

// onPerformanceStandby reports whether this node is a performance standby,
// where storage writes fail with logical.ErrReadOnly.
func (b *backend) onPerformanceStandby() bool {
	return b.System().ReplicationState().HasState(consts.ReplicationPerformanceStandby)
}

// minLeaseTTL is the shortest lease a credential may get. A lease capped at
// an upstream expiry under a second away would get a TTL of 0, which Vault
// reads as "use the default TTL", so such a credential is refused.
const minLeaseTTL = time.Second

// expiresTooSoon refuses a credential whose upstream expiry leaves no lease.
func expiresTooSoon(providerName, objectName string, cred *provider.Credential) error {
	if cred.ExpiresAt.IsZero() || time.Until(cred.ExpiresAt) >= minLeaseTTL {
		return nil
	}
	return &provider.UpstreamError{Provider: providerName, Op: "issue " + objectName,
		Message: "the credential expires upstream at " + provider.Timestamp(cred.ExpiresAt) + ", too soon for a lease; check the clocks of Vault and the upstream"}
}

// mayLeaveObjects reports whether an interrupted issue of the provider can
// leave something upstream for a rollback to delete.
func (b *backend) mayLeaveObjects(providerName string) bool {
	p, _ := b.providers.get(providerName)
	free, ok := p.(provider.RollbackFree)
	return !ok || !free.NothingToRollBack()
}

// rollbackFree reports whether this connection, whatever its provider,
// leaves nothing upstream for a rollback (StorX in access-grant mode).
func rollbackFree(conn provider.Connection) bool {
	free, ok := conn.(provider.RollbackFree)
	return ok && free.NothingToRollBack()
}

// namePrefix is the role's provider field marked NamePrefix, else "vault".
func (b *backend) namePrefix(role *roleEntry) string {
	if p, ok := b.providers.get(role.Provider); ok {
		for _, f := range p.RoleFields() {
			if prefix := role.Values.String(f.Name); f.NamePrefix && prefix != "" {
				return prefix
			}
		}
	}
	return "vault"
}

// rollbackNow deletes what a failed Issue may have created. The pending
// entry is cleared only when the upstream answered the failing call: after a
// timeout or a dropped connection the create may still land upstream later,
// and the entry stays for the rollback operation to sweep it then.
func (b *backend) rollbackNow(s logical.Storage, connection string, pending bool, conn provider.Connection, e *inventoryEntry, definite bool) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := conn.Rollback(ctx, e.rollbackRequest())
	if pending {
		// Without a pending entry the provider leaves nothing to roll back.
		b.metrics.countErr(opRollback, connection, e.Provider, e.Role, err)
	}
	if err != nil {
		b.Logger().Warn("could not yet remove what a failed issue left upstream; the rollback will retry", "connection", connection, "object", e.Name, "error", err)
		return
	}
	if !definite || !pending {
		return
	}
	if err := b.dropPending(ctx, s, connection, e.Name); err != nil {
		b.Logger().Warn("could not clear the pending inventory entry of a rolled-back issue; the rollback will clear it", "connection", connection, "object", e.Name, "error", err)
	}
}

// answeredDefinitely reports whether the upstream answered the call that
// failed, so nothing of it can still be under way there.
func answeredDefinitely(err error) bool {
	var ue *provider.UpstreamError
	return errors.As(err, &ue) && ue.Status != 0
}

// discard revokes a credential that will not be returned. Its pending
// entry goes once the credential is gone; otherwise the rollback operation
// deletes the credential by name later.
func (b *backend) discard(s logical.Storage, connName string, pending bool, conn provider.Connection, e *inventoryEntry, ref provider.Ref) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := conn.Revoke(ctx, ref); err != nil {
		if pending {
			b.Logger().Warn("could not yet revoke a credential that was never returned; the rollback will retry", "connection", connName, "object", e.Name, "error", err)
		} else {
			b.Logger().Error("could not revoke a credential that was never returned; it ends at its upstream expiry, or delete it upstream by hand", "connection", connName, "object", e.Name, "error", err)
		}
		return
	}
	if !pending {
		return
	}
	if err := b.dropPending(ctx, s, connName, e.Name); err != nil {
		b.Logger().Warn("could not clear the pending inventory entry of a revoked credential; the rollback will clear it", "connection", connName, "object", e.Name, "error", err)
	}
}
