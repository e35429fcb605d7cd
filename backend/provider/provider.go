// Package provider defines the small contract between the Vault engine and one
// upstream service. A provider owns its upstream (client, fields, what issue,
// revoke, verify and rotate mean there) and never imports the engine: the
// engine owns paths, validation of common fields, TTLs, WAL and lease data.
package provider

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Provider describes one upstream service and opens connections to it.
type Provider interface {
	// Name is the value of a connection's `provider` field.
	Name() string
	// DefaultBaseURL is used when base_url is omitted; "" makes base_url required.
	DefaultBaseURL() string
	// ConnectionFields are the provider's own connection fields.
	ConnectionFields() []Field
	// RoleFields are the provider's own role fields.
	RoleFields() []Field
	// ValidateRole checks role values beyond their declared types. Errors
	// wrap ErrInvalidInput and say what to change.
	ValidateRole(role Values) error
	// Connect checks a connection's settings and returns a handle that caches
	// upstream sessions. It makes no upstream call. Errors wrap ErrInvalidInput.
	Connect(cfg ConnectionConfig) (Connection, error)
}

// Connection is a live handle on one configured upstream account. It is shared
// by concurrent requests and must be safe for concurrent use.
type Connection interface {
	// Verify proves the root credential works upstream.
	Verify(ctx context.Context) error
	// Issue creates one credential upstream.
	Issue(ctx context.Context, req IssueRequest) (*Credential, error)
	// Revoke deletes a credential upstream. Already gone is success.
	Revoke(ctx context.Context, ref Ref) error
	// Rollback deletes whatever an interrupted Issue created under req.Name,
	// if anything. Nothing found is success.
	Rollback(ctx context.Context, req RollbackRequest) error
	// RotateRoot replaces the root credential upstream. It calls stage with the
	// new root values before the old root stops working where the upstream
	// allows it (else as soon as the new values are known), so the engine can
	// store them first. It returns the new root values. Providers that cannot
	// rotate return an error wrapping ErrRotationUnsupported.
	RotateRoot(ctx context.Context, stage func(Values) error) (Values, error)
	// Close releases cached sessions.
	Close()
}

// RootRotationCapable is implemented by providers whose API can rotate the
// root credential. Only they accept scheduled rotation; the others answer
// RotateRoot with ErrRotationUnsupported and the reason.
type RootRotationCapable interface {
	RotatesRoot() bool
}

// RollbackFree is implemented by providers whose Issue leaves nothing
// upstream that Rollback could find and delete (a token that cannot be
// revoked, a shared cached token). The engine writes no WAL entry for their
// issues: it would guard nothing and cost two storage writes per credential.
// A Connection may implement it too, when only some of a provider's
// connections are rollback-free (StorX in access-grant mode).
type RollbackFree interface {
	NothingToRollBack() bool
}

// Irrevocable is implemented by providers whose credentials cannot be
// revoked upstream: each lives until its own expiry, whatever becomes of its
// lease. The engine bounds their leases even when a role sets no max_ttl.
type Irrevocable interface {
	CannotRevoke() bool
}

// ExpiryFree is implemented by providers whose Issue ignores
// IssueRequest.ExpiresAt: their credentials carry no expiry tied to the
// lease (Katapult's access keys, Storable's shared token). Vault caps each
// lease at the mount's maximum itself, at registration and at every renewal,
// so for a role with a ttl the engine issues their credentials without
// asking Vault for the mount's lease TTLs (a round trip each).
type ExpiryFree interface {
	SetsNoExpiry() bool
}

// StaticRotator is implemented by connections that can take over an existing
// upstream credential and regenerate its secret on a schedule (static roles).
type StaticRotator interface {
	// LookupAccessKey checks that the credential exists and the root can see
	// it. Errors wrap ErrInvalidInput when it does not.
	LookupAccessKey(ctx context.Context, id string) error
	// RegenerateCredentials replaces the credential's secret upstream and
	// returns the credential's data, the new secret included.
	RegenerateCredentials(ctx context.Context, id string) (map[string]any, error)
}

// Lister is implemented by connections whose upstream can list the objects
// the plugin may have created, so tidy can compare them with the inventory.
type Lister interface {
	// ListObjects returns the live upstream objects. roles are the values of
	// the roles that use the connection, for upstreams that list per role
	// (StorX lists each role user's project).
	ListObjects(ctx context.Context, roles []Values) ([]UpstreamObject, error)
}

// Unlisted is implemented by connections that create revocable objects
// their upstream cannot list (Storj-based satellites never list the access
// grants derived from a key). Tidy then works from the inventory alone:
// it revokes the entries whose lease ended and says why it cannot compare.
type Unlisted interface {
	// NotListable says why the upstream cannot be listed, for tidy's report.
	NotListable() string
}

// ConnectionRoleChecker is implemented by providers whose role rules
// depend on the connection a role uses (StorX: a developer connection needs
// user_email; an access-grant connection refuses it, and a max_ttl under
// the auth service's one-minute floor). The engine calls it at role write,
// after ValidateRole, with the connection's values (secrets included: never
// quote them) and the role's max_ttl (0: the mount's). Errors wrap
// ErrInvalidInput and say what to change.
type ConnectionRoleChecker interface {
	CheckRoleForConnection(conn, role Values, maxTTL time.Duration) error
}

// UpstreamObject is a live object found upstream.
type UpstreamObject struct {
	Name      string
	ID        string
	CreatedAt time.Time
	// Ref lets Revoke delete the object.
	Ref Ref
}

// ConnectionConfig is what Connect receives.
type ConnectionConfig struct {
	// Name is the connection's name in Vault, for logs and errors.
	Name string
	// BaseURL is the validated base URL without a trailing slash.
	BaseURL string
	// Values holds the provider's connection fields, secrets included.
	Values Values
	// HTTPClient is the connection's own client, which the engine builds
	// from the connection's transport settings (TLS, proxy, timeout) and
	// keeps while they last; tests swap it. Client never follows its
	// redirects.
	HTTPClient *http.Client
	// Logger must never receive a secret. Pass durations as d.String():
	// Vault reads a plugin's log lines as JSON, where a time.Duration is a
	// bare count of nanoseconds (ttl=3e+11).
	Logger hclog.Logger
	// Observer goes into every Client of the connection (Client.Observer);
	// nil observes nothing.
	Observer Observer
}

// IssueRequest is one credential to create upstream.
type IssueRequest struct {
	// RoleName is the Vault role the credential is for.
	RoleName string
	// Role holds the provider's role fields.
	Role Values
	// Name is the unique upstream object name the engine chose and recorded
	// in its WAL before the call (vault-<role>-<unique>).
	Name string
	// TTL is the lease's initial TTL.
	TTL time.Duration
	// ExpiresAt is the lease's latest possible end; providers that can set an
	// expiry upstream set it here, as a backstop if revoke never runs. It
	// is zero for an ExpiryFree provider when the engine did not ask.
	ExpiresAt time.Time
}

// RollbackRequest names what an interrupted Issue may have created. It is
// read back from the WAL entry written before the Issue, so it carries the
// role as it was then, even if the role changed or was deleted since.
type RollbackRequest struct {
	// Name is IssueRequest.Name.
	Name string
	// RoleName and Role are IssueRequest.RoleName and IssueRequest.Role.
	RoleName string
	Role     Values
}

// Credential is what Issue created.
type Credential struct {
	// Data is returned to the client in the lease's data.
	Data map[string]any
	// Ref is everything Revoke needs; it travels in the lease's internal data.
	Ref Ref
	// ObjectID is the id of the object created upstream, for the engine's
	// inventory; empty when the provider creates no object it could delete.
	ObjectID string
	// ExpiresAt is the credential's hard upstream expiry, zero when it has none.
	// The lease never outlives it.
	ExpiresAt time.Time
	// Warnings are shown to the client.
	Warnings []string
}

// Ref identifies an upstream credential for Revoke. It must hold no secret:
// it is stored in the lease and may appear in logs.
type Ref map[string]string
