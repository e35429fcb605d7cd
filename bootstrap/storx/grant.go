package storx

import (
	"encoding/json"
	"errors"
	"time"
)

// grantVersion follows a zero byte at the front of every encoded grant, so
// that grants start with '1' in base58 as Storj's serialized accesses do.
const grantVersion = 0x01

// Grant is what an emulated access grant carries. Real grants are
// serialized protobufs with a macaroon and an encryption key; this one is
// JSON in base58, opaque to the plugin but readable by the auth-service
// emulator and by tests through DecodeGrant.
type Grant struct {
	SatelliteAddress string `json:"satellite"`
	ProjectID        string `json:"project_id"`
	// APIKeyID is the satellite's id of the API key inside the grant, empty
	// when the satellite did not know the key.
	APIKeyID   string `json:"api_key_id,omitempty"`
	APIKeyHead string `json:"api_key_head"`
	// EncryptionKey is derived from the passphrase and the project's salt:
	// equal for every grant made with one passphrase in one project.
	EncryptionKey string `json:"encryption_key"`
	// Prefixes and Permission are the restrictions; a grant without
	// Permission is unrestricted. A SharePrefix with an empty Bucket means
	// every bucket.
	Prefixes   []SharePrefix `json:"prefixes,omitempty"`
	Permission *Permission   `json:"permission,omitempty"`
}

// SharePrefix limits a grant to a bucket and, optionally, a key prefix.
type SharePrefix struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix,omitempty"`
}

// Permission is what a restricted grant allows, and until when.
type Permission struct {
	Download  bool       `json:"download"`
	Upload    bool       `json:"upload"`
	List      bool       `json:"list"`
	Delete    bool       `json:"delete"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
}

// NotAfter is the grant's expiry, nil when it has none.
func (g Grant) NotAfter() *time.Time {
	if g.Permission == nil {
		return nil
	}
	return g.Permission.NotAfter
}

func (g Grant) encode() string {
	body, err := json.Marshal(g)
	if err != nil {
		panic(err) // a Grant always marshals
	}
	return base58Encode(append([]byte{0, grantVersion}, body...))
}

var errBadGrant = errors.New("invalid access grant format")

// DecodeGrant reads a grant the satellite emulator issued.
func DecodeGrant(encoded string) (Grant, error) {
	raw, err := base58Decode(encoded)
	if err != nil || len(raw) < 2 || raw[0] != 0 || raw[1] != grantVersion {
		return Grant{}, errBadGrant
	}
	var g Grant
	if err := json.Unmarshal(raw[2:], &g); err != nil || g.APIKeyHead == "" {
		return Grant{}, errBadGrant
	}
	return g, nil
}
