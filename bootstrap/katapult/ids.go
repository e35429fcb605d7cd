package katapult

import (
	"encoding/hex"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Id layouts seen on the wire: objkey_ and org_ followed by 16 alphanumerics.
const idSuffixLength = 16

func newID(prefix string) string { return prefix + sandbox.RandomAlnum(idSuffixLength) }

// newS3KeyID is 32 lower-case hex characters, like Katapult's s3_access_key_id.
func newS3KeyID() string { return hex.EncodeToString(sandbox.RandomBytes(16)) }

// newSecret returns n alphanumerics for S3 secrets and API token secrets.
func newSecret(n int) string { return sandbox.RandomAlnum(n) }

// newRequestID returns a random UUID (version 4) for X-Request-Id.
func newRequestID() string { return sandbox.NewUUID() }
