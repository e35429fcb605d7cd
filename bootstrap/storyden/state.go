package storyden

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Session lifetime, on the server and in the cookie: 90 days.
const sessionLifetime = 90 * 24 * time.Hour

// Access key token layout: "sdpak_" + 12-character lookup id + 32-character
// secret, all from [A-Za-z0-9].
const (
	accessKeyPrefix   = "sdpak_"
	accessKeyIDLength = 12
	accessKeySecret   = 32
	accessKeyLength   = len(accessKeyPrefix) + accessKeyIDLength + accessKeySecret
)

// state is everything the emulator remembers. Only the Emulator's lock
// holder touches it.
type state struct {
	accounts map[string]*account // by account id
	handles  map[string]*account // by lower-cased handle
	sessions map[string]session  // by hash of the session token
	keys     []*accessKey        // in creation order
	keysByID map[string]*accessKey
	// keysByLookup finds a key from the 12 characters after "sdpak_".
	keysByLookup map[string]*accessKey
}

type account struct {
	id           string
	handle       string
	passwordSalt []byte
	passwordHash []byte
	admin        bool
	permissions  []string
	// customRoleID names the role that carries the extra permissions.
	customRoleID string
	createdAt    time.Time
	updatedAt    time.Time
}

type session struct {
	accountID string
	expires   time.Time
}

type accessKey struct {
	// id is the authentication record's xid: what the API shows and DELETE takes.
	id         string
	lookupID   string
	secretHash [sha256.Size]byte
	name       string
	ownerID    string
	createdAt  time.Time
	expiresAt  *time.Time
	disabled   bool
}

func seededState(seeds []Account, now time.Time) *state {
	s := &state{
		accounts:     map[string]*account{},
		handles:      map[string]*account{},
		sessions:     map[string]session{},
		keysByID:     map[string]*accessKey{},
		keysByLookup: map[string]*accessKey{},
	}
	for _, a := range seeds {
		s.addAccount(a.Handle, a.Password, a.Admin, a.Permissions, now)
	}
	return s
}

func (s *state) addAccount(handle, password string, admin bool, permissions []string, now time.Time) *account {
	a := &account{
		id:           newXID(now),
		handle:       strings.ToLower(handle),
		admin:        admin,
		permissions:  slices.Clone(permissions),
		customRoleID: newXID(now),
		createdAt:    now,
		updatedAt:    now,
	}
	a.setPassword(password)
	s.accounts[a.id] = a
	s.handles[a.handle] = a
	return a
}

func (s *state) accountByHandle(handle string) *account {
	return s.handles[strings.ToLower(handle)]
}

func (a *account) setPassword(password string) {
	a.passwordSalt = sandbox.RandomBytes(16)
	a.passwordHash = saltedHash(a.passwordSalt, password)
}

func (a *account) passwordMatches(password string) bool {
	return subtle.ConstantTimeCompare(saltedHash(a.passwordSalt, password), a.passwordHash) == 1
}

// can reports whether the account holds permission; admins hold them all.
func (a *account) can(permission string) bool {
	return a.isAdmin() || slices.Contains(a.permissions, permission)
}

func (a *account) isAdmin() bool {
	return a.admin || slices.Contains(a.permissions, PermissionAdministrator)
}

func saltedHash(salt []byte, password string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return h.Sum(nil)
}

// newSession returns a fresh session token for the account. Only its hash
// is kept.
func (s *state) newSession(accountID string, now time.Time) string {
	token := newSessionToken()
	s.sessions[tokenKey(token)] = session{accountID: accountID, expires: now.Add(sessionLifetime)}
	return token
}

// sessionAccount returns the account behind a session token and the key
// under which the session is stored.
func (s *state) sessionAccount(token string, now time.Time) (*account, string, bool) {
	key := tokenKey(token)
	sess, ok := s.sessions[key]
	if !ok || now.After(sess.expires) {
		return nil, "", false
	}
	return s.accounts[sess.accountID], key, true
}

func (s *state) endSession(key string) { delete(s.sessions, key) }

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newAccessKey stores a key for the owner and returns it with its token,
// which is never stored.
func (s *state) newAccessKey(ownerID, name string, expiresAt *time.Time, now time.Time) (*accessKey, string) {
	lookupID := sandbox.RandomAlnum(accessKeyIDLength)
	for s.keysByLookup[lookupID] != nil {
		lookupID = sandbox.RandomAlnum(accessKeyIDLength)
	}
	secret := sandbox.RandomAlnum(accessKeySecret)
	k := &accessKey{
		id:         newXID(now),
		lookupID:   lookupID,
		secretHash: sha256.Sum256([]byte(secret)),
		name:       name,
		ownerID:    ownerID,
		createdAt:  now,
		expiresAt:  expiresAt,
	}
	s.keys = append(s.keys, k)
	s.keysByID[k.id] = k
	s.keysByLookup[lookupID] = k
	return k, accessKeyPrefix + lookupID + secret
}

// accessKeyAccount returns the owner of a valid access key token. Like
// Storyden it checks, in order: length, kind, charset, secret, expiry and
// revocation; any failure just means "no account".
func (s *state) accessKeyAccount(token string, now time.Time) (*account, bool) {
	if len(token) < accessKeyLength || !strings.HasPrefix(token, accessKeyPrefix) {
		return nil, false
	}
	rest := token[len(accessKeyPrefix):]
	lookupID, secret := rest[:accessKeyIDLength], rest[accessKeyIDLength:]
	if !isAlnum(lookupID) || !isAlnum(secret) {
		return nil, false
	}
	k := s.keysByLookup[lookupID]
	if k == nil {
		return nil, false
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], k.secretHash[:]) != 1 || k.expired(now) || k.disabled {
		return nil, false
	}
	return s.accounts[k.ownerID], true
}

func (s *state) keysOwnedBy(accountID string) []*accessKey {
	var out []*accessKey
	for _, k := range s.keys {
		if k.ownerID == accountID {
			out = append(out, k)
		}
	}
	return out
}

// expired follows Storyden: a key is rejected once expires_at is before now.
func (k *accessKey) expired(now time.Time) bool {
	return k.expiresAt != nil && k.expiresAt.Before(now)
}

func (k *accessKey) object(owner string, now time.Time) sandbox.Object {
	state := "enabled"
	switch {
	case k.disabled:
		state = "revoked"
	case k.expired(now):
		state = "expired"
	}
	return sandbox.Object{
		Kind:      "access_key",
		ID:        k.id,
		Name:      k.name,
		Owner:     owner,
		Live:      state == "enabled",
		State:     state,
		ExpiresAt: k.expiresAt,
		Extra:     map[string]any{"created_at": k.createdAt},
	}
}
