package testutil

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance, Now = %v, want %v", got, want)
	}
	later := start.Add(24 * time.Hour)
	c.Set(later)
	if got := c.Now(); !got.Equal(later) {
		t.Fatalf("after Set, Now = %v, want %v", got, later)
	}
	if got := (&Clock{}).Now(); !got.IsZero() {
		t.Fatalf("zero Clock reads %v, want the zero time", got)
	}
}

func TestClockIsSafeForConcurrentUse(t *testing.T) {
	c := NewClock(time.Time{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			c.Advance(time.Second)
			_ = c.Now()
		})
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(time.Time{}.Add(50 * time.Second)) {
		t.Fatalf("Now = %v after 50 concurrent one-second advances", got)
	}
}

func TestLogBufferKeepsEveryConcurrentWrite(t *testing.T) {
	var b LogBuffer
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { fmt.Fprintf(&b, "line %02d\n", i) })
	}
	wg.Wait()
	out := b.String()
	for i := range 50 {
		if !strings.Contains(out, fmt.Sprintf("line %02d\n", i)) {
			t.Errorf("line %02d missing from %q", i, out)
		}
	}
}

// pingEmulator answers GET /ping with 204.
type pingEmulator struct{}

func (pingEmulator) Name() string { return "ping" }
func (pingEmulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return mux
}
func (pingEmulator) Objects() []sandbox.Object      { return nil }
func (pingEmulator) Reset()                         {}
func (pingEmulator) FaultBody(int) (string, []byte) { return "text/plain", nil }

func TestStartEmulatorServesOnLoopbackUntilTheTestEnds(t *testing.T) {
	client := &http.Client{Timeout: 5 * time.Second}
	var url string
	t.Run("serving", func(t *testing.T) {
		srv := StartEmulator(t, pingEmulator{})
		url = srv.URL()
		if !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Fatalf("URL = %q, want a 127.0.0.1 address", url)
		}
		resp, err := client.Get(url + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("GET /ping = %d, want 204", resp.StatusCode)
		}
	})
	if resp, err := client.Get(url + "/ping"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /ping after the test ended = %d, want the server closed", resp.StatusCode)
	}
}

func TestJWTClaimsDecodesThePayload(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"acct","exp":4102444800}`))
	claims := JWTClaims(t, "e30."+payload+".c2ln")
	if claims["sub"] != "acct" || claims["exp"] != float64(4102444800) {
		t.Fatalf("claims = %v", claims)
	}
}
