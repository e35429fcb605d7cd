package storx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storjgrant"
)

// Ref keys stored in the lease's internal data; none is a secret.
const (
	refUserEmail = "user_email"
	refProjectID = "project_id"
	refKeyName   = "key_name"
	refKeyID     = "key_id"
)

// minGrantLifetime is the auth service's floor: it refuses a grant that
// expires within a minute.
const minGrantLifetime = time.Minute

// base58Alphabet is the alphabet of serialized access grants.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// roleSpec is a role's values as Issue and Rollback read them.
type roleSpec struct {
	userEmail   string
	fullName    string
	buckets     []string
	prefix      string
	permissions []string
}

func roleFrom(v provider.Values) roleSpec {
	r := roleSpec{
		userEmail: v.String(fieldUserEmail), fullName: v.String(fieldUserFullName),
		buckets: v.Strings(fieldBuckets), prefix: v.String(fieldPrefix), permissions: v.Strings(fieldPermissions),
	}
	if _, set := v[fieldPermissions]; !set {
		r.permissions = allPermissions
	}
	return r
}

// createdKey is a new satellite API key; key is its secret serialization.
type createdKey struct {
	Key     string `json:"key"`
	KeyInfo struct {
		ID string `json:"id"`
	} `json:"keyInfo"`
}

// Verify implements provider.Connection: a developer login, whose session
// the first Issue then reuses.
func (c *connection) Verify(ctx context.Context) error {
	_, err := c.developerSession(ctx)
	return err
}

// Issue implements provider.Connection. Everything up to the create-key
// call creates nothing that needs cleaning up; from there on a failure
// leaves an API key named req.Name, which the engine's Rollback deletes.
func (c *connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	c.unsent.add(req.Name)
	role := roleFrom(req.Role)
	if role.userEmail == "" {
		// A role written for an access-grant connection, which was then
		// switched to developer credentials.
		return nil, fmt.Errorf("%w: role %s sets no user_email, which a connection with StorX developer credentials needs: write the role with user_email", provider.ErrInvalidInput, req.RoleName)
	}
	expiresAt := req.ExpiresAt.UTC().Truncate(time.Second)
	if err := checkExpiry(expiresAt); err != nil {
		return nil, err
	}
	projectID, err := c.userProject(ctx, role.userEmail, role.fullName, true)
	if err != nil {
		return nil, err
	}
	key, err := c.createAPIKey(ctx, role.userEmail, projectID, req.Name)
	if err != nil {
		return nil, err
	}
	grant, err := c.accessGrant(ctx, role, projectID, key.Key, req.Name, expiresAt)
	if err != nil {
		return nil, err
	}
	creds, err := c.s3Credentials(ctx, grant, expiresAt)
	if err != nil {
		return nil, err
	}
	return &provider.Credential{
		Data: map[string]any{
			"access_key_id":     creds.AccessKeyID,
			"secret_access_key": creds.SecretKey,
			"endpoint":          creds.Endpoint,
			"access_grant":      grant,
			"api_key_name":      req.Name,
		},
		Ref:       provider.Ref{refUserEmail: role.userEmail, refProjectID: projectID, refKeyName: req.Name, refKeyID: key.KeyInfo.ID},
		ObjectID:  key.KeyInfo.ID,
		ExpiresAt: expiresAt,
	}, nil
}

// checkExpiry refuses, before any upstream call, a lease that ends too soon
// for the auth service to accept its grant.
func checkExpiry(expiresAt time.Time) error {
	if expiresAt.IsZero() || expiresAt.Sub(timeNow()) >= minGrantLifetime {
		return nil
	}
	return fmt.Errorf("%w: the lease would end at %s, and StorX refuses access grants that expire within a minute; raise the role's max_ttl (or the mount's max lease TTL) above 1m", provider.ErrInvalidInput, provider.Timestamp(expiresAt))
}

// createAPIKey creates the key named name. It is never retried after a
// failure in flight: the key may exist, and the Rollback finds it by name.
func (c *connection) createAPIKey(ctx context.Context, email, projectID, name string) (*createdKey, error) {
	// The user session comes first, so that name is marked sent only when
	// the create request itself goes out.
	if _, err := c.userSession(ctx, email); err != nil {
		return nil, err
	}
	c.unsent.remove(name)
	req := provider.Request{
		Op: "create API key " + name, Method: http.MethodPost, Path: "/api/v0/api-keys/create/" + url.PathEscape(projectID),
		Body: []byte(name), ContentType: "text/plain",
	}
	resp, err := c.asUser(ctx, email, req)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, c.createKeyError(req.Op, resp, email, name)
	}
	var key createdKey
	if err := provider.DecodeJSON(Name, req.Op, resp, &key); err != nil {
		return nil, err
	}
	if key.Key == "" {
		return nil, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the response carries no API key"}
	}
	return &key, nil
}

func (c *connection) createKeyError(op string, resp *provider.Response, email, name string) error {
	ue := c.upstreamError(op, resp)
	switch {
	case resp.Status == http.StatusUnauthorized:
		// The cached project may be stale; look it up again next time.
		c.projects.forget(normalizeEmail(email))
		return fmt.Errorf("%w; the StorX user %s is not a member of the project the key was meant for", ue, email)
	case strings.Contains(strings.ToLower(ue.Message), "already exists"):
		// Nothing was created, and the key that has the name is not this
		// lease's: the rollback must leave it alone.
		c.unsent.add(name)
		return fmt.Errorf("%w; Vault never reuses a key name, so an API key named %s was made outside Vault: delete it in the StorX console", ue, name)
	}
	return ue
}

// accessGrant asks the satellite for a grant of key, always restricted
// (restrictions apply only when bucket is present) so that its expiry is
// the upstream backstop if revoke never runs. Its query carries the API key
// and the passphrase: it is never logged nor put in an error.
func (c *connection) accessGrant(ctx context.Context, role roleSpec, projectID, key, name string, expiresAt time.Time) (string, error) {
	req := provider.Request{
		Op: "create an access grant for API key " + name, Method: http.MethodGet,
		Path:  "/api/v0/api-keys/" + url.PathEscape(projectID) + "/access-grant",
		Query: grantQuery(role, key, c.passphrase, expiresAt), Idempotent: true,
	}
	resp, err := c.asUser(ctx, role.userEmail, req)
	if err != nil {
		return "", err
	}
	if resp.Status != http.StatusOK {
		return "", c.upstreamError(req.Op, resp, key)
	}
	grant, ok := parseGrant(resp.Body)
	if !ok {
		return "", &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the response is not an access grant"}
	}
	return grant, nil
}

// grantQuery builds the access-grant query: bucket (all, b1,b2 or b with a
// prefix), the allow_* flags (their presence is what counts) and the expiry
// as "YYYY-MM-DD HH:MM:SS" in UTC.
func grantQuery(role roleSpec, key, passphrase string, expiresAt time.Time) url.Values {
	q := url.Values{"api-key": {key}, "passphrase": {passphrase}, "bucket": {allBucketsParameter}}
	if len(role.buckets) > 0 {
		q.Set("bucket", strings.Join(role.buckets, ","))
	}
	if role.prefix != "" {
		q.Set("prefix", role.prefix)
	}
	for _, p := range role.permissions {
		q.Set("allow_"+p, "")
	}
	if !expiresAt.IsZero() {
		q.Set("expiry", expiresAt.UTC().Format(time.DateTime))
	}
	return q
}

// parseGrant reads the grant, which the satellite JSON-encodes as a string
// (quotes and trailing newline included); a bare grant is accepted too.
func parseGrant(body []byte) (string, bool) {
	var grant string
	if err := json.Unmarshal(body, &grant); err == nil {
		return grant, isBase58(grant)
	}
	raw := strings.TrimSpace(string(body))
	return raw, isBase58(raw)
}

func isBase58(s string) bool {
	return s != "" && strings.Trim(s, base58Alphabet) == ""
}

// s3Credentials trades the grant for S3 credentials at the auth service.
func (c *connection) s3Credentials(ctx context.Context, grant string, expiresAt time.Time) (*storjgrant.S3Credentials, error) {
	const op = "get S3 credentials from the auth service"
	return storjgrant.PostAccess(ctx, &c.auth, Name, op, grant, func(resp *provider.Response) error {
		ue := c.upstreamError(op, resp, grant)
		if resp.Status == http.StatusBadRequest && strings.Contains(ue.Message, "shorter than a minute") {
			return fmt.Errorf("%w: the grant expires at %s, and the auth service wants at least a minute left (is the StorX clock ahead of Vault's?); raise the role's max_ttl: %w", provider.ErrInvalidInput, provider.Timestamp(expiresAt), ue)
		}
		return ue
	})
}

// Revoke implements provider.Connection: it deletes the API key by name,
// which kills its grant and S3 credentials. StorX answers 200 whether or not
// the key existed, and a user that no longer exists has no keys.
func (c *connection) Revoke(ctx context.Context, ref provider.Ref) error {
	email, projectID, name := ref[refUserEmail], ref[refProjectID], ref[refKeyName]
	if email == "" || projectID == "" || name == "" {
		return fmt.Errorf("storx: the lease records no user email, project or API key name, so the key cannot be deleted by name; delete it in the StorX console if it exists")
	}
	err := c.deleteByName(ctx, email, projectID, name)
	if errors.Is(err, errNoSuchUser) {
		c.log.Info("the StorX user of a revoked lease no longer exists; nothing to delete", "user", email, "api_key", name)
		return nil
	}
	return err
}

// Rollback implements provider.Connection: it deletes an API key named
// req.Name in the project of the role's user, if Issue got that far.
func (c *connection) Rollback(ctx context.Context, req provider.RollbackRequest) error {
	if c.unsent.take(req.Name) {
		return nil
	}
	email := req.Role.String(fieldUserEmail)
	if email == "" {
		return fmt.Errorf("storx: the write-ahead log entry records no user_email, so the API key %s cannot be looked up; delete it in the StorX console if it exists", req.Name)
	}
	projectID, err := c.userProject(ctx, email, "", false)
	if err == nil {
		err = c.deleteByName(ctx, email, projectID, req.Name)
	}
	if errors.Is(err, errNoSuchUser) {
		return nil // no user, so no key either
	}
	return err
}

// deleteByName deletes the key named name. The name is checked here once
// more: without it StorX's handler panics and drops the connection.
func (c *connection) deleteByName(ctx context.Context, email, projectID, name string) error {
	if name == "" {
		return errors.New("storx: refusing to delete an API key without a name")
	}
	req := provider.Request{
		Op: "delete API key " + name, Method: http.MethodDelete, Path: pathDeleteByName,
		Query: url.Values{"name": {name}, "projectID": {projectID}}, Idempotent: true,
	}
	resp, err := c.asUser(ctx, email, req)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusNoContent {
		return c.upstreamError(req.Op, resp)
	}
	return nil
}

// RotateRoot implements provider.Connection. StorX's developer
// change-password route, at the last commit that has the developer flow,
// sits behind the user session middleware, so a developer session cannot
// reach it.
func (c *connection) RotateRoot(context.Context, func(provider.Values) error) (provider.Values, error) {
	return nil, fmt.Errorf("%w: StorX's developer change-password route does not accept a developer session; change the developer password in the StorX console, then write config/%s with the new password", provider.ErrRotationUnsupported, c.name)
}
