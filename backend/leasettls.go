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

// sameAs reports whether fresh answers as m did, on what the plan used.
func (m mountTTLs) sameAs(fresh mountTTLs, usedDef bool) bool {
	return m.max == fresh.max && (!usedDef || m.def == fresh.def)
}

// view is a system view that answers with m and asks Vault nothing.
func (m mountTTLs) view() logical.SystemView {
	return logical.StaticSystemView{MaxLeaseTTLVal: m.max, DefaultLeaseTTLVal: m.def}
}

// lastMountTTLs keeps this mount's TTLs as Vault last answered them on this
// node, and shares the asks of issues that run at once. An issue needs the
// answer to a question sent after it started: then every tune that ended
// before it started is in the answer. So while one ask is in flight, the
// issues that start meanwhile wait for the next, sent as soon as the one in
// flight returns, whose answer serves them all: at most one ask per mount
// is in flight, and under load one answers several issues.
type lastMountTTLs struct {
	v atomic.Pointer[mountTTLs]

	mu     sync.Mutex
	flying bool
	// next is the ask the issues that started during the flight wait for.
	next *sharedAsk
}

// sharedAsk is one question to Vault and its answer, once done is closed.
type sharedAsk struct {
	needDef bool
	done    chan struct{}
	answer  mountTTLs
}

// fresh returns an ask sent after the call.
func (l *lastMountTTLs) fresh(sys logical.SystemView, needDef bool) *sharedAsk {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next = &sharedAsk{done: make(chan struct{})}
	}
	a := l.next
	a.needDef = a.needDef || needDef
	if !l.flying {
		l.flying, l.next = true, nil
		go l.fly(sys, a)
	}
	return a
}

// fly sends a, then each ask that gathered issues during the flight before it.
func (l *lastMountTTLs) fly(sys logical.SystemView, a *sharedAsk) {
	for a != nil {
		a.answer = l.ask(sys, a.needDef)
		close(a.done)
		l.mu.Lock()
		a, l.next = l.next, nil
		l.flying = a != nil
		l.mu.Unlock()
	}
}

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

// speculate returns the TTLs to plan with: the last answer, and a fresh ask
// on the way; or, before any answer that covers the need, a fresh answer
// and no ask. The last answer is taken before the ask is sent, so the ask
// may answer differently but never older: taken after, it could already be
// the ask's own answer, and whether a tune costs a second create would
// depend on how the goroutines ran.
func (l *lastMountTTLs) speculate(ctx context.Context, sys logical.SystemView, needDef bool) (mountTTLs, *sharedAsk, error) {
	last := l.v.Load()
	a := l.fresh(sys, needDef)
	if last != nil && last.covers(needDef) {
		return *last, a, nil
	}
	answer, err := a.wait(ctx)
	return answer, nil, err
}

// wait waits for the answer, or for ctx to end.
func (a *sharedAsk) wait(ctx context.Context) (mountTTLs, error) {
	select {
	case <-a.done:
		return a.answer, nil
	case <-ctx.Done():
		return mountTTLs{}, ctx.Err()
	}
}

// ttlPlan is an issue's lease TTLs and what they rest on.
type ttlPlan struct {
	ttl, maxTTL time.Duration
	warnings    []string
	// used is the answer the plan rests on (its default only if usedDef),
	// and fresh the ask sent alongside the issue; nil when the plan rests
	// on an answer given during this request, or on none.
	used    mountTTLs
	usedDef bool
	fresh   *sharedAsk
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
	fresh, err := p.fresh.wait(ctx)
	if err != nil {
		return err
	}
	if !p.used.sameAs(fresh, p.usedDef) {
		return &ttlsChangedError{fresh: fresh}
	}
	return nil
}

// planTTLs fixes the TTLs of an issue of the role. known, when set, is an
// answer Vault gave during this request.
func (b *backend) planTTLs(ctx context.Context, role *roleEntry, known *mountTTLs) (*ttlPlan, error) {
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
	used, fresh, err := b.mountTTLs.speculate(ctx, b.System(), needDef)
	if err != nil {
		return nil, err
	}
	plan, err := planWith(used, role.TTL, roleMax)
	if err != nil {
		return nil, err
	}
	plan.used, plan.usedDef, plan.fresh = used, needDef, fresh
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
