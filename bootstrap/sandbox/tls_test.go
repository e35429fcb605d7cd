package sandbox_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

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

func TestStartTLSServesHTTPSWithTheGivenCertificate(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := testutil.StartTLSEmulator(t, pingEmulator{}, ca.ServerConfig(t, "127.0.0.1"))
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %q, want https://127.0.0.1:…", srv.URL())
	}
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	resp, err := trusting.Get(srv.URL() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || srv.Calls()["GET /ping"] != 1 {
		t.Fatalf("GET /ping = %d, calls %v", resp.StatusCode, srv.Calls())
	}
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(srv.URL() + "/ping"); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("a client without the CA got %v, want an x509 error", err)
	}
}

func TestStartTLSNeedsAConfiguration(t *testing.T) {
	if _, err := sandbox.StartTLS(pingEmulator{}, "127.0.0.1:0", nil); err == nil {
		t.Fatal("StartTLS without a TLS configuration started")
	}
}
