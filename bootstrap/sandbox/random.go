package sandbox

import (
	"crypto/rand"
	"fmt"
)

// AlnumAlphabet is the alphabet of RandomAlnum: [A-Za-z0-9].
const AlnumAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// RandomBytes returns n bytes from crypto/rand, for the ids, secrets and
// salts the emulators make up.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	return b
}

// RandomAlnum returns n characters drawn uniformly from AlnumAlphabet.
func RandomAlnum(n int) string {
	out := make([]byte, 0, n)
	for len(out) < n {
		for _, b := range RandomBytes(n) {
			// 248 = 4*62: bytes at or above it would favour some characters.
			if b < 248 && len(out) < n {
				out = append(out, AlnumAlphabet[int(b)%len(AlnumAlphabet)])
			}
		}
	}
	return string(out)
}

// NewUUID returns a random (version 4) UUID in its canonical, lower-case
// 36-character form.
func NewUUID() string {
	b := RandomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
