package storx

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

const (
	defaultGatewayEndpoint = "https://gateway.storx.io"
	// maxAccessBody bounds POST /v1/access; more is a 413.
	maxAccessBody = 64 << 10
	// minGrantLifetime is authservice's floor on a grant's remaining life.
	minGrantLifetime = time.Minute
	// Byte lengths that give authservice's 28-character access key ids and
	// 53-character secrets in lower-case base32.
	accessKeyIDBytes = 17
	secretKeyBytes   = 33
)

// Credential states shown in Objects and returned by VerifyS3Credential.
const (
	credentialActive       = "active"
	credentialKeyDeleted   = "api_key_deleted"
	credentialKeyUnknown   = "api_key_unknown"
	credentialGrantExpired = "expired"
)

// AuthOptions configures an AuthService.
type AuthOptions struct {
	// Endpoint is the S3 gateway returned with every credential; empty
	// means "https://gateway.storx.io".
	Endpoint string
}

// AuthService is a stateful fake of the Storj authservice at auth.storx.io.
// It trusts grants from its satellite only, and asks the satellite whether
// the API key behind a credential still exists. It implements
// sandbox.Emulator.
type AuthService struct {
	sat      *Satellite
	endpoint string
	mux      *http.ServeMux

	mu      sync.Mutex
	records []*accessRecord
}

var _ sandbox.Emulator = (*AuthService)(nil)

// accessRecord is one minted S3 credential. The real authservice keeps
// only what lets it check a secret; the emulator, a test double, also keeps
// the secret itself in memory so that an S3 gateway double can check SigV4
// signatures, which are keyed by the secret (see S3Secret).
type accessRecord struct {
	accessKeyID string
	secretHash  [sha256.Size]byte
	secret      string
	grant       Grant
	public      bool
	createdAt   time.Time
}

// NewAuthService returns an auth service that accepts grants issued by sat.
func NewAuthService(sat *Satellite, opts AuthOptions) *AuthService {
	a := &AuthService{sat: sat, endpoint: opts.Endpoint}
	if a.endpoint == "" {
		a.endpoint = defaultGatewayEndpoint
	}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("POST /v1/access", a.createAccess)
	// Only the gateway, holding authservice's own token, may read a record.
	// Registering it also makes DELETE answer 405, as there is no delete.
	a.mux.HandleFunc("GET /v1/access/{key}", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	})
	return a
}

// Name is "storx-auth".
func (a *AuthService) Name() string { return "storx-auth" }

// Handler serves /v1/access. It is an *http.ServeMux so the sandbox counts
// calls by route template.
func (a *AuthService) Handler() http.Handler { return a.mux }

// Reset forgets every minted credential.
func (a *AuthService) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = nil
}

// FaultBody shapes an injected error like authservice's http.Error calls:
// text/plain, with an empty message for server errors.
func (a *AuthService) FaultBody(status int) (string, []byte) {
	msg := http.StatusText(status)
	if status >= 500 {
		msg = ""
	}
	return "text/plain; charset=utf-8", []byte(msg + "\n")
}

// Objects lists every S3 credential; one is Live while its API key exists
// and its grant has not expired.
func (a *AuthService) Objects() []sandbox.Object {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.sat.now()
	out := make([]sandbox.Object, 0, len(a.records))
	for _, rec := range a.records {
		key := a.sat.keyView(rec.grant.APIKeyHead)
		state := credentialState(rec, key, now)
		out = append(out, sandbox.Object{
			Kind: "s3_credential", ID: rec.accessKeyID, Name: key.name, Owner: key.owner,
			Live: state == credentialActive, State: state, ExpiresAt: rec.grant.NotAfter(),
			Extra: map[string]any{"api_key_id": rec.grant.APIKeyID, "project_id": rec.grant.ProjectID, "endpoint": a.endpoint},
		})
	}
	return out
}

// VerifyS3Credential reports whether the gateway would accept this access
// key id and secret now, and if not, why.
func (a *AuthService) VerifyS3Credential(accessKeyID, secretKey string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rec := range a.records {
		if rec.accessKeyID != accessKeyID {
			continue
		}
		sum := sha256.Sum256([]byte(secretKey))
		if subtle.ConstantTimeCompare(sum[:], rec.secretHash[:]) != 1 {
			return errors.New("the secret key does not match")
		}
		if state := credentialState(rec, a.sat.keyView(rec.grant.APIKeyHead), a.sat.now()); state != credentialActive {
			return fmt.Errorf("the credential is %s", state)
		}
		return nil
	}
	return errors.New("no such access key id")
}

// S3Secret is the s3gateway.Resolver of StorX's gateway: the secret key of
// accessKeyID, with s3gateway.ErrAccessDenied while the credential is not
// live as VerifyS3Credential would see it (its API key deleted or unknown
// on the satellite, its grant expired: the S3 credentials themselves are
// never deleted, so the gateway still resolves them and the satellite
// refuses), and s3gateway.ErrUnknownKey for an id never issued.
func (a *AuthService) S3Secret(accessKeyID string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rec := range a.records {
		if rec.accessKeyID != accessKeyID {
			continue
		}
		if state := credentialState(rec, a.sat.keyView(rec.grant.APIKeyHead), a.sat.now()); state != credentialActive {
			return rec.secret, fmt.Errorf("%w: %s", s3gateway.ErrAccessDenied, state)
		}
		return rec.secret, nil
	}
	return "", s3gateway.ErrUnknownKey
}

func credentialState(rec *accessRecord, key keyView, now time.Time) string {
	switch {
	case !key.found:
		return credentialKeyUnknown
	case !key.live:
		return credentialKeyDeleted
	case rec.grant.NotAfter() != nil && !now.Before(*rec.grant.NotAfter()):
		return credentialGrantExpired
	}
	return credentialActive
}

// createAccess is POST /v1/access. Errors are plain text, as authservice
// answers with http.Error.
func (a *AuthService) createAccess(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAccessBody))
	if err != nil {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	var req struct {
		AccessGrant string   `json:"access_grant"`
		Public      bool     `json:"public"`
		UsageTags   []string `json:"usage_tags"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
		http.Error(w, "unable to decode request body: "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	g, status, msg := a.checkGrant(req.AccessGrant)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	accessKeyID := lowerBase32.EncodeToString(sandbox.RandomBytes(accessKeyIDBytes))
	secret := lowerBase32.EncodeToString(sandbox.RandomBytes(secretKeyBytes))
	a.mu.Lock()
	a.records = append(a.records, &accessRecord{
		accessKeyID: accessKeyID, secretHash: sha256.Sum256([]byte(secret)), secret: secret, grant: g, public: req.Public, createdAt: a.sat.now(),
	})
	a.mu.Unlock()
	body, _ = json.Marshal(map[string]string{"access_key_id": accessKeyID, "secret_key": secret, "endpoint": a.endpoint})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

// checkGrant refuses unreadable grants, grants of another satellite and
// grants that expire within a minute.
func (a *AuthService) checkGrant(encoded string) (Grant, int, string) {
	g, err := DecodeGrant(encoded)
	if err != nil {
		return Grant{}, http.StatusBadRequest, err.Error()
	}
	if g.SatelliteAddress != a.sat.opts.SatelliteAddress {
		return Grant{}, http.StatusBadRequest, "satellite address is not allowed"
	}
	if notAfter := g.NotAfter(); notAfter != nil && notAfter.Before(a.sat.now().Add(minGrantLifetime)) {
		return Grant{}, http.StatusBadRequest, "expiration cannot be shorter than a minute"
	}
	return g, http.StatusOK, ""
}
