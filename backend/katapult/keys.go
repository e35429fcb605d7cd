package katapult

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// API paths, under base_url.
const (
	pathAccount     = "/organizations/organization/object_storage/object_storage_cluster"
	pathCreateKey   = pathAccount + "/access_keys"
	pathListKeys    = "/organizations/organization/object_storage/access_keys"
	pathKey         = "/object_storage/access_keys/access_key"
	pathGenerate    = pathKey + "/generate_credentials"
	pathBucket      = "/object_storage/object_storage_cluster/buckets/bucket"
	pathCurrentUser = "/users/current"
	pathRegenerate  = "/api_tokens/api_token/regenerate_secret"
)

// Ref keys stored in the lease's internal data.
const (
	refKeyID   = "katapult_access_key_id"
	refName    = "name"
	refBuckets = "buckets"
)

// Error codes the plugin acts on.
const (
	codeKeyNotFound    = "object_storage_access_key_not_found"
	codeBucketNotFound = "object_storage_bucket_not_found"
	codeProvisioning   = "object_storage_provisioning_error"
)

// Retry limits for calls Katapult asks to repeat. Generating credentials
// waits out provisioning (about 30 s when recorded; "a few minutes" per the
// docs) for up to provisioningTimeout, as Katapult's Terraform provider
// does; deletes retry for up to deleteRetryTimeout. Tests shorten these.
var (
	provisioningTimeout = 5 * time.Minute
	deleteRetryTimeout  = time.Minute
	firstRetryWait      = time.Second
	maxRetryWait        = 16 * time.Second
)

// maxRetries bounds a retry loop in count as well as in time.
const maxRetries = 50

// Listing: keys per page, and pages read before giving up.
const (
	listPageSize = 100
	maxListPages = 100
)

// accessKey is Katapult's object_storage_access_key. The S3 secret is only
// in the generate_credentials answer.
type accessKey struct {
	ID                string   `json:"id"`
	Name              string   `json:"name"`
	State             string   `json:"state"`
	ReadBuckets       []string `json:"read_buckets"`
	WriteBuckets      []string `json:"write_buckets"`
	ServerURL         string   `json:"server_url"`
	S3AccessKeyID     string   `json:"s3_access_key_id"`
	S3SecretAccessKey string   `json:"s3_secret_access_key"`
	// CreatedAt is unix seconds.
	CreatedAt int64 `json:"created_at"`
}

type keyEnvelope struct {
	Key accessKey `json:"object_storage_access_key"`
}

// Verify implements provider.Connection: the token must reach the
// organization's object storage account in the region, which proves the
// token, its object_storage scope, the organization and the account.
func (c *connection) Verify(ctx context.Context) error {
	query := c.orgQuery()
	query.Set("object_storage_cluster[region]", c.region)
	req := getRequest("read the object storage account of organization "+c.org.value, pathAccount, query)
	var out struct {
		Account map[string]any `json:"object_storage_account"`
	}
	if err := c.expect(ctx, req, &out); err != nil {
		return c.explain(err)
	}
	if out.Account == nil {
		return &provider.UpstreamError{Provider: Name, Op: req.Op, Status: http.StatusOK, Message: "the answer has no object_storage_account"}
	}
	return nil
}

// explain adds what the operator should change to errors about the
// connection's own settings.
func (c *connection) explain(err error) error {
	switch codeOf(err) {
	case "invalid_api_token", "missing_api_token":
		return fmt.Errorf("%w; write a valid api_token", err)
	case "scope_not_granted":
		return fmt.Errorf("%w; give the API token the object_storage scope", err)
	case "organization_not_found", "permission_denied":
		return fmt.Errorf("%w; check organization %q: the token cannot use it", err, c.org.value)
	case "object_storage_cluster_not_found":
		return fmt.Errorf("%w; region %q has no object storage cluster: set region (uk-lon-1 is the only one today)", err, c.region)
	case "object_storage_account_not_found", "object_storage_account_not_provisioned":
		return fmt.Errorf("%w; organization %q has no object storage in %s: enable object storage for it in Katapult first", err, c.org.value, c.region)
	}
	return err
}

// Issue implements provider.Connection: create the key, grant it the role's
// buckets, then generate its S3 credentials. Whatever fails, the engine's
// Rollback finds the key by name and removes it.
func (c *connection) Issue(ctx context.Context, req provider.IssueRequest) (*provider.Credential, error) {
	key, err := c.createKey(ctx, req.Name, req.Role)
	if err != nil {
		return nil, err
	}
	buckets, err := c.grantBuckets(ctx, key.ID, req.Role)
	if err != nil {
		return nil, err
	}
	key, err = c.generateCredentials(ctx, key.ID)
	if err != nil {
		return nil, err
	}
	return &provider.Credential{
		Data:     credentialData(key),
		Ref:      provider.Ref{refKeyID: key.ID, refName: req.Name, refBuckets: strings.Join(buckets, ",")},
		ObjectID: key.ID,
	}, nil
}

// createKey is not retried after a transport failure: the key may exist.
func (c *connection) createKey(ctx context.Context, name string, role provider.Values) (accessKey, error) {
	req, err := jsonRequest("create access key "+name, http.MethodPost, pathCreateKey, map[string]any{
		"organization":           c.orgBody(),
		"object_storage_cluster": map[string]string{"region": c.region},
		"properties": map[string]any{
			"name":              name,
			"all_buckets_read":  role.Bool(fieldAllBucketsRead),
			"all_objects_read":  role.Bool(fieldAllObjectsRead),
			"all_objects_write": role.Bool(fieldAllObjectsWrite),
		},
	}, false)
	if err != nil {
		return accessKey{}, err
	}
	var out keyEnvelope
	if err := c.expect(ctx, req, &out); err != nil {
		return accessKey{}, c.explain(err)
	}
	if out.Key.ID == "" {
		return accessKey{}, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: http.StatusCreated, Message: "the answer has no access key id"}
	}
	return out.Key, nil
}

// generateCredentials asks for a new S3 pair, waiting out provisioning.
// Repeating it is safe: each answer replaces the previous pair.
func (c *connection) generateCredentials(ctx context.Context, id string) (accessKey, error) {
	req, err := jsonRequest("generate S3 credentials for access key "+id, http.MethodPost, pathGenerate,
		map[string]any{"access_key": map[string]string{"id": id}}, true)
	if err != nil {
		return accessKey{}, err
	}
	var out keyEnvelope
	err = retryTransient(ctx, provisioningTimeout, provisioningOrBusy, func() error {
		out = keyEnvelope{}
		return c.expect(ctx, req, &out)
	})
	if err != nil {
		return accessKey{}, err
	}
	if out.Key.S3AccessKeyID == "" || out.Key.S3SecretAccessKey == "" || out.Key.ServerURL == "" {
		return accessKey{}, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: http.StatusOK, Message: "the answer lacks the S3 access key id, secret or server URL"}
	}
	if out.Key.ID == "" {
		out.Key.ID = id
	}
	return out.Key, nil
}

// provisioningOrBusy: the 422 of a key still provisioning (the only 422
// generate_credentials documents, so one without a code counts), 429, 503,
// and no answer at all.
func provisioningOrBusy(ue *provider.UpstreamError) bool {
	switch ue.Status {
	case http.StatusUnprocessableEntity:
		return ue.Code == codeProvisioning || ue.Code == ""
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true
	}
	return noAnswer(ue)
}

func busy(ue *provider.UpstreamError) bool {
	switch ue.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return noAnswer(ue)
}

// noAnswer is a call that got no answer, such as one that outlasted the
// HTTP client's timeout, which provider.Client does not retry itself. Only
// calls that are safe to repeat use it. A call held back by the rate budget
// is not one: it would only be held back again.
func noAnswer(ue *provider.UpstreamError) bool {
	return ue.Status == 0 && !errors.Is(ue, errBudgetSpent)
}

// retryTransient runs call until it succeeds, fails in a way retryable does
// not accept, or the next try would start after limit; waits double from
// firstRetryWait to maxRetryWait. The last error is returned as it is.
func retryTransient(ctx context.Context, limit time.Duration, retryable func(*provider.UpstreamError) bool, call func() error) error {
	giveUp := timeNow().Add(limit)
	wait := firstRetryWait
	for attempt := 1; ; attempt++ {
		err := call()
		ue, ok := asUpstream(err)
		if err == nil || !ok || !retryable(ue) || attempt >= maxRetries || timeNow().Add(wait).After(giveUp) {
			return err
		}
		if sleep(ctx, wait) != nil {
			return err
		}
		wait = min(wait*2, maxRetryWait)
	}
}

func credentialData(key accessKey) map[string]any {
	endpoint := key.ServerURL
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	return map[string]any{
		"access_key_id":          key.S3AccessKeyID,
		"secret_access_key":      key.S3SecretAccessKey,
		"endpoint":               endpoint,
		"katapult_access_key_id": key.ID,
		"state":                  key.State,
	}
}

// Revoke implements provider.Connection: take the key out of the ACLs of
// the buckets it was granted, then delete it. Katapult may drop a deleted
// key from ACLs by itself, but that is not recorded anywhere, so the plugin
// does not count on it.
func (c *connection) Revoke(ctx context.Context, ref provider.Ref) error {
	id := ref[refKeyID]
	if id == "" {
		return fmt.Errorf("katapult: the lease records no access key id, so there is nothing to revoke upstream")
	}
	return c.removeKey(ctx, id, splitList(ref[refBuckets]))
}

func (c *connection) removeKey(ctx context.Context, id string, buckets []string) error {
	for _, bucket := range buckets {
		if err := c.ungrant(ctx, bucket, id); err != nil {
			return err
		}
	}
	return c.deleteKey(ctx, id)
}

// deleteKey treats Katapult's 404 object_storage_access_key_not_found as
// done. Another 404 (a wrong base_url, say) is an error: the key may live.
func (c *connection) deleteKey(ctx context.Context, id string) error {
	req, err := jsonRequest("delete access key "+id, http.MethodDelete, pathKey,
		map[string]any{"access_key": map[string]string{"id": id}}, true)
	if err != nil {
		return err
	}
	return retryTransient(ctx, deleteRetryTimeout, busy, func() error {
		resp, err := c.send(ctx, req)
		switch {
		case err != nil:
			return err
		case succeeded(resp):
			return nil
		}
		ue := upstreamError(req.Op, resp)
		if ue.Status == http.StatusNotFound && ue.Code == codeKeyNotFound {
			return nil
		}
		return ue
	})
}

// Rollback implements provider.Connection: every key named req.Name is
// taken out of the ACLs that hold it and deleted. Katapult derives a key's
// read_buckets and write_buckets from the ACLs, so the listing names them
// even when the role has changed since.
func (c *connection) Rollback(ctx context.Context, req provider.RollbackRequest) error {
	keys, err := c.listKeys(ctx)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if key.Name != req.Name {
			continue
		}
		if err := c.removeKey(ctx, key.ID, union(key.ReadBuckets, key.WriteBuckets)); err != nil {
			return err
		}
	}
	return nil
}

// ListObjects implements provider.Lister: every access key of the
// organization, with the buckets whose ACLs hold it.
func (c *connection) ListObjects(ctx context.Context, _ []provider.Values) ([]provider.UpstreamObject, error) {
	keys, err := c.listKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]provider.UpstreamObject, 0, len(keys))
	for _, key := range keys {
		out = append(out, provider.UpstreamObject{
			Name: key.Name, ID: key.ID, CreatedAt: time.Unix(key.CreatedAt, 0),
			Ref: provider.Ref{refKeyID: key.ID, refName: key.Name, refBuckets: strings.Join(union(key.ReadBuckets, key.WriteBuckets), ",")},
		})
	}
	return out, nil
}

// listKeys reads every page of the organization's access keys.
func (c *connection) listKeys(ctx context.Context) ([]accessKey, error) {
	var all []accessKey
	for page := 1; page <= maxListPages; page++ {
		query := c.orgQuery()
		query.Set("page", strconv.Itoa(page))
		query.Set("per_page", strconv.Itoa(listPageSize))
		var out struct {
			Pagination struct {
				TotalPages int `json:"total_pages"`
			} `json:"pagination"`
			Keys []accessKey `json:"object_storage_access_keys"`
		}
		if err := c.expect(ctx, getRequest("list access keys", pathListKeys, query), &out); err != nil {
			return nil, c.explain(err)
		}
		all = append(all, out.Keys...)
		if page >= out.Pagination.TotalPages || len(out.Keys) == 0 {
			return all, nil
		}
	}
	return nil, fmt.Errorf("katapult: organization %q has more than %d access keys; delete unused ones", c.org.value, maxListPages*listPageSize)
}

// union returns the distinct names of the lists, sorted.
func union(lists ...[]string) []string {
	var out []string
	for _, list := range lists {
		for _, name := range list {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func keyQuery(id string) url.Values { return url.Values{"access_key[id]": {id}} }
