package provider

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// RandomString returns n characters drawn uniformly from alphabet with a
// cryptographic source.
func RandomString(n int, alphabet string) (string, error) {
	max := big.NewInt(int64(len(alphabet)))
	out := make([]byte, n)
	for i := range out {
		idx, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("read random bytes: %w", err)
		}
		out[i] = alphabet[idx.Int64()]
	}
	return string(out), nil
}
