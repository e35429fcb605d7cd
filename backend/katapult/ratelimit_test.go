package katapult

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

func TestObserveRateHeaders(t *testing.T) {
	date := time.Date(2026, 3, 1, 12, 0, 45, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		header     http.Header
		pause      time.Duration
		retryAfter string
	}{
		{"plenty left", 200, http.Header{"X-Ratelimit-Permitted": {"1000"}, "X-Ratelimit-Remaining": {"999"}}, 0, ""},
		{"exactly 5 % left", 200, http.Header{"X-Ratelimit-Permitted": {"1000"}, "X-Ratelimit-Remaining": {"50"}}, 0, ""},
		{"under 5 % left: wait for the next minute", 200, http.Header{"X-Ratelimit-Permitted": {"1000"}, "X-Ratelimit-Remaining": {"49"}}, 15 * time.Second, ""},
		{"no headers", 200, http.Header{}, 0, ""},
		{"429 without Retry-After: the next minute, said in Retry-After", 429, http.Header{}, 15 * time.Second, "15"},
		{"429 with Retry-After", 429, http.Header{"Retry-After": {"7"}}, 7 * time.Second, "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testutil.NewClock(date)
			recordSleeps(t, clock)
			tt.header.Set("Date", date.Format(http.TimeFormat))
			b := &rateBudget{}
			resp := &http.Response{StatusCode: tt.status, Header: tt.header}
			b.observe(resp)
			if got := b.pause(); got != tt.pause && !(tt.pause == 0 && got < 0) {
				t.Errorf("pause = %s, want %s", got, tt.pause)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

func TestNextWindowFollowsTheServersClock(t *testing.T) {
	// The local clock is 20 s behind Katapult's: the wait still ends at
	// Katapult's minute boundary.
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 20, 0, time.UTC))
	recordSleeps(t, clock)
	b := &rateBudget{}
	b.observe(&http.Response{StatusCode: 429, Header: http.Header{"Date": {"Sun, 01 Mar 2026 12:00:40 GMT"}}})
	if got := b.pause(); got != 20*time.Second {
		t.Errorf("pause = %s, want 20s", got)
	}
}

func TestClientSlowsDownBeforeTheBudgetIsGone(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	h := newHarness(t, func(o *katapult.Options) { o.RateLimit = 40; o.Now = clock.Now })
	waits := recordSleeps(t, clock)
	const calls = 100
	for i := range calls {
		if err := h.conn.Verify(context.Background()); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// No call was refused and sent again.
	if n := h.srv.Calls()[routeAccount]; n != calls {
		t.Errorf("%d calls reached the emulator, want %d", n, calls)
	}
	// 39 calls leave 1 of 40 (under 5 %), then wait for the next minute.
	want := []time.Duration{30 * time.Second, time.Minute}
	if len(*waits) != len(want) || (*waits)[0] != want[0] || (*waits)[1] != want[1] {
		t.Errorf("waits = %v, want %v", *waits, want)
	}
}

func TestSpentBudgetFailsFastPastTheDeadline(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	h := newHarness(t, func(o *katapult.Options) { o.Now = clock.Now })
	waits := recordSleeps(t, clock)
	h.conn.budget.resumeAt = clock.Now().Add(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := h.conn.Verify(ctx)
	if !errors.Is(err, errBudgetSpent) || !strings.Contains(err.Error(), "after this request's deadline") {
		t.Fatalf("err = %v", err)
	}
	// Failing fast: no wait at all, not even one cut short by the deadline.
	if len(*waits) != 0 {
		t.Errorf("waited %v before failing", *waits)
	}
	if n := len(h.srv.Calls()); n != 0 {
		t.Errorf("%d calls were sent", n)
	}
	ue, _ := asUpstream(err)
	if ue.RetryAfter != time.Minute || ue.Provider != Name {
		t.Errorf("error = %+v, want a retry after the minute left", ue)
	}
}
