package sandbox

import (
	"regexp"
	"strings"
	"testing"
)

func TestRandomBytesAreFreshEachCall(t *testing.T) {
	a, b := RandomBytes(32), RandomBytes(32)
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("lengths %d and %d, want 32", len(a), len(b))
	}
	if string(a) == string(b) {
		t.Fatal("two calls returned the same 32 bytes")
	}
}

func TestRandomAlnumUsesOnlyItsAlphabet(t *testing.T) {
	for _, n := range []int{0, 1, 16, 44, 500} {
		s := RandomAlnum(n)
		if len(s) != n {
			t.Fatalf("RandomAlnum(%d) has %d characters", n, len(s))
		}
		if strings.Trim(s, AlnumAlphabet) != "" {
			t.Fatalf("RandomAlnum(%d) = %q leaves [A-Za-z0-9]", n, s)
		}
	}
	// 62 characters in 10,000 draws: every one shows up.
	if s := RandomAlnum(10000); strings.Trim(AlnumAlphabet, s) != "" {
		t.Errorf("characters never drawn: %q", strings.Trim(AlnumAlphabet, s))
	}
}

func TestNewUUIDIsVersion4(t *testing.T) {
	pattern := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := NewUUID(), NewUUID()
	for _, id := range []string{a, b} {
		if !pattern.MatchString(id) {
			t.Fatalf("NewUUID() = %q, not a canonical version 4 UUID", id)
		}
	}
	if a == b {
		t.Fatalf("two calls returned %q", a)
	}
}
