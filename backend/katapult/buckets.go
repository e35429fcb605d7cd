package katapult

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// bucketACL holds the key id lists of a bucket's access_control_list.
// Katapult's PATCH replaces each list sent whole, so a change is a
// read-modify-write of both.
type bucketACL struct {
	ReadKeyIDs  []string `json:"read_key_ids"`
	WriteKeyIDs []string `json:"write_key_ids"`
}

// bucketLocks serializes the read-modify-writes of one bucket's ACL within
// the connection, so concurrent leases never overwrite each other's grant.
type bucketLocks struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

// lock waits for the bucket, or for ctx to end.
func (l *bucketLocks) lock(ctx context.Context, bucket string) (unlock func(), err error) {
	l.mu.Lock()
	ch := l.locks[bucket]
	if ch == nil {
		ch = make(chan struct{}, 1)
		l.locks[bucket] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("katapult: waiting for another change to the ACL of bucket %s: %w", bucket, ctx.Err())
	}
}

// grantBuckets adds the key to the ACL of every bucket of the role and
// returns the buckets, sorted. A bucket that does not exist is the
// operator's to fix.
func (c *connection) grantBuckets(ctx context.Context, id string, role provider.Values) ([]string, error) {
	read, write := role.Strings(fieldReadBuckets), role.Strings(fieldWriteBuckets)
	buckets := union(read, write)
	for _, bucket := range buckets {
		canRead, canWrite := slices.Contains(read, bucket), slices.Contains(write, bucket)
		err := c.changeACL(ctx, bucket, func(acl *bucketACL) bool {
			added := canRead && addID(&acl.ReadKeyIDs, id)
			return canWrite && addID(&acl.WriteKeyIDs, id) || added
		})
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
	err := c.changeACL(ctx, bucket, func(acl *bucketACL) bool {
		removed := removeID(&acl.ReadKeyIDs, id)
		return removeID(&acl.WriteKeyIDs, id) || removed
	})
	if codeOf(err) == codeBucketNotFound {
		return nil
	}
	return err
}

// changeACL reads the bucket's ACL, lets change edit it, and writes it back
// if change says it changed, all under the bucket's lock.
func (c *connection) changeACL(ctx context.Context, bucket string, change func(*bucketACL) bool) error {
	unlock, err := c.buckets.lock(ctx, bucket)
	if err != nil {
		return err
	}
	defer unlock()
	acl, err := c.readACL(ctx, bucket)
	if err != nil || !change(&acl) {
		return err
	}
	return c.writeACL(ctx, bucket, acl)
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
