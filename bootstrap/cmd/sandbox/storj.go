package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3grant"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storjsat"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/authservice"
)

// storjBucket is the one bucket the storj S3 gateway holds from the start.
const storjBucket = "sandbox-photos"

// storjStack is the storj upstream: the S3 gateway in access-grant mode is
// the emulator the sandbox serves on the storj port; once it listens,
// attach starts the satellite stand-in and the real Storj auth service
// (which hands out the gateway's URL) and makes the root grant. The
// gateway resolves keys through the auth service, so it refuses every key
// until attach has run.
type storjStack struct {
	resolver s3grant.Pending
}

var theStorj storjStack

// build needs AUTHSERVICE_BIN, the real auth service (make authservice, or
// scripts/build-authservice.sh, prints its path): without it the sandbox
// runs without storj rather than building it for 13 minutes.
func (s *storjStack) build() (sandbox.Emulator, map[string]string, error) {
	if os.Getenv("AUTHSERVICE_BIN") == "" {
		return nil, nil, fmt.Errorf("%w: set AUTHSERVICE_BIN to the Storj auth service binary (make authservice prints its path)", errSkipped)
	}
	gw := s3gateway.New(s.resolver.Resolve, s3gateway.Options{Name: "storj", Buckets: []string{storjBucket}})
	return gw, map[string]string{"bucket": storjBucket}, nil
}

// attach starts the satellite and the auth service behind the gateway srv
// and returns the state entries the storj provider needs: the auth
// service's URL, the satellite's node URL and an unrestricted root grant
// whose encryption key derives from SANDBOX_STORJ_PASSPHRASE.
func (s *storjStack) attach(ctx context.Context, srv *sandbox.Server) (map[string]string, func(), error) {
	sat, err := storjsat.Start(ctx, storjsat.Options{})
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "sandbox-authservice-")
	if err != nil {
		sat.Close()
		return nil, nil, err
	}
	stop := func() { sat.Close(); _ = os.RemoveAll(dir) }
	auth, err := authservice.Start(ctx, authservice.Options{Bin: os.Getenv("AUTHSERVICE_BIN"), Dir: dir,
		AllowedSatellites: []string{sat.NodeURL()}, Endpoint: srv.URL()})
	if err != nil {
		stop()
		return nil, nil, err
	}
	stop = func() { _ = auth.Close(); sat.Close(); _ = os.RemoveAll(dir) }
	r, err := s3grant.New(s3grant.Options{AuthURL: auth.URL(), AuthToken: auth.AuthToken(), Checker: sat})
	if err != nil {
		stop()
		return nil, nil, err
	}
	root, err := sat.NewRootGrant(envOr("SANDBOX_STORJ_PASSPHRASE", "sandbox-storj-passphrase"), storjsat.RootOptions{})
	if err != nil {
		stop()
		return nil, nil, err
	}
	s.resolver.Store(r)
	return map[string]string{"auth_url": auth.URL(), "satellite": sat.NodeURL(), "access_grant": root}, stop, nil
}

// errSkipped is what a build returns for an upstream this run leaves out.
var errSkipped = errors.New("skipped")
