package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/authservice"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// anyPorts asks for a free port for every emulator, so tests never collide
// with a running sandbox.
func anyPorts() []string {
	var args []string
	for _, u := range upstreams {
		args = append(args, "-"+u.name+"-port", "0")
	}
	return args
}

func TestRunWritesUsableStateAndRemovesItOnStop(t *testing.T) {
	t.Setenv("SANDBOX_STORYDEN_PASSWORD", "from-the-environment")
	cfg, err := parseFlags(append(anyPorts(), "-state", filepath.Join(t.TempDir(), "state.json")))
	if err != nil {
		t.Fatal(err)
	}
	// A previous run's file must not survive into this one.
	if err := os.WriteFile(cfg.stateFile, []byte(`{"storyden":{"url":"http://stale"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cancel, done, _ := startRun(t, cfg)
	url := value(t, cfg.stateFile, "storyden.url")
	if url == "http://stale" || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("storyden.url = %q", url)
	}
	if info, err := os.Stat(cfg.stateFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", info, err)
	}
	user := value(t, cfg.stateFile, "storyden.username")
	password := value(t, cfg.stateFile, "storyden.password")
	if password != "from-the-environment" {
		t.Fatalf("password = %q, want the one from SANDBOX_STORYDEN_PASSWORD", password)
	}
	body := `{"identifier":"` + user + `","token":"` + password + `"}`
	resp, err := http.Post(url+"/api/auth/password/signin", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in with the state file's credentials = %d", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Stat(cfg.stateFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file left behind: %v", err)
	}
}

// startRun runs the sandbox until the state file is written; cancel stops
// it and done then yields run's result.
func startRun(t *testing.T, cfg config) (context.CancelFunc, <-chan error, *stateLog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := &stateLog{written: make(chan struct{})}
	go func() { done <- run(ctx, cfg, log) }()
	select {
	case <-log.written:
	case err := <-done:
		cancel()
		t.Fatalf("run ended before writing the state file: %v", err)
	case <-time.After(testutil.Failsafe):
		cancel()
		t.Fatalf("run did not write the state file within %s", testutil.Failsafe)
	}
	return cancel, done, log
}

// TestStorjUpstreamServesGrantsThroughTheAuthService runs the storj
// upstream with the real auth service: the state's root grant names the
// state's satellite, the auth service turns it into S3 credentials, and
// the state's gateway accepts those (-s3) and refuses unknown ones.
func TestStorjUpstreamServesGrantsThroughTheAuthService(t *testing.T) {
	bin, err := authservice.Binary("../../..")
	if err != nil {
		t.Fatalf("the auth service binary (scripts/build-authservice.sh, or AUTHSERVICE_BIN): %v", err)
	}
	t.Setenv("AUTHSERVICE_BIN", bin)
	cfg, err := parseFlags(append(anyPorts(), "-state", filepath.Join(t.TempDir(), "state.json")))
	if err != nil {
		t.Fatal(err)
	}
	cancel, done, _ := startRun(t, cfg)
	defer func() { cancel(); <-done }()

	root := value(t, cfg.stateFile, "storj.access_grant")
	access, err := uplink.ParseAccess(root)
	if err != nil {
		t.Fatalf("storj.access_grant: %v", err)
	}
	if got, want := access.SatelliteAddress(), value(t, cfg.stateFile, "storj.satellite"); got != want {
		t.Fatalf("the root grant names satellite %s, the state says %s", got, want)
	}
	keyID, secret := registerGrant(t, value(t, cfg.stateFile, "storj.auth_url"), root)

	var out bytes.Buffer
	if err := s3Check(&out, cfg.stateFile, "storj", keyID, secret); err != nil {
		t.Fatalf("-s3 with the auth service's credentials: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "1 object(s)") {
		t.Fatalf("-s3 output does not list the object it put:\n%s", out.String())
	}
	out.Reset()
	if err := s3Check(&out, cfg.stateFile, "storj", "unknownkeyid", secret); !errors.Is(err, errS3Refused) {
		t.Fatalf("-s3 with an unknown key id = %v, want errS3Refused\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "403 InvalidAccessKeyId") {
		t.Fatalf("-s3 refusal does not show S3's status and code:\n%s", out.String())
	}
}

// registerGrant is what the storj provider does per credential: POST the
// grant to the auth service for S3 credentials.
func registerGrant(t *testing.T, authURL, grant string) (keyID, secret string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"access_grant": grant})
	resp, err := http.Post(authURL+"/v1/access", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		AccessKeyID string `json:"access_key_id"`
		SecretKey   string `json:"secret_key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/access = %d, %v", resp.StatusCode, err)
	}
	return answer.AccessKeyID, answer.SecretKey
}

func TestStorjSkippedWithoutAuthService(t *testing.T) {
	t.Setenv("AUTHSERVICE_BIN", "")
	cfg, err := parseFlags(append(anyPorts(), "-state", filepath.Join(t.TempDir(), "state.json")))
	if err != nil {
		t.Fatal(err)
	}
	cancel, done, log := startRun(t, cfg)
	defer func() { cancel(); <-done }()
	if err := printStateValue(io.Discard, cfg.stateFile, "storj.url"); err == nil {
		t.Fatal("the state has a storj entry without AUTHSERVICE_BIN")
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if !strings.Contains(log.text.String(), "storj skipped: set AUTHSERVICE_BIN") {
		t.Fatalf("the log does not say why storj is missing:\n%s", log.text.String())
	}
}

func TestS3CheckErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := writeState(path, State{"storyden": {"url": "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, upstream, keyID, secret string }{
		{"no credentials", "storj", "", ""},
		{"no such gateway", "storj", "id", "secret"},
		{"not a gateway", "storyden", "id", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s3Check(io.Discard, path, tt.upstream, tt.keyID, tt.secret); err == nil {
				t.Error("-s3 succeeded")
			}
		})
	}
}

func TestRunRefusesNonLoopbackAddr(t *testing.T) {
	cfg, err := parseFlags(append(anyPorts(), "-addr", "0.0.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("run listened on 0.0.0.0")
	}
}

func TestPrintStateValueErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := writeState(path, State{"storyden": {"url": "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"storyden", "storyden.password", "katapult.url"} {
		if err := printStateValue(io.Discard, path, key); err == nil {
			t.Errorf("-get %s succeeded", key)
		}
	}
	if err := printStateValue(io.Discard, filepath.Join(t.TempDir(), "missing"), "storyden.url"); err == nil {
		t.Error("-get on a missing file succeeded")
	}
}

// stateLog is run's log; written is closed once run says it wrote the
// state file, so the test reads the file only then.
type stateLog struct {
	mu      sync.Mutex
	text    strings.Builder
	written chan struct{}
}

func (l *stateLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := strings.Contains(l.text.String(), "sandbox: state written to ")
	l.text.Write(p)
	if !seen && strings.Contains(l.text.String(), "sandbox: state written to ") {
		close(l.written)
	}
	return len(p), nil
}

func value(t *testing.T, path, key string) string {
	t.Helper()
	var out bytes.Buffer
	if err := printStateValue(&out, path, key); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}
