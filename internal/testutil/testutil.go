// Package testutil holds what the plugin's and the emulators' tests share: a
// settable clock, a log buffer safe for concurrent writers, helpers that run
// an emulator on loopback (over HTTP or HTTPS) for the length of a test, a
// throwaway certificate authority, a counting CONNECT proxy, and tools that
// make waits and interleavings deterministic (interleave.go).
package testutil

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Clock is a settable time source, safe for concurrent use, that a test
// shares between an emulator and the code under test. The zero Clock reads
// the zero time.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads start until it is moved.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time. Its method value fits every
// Options.Now and package timeNow variable.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// LogBuffer collects log output from concurrent writers, so a test can check
// afterwards that no secret was logged. The zero LogBuffer is empty and ready
// to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it implements io.Writer and never fails.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// JWTClaims decodes the payload of a JWT (header.payload.signature) without
// checking its signature. It fails the test unless token has three parts and
// a base64url-encoded JSON object as its payload.
func JWTClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// StartEmulator serves emu through the sandbox on a free loopback port
// (127.0.0.1:0) and closes it when the test and its subtests end. It fails
// the test if the server cannot start.
func StartEmulator(t testing.TB, emu sandbox.Emulator) *sandbox.Server {
	t.Helper()
	srv, err := sandbox.Start(emu, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// MaxText is the longest message an error parser may return: the cap of
// provider.CleanMessage and its ellipsis.
const MaxText = 300 + len("…")

// CleanText reports whether s is what an error may carry from an upstream:
// bounded and on one line.
func CleanText(s string) bool {
	return len(s) <= MaxText && !strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && unicode.IsSpace(r) })
}

// Rot changes every ASCII letter and digit of s and nothing else, so a
// secret and its rotation pass or fail every check the same way.
func Rot(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+13)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+13)%26
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+5)%10
		}
	}
	return string(b)
}
