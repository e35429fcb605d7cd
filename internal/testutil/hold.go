package testutil

import (
	"net/http"
	"sync/atomic"

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
