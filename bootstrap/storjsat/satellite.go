// Package storjsat is a stand-in for a Storj satellite (Storj DCS or its
// StorX fork) that serves the one satellite call the plugin makes in
// access-grant mode: the DRPC method /metainfo.Metainfo/RevokeAPIKey. It
// runs the satellite's genuine transport: a node identity from
// storj.io/common/identity (difficulty 0, made at start), TLS pinned to that
// identity by storj.io/common's tlsopts, and a listener that routes on the
// "DRPC!!!1" header as drpcmigrate does on a real satellite. Every other
// metainfo method answers Unimplemented.
//
// It also mints genuine root access grants (macaroon API key, satellite node
// URL ID@127.0.0.1:PORT, encryption access from a passphrase) and answers,
// through CheckGrant, whether a grant would still be honoured: the check an
// S3 gateway's satellite calls make for it. RevokeAPIKey follows the
// satellite's checks (storj satellite/metainfo endpoint.go and
// validation.go): the header key must be a known, valid key whose tail
// appears among the ancestor tails of the key to revoke (a key cannot revoke
// itself), and the errors carry the satellite's codes and messages.
//
// Unlike a real satellite, revocations take effect at once: satellites
// cache them (StorX: up to 5 minutes), which a test cannot wait for.
package storjsat

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"storj.io/common/grant"
	"storj.io/common/identity"
	"storj.io/common/macaroon"
	"storj.io/common/pb"
	"storj.io/common/peertls/tlsopts"
	"storj.io/common/storj"
	"storj.io/drpc/drpcmigrate"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
)

// Sentinel errors of CheckGrant.
var (
	// ErrNotAGrant marks text that does not parse as an access grant.
	ErrNotAGrant = errors.New("not a serialized access grant")
	// ErrForeignSatellite marks a grant naming another satellite.
	ErrForeignSatellite = errors.New("the grant names another satellite")
	// ErrUnknownKey marks a grant whose API key this satellite never issued,
	// or whose macaroon does not validate against the key's secret.
	ErrUnknownKey = errors.New("the satellite did not issue this API key (Unauthorized API credentials)")
	// ErrRevoked marks a grant whose API key, or one of its ancestors, was revoked.
	ErrRevoked = errors.New("contains revoked tail")
	// ErrExpired marks a grant outside its NotBefore/NotAfter window.
	ErrExpired = errors.New("the grant is outside its validity period")
	// ErrUnregisteredTail marks a locally derived key of a project with
	// auditable API keys; the text is the satellite's.
	ErrUnregisteredTail = errors.New("unregistered tail not allowed for auditable API key")
)

// Options configures a Satellite.
type Options struct {
	// Now is the clock caveats are checked against; nil means time.Now.
	Now func() time.Time
}

// Satellite is the emulator. It is safe for concurrent use.
type Satellite struct {
	ident   *identity.FullIdentity
	nodeURL storj.NodeURL
	now     func() time.Time
	lis     net.Listener
	cancel  context.CancelFunc
	done    chan struct{}

	mu sync.Mutex
	// keys are the root API keys by hex head.
	keys map[string]*rootKey
	// revoked holds revoked tails (hex), as the satellite's revocation DB.
	revoked map[string]bool
	// registered holds the tails (hex) auditable projects accept.
	registered  map[string]bool
	revokeCalls int
}

// rootKey is one API key the satellite created, as its api_keys table has it.
type rootKey struct {
	id        string
	secret    []byte
	auditable bool
}

// Start listens on 127.0.0.1 at a free port with a fresh node identity.
func Start(ctx context.Context, opts Options) (*Satellite, error) {
	ident, err := identity.NewFullIdentity(ctx, identity.NewCAOptions{Difficulty: 0, Concurrency: 1})
	if err != nil {
		return nil, fmt.Errorf("storjsat: make the node identity: %w", err)
	}
	tlsOptions, err := tlsopts.NewOptions(ident, tlsopts.Config{PeerIDVersions: "0"}, nil)
	if err != nil {
		return nil, fmt.Errorf("storjsat: TLS options: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("storjsat: listen: %w", err)
	}
	s := &Satellite{
		ident: ident, now: opts.Now, lis: lis, done: make(chan struct{}),
		nodeURL: storj.NodeURL{ID: ident.ID, Address: lis.Addr().String()},
		keys:    map[string]*rootKey{}, revoked: map[string]bool{}, registered: map[string]bool{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	m := drpcmux.New()
	if err := pb.DRPCRegisterMetainfo(m, &metainfoEndpoint{sat: s}); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("storjsat: register metainfo: %w", err)
	}
	lmux := drpcmigrate.NewListenMux(lis, len(drpcmigrate.DRPCHeader))
	tlsLis := tls.NewListener(lmux.Route(drpcmigrate.DRPCHeader), tlsOptions.ServerTLSConfig())
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	server := drpcserver.New(m)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = lmux.Run(serveCtx) }()
	go func() { defer wg.Done(); _ = server.Serve(serveCtx, tlsLis) }()
	go func() { wg.Wait(); close(s.done) }()
	return s, nil
}

// Close stops the listener and waits for the server to end.
func (s *Satellite) Close() {
	s.cancel()
	<-s.done
}

// NodeURL is the satellite's address as grants carry it: ID@127.0.0.1:PORT.
func (s *Satellite) NodeURL() string { return s.nodeURL.String() }

// RevokeCalls counts the RevokeAPIKey calls received, answered or refused.
func (s *Satellite) RevokeCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revokeCalls
}

// RootOptions configures a root grant.
type RootOptions struct {
	// Auditable makes the key's project refuse tails it did not register,
	// as Storj's auditable API keys do: every locally derived child fails.
	Auditable bool
}

// NewRootGrant creates an unrestricted API key in a new project and returns
// it as a serialized access grant whose encryption key derives from
// passphrase and the project's salt, as the satellite console makes them.
func (s *Satellite) NewRootGrant(passphrase string, opts RootOptions) (string, error) {
	secret, err := macaroon.NewSecret()
	if err != nil {
		return "", err
	}
	key, err := macaroon.NewAPIKey(secret)
	if err != nil {
		return "", err
	}
	projectID, err := macaroon.NewSecret() // 32 random bytes name the project
	if err != nil {
		return "", err
	}
	salt := sha256.Sum256(projectID)
	encAccess, err := encryptionAccess(passphrase, salt[:])
	if err != nil {
		return "", err
	}
	encAccess.LimitTo(key)
	serialized, err := (&grant.Access{SatelliteAddress: s.NodeURL(), APIKey: key, EncAccess: encAccess}).Serialize()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[hex.EncodeToString(key.Head())] = &rootKey{id: hex.EncodeToString(projectID[:16]), secret: secret, auditable: opts.Auditable}
	return serialized, nil
}

// CheckGrant returns nil if the satellite would honour the grant now: it
// names this satellite, its API key derives from a key the satellite
// issued, no tail of its chain was revoked, every caveat's time window
// holds, and (for auditable keys) every tail was registered. It is what an
// S3 gateway learns from its satellite calls with the grant.
func (s *Satellite) CheckGrant(_ context.Context, serializedGrant string) error {
	access, err := grant.ParseAccess(serializedGrant)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAGrant, err)
	}
	if access.SatelliteAddress != s.NodeURL() {
		return fmt.Errorf("%w: %s, this one is %s", ErrForeignSatellite, access.SatelliteAddress, s.NodeURL())
	}
	mac, err := macaroon.ParseMacaroon(access.APIKey.SerializeRaw())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAGrant, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	root, tails, err := s.validate(mac)
	if err != nil {
		return err
	}
	for _, tail := range tails {
		if s.revoked[hex.EncodeToString(tail)] {
			return ErrRevoked
		}
	}
	if err := s.checkTimes(mac); err != nil {
		return err
	}
	return s.checkRegistered(root, tails)
}

// validate finds the key's root and checks its macaroon chain; the caller
// holds s.mu.
func (s *Satellite) validate(mac *macaroon.Macaroon) (*rootKey, [][]byte, error) {
	root := s.keys[hex.EncodeToString(mac.Head())]
	if root == nil {
		return nil, nil, ErrUnknownKey
	}
	ok, tails := mac.ValidateAndTails(root.secret)
	if !ok {
		return nil, nil, ErrUnknownKey
	}
	return root, tails, nil
}

// checkTimes applies every caveat's NotBefore and NotAfter.
func (s *Satellite) checkTimes(mac *macaroon.Macaroon) error {
	now := s.now()
	for _, raw := range mac.Caveats() {
		var cav macaroon.Caveat
		if err := cav.UnmarshalBinary(raw); err != nil {
			return fmt.Errorf("%w: invalid caveat format", ErrNotAGrant)
		}
		if cav.NotAfter != nil && now.After(*cav.NotAfter) {
			return fmt.Errorf("%w: it expired at %s", ErrExpired, cav.NotAfter.UTC().Format(time.RFC3339))
		}
		if cav.NotBefore != nil && now.Before(*cav.NotBefore) {
			return fmt.Errorf("%w: it is valid from %s", ErrExpired, cav.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// checkRegistered is the satellite's handleAPIKeyTails for auditable keys:
// every tail after the root's own must be registered.
func (s *Satellite) checkRegistered(root *rootKey, tails [][]byte) error {
	if !root.auditable || len(tails) <= 1 {
		return nil
	}
	for _, tail := range tails[1:] {
		if !s.registered[hex.EncodeToString(tail)] {
			return ErrUnregisteredTail
		}
	}
	return nil
}
