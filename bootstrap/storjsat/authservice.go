package storjsat

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// maxAccessBody bounds POST /v1/access, as authservice's post size limit.
const maxAccessBody = 4 << 10

// AuthService is a small stand-in for Storj's authservice (storj/edge
// pkg/auth) in front of a Satellite, for tests that cannot run the real
// one: POST /v1/access parses a genuine grant with uplink, refuses a
// satellite other than its own ("disallowed satellite") and a grant that
// expires within a minute, with authservice's plain-text 400s, and answers
// {access_key_id, secret_key, endpoint}. It has no delete, like the real
// service: a credential dies with its grant. S3Secret serves an S3
// gateway, asking the satellite about the grant on every lookup. It
// implements sandbox.Emulator.
type AuthService struct {
	sat      *Satellite
	endpoint string
	mux      *http.ServeMux

	mu      sync.Mutex
	records map[string]authRecord
}

// authRecord is one minted credential; the secret is kept so the S3
// gateway double can check signatures with it.
type authRecord struct {
	grant     string
	secret    string
	createdAt time.Time
}

var _ sandbox.Emulator = (*AuthService)(nil)

// NewAuthService returns an auth service that accepts grants of sat and
// hands out endpoint as the S3 gateway's address.
func NewAuthService(sat *Satellite, endpoint string) *AuthService {
	a := &AuthService{sat: sat, endpoint: endpoint, records: map[string]authRecord{}}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("POST /v1/access", a.createAccess)
	return a
}

// Name implements sandbox.Emulator.
func (a *AuthService) Name() string { return "storj-auth" }

// Handler implements sandbox.Emulator.
func (a *AuthService) Handler() http.Handler { return a.mux }

// Reset implements sandbox.Emulator: every credential is forgotten.
func (a *AuthService) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = map[string]authRecord{}
}

// FaultBody implements sandbox.Emulator: authservice answers errors in
// plain text, and 5xx with an empty message.
func (a *AuthService) FaultBody(status int) (string, []byte) {
	if status >= http.StatusInternalServerError {
		return "text/plain; charset=utf-8", []byte("\n")
	}
	return "text/plain; charset=utf-8", []byte(http.StatusText(status) + "\n")
}

// Objects implements sandbox.Emulator: one object per credential, with
// whether the satellite still honours its grant.
func (a *AuthService) Objects() []sandbox.Object {
	a.mu.Lock()
	records := make(map[string]authRecord, len(a.records))
	for id, r := range a.records {
		records[id] = r
	}
	a.mu.Unlock()
	out := make([]sandbox.Object, 0, len(records))
	for id, r := range records {
		obj := sandbox.Object{Kind: "s3_credential", ID: id, Live: true, State: "active",
			Extra: map[string]any{"created_at": r.createdAt.Format(time.RFC3339)}}
		if err := a.sat.CheckGrant(context.Background(), r.grant); err != nil {
			obj.Live, obj.State = false, err.Error()
		}
		out = append(out, obj)
	}
	return out
}

// S3Secret is an s3gateway.Resolver: the secret of a credential whose
// grant the satellite still honours.
func (a *AuthService) S3Secret(accessKeyID string) (string, bool) {
	a.mu.Lock()
	r, ok := a.records[accessKeyID]
	a.mu.Unlock()
	if !ok || a.sat.CheckGrant(context.Background(), r.grant) != nil {
		return "", false
	}
	return r.secret, true
}

// base32Lower is authservice's encoding of access key ids and secrets.
var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func (a *AuthService) createAccess(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AccessGrant string `json:"access_grant"`
		Public      bool   `json:"public"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAccessBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	if msg := a.checkGrant(req.AccessGrant); msg != "" {
		http.Error(w, "access grant: "+msg, http.StatusBadRequest)
		return
	}
	id, secret := randomBase32(17), randomBase32(33)
	a.mu.Lock()
	a.records[id] = authRecord{grant: req.AccessGrant, secret: secret, createdAt: time.Now().UTC()}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"access_key_id": id, "secret_key": secret, "endpoint": a.endpoint})
}

// checkGrant is authdb.Put's validation: the grant parses, names the
// allowed satellite, and does not expire within a minute.
func (a *AuthService) checkGrant(serialized string) string {
	access, err := uplink.ParseAccess(serialized)
	if err != nil {
		return err.Error()
	}
	if access.SatelliteAddress() != a.sat.NodeURL() {
		return `disallowed satellite: "` + access.SatelliteAddress() + `"`
	}
	inner, err := grant.ParseAccess(serialized)
	if err != nil {
		return err.Error()
	}
	expiration, err := apiKeyExpiration(inner.APIKey)
	if err != nil {
		return err.Error()
	}
	if expiration != nil && expiration.Before(time.Now().Add(time.Minute)) {
		return "expiration cannot be shorter than a minute"
	}
	return ""
}

// apiKeyExpiration is the earliest NotAfter of the key's caveats.
func apiKeyExpiration(key *macaroon.APIKey) (*time.Time, error) {
	mac, err := macaroon.ParseMacaroon(key.SerializeRaw())
	if err != nil {
		return nil, err
	}
	var earliest *time.Time
	for _, raw := range mac.Caveats() {
		var cav macaroon.Caveat
		if err := cav.UnmarshalBinary(raw); err != nil {
			return nil, errors.New("invalid caveat format")
		}
		if cav.NotAfter != nil && (earliest == nil || cav.NotAfter.Before(*earliest)) {
			earliest = cav.NotAfter
		}
	}
	return earliest, nil
}

func randomBase32(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(base32Lower.EncodeToString(b))
}
