package testutil

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestWaitsRecordWithoutWaiting(t *testing.T) {
	var w Waits
	if err := w.Sleep(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Sleep(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context = %v, want its error", err)
	}
	if got := w.All(); !slices.Equal(got, []time.Duration{time.Hour, time.Minute}) || w.Total() != time.Hour+time.Minute {
		t.Fatalf("All = %v, Total = %s", got, w.Total())
	}
}

func TestReceiveCountsSignals(t *testing.T) {
	ch := make(chan struct{}, 2)
	ch <- struct{}{}
	ch <- struct{}{}
	if err := Receive(ch, 2, "two signals"); err != nil {
		t.Fatal(err)
	}
}

// A held request reaches the emulator only after Release, is counted under
// its route, and a request Hold does not match passes at once.
func TestHoldHoldsMatchingRequestsUntilRelease(t *testing.T) {
	hold := NewHold(func(r *http.Request) bool { return r.URL.Query().Has("held") })
	srv := StartEmulator(t, Hooked{Emulator: pingEmulator{}, Before: hold.Before})
	client := &http.Client{Timeout: 2 * Failsafe}
	done := make(chan int, 1)
	go func() {
		resp, err := client.Get(srv.URL() + "/ping?held")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	Await(t, hold.Arrived(), 1, "the held request")
	resp, err := client.Get(srv.URL() + "/ping")
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a request Hold does not match: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case status := <-done:
		t.Fatalf("the held request was answered (%d) before Release", status)
	default:
	}
	hold.Release()
	if status := <-done; status != http.StatusNoContent {
		t.Fatalf("the released request got %d", status)
	}
	if n := srv.Calls()["GET /ping"]; n != 2 {
		t.Fatalf("calls = %v, want both under the route GET /ping", srv.Calls())
	}
}
