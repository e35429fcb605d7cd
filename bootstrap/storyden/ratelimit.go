package storyden

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateLimiter is Storyden's sliding window per client: counts kept in
// one-minute buckets, summed over the last hour. Like Storyden's limiter it
// counts a request before deciding, so refused requests count too.
type rateLimiter struct {
	limit  int
	period time.Duration
	bucket time.Duration

	mu   sync.Mutex
	hits map[string]map[int64]int // client → bucket start (Unix) → requests
}

type rateStatus struct {
	remaining int
	reset     time.Time
	allowed   bool
}

func newRateLimiter(limit int, period, bucket time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, period: period, bucket: bucket, hits: map[string]map[int64]int{}}
}

func (l *rateLimiter) take(client string, now time.Time) rateStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	buckets := l.hits[client]
	if buckets == nil {
		buckets = map[int64]int{}
		l.hits[client] = buckets
	}
	buckets[now.Truncate(l.bucket).Unix()]++
	oldest := now.Add(-l.period).Unix()
	total := 0
	for start, n := range buckets {
		if start <= oldest {
			delete(buckets, start)
			continue
		}
		total += n
	}
	// Storyden reports the reset as a full period from now.
	return rateStatus{remaining: max(l.limit-total, 0), reset: now.Add(l.period), allowed: total <= l.limit}
}

func (l *rateLimiter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hits = map[string]map[int64]int{}
}

// admit applies the rate limit: every answer carries the X-RateLimit
// headers, and a client over the limit gets a plain-text 429 with
// Retry-After as an HTTP-date.
func (e *Emulator) admit(w http.ResponseWriter, r *http.Request) bool {
	status := e.limiter.take(clientIP(r), e.now())
	reset := status.reset.UTC().Format(http.TimeFormat)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(e.limiter.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(status.remaining))
	h.Set("X-RateLimit-Reset", reset)
	if !status.allowed {
		h.Set("Retry-After", reset)
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return false
	}
	return true
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
