package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// configStoragePrefix holds connections; it is seal-wrapped.
const configStoragePrefix = "config/"

// connectionEntry is a stored connection (config/NAME).
type connectionEntry struct {
	schemaHeader
	Provider     string          `json:"provider"`
	BaseURL      string          `json:"base_url"`
	AllowedRoles []string        `json:"allowed_roles"`
	Values       provider.Values `json:"values"`
	// PendingRoot holds new root values staged by a rotation before the
	// upstream switched to them; see rotation.go.
	PendingRoot provider.Values `json:"pending_root,omitempty"`
	// LastRotation is when Vault last rotated the root.
	LastRotation time.Time `json:"last_rotation,omitempty"`
	// Rotation is the scheduled rotation's settings and state.
	Rotation rotationSchedule `json:"rotation"`
	// Generation changes on every write, so cached sessions built from an
	// older version are never used.
	Generation uint64 `json:"generation"`
	// Tag starts the unique suffix of every object name the connection
	// creates, so tidy claims only its own objects even when another mount
	// or connection shares the upstream account.
	Tag string `json:"object_name_tag"`
	// Transport is how the connection reaches its upstream (TLS, proxy,
	// http:// admitted); absent from connections stored before it existed.
	Transport transportSettings `json:"transport,omitzero"`
	// MaxLiveCredentials caps the live credentials of all the connection's
	// roles together; 0 is no cap.
	MaxLiveCredentials int `json:"max_live_credentials,omitempty"`

	// account is the fingerprint of the entry as cached (never stored).
	account *accountMemo
}

// objectTagLen is the length of a connection's tag in object names.
const objectTagLen = 4

// ownsObject reports whether an upstream object name was made by this
// connection on this cluster: <prefix>-<role>-<tag><cluster><random>.
// Names of v0.1.0, which had no cluster part, are never claimed.
func (e *connectionEntry) ownsObject(name, cluster string) bool {
	if e.Tag == "" || cluster == "" || len(name) < uniqueLen {
		return false
	}
	return strings.HasPrefix(name[len(name)-uniqueLen:], e.Tag+cluster)
}

// allowsRole reports whether allowed_roles admits role.
func (e *connectionEntry) allowsRole(role string) bool {
	for _, allowed := range e.AllowedRoles {
		if allowed == "*" || allowed == role {
			return true
		}
	}
	return false
}

func getConnection(ctx context.Context, s logical.Storage, name string) (*connectionEntry, error) {
	return readStored[connectionEntry](ctx, s, configStoragePrefix+name, fmt.Sprintf("connection %q", name))
}

// accountFingerprint identifies the upstream account a connection's
// credentials live in: the first 16 hex characters of SHA-256 over the
// base URL (host case folded) and the provider's Account fields. It holds
// nothing secret, so leases may carry it; a secret identity (dStor's API key)
// is never part of it, which leaves such a provider's base URL alone.
// Everything else (secrets, StorX's auth_url, allowed_roles) can change
// without moving the credentials elsewhere.
func accountFingerprint(p provider.Provider, e *connectionEntry) string {
	base := strings.TrimRight(e.BaseURL, "/")
	if u, err := url.Parse(base); err == nil {
		u.Host = strings.ToLower(u.Host)
		base = u.String()
	}
	parts := []string{base}
	for _, f := range accountFields(p) {
		parts = append(parts, f.Name, e.Values.String(f.Name))
	}
	// JSON keeps the parts apart whatever characters they hold.
	encoded, _ := json.Marshal(parts)
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])[:16]
}

// accountMemo is an account fingerprint with what it was computed from. A
// cached entry gets one, so every issue does not hash the same account
// again; a copy of the entry that changed what the fingerprint covers no
// longer matches it and is hashed afresh. A provider's fields are fixed in
// the binary, so its account fields' names are kept, not asked again.
type accountMemo struct {
	provider, baseURL string
	names, values     []string // the provider's account fields and their values
	fingerprint       string
}

func newAccountMemo(p provider.Provider, e *connectionEntry) *accountMemo {
	m := &accountMemo{provider: e.Provider, baseURL: e.BaseURL, fingerprint: accountFingerprint(p, e)}
	for _, f := range accountFields(p) {
		m.names = append(m.names, f.Name)
		m.values = append(m.values, e.Values.String(f.Name))
	}
	return m
}

// describes reports whether the memo was computed from what e now holds.
func (m *accountMemo) describes(e *connectionEntry) bool {
	if m == nil || m.provider != e.Provider || m.baseURL != e.BaseURL {
		return false
	}
	for i, name := range m.names {
		if e.Values.String(name) != m.values[i] {
			return false
		}
	}
	return true
}

// accountFingerprint is accountFingerprint(p, e), from the entry's memo
// when it still describes the entry.
func (e *connectionEntry) accountFingerprint(p provider.Provider) string {
	if e.account.describes(e) {
		return e.account.fingerprint
	}
	return accountFingerprint(p, e)
}

// accountFields are the provider's fields that name its upstream account. A
// secret is never among them, even if marked: it would be hashed into leases.
func accountFields(p provider.Provider) []provider.Field {
	var out []provider.Field
	for _, f := range p.ConnectionFields() {
		if f.Account && !f.Secret {
			out = append(out, f)
		}
	}
	return out
}

// errConnectionChanged refuses a connection write based on an entry that
// another write replaced since it was read.
var errConnectionChanged = errors.New("the connection changed while this write was in progress")

// lockConnection takes the lock every writer of a connection's entry holds
// from reading the entry to storing it; it returns the unlock.
func (b *backend) lockConnection(name string) func() {
	lock := locksutil.LockForKey(b.entryLocks, configStoragePrefix+name)
	if !lock.TryLock() {
		if b.connLockContended != nil {
			b.connLockContended(name)
		}
		lock.Lock()
	}
	return lock.Unlock
}

// putConnection stores e as the next generation of the entry it was read
// from (generation 0: none). A write based on an entry that has changed
// since is refused, so a stale copy can never store an old root back.
// Callers hold lockConnection(name).
func putConnection(ctx context.Context, s logical.Storage, name string, e *connectionEntry) error {
	stored, err := getConnection(ctx, s, name)
	if err != nil {
		return err
	}
	storedGeneration := uint64(0)
	if stored != nil {
		storedGeneration = stored.Generation
	}
	if storedGeneration != e.Generation {
		return fmt.Errorf("%w (stored generation %d, this write read %d), so nothing was stored: read config/%s and write again", errConnectionChanged, storedGeneration, e.Generation, name)
	}
	e.Generation++
	return writeStored(ctx, s, configStoragePrefix+name, fmt.Sprintf("connection %q", name), e)
}

// connectionCache keeps one live provider connection (and so one upstream
// session) per connection name and generation, and one HTTP client per
// connection name and transport settings.
type connectionCache struct {
	mu    sync.Mutex
	conns map[string]cachedConnection
	// clientsMu is apart from mu: getOrOpen holds mu while it opens a
	// connection, which asks for its client.
	clientsMu sync.Mutex
	clients   map[string]cachedClient
}

// cachedClient is a connection's HTTP client and what it was built from.
type cachedClient struct {
	settings transportSettings
	template *http.Client
	client   *http.Client
}

type cachedConnection struct {
	generation uint64
	conn       provider.Connection
}

func newConnectionCache() *connectionCache {
	return &connectionCache{conns: map[string]cachedConnection{}, clients: map[string]cachedClient{}}
}

// client returns connection name's HTTP client for these settings: the one
// built when they last changed, or a new one. A new generation that keeps
// the settings (a rotation, a schedule change) keeps the client, and with it
// its pooled TLS connections.
func (c *connectionCache) client(name string, settings transportSettings, template *http.Client) (*http.Client, error) {
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	if cached, ok := c.clients[name]; ok && cached.settings == settings && cached.template == template {
		return cached.client, nil
	}
	client, err := settings.httpClient(template)
	if err != nil {
		return nil, err
	}
	c.dropClientLocked(name)
	c.clients[name] = cachedClient{settings: settings, template: template, client: client}
	return client, nil
}

// dropClientLocked forgets a connection's client and closes its idle
// connections; requests still in flight on it finish normally.
func (c *connectionCache) dropClientLocked(name string) {
	if old, ok := c.clients[name]; ok {
		old.client.CloseIdleConnections()
		delete(c.clients, name)
	}
}

// getOrOpen returns the cached connection for this generation or opens one.
// Opening makes no upstream call, so holding the lock is cheap and ensures
// concurrent first requests share one connection (and one sign-in).
func (c *connectionCache) getOrOpen(name string, generation uint64, open func() (provider.Connection, error)) (provider.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.conns[name]; ok && cached.generation == generation {
		return cached.conn, nil
	}
	conn, err := open()
	if err != nil {
		return nil, err
	}
	c.replaceLocked(name, cachedConnection{generation: generation, conn: conn})
	return conn, nil
}

// put caches conn for generation, e.g. a connection just verified at config
// write, whose session is then reused.
func (c *connectionCache) put(name string, generation uint64, conn provider.Connection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replaceLocked(name, cachedConnection{generation: generation, conn: conn})
}

func (c *connectionCache) replaceLocked(name string, next cachedConnection) {
	if old, ok := c.conns[name]; ok && old.conn != next.conn {
		old.conn.Close()
	}
	c.conns[name] = next
}

// rekey moves a cached connection from one generation to the next when the
// stored change does not touch what the connection was built from.
func (c *connectionCache) rekey(name string, from, to uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.conns[name]; ok && cached.generation == from {
		c.conns[name] = cachedConnection{generation: to, conn: cached.conn}
	}
}

func (c *connectionCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.conns[name]; ok {
		old.conn.Close()
		delete(c.conns, name)
	}
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	c.dropClientLocked(name)
}

func (c *connectionCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, old := range c.conns {
		old.conn.Close()
		delete(c.conns, name)
	}
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	for name := range c.clients {
		c.dropClientLocked(name)
	}
}

// openConnection builds a provider connection from stored or candidate values.
func (b *backend) openConnection(name string, e *connectionEntry, values provider.Values) (provider.Connection, error) {
	p, ok := b.providers.get(e.Provider)
	if !ok {
		return nil, fmt.Errorf("connection %q uses provider %q, which this plugin version does not have", name, e.Provider)
	}
	client, err := b.conns.client(name, e.Transport, b.httpClient)
	if err != nil {
		return nil, err
	}
	return p.Connect(provider.ConnectionConfig{
		Name:       name,
		BaseURL:    e.BaseURL,
		Values:     values,
		HTTPClient: client,
		Logger:     b.providerLogger(e.Provider, name),
		Observer:   b.metrics.observer(e.Provider),
	})
}

// providerLogger is the logger of a connection's provider code.
func (b *backend) providerLogger(providerName, connName string) hclog.Logger {
	return b.Logger().Named(providerName).With("connection", connName)
}

// traceCalls writes the calls of a failed issue or revoke as the trace lines
// the provider's client writes without a CallLog, under its logger.
func (b *backend) traceCalls(calls *provider.CallLog, providerName, connName string) {
	calls.Trace(b.providerLogger(providerName, connName), providerName)
}

// liveConnection loads a connection and returns its cached provider handle.
// It returns nil, nil, nil when the connection does not exist.
func (b *backend) liveConnection(ctx context.Context, s logical.Storage, name string) (provider.Connection, *connectionEntry, error) {
	entry, err := getConnection(ctx, s, name)
	return b.openLoaded(name, entry, err)
}

// cachedLiveConnection is liveConnection through the entry cache; the
// entry is read-only.
func (b *backend) cachedLiveConnection(ctx context.Context, s logical.Storage, name string) (provider.Connection, *connectionEntry, error) {
	entry, err := b.cachedConnection(ctx, s, name)
	return b.openLoaded(name, entry, err)
}

// openLoaded opens the connection whose entry was just loaded, passing on
// the load's error and a missing entry.
func (b *backend) openLoaded(name string, entry *connectionEntry, err error) (provider.Connection, *connectionEntry, error) {
	if err != nil || entry == nil {
		return nil, nil, err
	}
	conn, err := b.openLive(name, entry)
	if err != nil {
		return nil, nil, err
	}
	return conn, entry, nil
}

// openLive returns the cached provider connection for a stored entry the
// caller has already read, opening it if the entry is newer than the cache.
func (b *backend) openLive(name string, entry *connectionEntry) (provider.Connection, error) {
	return b.conns.getOrOpen(name, entry.Generation, func() (provider.Connection, error) {
		return b.openConnection(name, entry, entry.Values)
	})
}
