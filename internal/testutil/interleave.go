package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Tools to make tests that depend on waits and interleavings deterministic:
// record the waits code asks for instead of spending them, and hold
// requests at an emulator until the test has seen what it needs.

// Waits records the waits code asks for instead of spending them. Its Sleep
// fits provider.Client.Sleep and the packages' sleep variables. The zero
// Waits is ready to use and safe for concurrent use.
type Waits struct {
	mu    sync.Mutex
	waits []time.Duration
}

// Sleep records d and returns at once, with ctx's error if it has ended.
func (w *Waits) Sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.waits = append(w.waits, d)
	w.mu.Unlock()
	return ctx.Err()
}

// All returns the waits asked for so far, in order.
func (w *Waits) All() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.waits...)
}

// Total is the sum of the waits asked for so far.
func (w *Waits) Total() time.Duration {
	var total time.Duration
	for _, d := range w.All() {
		total += d
	}
	return total
}

// Failsafe bounds how long a test waits for a signal it set up, such as a
// request arriving at an emulator. Only a broken test or broken code gets
// there, and the test fails then: it is a guard against hanging, never a
// bound on how fast something ran.
const Failsafe = time.Minute

// Await receives n signals from ch, failing the test, which names what it
// waited for, if they do not all come within Failsafe. Call it from the
// test's goroutine; elsewhere use Receive.
func Await(t testing.TB, ch <-chan struct{}, n int, what string) {
	t.Helper()
	if err := Receive(ch, n, what); err != nil {
		t.Fatal(err)
	}
}

// Receive receives n signals from ch, or returns an error naming what it
// waited for if they do not all come within Failsafe.
func Receive(ch <-chan struct{}, n int, what string) error {
	ctx, cancel := context.WithTimeout(context.Background(), Failsafe)
	defer cancel()
	for i := range n {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %s: %d of %d signals came", Failsafe, what, i, n)
		}
	}
	return nil
}

// Hooked is an emulator whose requests first pass through Before, on the
// request's goroutine, which may hold them (to force an interleaving) or
// note them. The sandbox still counts calls by the emulator's route
// templates, and applies faults before Before runs. The request body is
// read before Before runs: net/http notices a client hanging up, and ends
// r.Context(), only once the body has been read.
type Hooked struct {
	sandbox.Emulator
	Before func(r *http.Request)
}

// Handler implements sandbox.Emulator.
func (h Hooked) Handler() http.Handler {
	return hookedHandler{next: h.Emulator.Handler(), before: h.Before}
}

type hookedHandler struct {
	next   http.Handler
	before func(r *http.Request)
}

func (h hookedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookedBody))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.before(r)
	h.next.ServeHTTP(w, r)
}

// maxHookedBody bounds the request body Hooked reads; the emulators' own
// limits are far below it.
const maxHookedBody = 4 << 20

// Handler looks routes up in the emulator's own mux, so that the sandbox
// names calls by route template.
func (h hookedHandler) Handler(r *http.Request) (http.Handler, string) {
	if rt, ok := h.next.(interface {
		Handler(*http.Request) (http.Handler, string)
	}); ok {
		return rt.Handler(r)
	}
	return h.next, ""
}

// Hold is a Hooked.Before that holds the requests match selects until
// Release, announcing each on Arrived (buffered, so that a request the test
// does not wait for is not stuck on it). A held request whose client leaves
// is abandoned unhandled, as the sandbox's latency faults do.
type Hold struct {
	match   func(r *http.Request) bool
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// NewHold returns a Hold of the requests match selects.
func NewHold(match func(r *http.Request) bool) *Hold {
	return &Hold{match: match, arrived: make(chan struct{}, 1024), release: make(chan struct{})}
}

// Before holds r if it matches; use it as Hooked.Before.
func (h *Hold) Before(r *http.Request) {
	if !h.match(r) {
		return
	}
	h.arrived <- struct{}{}
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
	if r.Context().Err() != nil {
		panic(http.ErrAbortHandler)
	}
}

// Arrived signals once per held request, when it arrives.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Release lets every held request, and every later one, through. It may be
// called more than once.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }
