package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// An issue needs the mount's lease TTLs (each a round trip to Vault, since
// a tune of the mount reaches the plugin only as the answer) for two things:
// the maximum bounds the upstream expiry of the credential, which Vault's own
// capping of the lease cannot; the default is the TTL of a role without one.
//
// Vault caps every lease at the mount's maximum itself, at registration and
// at each renewal, so an issue that needs neither (a role with a ttl, of a
// provider whose credentials carry no expiry from the lease) asks nothing.
// Any other issue plans with Vault's last answer and asks again while the
// upstream create runs: the round trip overlaps the create instead of
// preceding it. Before the credential is returned the two answers are
// compared; if the mount was tuned in between, the credential is revoked and
// issued again under the new values.

// mountTTLs are a mount's lease TTLs as Vault answered them.
type mountTTLs struct {
	max time.Duration
	// def is the default TTL; hasDef says it was asked.
	def    time.Duration
	hasDef bool
}

// covers reports whether m holds what an issue needs.
func (m mountTTLs) covers(needDef bool) bool { return !needDef || m.hasDef }

// sameAs reports whether fresh answers as m did, on what fresh was asked.
func (m mountTTLs) sameAs(fresh mountTTLs) bool {
	return m.max == fresh.max && (!fresh.hasDef || m.def == fresh.def)
}

// view is a system view that answers with m and asks Vault nothing.
func (m mountTTLs) view() logical.SystemView {
	return logical.StaticSystemView{MaxLeaseTTLVal: m.max, DefaultLeaseTTLVal: m.def}
}

// lastMountTTLs keeps this mount's TTLs as Vault last answered them on this node.
type lastMountTTLs struct{ v atomic.Pointer[mountTTLs] }

// ask asks Vault for the maximum and, when needed, the default, both at once.
func (l *lastMountTTLs) ask(sys logical.SystemView, needDef bool) mountTTLs {
	var m mountTTLs
	var wg sync.WaitGroup
	if needDef {
		wg.Go(func() { m.def, m.hasDef = sys.DefaultLeaseTTL(), true })
	}
	m.max = sys.MaxLeaseTTL()
	wg.Wait()
	keep := m
	if prev := l.v.Load(); !needDef && prev != nil {
		keep.def, keep.hasDef = prev.def, prev.hasDef
	}
	l.v.Store(&keep)
	return m
}

// speculate returns the TTLs to plan with: the last answer, and a fresh one
// on the way; or, before any answer that covers the need, a fresh one and no
// channel.
func (l *lastMountTTLs) speculate(sys logical.SystemView, needDef bool) (mountTTLs, <-chan mountTTLs) {
	last := l.v.Load()
	if last == nil || !last.covers(needDef) {
		return l.ask(sys, needDef), nil
	}
	fresh := make(chan mountTTLs, 1)
	go func() { fresh <- l.ask(sys, needDef) }()
	return *last, fresh
}

// ttlPlan is an issue's lease TTLs and what they rest on.
type ttlPlan struct {
	ttl, maxTTL time.Duration
	warnings    []string
	// used is the answer the plan rests on, and fresh brings Vault's
	// answer asked alongside the issue; nil when the plan rests on an
	// answer given during this request, or on none.
	used  mountTTLs
	fresh <-chan mountTTLs
}

// ttlsChangedError says the mount's TTLs changed while a credential was
// being issued under the previous ones, which was revoked.
type ttlsChangedError struct{ fresh mountTTLs }

func (e *ttlsChangedError) Error() string {
	return fmt.Sprintf("the mount's lease TTLs changed during the issue (max %s); the credential was revoked", e.fresh.max)
}

// confirm waits for the fresh answer of a speculative plan and returns a
// *ttlsChangedError when it differs from the one the plan used.
func (p *ttlPlan) confirm(ctx context.Context) error {
	if p.fresh == nil {
		return nil
	}
	select {
	case fresh := <-p.fresh:
		if !p.used.sameAs(fresh) {
			return &ttlsChangedError{fresh: fresh}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// planTTLs fixes the TTLs of an issue of the role. known, when set, is an
// answer Vault gave during this request.
func (b *backend) planTTLs(role *roleEntry, known *mountTTLs) (*ttlPlan, error) {
	roleMax := b.roleMaxTTL(role.Provider, role.MaxTTL)
	needDef := role.TTL == 0
	if !needDef && b.setsNoExpiry(role.Provider) {
		if roleMax == 0 {
			return &ttlPlan{ttl: role.TTL}, nil
		}
		// The role's own bound, as the mount's would be applied.
		return planWith(mountTTLs{max: roleMax}, role.TTL, roleMax)
	}
	if known != nil {
		return planWith(*known, role.TTL, roleMax)
	}
	used, fresh := b.mountTTLs.speculate(b.System(), needDef)
	plan, err := planWith(used, role.TTL, roleMax)
	if err != nil {
		return nil, err
	}
	plan.used, plan.fresh = used, fresh
	return plan, nil
}

// planWith computes the TTLs from the mount's as framework.CalculateTTL does.
func planWith(m mountTTLs, roleTTL, roleMax time.Duration) (*ttlPlan, error) {
	ttl, warnings, err := framework.CalculateTTL(m.view(), 0, roleTTL, 0, roleMax, 0, time.Time{})
	if err != nil {
		return nil, err
	}
	return &ttlPlan{ttl: ttl, maxTTL: effectiveMaxTTL(m.view(), roleMax), warnings: warnings}, nil
}

// effectiveMaxTTL is the role's max_ttl capped by the mount's (or system's) maximum.
func effectiveMaxTTL(sys logical.SystemView, roleMax time.Duration) time.Duration {
	max := sys.MaxLeaseTTL()
	if roleMax > 0 && roleMax < max {
		return roleMax
	}
	return max
}
