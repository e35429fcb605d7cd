package testutil

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Hold wraps an emulator so that the first request to one route waits at
// the emulator until the test releases it (or its client goes away). While
// it waits, the test knows the call is in flight upstream and can act: cancel
// a caller, start another.
type Hold struct {
	sandbox.Emulator
	method, path string
	taken        atomic.Bool
	arrived      chan struct{}
	release      chan struct{}
	releaseOnce  sync.Once
}

// HoldFirst holds the first method request to exactly path.
func HoldFirst(emu sandbox.Emulator, method, path string) *Hold {
	return &Hold{Emulator: emu, method: method, path: path, arrived: make(chan struct{}), release: make(chan struct{})}
}

// Arrived is closed when the held request has arrived.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Release lets the held request (and any later one) through. It may be
// called more than once.
func (h *Hold) Release() { h.releaseOnce.Do(func() { close(h.release) }) }

// Handler implements sandbox.Emulator.
func (h *Hold) Handler() http.Handler { return holdHandler{hold: h, inner: h.Emulator.Handler()} }

type holdHandler struct {
	hold  *Hold
	inner http.Handler
}

func (hh holdHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := hh.hold
	if r.Method == h.method && r.URL.Path == h.path && h.taken.CompareAndSwap(false, true) {
		close(h.arrived)
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
	}
	hh.inner.ServeHTTP(w, r)
}

// Handler lets the sandbox name calls by the wrapped emulator's routes.
func (hh holdHandler) Handler(r *http.Request) (http.Handler, string) {
	if rt, ok := hh.inner.(interface {
		Handler(*http.Request) (http.Handler, string)
	}); ok {
		return rt.Handler(r)
	}
	return hh.inner, ""
}
