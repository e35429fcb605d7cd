// Package sandbox runs fakes of the plugin's upstream services on loopback.
//
// Each fake (an Emulator) only knows its own API. The sandbox adds what every
// test needs around it: a count of calls per route, injected faults (latency,
// error statuses, dropped connections, corrupted bodies) and control endpoints
// under /_sandbox/ that list what exists upstream, so a test can prove that
// nothing was left behind.
package sandbox

import (
	"net/http"
	"time"
)

// Emulator is one upstream service's fake.
//
// Handler should be an *http.ServeMux (or anything with its Handler method):
// the sandbox then counts calls under the route template, such as
// "DELETE /api/auth/access-keys/{id}", instead of the literal path.
type Emulator interface {
	// Name is the upstream's short name, e.g. "storyden".
	Name() string
	// Handler serves the upstream API routes.
	Handler() http.Handler
	// Objects lists every upstream object the emulator holds, live or not.
	Objects() []Object
	// Reset puts the emulator back to its seeded state.
	Reset()
	// FaultBody shapes an error of the given status the way this upstream
	// does, for faults that answer with a status instead of the handler.
	FaultBody(status int) (contentType string, body []byte)
}

// Object is one thing that exists upstream, such as an access key, as the
// emulator sees it. Tests compare these with what the plugin believes exists.
type Object struct {
	// Kind is the upstream's type of object, e.g. "access_key".
	Kind string `json:"kind"`
	// ID is the upstream's identifier of the object.
	ID string `json:"id"`
	// Name is the human name the creator gave the object.
	Name string `json:"name"`
	// Owner is the upstream account the object belongs to.
	Owner string `json:"owner"`
	// Live is true while the object still grants access.
	Live bool `json:"live"`
	// State is the upstream-specific state, e.g. "enabled" or "revoked".
	State string `json:"state"`
	// ExpiresAt is the object's own upstream expiry, if it has one.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Extra holds upstream-specific details worth showing.
	Extra map[string]any `json:"extra,omitempty"`
}

// TokenObject is a bearer token that is live, "valid", until it expires,
// then "expired": the shape of every token an emulator signs and cannot
// revoke.
func TokenObject(kind, id, owner string, expiresAt, now time.Time, extra map[string]any) Object {
	live := now.Before(expiresAt)
	state := "valid"
	if !live {
		state = "expired"
	}
	return Object{Kind: kind, ID: id, Owner: owner, Live: live, State: state, ExpiresAt: &expiresAt, Extra: extra}
}
