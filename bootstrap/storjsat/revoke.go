package storjsat

import (
	"context"
	"crypto/subtle"
	"encoding/hex"

	"storj.io/common/encryption"
	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/common/pb"
	"storj.io/common/rpc/rpcstatus"
	"storj.io/common/storj"
)

// metainfoEndpoint serves RevokeAPIKey; every other metainfo method is the
// generated Unimplemented answer.
type metainfoEndpoint struct {
	pb.DRPCMetainfoUnimplementedServer
	sat *Satellite
}

// RevokeAPIKey follows the satellite's Endpoint.RevokeAPIKey: parse the key
// to revoke, validate the header key (validateBasic), check that the key to
// revoke validates with the same secret and that the header key's tail is
// one of its ancestors' tails, then store the key's tail as revoked.
func (e *metainfoEndpoint) RevokeAPIKey(_ context.Context, req *pb.RevokeAPIKeyRequest) (*pb.RevokeAPIKeyResponse, error) {
	s := e.sat
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeCalls++
	macToRevoke, err := macaroon.ParseMacaroon(req.GetApiKey())
	if err != nil {
		return nil, rpcstatus.Error(rpcstatus.InvalidArgument, "API key to revoke is not a macaroon")
	}
	header, root, err := s.validateHeader(req.Header)
	if err != nil {
		return nil, err
	}
	if !macToRevoke.Validate(root.secret) {
		return nil, rpcstatus.Error(rpcstatus.InvalidArgument, "Macaroon to revoke invalid")
	}
	headerTail := header.Tail()
	tails := macToRevoke.Tails(root.secret)
	// The last tail is the key itself: a key cannot revoke itself.
	for i := 0; i < len(tails)-1; i++ {
		if subtle.ConstantTimeCompare(tails[i], headerTail) == 1 {
			s.revoked[hex.EncodeToString(macToRevoke.Tail())] = true
			return &pb.RevokeAPIKeyResponse{}, nil
		}
	}
	return nil, rpcstatus.Error(rpcstatus.PermissionDenied, "Unauthorized attempt to revoke macaroon")
}

// validateHeader is the part of the satellite's validateBasic that applies
// here: the header key parses, its head names a key the satellite has, and
// an auditable key's tails are registered. Like the satellite, it checks
// neither the header key's caveats nor its revocation: revoking needs only
// the key's identity. The caller holds s.mu.
func (s *Satellite) validateHeader(header *pb.RequestHeader) (*macaroon.APIKey, *rootKey, error) {
	if header == nil {
		return nil, nil, rpcstatus.Error(rpcstatus.InvalidArgument, "Invalid API credentials")
	}
	key, err := macaroon.ParseRawAPIKey(header.ApiKey)
	if err != nil {
		return nil, nil, rpcstatus.Error(rpcstatus.InvalidArgument, "Invalid API credentials")
	}
	root := s.keys[hex.EncodeToString(key.Head())]
	if root == nil {
		return nil, nil, rpcstatus.Error(rpcstatus.PermissionDenied, "Unauthorized API credentials")
	}
	mac, err := macaroon.ParseMacaroon(key.SerializeRaw())
	if err != nil {
		return nil, nil, rpcstatus.Errorf(rpcstatus.InvalidArgument, "invalid macaroon: %v", err)
	}
	if err := s.checkRegistered(root, mac.Tails(root.secret)); err != nil {
		return nil, nil, rpcstatus.Error(rpcstatus.PermissionDenied, err.Error())
	}
	return key, root, nil
}

// encryptionAccess derives the root encryption key the way uplink's
// RequestAccessWithPassphrase does: Argon2 over the passphrase and the
// project's salt, AES-GCM for object keys.
func encryptionAccess(passphrase string, salt []byte) (*grant.EncryptionAccess, error) {
	key, err := encryption.DeriveRootKey([]byte(passphrase), salt, "", 1)
	if err != nil {
		return nil, err
	}
	access := grant.NewEncryptionAccessWithDefaultKey(key)
	access.SetDefaultPathCipher(storj.EncAESGCM)
	return access, nil
}
