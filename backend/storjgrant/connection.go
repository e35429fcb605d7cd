package storjgrant

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/common/rpc/rpcstatus"
	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Ref keys stored in the lease; none is a secret. The child's caveat is
// useless without the parent's tail, which only the connection holds.
const (
	refCaveat   = "grant_caveat"
	refParent   = "grant_parent"
	refNotAfter = "grant_not_after"
)

// verifyChildLifetime is the life of Verify's probe child: the auth
// service's one-minute floor plus a margin for clock skew and transit.
const verifyChildLifetime = MinGrantLifetime + 30*time.Second

// Config is what Open needs.
type Config struct {
	// Provider is the provider's name, for errors and metrics.
	Provider string
	// Product names the upstream in messages: "StorX", "Storj".
	Product string
	// AuthURL is the auth service's base URL.
	AuthURL string
	// AuthField names the connection field that holds AuthURL, for
	// messages ("auth_url"; empty means base_url).
	AuthField string
	// Grant is the serialized parent access grant (a secret).
	Grant string
	// Connection is the engine's connection config: name, HTTP client,
	// logger and observer.
	Connection provider.ConnectionConfig
}

// Connection issues child grants of one parent grant. It is safe for
// concurrent use: the parent is read-only and uplink opens a project per
// revoke.
type Connection struct {
	cfg    Config
	parent *uplink.Access
	// inner is the parent as storj.io/common/grant has it, for rebuilding a
	// child from its caveat.
	inner *grant.Access
	// parentID fingerprints the parent's API key: a lease records it, so a
	// revoke through a connection whose grant was replaced is caught.
	parentID string
	auth     provider.Client
	uplink   uplink.Config
	// timeout bounds one DRPC revoke: the connection's HTTP timeout.
	timeout time.Duration
	log     hclog.Logger
}

// Open parses the parent grant; it makes no upstream call. Errors wrap
// provider.ErrInvalidInput and never quote the grant.
func Open(cfg Config) (*Connection, error) {
	serialized := strings.TrimSpace(cfg.Grant)
	if serialized == "" {
		return nil, fmt.Errorf("%w: %s is required", provider.ErrInvalidInput, FieldAccessGrant)
	}
	parent, err := uplink.ParseAccess(serialized)
	if err != nil {
		return nil, parseError(cfg.Product, serialized, err)
	}
	inner, err := grant.ParseAccess(serialized)
	if err != nil {
		return nil, parseError(cfg.Product, serialized, err)
	}
	logger := cfg.Connection.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	sum := sha256.Sum256(inner.APIKey.SerializeRaw())
	c := &Connection{
		cfg: cfg, parent: parent, inner: inner, parentID: hex.EncodeToString(sum[:8]), log: logger,
		auth: provider.Client{Provider: cfg.Provider, BaseURL: cfg.AuthURL, HTTP: cfg.Connection.HTTPClient, Logger: logger,
			Gate: &provider.RateGate{}, Observer: cfg.Connection.Observer},
	}
	if hc := cfg.Connection.HTTPClient; hc != nil && hc.Timeout > 0 {
		// The connection's timeout is the one transport setting that
		// applies to DRPC: TLS there is pinned to the satellite's node id
		// and a proxy cannot carry it.
		c.timeout = hc.Timeout
	}
	return c, nil
}

// parseError explains a grant uplink refuses, without quoting it.
func parseError(product, serialized string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "node id is required") {
		return fmt.Errorf("%w: %s names a satellite address without a node id, and this is not a known Storj satellite; make the grant in the %s console (or with uplink) so that its satellite address reads ID@host:port", provider.ErrInvalidInput, FieldAccessGrant, product)
	}
	return fmt.Errorf("%w: %s is not a serialized access grant (%s); paste the grant exactly as the %s console or its OAuth2 flow gave it", provider.ErrInvalidInput, FieldAccessGrant, redact(msg, serialized), product)
}

// redact keeps the grant out of a library's error text.
func redact(msg, secret string) string {
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	return provider.CleanMessage(msg)
}

// SatelliteAddress is the parent grant's satellite node URL (not a secret).
func (c *Connection) SatelliteAddress() string { return c.parent.SatelliteAddress() }

// NotListable implements provider.Unlisted: a satellite lists API keys,
// never the children derived from them.
func (c *Connection) NotListable() string {
	return fmt.Sprintf("%s cannot list access grants derived locally from a grant (the satellite only ever sees them at use or revoke); tidy works from the inventory alone", c.cfg.Product)
}

// NothingToRollBack implements provider.RollbackFree: the child leaves the
// plugin only in the auth-service call, whose answer is the credential; a
// child lost before that answer was never handed to anyone, and its
// NotAfter ends it.
func (c *Connection) NothingToRollBack() bool { return true }

// Close implements provider.Connection; nothing is cached.
func (c *Connection) Close() {}

// Rollback implements provider.Connection: see NothingToRollBack.
func (c *Connection) Rollback(context.Context, provider.RollbackRequest) error { return nil }

// RotateRoot implements provider.Connection: a grant has no secret the
// upstream could change; a new one is made where the old one was.
func (c *Connection) RotateRoot(context.Context, func(provider.Values) error) (provider.Values, error) {
	return nil, fmt.Errorf("%w: in access-grant mode the root is an access grant, which no API can rotate; make a new grant in the %s console (or its OAuth2 flow), write it to config/%s as access_grant, then delete the old grant's API key in the console (which also ends every credential issued from it)",
		provider.ErrRotationUnsupported, c.cfg.Product, c.cfg.Connection.Name)
}

// Verify implements provider.Connection: it registers a child that lives
// 90 seconds at the auth service, which proves the grant parses there, its
// satellite is one the auth service serves and auth_url answers. The
// credentials it gets are dropped; the child dies with its NotAfter.
func (c *Connection) Verify(ctx context.Context) error {
	child, err := c.parent.Share(uplink.Permission{AllowList: true, NotAfter: time.Now().Add(verifyChildLifetime)})
	if err != nil {
		return c.shareError(err)
	}
	serialized, err := child.Serialize()
	if err != nil {
		return fmt.Errorf("%s: serialize the verify child grant: %w", c.cfg.Provider, err)
	}
	_, err = c.register(ctx, "check the access grant at the auth service", serialized)
	return err
}

// Issue implements provider.Connection: one upstream call.
func (c *Connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	notAfter := req.ExpiresAt.UTC().Truncate(time.Second)
	if notAfter.IsZero() || time.Until(notAfter) < MinGrantLifetime {
		return nil, fmt.Errorf("%w: the lease would end at %s, and the auth service refuses access grants that expire within a minute; raise the role's max_ttl (or the mount's max lease TTL) above 1m", provider.ErrInvalidInput, provider.Timestamp(notAfter))
	}
	scope := ScopeFrom(req.Role)
	child, err := c.parent.Share(permission(scope.Permissions, notAfter), prefixes(scope)...)
	if err != nil {
		return nil, c.shareError(err)
	}
	serialized, err := child.Serialize()
	if err != nil {
		return nil, fmt.Errorf("%s: serialize the child grant: %w", c.cfg.Provider, err)
	}
	caveat, err := c.lastCaveat(serialized)
	if err != nil {
		return nil, err
	}
	creds, err := c.register(ctx, "get S3 credentials for "+req.Name, serialized)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(caveat)
	return &provider.Credential{
		Data: map[string]any{
			"access_key_id":     creds.AccessKeyID,
			"secret_access_key": creds.SecretKey,
			"endpoint":          creds.Endpoint,
			"access_grant":      serialized,
		},
		Ref: provider.Ref{
			refCaveat: base64.RawURLEncoding.EncodeToString(caveat), refParent: c.parentID,
			refNotAfter: strconv.FormatInt(notAfter.Unix(), 10),
		},
		ObjectID:  hex.EncodeToString(sum[:8]),
		ExpiresAt: notAfter,
	}, nil
}

func permission(names []string, notAfter time.Time) uplink.Permission {
	p := uplink.Permission{NotAfter: notAfter}
	for _, n := range names {
		switch n {
		case PermissionDownload:
			p.AllowDownload = true
		case PermissionUpload:
			p.AllowUpload = true
		case PermissionList:
			p.AllowList = true
		case PermissionDelete:
			p.AllowDelete = true
		}
	}
	return p
}

func prefixes(s Scope) []uplink.SharePrefix {
	out := make([]uplink.SharePrefix, 0, len(s.Buckets))
	for _, b := range s.Buckets {
		out = append(out, uplink.SharePrefix{Bucket: b, Prefix: s.Prefix})
	}
	return out
}

func (c *Connection) shareError(err error) error {
	return fmt.Errorf("%s: derive a child of the access grant: %s", c.cfg.Provider, redact(err.Error(), c.cfg.Grant))
}

// lastCaveat is the one caveat Share added to the parent's macaroon: with
// the parent it rebuilds the child exactly, and alone it grants nothing.
func (c *Connection) lastCaveat(child string) ([]byte, error) {
	inner, err := grant.ParseAccess(child)
	if err != nil {
		return nil, fmt.Errorf("%s: read back the child grant: %w", c.cfg.Provider, err)
	}
	mac, err := macaroon.ParseMacaroon(inner.APIKey.SerializeRaw())
	if err != nil {
		return nil, fmt.Errorf("%s: read back the child grant: %w", c.cfg.Provider, err)
	}
	caveats := mac.Caveats()
	parent, err := macaroon.ParseMacaroon(c.inner.APIKey.SerializeRaw())
	if err != nil || len(caveats) != parent.CaveatLen()+1 {
		return nil, fmt.Errorf("%s: the child grant is not the parent plus one caveat; this uplink version derives grants differently", c.cfg.Provider)
	}
	return caveats[len(caveats)-1], nil
}

// rebuild makes the child of ref from the parent and the recorded caveat.
func (c *Connection) rebuild(caveat []byte) (*uplink.Access, error) {
	mac, err := macaroon.ParseMacaroon(c.inner.APIKey.SerializeRaw())
	if err != nil {
		return nil, err
	}
	childMac, err := mac.AddFirstPartyCaveat(caveat)
	if err != nil {
		return nil, err
	}
	key, err := macaroon.ParseRawAPIKey(childMac.Serialize())
	if err != nil {
		return nil, err
	}
	serialized, err := (&grant.Access{SatelliteAddress: c.inner.SatelliteAddress, APIKey: key, EncAccess: c.inner.EncAccess}).Serialize()
	if err != nil {
		return nil, err
	}
	return uplink.ParseAccess(serialized)
}

// Revoke implements provider.Connection: the satellite revokes the child's
// macaroon (one DRPC call). A child past its NotAfter is dead already and
// costs no call; a child revoked before is revoked again, which the
// satellite accepts.
func (c *Connection) Revoke(ctx context.Context, ref provider.Ref) error {
	caveat, err := base64.RawURLEncoding.DecodeString(ref[refCaveat])
	if err != nil || len(caveat) == 0 {
		return fmt.Errorf("%s: the lease records no child grant caveat, so the child cannot be rebuilt for revocation; it ends at its NotAfter", c.cfg.Provider)
	}
	notAfter := refTime(ref[refNotAfter])
	if !notAfter.IsZero() && time.Now().After(notAfter) {
		c.log.Debug("child grant already past its NotAfter; nothing to revoke", "not_after", provider.Timestamp(notAfter))
		return nil
	}
	if ref[refParent] != c.parentID {
		return fmt.Errorf("%s: cannot revoke: config/%s's access_grant was replaced since this credential was issued (parent %s, now %s), and only the grant it was derived from can revoke it; write the old access_grant back to revoke it, or wait until %s when it expires, then drop the lease with vault lease revoke -force -prefix <lease id>",
			c.cfg.Provider, c.cfg.Connection.Name, ref[refParent], c.parentID, provider.Timestamp(notAfter))
	}
	child, err := c.rebuild(caveat)
	if err != nil {
		return fmt.Errorf("%s: rebuild the child grant: %w", c.cfg.Provider, err)
	}
	return c.revokeChild(ctx, child)
}

// revokeChild sends RevokeAPIKey with the parent as the header key.
func (c *Connection) revokeChild(ctx context.Context, child *uplink.Access) error {
	const op = "revoke child access grant"
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	start := time.Now()
	project, err := c.uplink.OpenProject(ctx, c.parent)
	if err != nil {
		return &provider.UpstreamError{Provider: c.cfg.Provider, Op: op, Err: errors.New(redact(err.Error(), c.cfg.Grant))}
	}
	err = project.RevokeAccess(ctx, child)
	_ = project.Close()
	code := rpcstatus.Code(err)
	c.observe(op, code, time.Since(start))
	switch {
	case err == nil:
		return nil
	case code == rpcstatus.PermissionDenied && strings.Contains(err.Error(), "Unauthorized API credentials"):
		// The satellite no longer knows the parent's API key: it was
		// deleted, and every grant derived from it died with it.
		c.log.Info("the access grant's API key no longer exists on the satellite; the child died with it")
		return nil
	}
	ue := &provider.UpstreamError{Provider: c.cfg.Provider, Op: op, Message: redact(err.Error(), c.cfg.Grant),
		Err: fmt.Errorf("the satellite at %s refused or could not be reached; the child still ends at its NotAfter", c.SatelliteAddress())}
	if code != rpcstatus.Unknown {
		ue.Code = rpcStatusNames[code]
	}
	return ue
}

// rpcStatusNames name the DRPC codes a revoke can meet, for errors.
var rpcStatusNames = map[rpcstatus.StatusCode]string{
	rpcstatus.Canceled: "Canceled", rpcstatus.InvalidArgument: "InvalidArgument", rpcstatus.DeadlineExceeded: "DeadlineExceeded",
	rpcstatus.NotFound: "NotFound", rpcstatus.PermissionDenied: "PermissionDenied", rpcstatus.ResourceExhausted: "ResourceExhausted",
	rpcstatus.Unimplemented: "Unimplemented", rpcstatus.Internal: "Internal", rpcstatus.Unavailable: "Unavailable",
	rpcstatus.Unauthenticated: "Unauthenticated",
}

// rpcHTTPStatus maps DRPC codes to the HTTP statuses the engine's metrics
// count; a code not listed (Unknown: no answer) counts as 0.
var rpcHTTPStatus = map[rpcstatus.StatusCode]int{
	rpcstatus.OK: http.StatusOK, rpcstatus.InvalidArgument: http.StatusBadRequest, rpcstatus.NotFound: http.StatusNotFound,
	rpcstatus.PermissionDenied: http.StatusForbidden, rpcstatus.Unauthenticated: http.StatusUnauthorized,
	rpcstatus.ResourceExhausted: http.StatusTooManyRequests, rpcstatus.Unimplemented: http.StatusNotImplemented,
	rpcstatus.Internal: http.StatusInternalServerError, rpcstatus.Unavailable: http.StatusServiceUnavailable,
}

// observe reports the DRPC call to the engine's metrics.
func (c *Connection) observe(op string, code rpcstatus.StatusCode, took time.Duration) {
	if c.cfg.Connection.Observer != nil {
		c.cfg.Connection.Observer.UpstreamCall(provider.OpKind(op), rpcHTTPStatus[code], took)
	}
}

func refTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}
