package storyden

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

const xidAlphabet = "0123456789abcdefghijklmnopqrstuv"

var xidEncoding = base32.NewEncoding(xidAlphabet).WithPadding(base32.NoPadding)

// newXID returns an id shaped like github.com/rs/xid's: 12 bytes, the first
// four a Unix timestamp, written as 20 characters of [0-9a-v].
func newXID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	_, _ = rand.Read(b[4:])
	return xidEncoding.EncodeToString(b[:])
}

// newSessionToken returns a 43-character cookie value (32 random bytes).
func newSessionToken() string {
	return base64.RawURLEncoding.EncodeToString(sandbox.RandomBytes(32))
}

func isAlnum(s string) bool {
	return strings.Trim(s, sandbox.AlnumAlphabet) == ""
}
