package authservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/authservice"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/storjtest"
)

const gatewayEndpoint = "http://127.0.0.1:7777"

var (
	// srv is the real authservice every test talks to; it allows grants
	// of satellite only.
	srv       *authservice.Server
	satellite = storjtest.NodeURL("127.0.0.1:7778")
	startTime time.Duration
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authservice:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	bin, err := authservice.Binary("../..")
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "authservice-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	began := time.Now()
	srv, err = authservice.Start(context.Background(), authservice.Options{
		Bin: bin, Dir: dir, AllowedSatellites: []string{satellite}, Endpoint: gatewayEndpoint,
	})
	if err != nil {
		return 0, err
	}
	startTime = time.Since(began)
	defer srv.Close()
	return m.Run(), nil
}

// child derives a lease's grant from a fresh root grant of nodeURL:
// read and write on the bucket "photos" until notAfter.
func child(t *testing.T, nodeURL string, notAfter time.Time) string {
	t.Helper()
	access, err := storjtest.RootGrant(t, nodeURL).Share(
		uplink.Permission{AllowDownload: true, AllowUpload: true, AllowList: true, AllowDelete: true, NotAfter: notAfter},
		uplink.SharePrefix{Bucket: "photos"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := access.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type credentials struct {
	AccessKeyID string `json:"access_key_id"`
	SecretKey   string `json:"secret_key"`
	Endpoint    string `json:"endpoint"`
}

func post(t *testing.T, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, "/v1/access", "", body)
}

func do(t *testing.T, method, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

func register(t *testing.T, grant string) credentials {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"access_grant": grant, "public": false})
	resp, data := post(t, string(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/access: %d %s", resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var creds credentials
	if err := json.Unmarshal(data, &creds); err != nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	return creds
}

var (
	accessKeyIDShape = regexp.MustCompile(`^[a-z2-7]{28}$`)
	secretKeyShape   = regexp.MustCompile(`^[a-z2-7]{53}$`)
)

// TestRegisterGrantAndReadItBack: a child grant with a NotAfter an hour away
// becomes S3 credentials of authservice's shapes and our endpoint, and the
// gateway's lookup (with the token) returns the same grant and secret.
func TestRegisterGrantAndReadItBack(t *testing.T) {
	t.Logf("authservice started in %s", startTime)
	grant := child(t, satellite, time.Now().Add(time.Hour))
	creds := register(t, grant)
	if !accessKeyIDShape.MatchString(creds.AccessKeyID) || !secretKeyShape.MatchString(creds.SecretKey) {
		t.Errorf("access key id %d chars, secret %d chars; want 28 and 53 of lower-case base32", len(creds.AccessKeyID), len(creds.SecretKey))
	}
	if creds.Endpoint != gatewayEndpoint {
		t.Errorf("endpoint = %q, want %q", creds.Endpoint, gatewayEndpoint)
	}

	resp, data := do(t, http.MethodGet, "/v1/access/"+creds.AccessKeyID, srv.AuthToken(), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/access/{id}: %d %s", resp.StatusCode, data)
	}
	var rec struct {
		AccessGrant string `json:"access_grant"`
		SecretKey   string `json:"secret_key"`
		Public      bool   `json:"public"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.AccessGrant != grant || rec.SecretKey != creds.SecretKey || rec.Public {
		t.Errorf("GET returned another grant or secret, or public=%v", rec.Public)
	}
	if log, _ := os.ReadFile(srv.LogPath()); bytes.Contains(log, []byte(srv.AuthToken())) ||
		bytes.Contains(log, []byte(creds.SecretKey)) || bytes.Contains(log, []byte(grant)) {
		t.Error("the authservice log holds the auth token, a secret key or a grant")
	}
}

// TestReadBackNeedsTheToken: only the gateway, holding the token, may read
// a record; an unknown id is the same 401, a malformed one 400.
func TestReadBackNeedsTheToken(t *testing.T) {
	creds := register(t, child(t, satellite, time.Now().Add(time.Hour)))
	unknown := otherID(creds.AccessKeyID)
	for _, tc := range []struct {
		name, id, token string
		status          int
	}{
		{"no token", creds.AccessKeyID, "", http.StatusUnauthorized},
		{"wrong token", creds.AccessKeyID, "not-" + srv.AuthToken(), http.StatusUnauthorized},
		{"unknown id", unknown, srv.AuthToken(), http.StatusUnauthorized},
		{"malformed id", strings.Repeat("a", 28), srv.AuthToken(), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := do(t, http.MethodGet, "/v1/access/"+tc.id, tc.token, "")
			if resp.StatusCode != tc.status || bytes.Contains(data, []byte(creds.SecretKey)) {
				t.Errorf("GET: %d %q, want %d without the secret", resp.StatusCode, data, tc.status)
			}
		})
	}
}

// TestRegisterRefusals: the answers the plugin must parse when a grant is
// refused, all plain text.
func TestRegisterRefusals(t *testing.T) {
	other := storjtest.NodeURL("127.0.0.1:7779")
	grantBody := func(grant string) string {
		b, _ := json.Marshal(map[string]any{"access_grant": grant, "public": false})
		return string(b)
	}
	for _, tc := range []struct {
		name, method, body string
		status             int
		want               string
	}{
		{"expires within a minute", http.MethodPost, grantBody(child(t, satellite, time.Now().Add(30*time.Second))),
			http.StatusBadRequest, "expiration cannot be shorter than a minute"},
		{"already expired", http.MethodPost, grantBody(child(t, satellite, time.Now().Add(-time.Hour))),
			http.StatusBadRequest, "expiration cannot be shorter than a minute"},
		{"satellite not allowed", http.MethodPost, grantBody(child(t, other, time.Now().Add(time.Hour))),
			http.StatusBadRequest, "disallowed satellite"},
		{"not a grant", http.MethodPost, grantBody("not-a-grant"), http.StatusBadRequest, "access grant"},
		{"bad JSON", http.MethodPost, `{"access_grant":`, http.StatusUnprocessableEntity, ""},
		{"body over 4 KiB", http.MethodPost, grantBody(strings.Repeat("x", 5<<10)), http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := do(t, tc.method, "/v1/access", "", tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(string(data), tc.want) {
				t.Fatalf("%s /v1/access: %d %q, want %d containing %q", tc.method, resp.StatusCode, data, tc.status, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
		})
	}
}

// TestNoDelete: there is no way to delete a credential; it dies with its
// grant.
func TestNoDelete(t *testing.T) {
	creds := register(t, child(t, satellite, time.Now().Add(time.Hour)))
	resp, data := do(t, http.MethodDelete, "/v1/access/"+creds.AccessKeyID, srv.AuthToken(), "")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d %q, want 405", resp.StatusCode, data)
	}
	if resp, _ := do(t, http.MethodGet, "/v1/access/"+creds.AccessKeyID, srv.AuthToken(), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("after DELETE, GET answered %d, want 200", resp.StatusCode)
	}
}

// otherID is a well-formed access key id that was never issued: id with one
// character past its version byte changed.
func otherID(id string) string {
	c := byte('a')
	if id[10] == c {
		c = 'b'
	}
	return id[:10] + string(c) + id[11:]
}

func TestStartNeedsOptions(t *testing.T) {
	_, err := authservice.Start(context.Background(), authservice.Options{Bin: "authservice", Dir: t.TempDir()})
	if !errors.Is(err, authservice.ErrOptions) {
		t.Fatalf("Start without satellites and endpoint: %v, want ErrOptions", err)
	}
}

// TestStartReportsAnEarlyExit: a service that stops during start (here,
// an endpoint with a scheme authservice refuses) is an error with its log,
// not a wait until the timeout.
func TestStartReportsAnEarlyExit(t *testing.T) {
	bin, err := authservice.Binary("../..")
	if err != nil {
		t.Fatal(err)
	}
	_, err = authservice.Start(context.Background(), authservice.Options{
		Bin: bin, Dir: t.TempDir(), AllowedSatellites: []string{satellite}, Endpoint: "ftp://127.0.0.1:1",
		ReadyTimeout: time.Hour,
	})
	if !errors.Is(err, authservice.ErrNotReady) || !strings.Contains(err.Error(), "exited") ||
		!strings.Contains(err.Error(), "unexpected scheme") {
		t.Fatalf("Start with an ftp endpoint: %v, want ErrNotReady saying it exited, with its log", err)
	}
}
