package backend

import (
	"sync"
	"time"
)

// backoffs spaces out retries of periodic work per name: 1m, 2m, 4m … up to
// maxRotationBackoff after consecutive failures. It lives in memory: after a
// restart or on a new active node every name is tried at once.
type backoffs struct {
	mu    sync.Mutex
	state map[string]backoffState
}

type backoffState struct {
	failures int
	next     time.Time
}

func newBackoffs() *backoffs {
	return &backoffs{state: map[string]backoffState{}}
}

// due reports whether name may be tried at now.
func (b *backoffs) due(name string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.state[name].next)
}

// failed records a failure at now and returns the wait before the next try.
func (b *backoffs) failed(name string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[name]
	st.failures++
	wait := doublingBackoff(st.failures)
	st.next = now.Add(wait)
	b.state[name] = st
	return wait
}

// doublingBackoff is the wait after the n-th failure in a row: 1m, 2m, 4m…,
// never more than maxRotationBackoff.
func doublingBackoff(failures int) time.Duration {
	if failures >= 7 {
		return maxRotationBackoff
	}
	return min(time.Minute<<(failures-1), maxRotationBackoff)
}

// succeeded forgets name's failures.
func (b *backoffs) succeeded(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.state, name)
}
