// Package devstoryden runs a real Storyden server, the binary that
// scripts/build-storyden.sh builds from the github.com/Southclaws/storyden
// module, on 127.0.0.1 with SQLite in a folder of its own, for the end-to-end
// tests and the benchmark.
package devstoryden

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/cachedbin"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/serverproc"
)

// WebAddress is the server's PUBLIC_WEB_ADDRESS, where it redirects after a
// logout. It has no port: WebAuthn takes its relying-party id from that host,
// and Storyden refuses to start when it carries a port.
const WebAddress = "http://127.0.0.1"

// startLimit bounds the wait for a fresh server to answer; it starts in about
// a second, but the machine may be busy building.
const startLimit = time.Minute

// client bounds every request this package makes to its own local server.
var client = &http.Client{Timeout: 30 * time.Second}

// Binary is $STORYDEN_BIN, else the cached build of scripts/build-storyden.sh
// in the clone at root (which builds it when missing: once, for a long while).
func Binary(root string) (string, error) {
	return cachedbin.Path(root, "STORYDEN_BIN", "build-storyden.sh")
}

// Server is one Storyden backend on loopback.
type Server struct {
	// URL is its API address, http://127.0.0.1:PORT (the API lives under /api).
	URL string
	// Process is the server's process; its LogPath holds its output.
	*serverproc.Process
}

// Start runs bin with its database, assets and indexes in dir (created if
// need be), and returns
// once the API answers. extraEnv (NAME=value) is added to the environment,
// e.g. RATE_LIMIT for a benchmark. The server gets no mail, OAuth, frontend or
// telemetry settings, and none of the caller's environment beyond PATH, so a
// DATABASE_URL of the developer's cannot leak in; it runs in dir, where
// Storyden's .env autoload finds nothing.
func Start(bin, dir string, extraEnv ...string) (*Server, error) {
	port, err := devvault.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &Server{URL: "http://" + addr}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(environment(dir, addr), extraEnv...)
	if s.Process, err = serverproc.Start(cmd, filepath.Join(dir, "storyden.log")); err != nil {
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// environment is the server's whole configuration (internal/config of
// Storyden).
func environment(dir, addr string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"TMPDIR=" + os.TempDir(),
		"LISTEN_ADDR=" + addr,
		"PUBLIC_API_ADDRESS=http://" + addr,
		"PUBLIC_WEB_ADDRESS=" + WebAddress,
		"DATABASE_URL=sqlite://" + filepath.Join(dir, "data.db") + "?_pragma=foreign_keys(1)",
		"ASSET_STORAGE_TYPE=local",
		"ASSET_STORAGE_LOCAL_PATH=" + filepath.Join(dir, "assets"),
		"BLEVE_PATH=" + filepath.Join(dir, "bleve"),
		"SEMDEX_LOCAL_PATH=" + filepath.Join(dir, "semdex"),
		"PLUGIN_DATA_PATH=" + filepath.Join(dir, "plugins"),
		"ROBOT_WORKSPACE_DATA_PATH=" + filepath.Join(dir, "robot-workspaces"),
	}
}

// waitReady polls GET /api/version until it answers 200, the process exits,
// or startLimit passes.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startLimit)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(s.URL + "/api/version"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.Exited():
			return fmt.Errorf("storyden exited during start; its log:\n%s", s.LogTail(40))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("storyden did not answer within %s; its log:\n%s", startLimit, s.LogTail(40))
}

// SignUp registers an account with a password. On a fresh server the first
// account becomes the administrator, which holds every permission.
func (s *Server) SignUp(handle, password string) error {
	body, err := json.Marshal(map[string]string{"identifier": handle, "token": password})
	if err != nil {
		return err
	}
	resp, err := client.Post(s.URL+"/api/auth/password/signup", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var problem bytes.Buffer
		_, _ = problem.ReadFrom(resp.Body)
		return fmt.Errorf("storyden sign-up of %s: HTTP %d %s", handle, resp.StatusCode, problem.String())
	}
	return nil
}
