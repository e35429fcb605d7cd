package katapult

import (
	"context"
	"fmt"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// RegenerateCredentials generates a new S3 pair for an existing access key,
// for static roles: the old pair stops working and an existing secret
// cannot be read back. It waits out provisioning like Issue. The map holds
// access_key_id, secret_access_key, endpoint, katapult_access_key_id and state.
func (c *connection) RegenerateCredentials(ctx context.Context, accessKeyID string) (map[string]any, error) {
	key, err := c.generateCredentials(ctx, accessKeyID)
	if codeOf(err) == codeKeyNotFound {
		return nil, noSuchKey(accessKeyID, err)
	}
	if err != nil {
		return nil, err
	}
	return credentialData(key), nil
}

// LookupAccessKey checks that the access key exists and the token can see it.
func (c *connection) LookupAccessKey(ctx context.Context, accessKeyID string) error {
	var out keyEnvelope
	err := c.expect(ctx, getRequest("read access key "+accessKeyID, pathKey, keyQuery(accessKeyID)), &out)
	if codeOf(err) == codeKeyNotFound {
		return noSuchKey(accessKeyID, err)
	}
	return err
}

func noSuchKey(id string, cause error) error {
	return fmt.Errorf("%w: no such access key %q in the organization the connection's token can see: %w", provider.ErrInvalidInput, id, cause)
}
