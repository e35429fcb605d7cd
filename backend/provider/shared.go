package provider

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
)

// SharedCallTimeout bounds a call that concurrent callers share, such as a
// sign-in. The call runs detached from every caller, so that one caller
// giving up does not fail the others waiting on it; this bound ends it if the
// upstream hangs after they all left. It is one request's upstream budget
// (the engine's, under Vault's 90 s request timeout).
const SharedCallTimeout = 80 * time.Second

// SharedCalls runs one call per key at a time and gives its result to every
// caller that asks for the same key meanwhile (a single flight). The zero
// value is ready to use.
type SharedCalls struct {
	// Provider names the upstream in the error of a caller that stops waiting.
	Provider string
	group    singleflight.Group
}

// Do returns the result of fn for key, joining a call already running. fn
// runs on a context detached from the callers and bounded by
// SharedCallTimeout. Each caller waits until the result comes or its own
// ctx ends; then it gets an *UpstreamError naming op.
func (s *SharedCalls) Do(ctx context.Context, key, op string, fn func(context.Context) (any, error)) (any, error) {
	detached := context.WithoutCancel(ctx)
	results := s.group.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(detached, SharedCallTimeout)
		defer cancel()
		return fn(ctx)
	})
	select {
	case r := <-results:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, &UpstreamError{Provider: s.Provider, Op: op, Err: ctx.Err()}
	}
}
