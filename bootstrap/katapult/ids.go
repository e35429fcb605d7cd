package katapult

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

const alnumAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Id layouts seen on the wire: objkey_ and org_ followed by 16 alphanumerics.
const idSuffixLength = 16

func newID(prefix string) string { return prefix + randomAlnum(idSuffixLength) }

// newS3KeyID is 32 lower-case hex characters, like Katapult's s3_access_key_id.
func newS3KeyID() string { return hex.EncodeToString(randomBytes(16)) }

// newSecret returns n alphanumerics for S3 secrets and API token secrets.
func newSecret(n int) string { return randomAlnum(n) }

// newRequestID returns a random UUID (version 4) for X-Request-Id.
func newRequestID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	return b
}

// randomAlnum returns n characters drawn uniformly from [A-Za-z0-9].
func randomAlnum(n int) string {
	out := make([]byte, 0, n)
	for len(out) < n {
		for _, b := range randomBytes(n) {
			// 248 = 4*62: bytes at or above it would favour some characters.
			if b < 248 && len(out) < n {
				out = append(out, alnumAlphabet[int(b)%len(alnumAlphabet)])
			}
		}
	}
	return string(out)
}
