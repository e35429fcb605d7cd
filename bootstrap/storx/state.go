package storx

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Lockout after repeated bad passwords (console.login-attempts-without-penalty
// is 3; the first lockout lasts a minute and doubles from there).
const (
	loginAttemptsWithoutPenalty = 3
	firstLockout                = time.Minute
)

// defaultProjectName is the project create-user makes for every new user.
const defaultProjectName = "My Project"

// state is everything the satellite remembers. Only the lock holder touches it.
type state struct {
	// secret signs session tokens.
	secret     []byte
	developers map[string]*developer // by lower-cased email
	users      map[string]*user      // by lower-cased email
	projects   []*project
	sessions   map[string]session // by token
	keys       []*apiKey          // in creation order
	// namelessDeletes counts delete-by-name calls without a name.
	namelessDeletes int
}

type developer struct {
	id           string
	email        string
	passwordSalt []byte
	passwordHash []byte
	lockedOut    bool
	mfa          bool
	failedLogins int
	lockedUntil  time.Time
}

type user struct {
	id          string
	email       string
	fullName    string
	developerID string
	locked      bool
	createdAt   time.Time
}

type project struct {
	// id is the private project ID; publicID is what GET /projects shows.
	// API-key routes accept either.
	id        string
	publicID  string
	name      string
	ownerID   string
	salt      []byte
	createdAt time.Time
}

type session struct {
	developer bool
	subjectID string
	expires   time.Time
}

type apiKey struct {
	id        string
	name      string
	projectID string
	createdBy string
	// head identifies the key inside its serialized form and in grants.
	head      string
	createdAt time.Time
	deletedAt *time.Time
}

func seededState(opts Options, now time.Time) *state {
	s := &state{
		secret:     sandbox.RandomBytes(32),
		developers: map[string]*developer{},
		users:      map[string]*user{},
		sessions:   map[string]session{},
	}
	for _, d := range opts.Developers {
		salt := sandbox.RandomBytes(16)
		s.developers[strings.ToLower(d.Email)] = &developer{
			id: sandbox.NewUUID(), email: d.Email, passwordSalt: salt, passwordHash: saltedHash(salt, d.Password),
			lockedOut: d.LockedOut, mfa: d.MFA,
		}
	}
	for _, u := range opts.Users {
		var developerID string
		if d := s.developers[strings.ToLower(u.Developer)]; d != nil {
			developerID = d.id
		}
		s.addUser(u.Email, u.FullName, developerID, now).locked = u.Locked
	}
	return s
}

// addUser creates an active user with its "My Project", as create-user does.
func (s *state) addUser(email, fullName, developerID string, now time.Time) *user {
	u := &user{id: sandbox.NewUUID(), email: email, fullName: fullName, developerID: developerID, createdAt: now}
	s.users[strings.ToLower(email)] = u
	s.projects = append(s.projects, &project{
		id: sandbox.NewUUID(), publicID: sandbox.NewUUID(), name: defaultProjectName, ownerID: u.id,
		salt: sandbox.RandomBytes(32), createdAt: now,
	})
	return u
}

func (s *state) userByID(id string) *user {
	for _, u := range s.users {
		if u.id == id {
			return u
		}
	}
	return nil
}

// project finds a project by its private or public ID.
func (s *state) project(id string) *project {
	for _, p := range s.projects {
		if p.id == id || p.publicID == id {
			return p
		}
	}
	return nil
}

func (s *state) projectsOwnedBy(userID string) []*project {
	var out []*project
	for _, p := range s.projects {
		if p.ownerID == userID {
			out = append(out, p)
		}
	}
	return out
}

// liveKey returns the project's undeleted key with that name.
func (s *state) liveKey(projectID, name string) *apiKey {
	for _, k := range s.keys {
		if k.projectID == projectID && k.name == name && k.deletedAt == nil {
			return k
		}
	}
	return nil
}

func (s *state) keyByHead(head string) *apiKey {
	for _, k := range s.keys {
		if k.head == head {
			return k
		}
	}
	return nil
}

// newSession returns a token shaped like consoleauth's:
// base64url(16-byte session id) "." base64url(signature), padded.
func (s *state) newSession(developer bool, subjectID string, expires time.Time) string {
	token := signedToken(s.secret, sandbox.RandomBytes(16))
	s.sessions[token] = session{developer: developer, subjectID: subjectID, expires: expires}
	return token
}

func (s *state) sessionFor(token string, developer bool, now time.Time) (session, bool) {
	sess, ok := s.sessions[token]
	if !ok || sess.developer != developer || !now.Before(sess.expires) {
		return session{}, false
	}
	return sess, true
}

func (d *developer) passwordMatches(password string) bool {
	return subtle.ConstantTimeCompare(saltedHash(d.passwordSalt, password), d.passwordHash) == 1
}

// recordFailedLogin locks the account once the free attempts are used up,
// for a minute that doubles with each further failure.
func (d *developer) recordFailedLogin(now time.Time) {
	d.failedLogins++
	if over := d.failedLogins - loginAttemptsWithoutPenalty; over >= 0 {
		d.lockedUntil = now.Add(firstLockout << min(over, 20))
	}
}

func (d *developer) locked(now time.Time) bool {
	return d.lockedOut || now.Before(d.lockedUntil)
}

// encryptionKey stands in for encryption.DeriveRootKey(passphrase, salt):
// the same passphrase gives the same key within a project, and any other
// passphrase or project gives another.
func (p *project) encryptionKey(passphrase string) string {
	mac := hmac.New(sha256.New, p.salt)
	mac.Write([]byte(passphrase))
	return hex.EncodeToString(mac.Sum(nil))
}

func saltedHash(salt []byte, password string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return h.Sum(nil)
}

func (k *apiKey) object(s *state) sandbox.Object {
	owner, projectPublicID := "", ""
	if p := s.project(k.projectID); p != nil {
		projectPublicID = p.publicID
		if u := s.userByID(p.ownerID); u != nil {
			owner = u.email
		}
	}
	state := "active"
	if k.deletedAt != nil {
		state = "deleted"
	}
	return sandbox.Object{
		Kind:  "api_key",
		ID:    k.id,
		Name:  k.name,
		Owner: owner,
		Live:  k.deletedAt == nil,
		State: state,
		Extra: map[string]any{"project_id": k.projectID, "project_public_id": projectPublicID, "created_at": k.createdAt},
	}
}
