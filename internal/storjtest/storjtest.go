// Package storjtest makes genuine Storj access grants for tests. It is apart
// from internal/testutil so that only the tests that need storj.io/uplink
// link it.
package storjtest

import (
	"crypto/rand"
	"testing"

	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/common/storj"
	"storj.io/common/testrand"
	"storj.io/uplink"
)

// NodeURL is a satellite node URL, "NODEID@addr", with a random node
// id: enough for a service that only compares the URL, such as the auth
// service's allow list. A satellite that must prove its id over TLS needs
// a real identity instead.
func NodeURL(addr string) string {
	return storj.NodeURL{ID: testrand.NodeID(), Address: addr}.String()
}

// RootGrant is a genuine root access grant for the satellite at nodeURL,
// made as a satellite and `uplink access create` make one: a fresh
// macaroon API key with a random secret, and a random default encryption
// key. It has no caveat, so it never expires; derive children with Share.
func RootGrant(t testing.TB, nodeURL string) *uplink.Access {
	t.Helper()
	secret := make([]byte, 32)
	var key storj.Key
	_, _ = rand.Read(secret) // crypto/rand.Read never fails
	_, _ = rand.Read(key[:])
	apiKey, err := macaroon.NewAPIKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	root := grant.Access{SatelliteAddress: nodeURL, APIKey: apiKey, EncAccess: grant.NewEncryptionAccessWithDefaultKey(&key)}
	serialized, err := root.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	access, err := uplink.ParseAccess(serialized)
	if err != nil {
		t.Fatal(err)
	}
	return access
}
