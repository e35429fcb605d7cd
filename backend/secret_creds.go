package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// secretCredentialType must never change: Vault routes renew and revoke of
// existing leases by it.
const secretCredentialType = "apikeys_credential"

// Internal data keys of a lease.
const (
	// internalSecretType is the framework's own key (see framework.Secret.Response).
	internalSecretType = "secret_type"
	internalConnection = "connection"
	internalProvider   = "provider"
	internalRole       = "role"
	internalName       = "object_name"
	internalRef        = "ref"
	internalTTL        = "ttl_seconds"
	internalMaxTTL     = "max_ttl_seconds"
	internalExpiresAt  = "upstream_expires_at"
	internalSchema     = "schema_version"
	// Written since schema 2 without a version change: a lease without
	// them (v0.1.0) is revoked without the account check.
	internalConnectionTag = "connection_tag"
	internalFingerprint   = "account_fingerprint"
)

// leaseInternal is everything renew and revoke need, so that both keep working
// after the role (or the connection's settings) changed or was deleted.
type leaseInternal struct {
	Connection string
	Provider   string
	Role       string
	// Name is the upstream object's name, the inventory's key.
	Name   string
	Ref    provider.Ref
	TTL    time.Duration
	MaxTTL time.Duration
	// ExpiresAt is the credential's hard upstream expiry, zero if none.
	ExpiresAt time.Time
	// ConnectionTag is the object_name_tag of the connection that issued
	// the credential: it changes when the connection is deleted and
	// written again.
	ConnectionTag string
	// Fingerprint is the accountFingerprint of that connection: revoke
	// refuses to ask another account.
	Fingerprint string
}

func newLeaseInternal(plan *issuePlan, p provider.Provider, name string, cred *provider.Credential) leaseInternal {
	return leaseInternal{
		Connection: plan.connName, Provider: p.Name(), Role: plan.roleName, Name: name, Ref: cred.Ref,
		TTL: plan.role.TTL, MaxTTL: plan.role.MaxTTL, ExpiresAt: cred.ExpiresAt,
		ConnectionTag: plan.conn.Tag, Fingerprint: plan.conn.accountFingerprint(p),
	}
}

// response is the lease of a credential with data as the framework's
// Secret.Response makes it (no default TTL, renewable), with the internal
// data built once: Secret.Response would copy it into a map of its own.
func (l leaseInternal) response(secret *framework.Secret, data map[string]any) *logical.Response {
	return &logical.Response{
		Secret: &logical.Secret{
			LeaseOptions: logical.LeaseOptions{TTL: secret.DefaultDuration, Renewable: secret.Renewable()},
			InternalData: l.internalData(secret.Type),
		},
		Data: data,
	}
}

// internalData is the lease's internal data, with the secret type by which
// the framework routes its renew and revoke.
func (l leaseInternal) internalData(secretType string) map[string]any {
	ref := make(map[string]any, len(l.Ref))
	for k, v := range l.Ref {
		ref[k] = v
	}
	m := map[string]any{
		internalSecretType: secretType,
		internalConnection: l.Connection,
		internalProvider:   l.Provider,
		internalRole:       l.Role,
		internalName:       l.Name,
		internalRef:        ref,
		internalTTL:        int64(l.TTL.Seconds()),
		internalMaxTTL:     int64(l.MaxTTL.Seconds()),
		internalSchema:     currentSchemaVersion,
	}
	if !l.ExpiresAt.IsZero() {
		m[internalExpiresAt] = l.ExpiresAt.Unix()
	}
	if l.ConnectionTag != "" {
		m[internalConnectionTag] = l.ConnectionTag
	}
	if l.Fingerprint != "" {
		m[internalFingerprint] = l.Fingerprint
	}
	return m
}

// leaseInternalFrom reads internal data back; after Vault's JSON round trip
// numbers are float64 (or json.Number) and maps map[string]any.
func leaseInternalFrom(m map[string]any) (leaseInternal, error) {
	l := leaseInternal{Ref: provider.Ref{}}
	values := provider.Values(m)
	if version := values.Int(internalSchema); version > currentSchemaVersion {
		return l, newerSchemaError("the lease's internal data", version)
	}
	l.Connection, _ = m[internalConnection].(string)
	l.Provider, _ = m[internalProvider].(string)
	l.Role, _ = m[internalRole].(string)
	l.Name, _ = m[internalName].(string)
	l.ConnectionTag, _ = m[internalConnectionTag].(string)
	l.Fingerprint, _ = m[internalFingerprint].(string)
	if l.Connection == "" || l.Provider == "" {
		return l, fmt.Errorf("the lease's internal data names no connection or provider; it was not issued by this plugin version")
	}
	if ref, ok := m[internalRef].(map[string]any); ok {
		for k, v := range ref {
			if s, ok := v.(string); ok {
				l.Ref[k] = s
			}
		}
	}
	l.TTL = time.Duration(values.Int(internalTTL)) * time.Second
	l.MaxTTL = time.Duration(values.Int(internalMaxTTL)) * time.Second
	if secs := values.Int(internalExpiresAt); secs > 0 {
		l.ExpiresAt = time.Unix(int64(secs), 0)
	}
	return l, nil
}

func (b *backend) secretCredential() *framework.Secret {
	return &framework.Secret{
		Type:   secretCredentialType,
		Renew:  b.secretCredentialRenew,
		Revoke: b.secretCredentialRevoke,
	}
}

// secretCredentialRenew extends the lease in Vault only (no provider has an
// upstream renew) and never past the credential's upstream expiry. A renewal
// is granted only once the inventory holds the new end.
func (b *backend) secretCredentialRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (resp *logical.Response, err error) {
	lease, err := leaseInternalFrom(req.Secret.InternalData)
	if err != nil {
		return nil, err
	}
	defer func() {
		if outcome := countedOutcome(resp, err); outcome != "" {
			b.metrics.count(opRenew, lease.Connection, lease.Provider, lease.Role, outcome)
		}
	}()
	ttl, maxTTL := lease.TTL, lease.MaxTTL
	if role, err := b.cachedRole(ctx, req.Storage, lease.Role); err != nil {
		return nil, err
	} else if role != nil && role.Connection == lease.Connection {
		ttl, maxTTL = role.TTL, role.MaxTTL
	}
	maxTTL = b.roleMaxTTL(lease.Provider, maxTTL)
	newTTL, warnings, err := framework.CalculateTTL(b.System(), req.Secret.Increment, ttl, 0, maxTTL, 0, req.Secret.IssueTime)
	if err != nil {
		return nil, err
	}
	if req.Secret.Increment > 0 {
		// Vault computes the TTL of a renewal asking for an increment
		// again, from that increment and the max TTL answered here, and
		// warns itself where it caps; the TTL answered here it ignores.
		warnings = nil
	}
	resp = &logical.Response{Secret: req.Secret}
	resp.Secret.MaxTTL = effectiveMaxTTL(b.System(), maxTTL)
	if !lease.ExpiresAt.IsZero() {
		remaining := time.Until(lease.ExpiresAt).Truncate(time.Second)
		untilExpiry := maxTTLUntil(lease.ExpiresAt, req.Secret.IssueTime)
		// A max TTL of 0 or less would mean no bound at all to Vault.
		if remaining <= 0 || untilExpiry <= 0 {
			return logical.ErrorResponse("the credential expired upstream at %s and cannot be renewed; read a new one", provider.Timestamp(lease.ExpiresAt)), nil
		}
		if newTTL > remaining {
			newTTL = remaining
			warnings = append(warnings, fmt.Sprintf("TTL capped at %s: the credential expires upstream at %s and cannot be extended there", remaining, provider.Timestamp(lease.ExpiresAt)))
		}
		resp.Secret.MaxTTL = min(resp.Secret.MaxTTL, untilExpiry)
	}
	resp.Secret.TTL = newTTL
	if err := renewInventory(ctx, req.Storage, lease.Connection, lease.Name, newTTL); err != nil {
		b.leaseLogger(req, lease).Warn("could not record a renewal in the inventory; the renew failed and the client may retry", "error", err)
		return nil, fmt.Errorf("the lease was not renewed: its new end could not be recorded in the inventory (retry the renew): %w", err)
	}
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

// maxTTLUntil is the max TTL that ends a lease issued at issueTime no later
// than expiresAt. Vault counts it from issueTime truncated to the second and
// may end the lease up to a second past that point (it truncates the
// current time too), so the result stops a second short.
func maxTTLUntil(expiresAt, issueTime time.Time) time.Duration {
	return expiresAt.Sub(issueTime.Truncate(time.Second)) - time.Second
}

// secretCredentialRevoke deletes the credential upstream. "Already gone" is
// success (the provider says so); any other failure is returned so that
// Vault's expiration manager retries it.
func (b *backend) secretCredentialRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (_ *logical.Response, err error) {
	lease, err := leaseInternalFrom(req.Secret.InternalData)
	if err != nil {
		return nil, err
	}
	// Every failure counts, a connection gone or moved as much as an
	// upstream error: Vault retries each and the lease stays.
	defer func() { b.metrics.countErr(opRevoke, lease.Connection, lease.Provider, lease.Role, err) }()
	conn, entry, err := b.cachedLiveConnection(ctx, req.Storage, lease.Connection)
	if err != nil {
		return nil, err
	}
	if entry == nil {
		return nil, fmt.Errorf("cannot revoke upstream: connection %q no longer exists; write config/%s again with the same account so revoke can reach %s, or drop the lease from Vault only with vault lease revoke -force -prefix <lease id>", lease.Connection, lease.Connection, lease.Provider)
	}
	if entry.Provider != lease.Provider {
		return nil, fmt.Errorf("cannot revoke upstream: connection %q is now provider %s, but the credential was issued by %s; restore the connection, or drop the lease from Vault only with vault lease revoke -force -prefix <lease id>", lease.Connection, entry.Provider, lease.Provider)
	}
	if err := b.accountMoved(lease, entry); err != nil {
		b.leaseLogger(req, lease).Warn("revoke refused: the connection's base URL or account changed since the credential was issued; Vault will retry", "error", err)
		return nil, err
	}
	// As for an issue: the calls go in the debug line after the answer, or
	// out as trace lines now if the revoke failed.
	calls := &provider.CallLog{}
	if err := conn.Revoke(provider.WithCallLog(ctx, calls), lease.Ref); err != nil {
		b.traceCalls(calls, lease.Provider, lease.Connection)
		b.leaseLogger(req, lease).Warn("upstream revoke failed; Vault will retry", "error", err)
		return nil, fmt.Errorf("revoke %s credential of role %q on connection %q: %w", lease.Provider, lease.Role, lease.Connection, err)
	}
	b.forgetInventory(ctx, req.Storage, lease.Connection, lease.Name)
	logger := b.leaseLogger(req, lease)
	b.afterResponse(func() { logger.Debug("revoked credential", "upstream", calls.String()) },
		eventCredsRevoke, "connection", lease.Connection, "provider", lease.Provider, "role", lease.Role, "object", lease.Name)
	return nil, nil
}

// errAccountMoved refuses a revoke through a connection that no longer
// points at the upstream account that issued the credential: there the
// credential is missing, which providers answer as "already gone" (or, like
// StorX, cannot tell apart from a delete), while it lives on its account.
var errAccountMoved = errors.New("the connection now points at another upstream account than the one that issued this credential")

// accountMoved returns errAccountMoved, saying what to do, when the lease
// was issued under another account fingerprint than the connection's now.
// A connection deleted and written again for the same account passes: the
// credential is reachable. Leases of v0.1.0 carry no fingerprint and pass,
// and so do providers whose revoke deletes nothing upstream, since a refusal
// there would protect nothing and only keep the lease from ending.
func (b *backend) accountMoved(lease leaseInternal, entry *connectionEntry) error {
	p, ok := b.providers.get(entry.Provider)
	if !ok || lease.Fingerprint == "" || !b.mayLeaveObjects(entry.Provider) {
		return nil
	}
	current := entry.accountFingerprint(p)
	if current == lease.Fingerprint {
		return nil
	}
	rewritten := ""
	if lease.ConnectionTag != "" && lease.ConnectionTag != entry.Tag {
		rewritten = fmt.Sprintf(" was deleted and written again since (object_name_tag %s, now %s) and", lease.ConnectionTag, entry.Tag)
	}
	fields := []string{fieldBaseURL}
	for _, f := range accountFields(p) {
		fields = append(fields, f.Name)
	}
	return fmt.Errorf("cannot revoke upstream: %w: connection %q%s now points at %s %s (account fingerprint %s; the credential was issued under %s): its %s changed since, and a revoke there could report success while the credential lives on; restore config/%s's %s to the account that issued the credential so revoke can reach it, or, once the credential is known to be gone upstream, drop the lease from Vault only with vault lease revoke -force -prefix <lease id>; until then Vault keeps the lease",
		errAccountMoved, lease.Connection, rewritten, p.Name(), describeAccount(p, entry), current, lease.Fingerprint,
		strings.Join(fields, " or "), lease.Connection, strings.Join(fields, " and "))
}

// describeAccount names where a connection points: its base URL and Account
// fields, none of them secret.
func describeAccount(p provider.Provider, e *connectionEntry) string {
	parts := []string{fieldBaseURL + "=" + e.BaseURL}
	for _, f := range accountFields(p) {
		parts = append(parts, f.Name+"="+e.Values.String(f.Name))
	}
	return strings.Join(parts, ", ")
}

// leaseLogger carries a lease's connection, provider, role and upstream
// object. Vault 1.21 passes revokes an empty LeaseID, so the object name is
// what ties a log line to the upstream (and to Vault's own lease log lines
// by time); the lease id is added when Vault provides it.
func (b *backend) leaseLogger(req *logical.Request, lease leaseInternal) hclog.Logger {
	logger := b.Logger().With("connection", lease.Connection, "provider", lease.Provider, "role", lease.Role, "object", lease.Name)
	if req.Secret != nil && req.Secret.LeaseID != "" {
		logger = logger.With("lease_id", req.Secret.LeaseID)
	}
	return logger
}
