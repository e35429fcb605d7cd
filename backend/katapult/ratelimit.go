package katapult

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// The clock and the sleep behind every wait of this package; tests replace
// them to run the minute-long waits Katapult asks for in no time.
var (
	timeNow = time.Now
	sleep   = provider.Sleep
)

// rateWindow is Katapult's rate limit window: X-Ratelimit-Remaining resets
// at each minute boundary.
const rateWindow = time.Minute

// lowBudgetDivisor sets when to stop and wait for the next window: when
// fewer than 1/20 (5 %) of the permitted requests remain.
const lowBudgetDivisor = 20

// errBudgetSpent is the cause of a call refused before it was sent.
var errBudgetSpent = errors.New("the API token's per-minute request budget is used up")

// rateBudget follows the token's per-minute budget from the
// X-Ratelimit-Permitted and X-Ratelimit-Remaining headers of every answer,
// and holds calls back until the next window once it runs low or a 429
// arrives. It is shared by every call on the connection.
type rateBudget struct {
	mu       sync.Mutex
	resumeAt time.Time
}

// wrap returns a copy of base whose transport reports every answer to the
// budget, retries by provider.Client included.
func (b *rateBudget) wrap(base *http.Client) *http.Client {
	if base == nil {
		base = &http.Client{Timeout: provider.DefaultRequestTimeout}
	}
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	wrapped := *base
	wrapped.Transport = budgetTransport{next: next, budget: b}
	return &wrapped
}

type budgetTransport struct {
	next   http.RoundTripper
	budget *rateBudget
}

// RoundTrip implements http.RoundTripper.
func (t budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.budget.observe(resp)
	}
	return resp, err
}

// observe pauses the budget when an answer shows it low or spent. Katapult
// sends no Retry-After with its 429 (its window is the minute), so one is
// added here: provider.Client then hands the 429 back at once instead of
// retrying it within the same spent minute.
func (b *rateBudget) observe(resp *http.Response) {
	limited := resp.StatusCode == http.StatusTooManyRequests
	if !limited && !budgetLow(resp.Header) {
		return
	}
	wait := provider.RetryAfter(resp.Header, serverTime(resp.Header))
	if wait == 0 {
		wait = untilNextWindow(serverTime(resp.Header))
		if limited {
			resp.Header.Set("Retry-After", strconv.Itoa(int(max(wait.Round(time.Second), time.Second)/time.Second)))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if until := timeNow().Add(wait); until.After(b.resumeAt) {
		b.resumeAt = until
	}
}

func budgetLow(h http.Header) bool {
	permitted, errP := strconv.Atoi(h.Get("X-Ratelimit-Permitted"))
	remaining, errR := strconv.Atoi(h.Get("X-Ratelimit-Remaining"))
	// remaining*divisor < permitted, in a form that cannot overflow.
	return errP == nil && errR == nil && permitted > 0 && remaining <= (permitted-1)/lowBudgetDivisor
}

// serverTime is the answer's Date, so that the minute boundary is
// Katapult's and not skewed by the local clock; the local clock otherwise.
func serverTime(h http.Header) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t
	}
	return timeNow()
}

func untilNextWindow(now time.Time) time.Duration {
	return now.Truncate(rateWindow).Add(rateWindow).Sub(now)
}

// pause is how long calls must still hold back.
func (b *rateBudget) pause() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resumeAt.Sub(timeNow())
}

// resumesBefore reports whether the pause ends before ctx does.
func (b *rateBudget) resumesBefore(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return !ok || b.pause() <= time.Until(deadline)
}

// wait holds a call back while the budget is paused. A pause that would
// outlast ctx fails at once, saying so, rather than sleeping to the deadline.
func (b *rateBudget) wait(ctx context.Context, op string) error {
	d := b.pause()
	if d <= 0 {
		return nil
	}
	if !b.resumesBefore(ctx) {
		return &provider.UpstreamError{Provider: Name, Op: op, Err: errBudgetSpent, RetryAfter: d,
			Message: fmt.Sprintf("Katapult accepts calls again in %s, after this request's deadline; retry then", d.Round(time.Second))}
	}
	if err := sleep(ctx, d); err != nil {
		return &provider.UpstreamError{Provider: Name, Op: op, Err: err}
	}
	return nil
}
