package storx

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
)

// base58Alphabet is Bitcoin's, which Storj uses for API keys and grants.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// lowerBase32 is the encoding of authservice access key ids and secrets.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// isUUID accepts the canonical 36-character form, as uuid.FromString does.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

// signedToken is consoleauth's token layout: payload and HMAC signature,
// each in padded base64url, joined by a dot.
func signedToken(secret, payload []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(payload)
	return base64.URLEncoding.EncodeToString(payload) + "." + base64.URLEncoding.EncodeToString(mac.Sum(nil))
}

// base58Encode encodes b, each leading zero byte as a leading '1'.
func base58Encode(b []byte) string {
	n := new(big.Int).SetBytes(b)
	radix := big.NewInt(int64(len(base58Alphabet)))
	var out []byte
	mod := new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, base58Alphabet[0])
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

var errNotBase58 = errors.New("not base58")

func base58Decode(s string) ([]byte, error) {
	n := new(big.Int)
	radix := big.NewInt(int64(len(base58Alphabet)))
	zeros := 0
	for zeros < len(s) && s[zeros] == base58Alphabet[0] {
		zeros++
	}
	for _, r := range s {
		idx := strings.IndexRune(base58Alphabet, r)
		if idx < 0 {
			return nil, errNotBase58
		}
		n.Mul(n, radix)
		n.Add(n, big.NewInt(int64(idx)))
	}
	return append(make([]byte, zeros), n.Bytes()...), nil
}
