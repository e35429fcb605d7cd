package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// fieldMaxLiveCredentials caps the credentials live at once, on a role (its
// own) or on a connection (all its roles together); 0 is no cap.
const fieldMaxLiveCredentials = "max_live_credentials"

// fieldLiveCredentials is the live count that role and connection reads show.
const fieldLiveCredentials = "live_credentials"

// countsLive reports whether the credentials of a provider can be counted:
// only an issue that creates an object upstream records it in the inventory.
// dStor and Storable mint tokens that leave nothing to record, so a cap on
// them would count nothing and never hold.
func (b *backend) countsLive(providerName string) bool {
	return b.mayLeaveObjects(providerName)
}

// checkMaxLive validates a max_live_credentials value for a provider; it
// returns the message of a 400, or "".
func (b *backend) checkMaxLive(value int, providerName, where string) string {
	switch {
	case value < 0:
		return fmt.Sprintf("%s must be 0 (no cap) or a positive number of credentials, not %d", fieldMaxLiveCredentials, value)
	case value > 0 && !b.countsLive(providerName):
		return fmt.Sprintf("%s cannot be set on %s: provider %s creates nothing upstream that the plugin records, so it cannot count its live credentials "+
			"and a cap would never hold; leave %s at 0 and bound its credentials with max_ttl instead", fieldMaxLiveCredentials, where, providerName, fieldMaxLiveCredentials)
	}
	return ""
}

// liveCounts knows, per connection, which credentials are live: the
// inventory's entries, loaded from storage once and then kept in step with
// this node's inventory writes, plus the issues under way. The inventory is
// local storage, so every count is this cluster's.
type liveCounts struct {
	mu    sync.Mutex
	conns map[string]*connLive
}

// connLive is one connection's count. Its mutex is held from the check of a
// cap to taking the slot, so no two issues can both take the last one.
type connLive struct {
	mu sync.Mutex
	// names maps the object name of every inventory entry to its role;
	// nil until loaded (again, after an invalidation).
	names map[string]string
	// reserved counts the issues under way, per role; total is their sum.
	reserved map[string]int
	total    int
}

func newLiveCounts() *liveCounts {
	return &liveCounts{conns: map[string]*connLive{}}
}

func (l *liveCounts) of(connection string) *connLive {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.conns[connection]
	if !ok {
		c = &connLive{reserved: map[string]int{}}
		l.conns[connection] = c
	}
	return c
}

// load reads the connection's inventory unless it is loaded; c.mu is held.
// An issue that recorded its entry but has not committed yet may be counted
// twice until it does: the count errs on the side of the cap.
func (c *connLive) load(ctx context.Context, s logical.Storage, connection string) error {
	if c.names != nil {
		return nil
	}
	entries, err := listInventory(ctx, s, connection)
	if err != nil {
		return fmt.Errorf("count the live credentials of connection %q: %w", connection, err)
	}
	c.names = make(map[string]string, len(entries))
	for _, e := range entries {
		// An issue in flight holds a slot, not an entry; one a crash
		// interrupted is the rollback's, and no lease holds it.
		if !e.pending() {
			c.names[e.Name] = e.Role
		}
	}
	return nil
}

// liveOf returns the live credentials of role (all roles when role is "")
// on connection, not counting issues under way.
func (l *liveCounts) liveOf(ctx context.Context, s logical.Storage, connection, role string) (int, error) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx, s, connection); err != nil {
		return 0, err
	}
	if role == "" {
		return len(c.names), nil
	}
	n := 0
	for _, r := range c.names {
		if r == role {
			n++
		}
	}
	return n, nil
}

// byRole returns the live credentials of each role of connection.
func (l *liveCounts) byRole(ctx context.Context, s logical.Storage, connection string) (map[string]int, error) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx, s, connection); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, role := range c.names {
		counts[role]++
	}
	return counts, nil
}

// capReachedError refuses an issue over a cap.
type capReachedError struct{ msg string }

func (e *capReachedError) Error() string { return e.msg }

// errorResponse answers with 429 Too Many Requests: Vault answers its own
// quotas (rate limits and lease count quotas) with 429, so operators and
// clients already read it as "a limit was reached, retry later", which is
// what this is: the request is valid and succeeds once a lease ends. A 400
// would tell them to change the request, and nothing in it is wrong.
func (e *capReachedError) errorResponse() (*logical.Response, error) {
	return nil, logical.CodedError(http.StatusTooManyRequests, e.msg)
}

// slot is a reservation taken by reserve: commit turns it into an inventory
// entry, release gives it back; whichever comes first wins.
type slot struct {
	c    *connLive
	role string
	done bool
}

// reserve takes a slot for one issue of role on connection, or refuses with
// a *capReachedError when roleCap or connCap (0: none) is reached. Both caps
// are checked and the slot taken under the connection's lock.
func (l *liveCounts) reserve(ctx context.Context, s logical.Storage, connection, role string, roleCap, connCap int) (*slot, error) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx, s, connection); err != nil {
		return nil, err
	}
	roleLive := 0
	for _, r := range c.names {
		if r == role {
			roleLive++
		}
	}
	connLive := len(c.names)
	var reached []string
	if roleCap > 0 && roleLive+c.reserved[role] >= roleCap {
		reached = append(reached, fmt.Sprintf("role %q has %s of its %s=%d", role, describeLive(roleLive, c.reserved[role]), fieldMaxLiveCredentials, roleCap))
	}
	if connCap > 0 && connLive+c.total >= connCap {
		reached = append(reached, fmt.Sprintf("connection %q has %s of its %s=%d across all its roles", connection, describeLive(connLive, c.total), fieldMaxLiveCredentials, connCap))
	}
	if len(reached) > 0 {
		return nil, &capReachedError{msg: fmt.Sprintf("no credential issued for role %q, nothing was created upstream: %s on this cluster; "+
			"retry once a lease of it is revoked or expires, or raise %s (roles/%s or config/%s)",
			role, strings.Join(reached, ", and "), fieldMaxLiveCredentials, role, connection)}
	}
	c.reserved[role]++
	c.total++
	return &slot{c: c, role: role}, nil
}

// describeLive says how many credentials are live and, if any, being issued.
func describeLive(live, pending int) string {
	if pending == 0 {
		return fmt.Sprintf("%d live", live)
	}
	return fmt.Sprintf("%d live and %d being issued", live, pending)
}

// unreserveLocked gives the slot back; c.mu is held.
func (sl *slot) unreserveLocked() bool {
	if sl == nil || sl.done {
		return false
	}
	sl.done = true
	sl.c.reserved[sl.role]--
	sl.c.total--
	return true
}

// release gives back a slot whose issue failed; after commit it does nothing.
func (sl *slot) release() {
	if sl == nil {
		return
	}
	sl.c.mu.Lock()
	defer sl.c.mu.Unlock()
	sl.unreserveLocked()
}

// commit turns the slot into the inventory entry name, once it is stored:
// both in one step, so the count never dips in between.
func (sl *slot) commit(name string) {
	if sl == nil {
		return
	}
	sl.c.mu.Lock()
	defer sl.c.mu.Unlock()
	if sl.unreserveLocked() && sl.c.names != nil {
		sl.c.names[name] = sl.role
	}
}

// record follows an inventory entry stored by an issue that took no slot
// (no cap binds it), so that a count loaded for metrics stays exact. It
// loads nothing: an unloaded count reads the entry from storage anyway.
func (l *liveCounts) record(connection, name, role string) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names != nil {
		c.names[name] = role
	}
}

// forget follows a deleted inventory entry.
func (l *liveCounts) forget(connection, name string) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.names, name)
}

// invalidate drops what is loaded for a connection, which another node
// changed; the next count reads storage again. Issues under way keep their
// slots.
func (l *liveCounts) invalidate(connection string) {
	c := l.of(connection)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = nil
}

// dropAll forgets everything loaded, for a backend being torn down.
func (l *liveCounts) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.mu.Lock()
		c.names = nil
		c.mu.Unlock()
	}
}

// maxLiveFieldSchema is the schema of max_live_credentials; what says what
// it caps.
func maxLiveFieldSchema(what string) *framework.FieldSchema {
	return &framework.FieldSchema{Type: framework.TypeInt,
		Description: "Most credentials live at once, counting " + what + " on this cluster (issued and not yet revoked); " +
			"a creds read over it fails with 429. 0 (the default) is no cap. Not available for dstor and storable, whose credentials cannot be counted."}
}
