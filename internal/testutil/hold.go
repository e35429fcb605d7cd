package testutil

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// HoldFirst wraps emu so that the first method request to exactly path waits
// at the emulator until the test releases the returned Hold (or its client
// goes away). While it waits, the test knows the call is in flight upstream
// and can act: cancel a caller, start another.
func HoldFirst(emu sandbox.Emulator, method, path string) (sandbox.Emulator, *Hold) {
	var taken atomic.Bool
	hold := NewHold(func(r *http.Request) bool {
		return r.Method == method && r.URL.Path == path && taken.CompareAndSwap(false, true)
	})
	return Hooked{Emulator: emu, Before: hold.Before}, hold
}

// FirstWaiterGivesUp runs the scenario of a call shared by its callers (a
// single-flight sign-in): first starts it and is held at the emulator by
// hold; second joins; first's context is then cancelled. first must end with
// its own cancellation, and second, once the hold is released, must succeed.
// It returns second's result.
func FirstWaiterGivesUp[T any](t *testing.T, hold *Hold, first func(context.Context) error, second func() (T, error)) T {
	t.Helper()
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	defer cancelFirst()
	firstDone := make(chan error, 1)
	go func() { firstDone <- first(firstCtx) }()
	<-hold.Arrived()
	type result struct {
		value T
		err   error
	}
	secondDone := make(chan result, 1)
	go func() {
		v, err := second()
		secondDone <- result{v, err}
	}()
	cancelFirst()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled caller got %v, want its own cancellation", err)
	}
	hold.Release()
	got := <-secondDone
	if got.err != nil {
		t.Fatalf("the second caller failed with the first one's cancellation: %v", got.err)
	}
	return got.value
}
