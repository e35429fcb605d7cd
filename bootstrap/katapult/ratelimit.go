package katapult

import (
	"sync"
	"time"
)

// rateLimiter is Katapult's per-token budget: a fixed number of requests per
// calendar minute (the recorded Remaining reset at a minute boundary). It
// counts a request before deciding, so refused requests count too.
type rateLimiter struct {
	limit int

	mu     sync.Mutex
	minute int64          // start of the current window, Unix seconds
	counts map[string]int // caller → requests in the window
}

func newRateLimiter(limit int) *rateLimiter {
	return &rateLimiter{limit: limit, counts: map[string]int{}}
}

// take counts one request by caller and returns what is left of the budget
// and whether the request may proceed.
func (l *rateLimiter) take(caller string, now time.Time) (remaining int, allowed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if minute := now.Truncate(time.Minute).Unix(); minute != l.minute {
		l.minute, l.counts = minute, map[string]int{}
	}
	l.counts[caller]++
	n := l.counts[caller]
	return max(l.limit-n, 0), n <= l.limit
}

func (l *rateLimiter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts = map[string]int{}
}
