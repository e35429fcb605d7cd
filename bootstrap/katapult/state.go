package katapult

import (
	"crypto/subtle"
	"slices"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Region is the one object storage cluster Katapult has today.
const Region = "uk-lon-1"

// serverURL is what generate_credentials answers: host:port, no scheme.
const serverURL = Region + ".katapultobjects.com:443"

const (
	s3SecretLength    = 40
	tokenSecretLength = 48
)

// state is everything the emulator remembers. Only the Emulator's lock
// holder touches it.
type state struct {
	orgs     []*organization
	tokens   []*apiToken
	keys     []*accessKey // in creation order, deleted ones included
	buckets  []*bucket    // in seeding order
	keysByID map[string]*accessKey
}

type organization struct {
	id, subDomain, name string
	objectStorage       bool
	createdAt           time.Time
}

type apiToken struct {
	id, name, secret string
	org              *organization
	user             string // "" for an organization token
	scopes           []string
}

type accessKey struct {
	id, name string
	org      *organization
	flags    keyFlags
	created  time.Time
	// readyAt is when provisioning ends and generate_credentials works.
	readyAt time.Time
	// s3ID and s3Secret are the current S3 pair, empty until generated.
	s3ID, s3Secret string
	// firstCreds is when credentials were first generated; the key turns
	// "configured" one provisioning delay later.
	firstCreds time.Time
	settle     time.Duration
	deleted    bool
}

type keyFlags struct {
	AllBucketsRead  bool `json:"all_buckets_read"`
	AllObjectsRead  bool `json:"all_objects_read"`
	AllObjectsWrite bool `json:"all_objects_write"`
}

type bucket struct {
	name    string
	org     *organization
	created time.Time
	acl     bucketACL
}

// bucketACL is a bucket's access_control_list, as Katapult shows it.
type bucketACL struct {
	PublicRead   bool     `json:"public_read"`
	PublicList   bool     `json:"public_list"`
	AllKeysRead  bool     `json:"all_keys_read"`
	AllKeysWrite bool     `json:"all_keys_write"`
	ReadKeyIDs   []string `json:"read_key_ids"`
	WriteKeyIDs  []string `json:"write_key_ids"`
}

func seededState(orgs []Organization, tokens []Token, now time.Time) *state {
	s := &state{keysByID: map[string]*accessKey{}}
	bySubDomain := map[string]*organization{}
	for _, o := range orgs {
		org := &organization{id: o.ID, subDomain: o.SubDomain, name: o.Name, objectStorage: !o.NoObjectStorage, createdAt: now}
		s.orgs = append(s.orgs, org)
		bySubDomain[o.SubDomain] = org
		for _, name := range o.Buckets {
			s.buckets = append(s.buckets, &bucket{name: name, org: org, created: now,
				acl: bucketACL{ReadKeyIDs: []string{}, WriteKeyIDs: []string{}}})
		}
	}
	for _, t := range tokens {
		s.tokens = append(s.tokens, &apiToken{id: t.ID, name: t.Name, secret: t.Secret, org: bySubDomain[t.Organization],
			user: t.User, scopes: slices.Clone(t.Scopes)})
	}
	return s
}

// tokenBySecret finds a live token in constant time per token.
func (s *state) tokenBySecret(secret string) *apiToken {
	var found *apiToken
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(t.secret), []byte(secret)) == 1 {
			found = t
		}
	}
	return found
}

func (s *state) tokenByID(id string) *apiToken {
	for _, t := range s.tokens {
		if t.id == id {
			return t
		}
	}
	return nil
}

// organization finds an organization by id, else by sub-domain.
func (s *state) organization(id, subDomain string) *organization {
	for _, o := range s.orgs {
		if (id != "" && o.id == id) || (id == "" && subDomain != "" && o.subDomain == subDomain) {
			return o
		}
	}
	return nil
}

func (s *state) newAccessKey(org *organization, name string, flags keyFlags, now time.Time, delay time.Duration) *accessKey {
	id := newID("objkey_")
	for s.keysByID[id] != nil {
		id = newID("objkey_")
	}
	k := &accessKey{id: id, name: name, org: org, flags: flags, created: now, readyAt: now.Add(delay), settle: delay}
	s.keys = append(s.keys, k)
	s.keysByID[id] = k
	return k
}

// liveKey returns the org's key with that id, unless it was deleted.
func (s *state) liveKey(org *organization, id string) *accessKey {
	k := s.keysByID[id]
	if k == nil || k.deleted || k.org != org {
		return nil
	}
	return k
}

func (s *state) liveKeys(org *organization) []*accessKey {
	var out []*accessKey
	for _, k := range s.keys {
		if !k.deleted && k.org == org {
			out = append(out, k)
		}
	}
	return out
}

// deleteKey kills the key and its S3 pair and, unless keepInACLs, drops
// it from every bucket ACL (see Options.DeletedKeysStayInACLs).
func (s *state) deleteKey(k *accessKey, keepInACLs bool) {
	k.deleted = true
	k.s3ID, k.s3Secret = "", ""
	if keepInACLs {
		return
	}
	for _, b := range s.buckets {
		b.acl.ReadKeyIDs = slices.DeleteFunc(b.acl.ReadKeyIDs, func(id string) bool { return id == k.id })
		b.acl.WriteKeyIDs = slices.DeleteFunc(b.acl.WriteKeyIDs, func(id string) bool { return id == k.id })
	}
}

func (s *state) bucket(org *organization, name string) *bucket {
	for _, b := range s.buckets {
		if b.name == name && b.org == org {
			return b
		}
	}
	return nil
}

func (s *state) bucketCount(org *organization) int {
	n := 0
	for _, b := range s.buckets {
		if b.org == org {
			n++
		}
	}
	return n
}

// keyBuckets derives a key's read_buckets and write_buckets from the ACLs,
// as Katapult does: they cannot be set on the key.
func (s *state) keyBuckets(k *accessKey) (read, write []string) {
	read, write = []string{}, []string{}
	for _, b := range s.buckets {
		if b.org != k.org {
			continue
		}
		if slices.Contains(b.acl.ReadKeyIDs, k.id) {
			read = append(read, b.name)
		}
		if slices.Contains(b.acl.WriteKeyIDs, k.id) {
			write = append(write, b.name)
		}
	}
	return read, write
}

// generateCredentials replaces the key's S3 pair; the old pair stops working.
func (k *accessKey) generateCredentials(now time.Time) {
	k.s3ID, k.s3Secret = newS3KeyID(), newSecret(s3SecretLength)
	if k.firstCreds.IsZero() {
		k.firstCreds = now
	}
}

func (k *accessKey) state(now time.Time) string {
	switch {
	case k.deleted:
		return "deleted"
	case !k.firstCreds.IsZero() && now.After(k.firstCreds.Add(k.settle)):
		return "configured"
	}
	return "pending"
}

func (s *state) keyObject(k *accessKey, now time.Time) sandbox.Object {
	read, write := s.keyBuckets(k)
	return sandbox.Object{
		Kind:  "access_key",
		ID:    k.id,
		Name:  k.name,
		Owner: k.org.subDomain,
		Live:  !k.deleted,
		State: k.state(now),
		Extra: map[string]any{
			"read_buckets":      read,
			"write_buckets":     write,
			"all_buckets_read":  k.flags.AllBucketsRead,
			"all_objects_read":  k.flags.AllObjectsRead,
			"all_objects_write": k.flags.AllObjectsWrite,
			"created_at":        k.created,
		},
	}
}

func (b *bucket) object() sandbox.Object {
	return sandbox.Object{
		Kind:  "bucket",
		ID:    b.name,
		Name:  b.name,
		Owner: b.org.subDomain,
		Live:  true,
		State: "configured",
		Extra: map[string]any{
			"read_key_ids":  slices.Clone(b.acl.ReadKeyIDs),
			"write_key_ids": slices.Clone(b.acl.WriteKeyIDs),
		},
	}
}
