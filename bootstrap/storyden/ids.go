package storyden

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"
)

const (
	xidAlphabet   = "0123456789abcdefghijklmnopqrstuv"
	xidLength     = 20
	alnumAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

var xidEncoding = base32.NewEncoding(xidAlphabet).WithPadding(base32.NoPadding)

// newXID returns an id shaped like github.com/rs/xid's: 12 bytes, the first
// four a Unix timestamp, written as 20 characters of [0-9a-v].
func newXID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	_, _ = rand.Read(b[4:])
	return xidEncoding.EncodeToString(b[:])
}

func isXID(s string) bool {
	return len(s) == xidLength && strings.Trim(s, xidAlphabet) == ""
}

// newSessionToken returns a 43-character cookie value (32 random bytes).
func newSessionToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
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

func isAlnum(s string) bool {
	return strings.Trim(s, alnumAlphabet) == ""
}
