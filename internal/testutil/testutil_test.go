package testutil

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
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

func TestConnectProxyTunnelsOnlyAuthorizedConnects(t *testing.T) {
	ca := NewCA(t)
	srv := StartTLSEmulator(t, pingEmulator{}, ca.ServerConfig(t, "127.0.0.1"))
	proxy := StartConnectProxy(t, "u:p")
	via := func(proxyURL string) error {
		u, err := url.Parse(proxyURL)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
		resp, err := client.Get(srv.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := via(proxy.URL()); err == nil {
		t.Fatal("a CONNECT without credentials went through")
	}
	if err := via(strings.Replace(proxy.URL(), "http://", "http://u:p@", 1)); err != nil {
		t.Fatal(err)
	}
	if proxy.Connects() != 1 || proxy.Refused() != 1 {
		t.Fatalf("connects %d, refused %d; want 1 and 1", proxy.Connects(), proxy.Refused())
	}
	resp, err := http.Post(proxy.URL(), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired || proxy.Refused() != 2 {
		t.Fatalf("a plain request got %d, refused %d", resp.StatusCode, proxy.Refused())
	}
}
