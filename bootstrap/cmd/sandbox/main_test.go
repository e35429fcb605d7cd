package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := &stateLog{written: make(chan struct{})}
	go func() { done <- run(ctx, cfg, log) }()

	select {
	case <-log.written:
	case err := <-done:
		t.Fatalf("run ended before writing the state file: %v", err)
	case <-time.After(testutil.Failsafe):
		t.Fatalf("run did not write the state file within %s", testutil.Failsafe)
	}
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
