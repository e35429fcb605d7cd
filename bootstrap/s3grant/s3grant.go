// Package s3grant is the S3 gateway's access-grant mode: it resolves an
// access key id the way Storj's gateway does, by asking the auth service
// for the access grant and secret registered under it
// (GET {auth}/v1/access/{id} with the auth token), and then asks a
// GrantChecker, standing in for the satellite, whether the grant still
// holds. Nothing is cached, so a grant revoked on the satellite is refused
// on the very next request.
package s3grant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
)

// DefaultTimeout bounds one lookup: the auth service call and the check.
const DefaultTimeout = 10 * time.Second

// maxAnswer bounds the auth service's answer; a grant is a few KiB.
const maxAnswer = 64 << 10

// GrantChecker tells whether a serialized access grant is still usable:
// nil when it is, an error saying why not (revoked, expired …) otherwise.
// The satellite emulator implements it.
type GrantChecker interface {
	CheckGrant(ctx context.Context, serializedGrant string) error
}

// Errors Lookup returns, wrapped with detail.
var (
	// ErrUnknownKey means the auth service knows no such access key id
	// (or no longer: it drops records whose grant has expired).
	ErrUnknownKey = errors.New("s3grant: unknown access key id")
	// ErrBadGrant means the auth service returned a grant uplink cannot parse.
	ErrBadGrant = errors.New("s3grant: unparsable access grant")
	// ErrRefused means the GrantChecker refused the grant.
	ErrRefused = errors.New("s3grant: access grant refused")
	// ErrAuthService means the auth service could not be asked or answered
	// something unexpected.
	ErrAuthService = errors.New("s3grant: auth service failed")
)

// Options configures a Resolver.
type Options struct {
	// AuthURL is the auth service's base URL, e.g. http://127.0.0.1:20000.
	AuthURL string
	// AuthToken is the auth service's token (its --auth-token).
	AuthToken string
	// Checker decides whether a grant still holds.
	Checker GrantChecker
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// Timeout bounds one lookup; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Resolver resolves access key ids through the auth service and a
// GrantChecker. Its Resolve method value is an s3gateway.Resolver.
type Resolver struct {
	base    string
	token   string
	checker GrantChecker
	client  *http.Client
	timeout time.Duration
}

// New returns a Resolver. AuthURL, AuthToken and Checker are required.
func New(opts Options) (*Resolver, error) {
	if opts.AuthURL == "" || opts.AuthToken == "" || opts.Checker == nil {
		return nil, errors.New("s3grant: AuthURL, AuthToken and Checker are required")
	}
	r := &Resolver{base: strings.TrimRight(opts.AuthURL, "/"), token: opts.AuthToken, checker: opts.Checker,
		client: opts.Client, timeout: opts.Timeout}
	if r.client == nil {
		r.client = http.DefaultClient
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	return r, nil
}

// Pending holds a Resolver set after the gateway that uses it started: the
// auth service needs the gateway's address before it runs, and the
// Resolver needs the auth service. Until it is set every key is unknown.
type Pending struct{ atomic.Pointer[Resolver] }

// Resolve is the set Resolver's Resolve, an s3gateway.Resolver.
func (p *Pending) Resolve(accessKeyID string) (string, error) {
	if r := p.Load(); r != nil {
		return r.Resolve(accessKeyID)
	}
	return "", s3gateway.ErrUnknownKey
}

// Resolve is Lookup as the gateway's s3gateway.Resolver: an id the auth
// service does not know is s3gateway.ErrUnknownKey, a grant the checker
// refuses s3gateway.ErrAccessDenied with the secret (Storj's gateway checks
// the signature before the satellite refuses), anything else a failure of
// the credential store.
func (r *Resolver) Resolve(accessKeyID string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	secret, err := r.Lookup(ctx, accessKeyID)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return "", fmt.Errorf("%w: %w", s3gateway.ErrUnknownKey, err)
	case errors.Is(err, ErrRefused):
		return secret, fmt.Errorf("%w: %w", s3gateway.ErrAccessDenied, err)
	case err != nil:
		return "", err
	}
	return secret, nil
}

// accessRecord is the auth service's answer to GET /v1/access/{id}
// (storj.io/edge pkg/auth/httpauth); the fields the gateway needs.
type accessRecord struct {
	AccessGrant string `json:"access_grant"`
	SecretKey   string `json:"secret_key"`
}

// Lookup returns the secret of accessKeyID once the auth service knows it,
// its grant parses and the checker accepts the grant. Errors wrap
// ErrUnknownKey, ErrBadGrant, ErrRefused or ErrAuthService, and never
// carry the grant or the secret; with ErrRefused the secret is returned
// too, since the gateway checks a request's signature before the refusal.
func (r *Resolver) Lookup(ctx context.Context, accessKeyID string) (string, error) {
	rec, err := r.fetch(ctx, accessKeyID)
	if err != nil {
		return "", err
	}
	if _, err := uplink.ParseAccess(rec.AccessGrant); err != nil {
		return "", fmt.Errorf("%w for access key id %s", ErrBadGrant, accessKeyID)
	}
	if err := r.checker.CheckGrant(ctx, rec.AccessGrant); err != nil {
		return rec.SecretKey, fmt.Errorf("%w for access key id %s: %w", ErrRefused, accessKeyID, err)
	}
	return rec.SecretKey, nil
}

func (r *Resolver) fetch(ctx context.Context, accessKeyID string) (*accessRecord, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/access/"+url.PathEscape(accessKeyID), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthService, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthService, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %w", ErrAuthService, err)
	}
	switch {
	// 401 is authservice's answer both for an unknown id and for a wrong
	// token; 400 for an id that is not base32 of the right length.
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest:
		return nil, fmt.Errorf("%w %s: auth service answered %d %s", ErrUnknownKey, accessKeyID, resp.StatusCode, firstLine(body))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET /v1/access answered %d %s", ErrAuthService, resp.StatusCode, firstLine(body))
	}
	var rec accessRecord
	if err := json.Unmarshal(body, &rec); err != nil || rec.AccessGrant == "" || rec.SecretKey == "" {
		return nil, fmt.Errorf("%w: GET /v1/access answered 200 without access_grant and secret_key", ErrAuthService)
	}
	return &rec, nil
}

// firstLine is a bounded one-line excerpt of an error body, which
// authservice writes as plain text.
func firstLine(body []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
