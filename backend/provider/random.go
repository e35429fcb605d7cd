package provider

import (
	"crypto/rand"
	"fmt"
)

// RandomString returns n characters drawn uniformly from alphabet (at most
// 256 characters) with a cryptographic source.
func RandomString(n int, alphabet string) (string, error) {
	size := len(alphabet)
	if size == 0 || size > 256 {
		return "", fmt.Errorf("an alphabet of %d characters cannot be drawn from bytes", size)
	}
	// Bytes at or above the largest multiple of size a byte holds are
	// dropped, so that every character is equally likely.
	limit := 256 - 256%size
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2+8)
	for len(out) < n {
		rand.Read(buf) // never fails: the runtime aborts first
		for _, c := range buf {
			if int(c) < limit && len(out) < n {
				out = append(out, alphabet[int(c)%size])
			}
		}
	}
	return string(out), nil
}
