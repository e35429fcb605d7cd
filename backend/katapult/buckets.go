package katapult

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// bucketACL holds the key id lists of a bucket's access_control_list.
// Katapult's PATCH replaces each list sent whole, so a change is a
// read-modify-write of both.
type bucketACL struct {
	ReadKeyIDs  []string `json:"read_key_ids"`
	WriteKeyIDs []string `json:"write_key_ids"`
}

// grantBuckets adds the key to the ACL of every bucket of the role and
// returns the buckets, sorted. A bucket that does not exist is the
// operator's to fix.
func (c *connection) grantBuckets(ctx context.Context, id string, role provider.Values) ([]string, error) {
	read, write := role.Strings(fieldReadBuckets), role.Strings(fieldWriteBuckets)
	buckets := union(read, write)
	for _, bucket := range buckets {
		err := c.acls.change(ctx, bucket, aclChange{keyID: id, read: slices.Contains(read, bucket), write: slices.Contains(write, bucket)})
		if codeOf(err) == codeBucketNotFound {
			return nil, fmt.Errorf("%w: the role grants bucket %q, which organization %q does not have in %s: create the bucket or fix read_buckets/write_buckets: %w",
				provider.ErrInvalidInput, bucket, c.org.value, c.region, err)
		}
		if err != nil {
			return nil, err
		}
	}
	return buckets, nil
}

// ungrant takes the key out of both lists of the bucket's ACL. A bucket
// that is gone holds no ACL any more.
func (c *connection) ungrant(ctx context.Context, bucket, id string) error {
	err := c.acls.change(ctx, bucket, aclChange{keyID: id, remove: true})
	if codeOf(err) == codeBucketNotFound {
		return nil
	}
	return err
}

// readACL uses GET …/buckets/bucket, which the reference does not list but
// Katapult's spec and recorded traffic have.
func (c *connection) readACL(ctx context.Context, bucket string) (bucketACL, error) {
	query := url.Values{"object_storage_cluster[region]": {c.region}, "bucket[name]": {bucket}}
	req := getRequest("read the ACL of bucket "+bucket, pathBucket, query)
	var out struct {
		Bucket struct {
			ACL *bucketACL `json:"access_control_list"`
		} `json:"object_storage_bucket"`
	}
	if err := c.expect(ctx, req, &out); err != nil {
		return bucketACL{}, err
	}
	if out.Bucket.ACL == nil {
		// Writing lists back without knowing them would drop other grants.
		return bucketACL{}, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: http.StatusOK, Message: "the answer has no access_control_list"}
	}
	return *out.Bucket.ACL, nil
}

// writeACL sends only the two key id lists: the bucket's other ACL settings
// are left out, and so left as they are. It is not retried after a
// transport failure: a retry could overwrite a change made in between.
func (c *connection) writeACL(ctx context.Context, bucket string, acl bucketACL) error {
	if acl.ReadKeyIDs == nil {
		acl.ReadKeyIDs = []string{}
	}
	if acl.WriteKeyIDs == nil {
		acl.WriteKeyIDs = []string{}
	}
	req, err := jsonRequest("update the ACL of bucket "+bucket, http.MethodPatch, pathBucket, map[string]any{
		"object_storage_cluster": map[string]string{"region": c.region},
		"bucket":                 map[string]string{"name": bucket},
		"properties":             map[string]any{"access_control_list": acl},
	}, false)
	if err != nil {
		return err
	}
	var out map[string]any
	return c.expect(ctx, req, &out)
}

func addID(list *[]string, id string) bool {
	if slices.Contains(*list, id) {
		return false
	}
	*list = append(*list, id)
	return true
}

func removeID(list *[]string, id string) bool {
	before := len(*list)
	*list = slices.DeleteFunc(*list, func(x string) bool { return x == id })
	return len(*list) != before
}
