// Package devvault runs what the end-to-end tests and the benchmark both
// need: the Vault binary of scripts/build-vault.sh, the plugin built as
// `make build` builds it, and a `vault server -dev` on 127.0.0.1.
package devvault

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/cachedbin"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/serverproc"
)

// PluginName is the plugin's binary and catalog name.
const PluginName = "vault-plugin-secrets-apikeys"

const modulePath = "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys"

// rootToken is the dev server's root token.
const rootToken = "root"

// FreePort returns a TCP port that is free on 127.0.0.1 right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Binary is $VAULT_BIN, else the cached build of scripts/build-vault.sh in
// the clone at root (which builds it when missing).
func Binary(root string) (string, error) {
	return cachedbin.Path(root, "VAULT_BIN", "build-vault.sh")
}

// BuildPlugin builds the plugin of the clone at root as `make build` does
// (CGO off, -trimpath, stripped, version set by -ldflags) into dir/file.
func BuildPlugin(ctx context.Context, root, dir, file, version string) (string, error) {
	return BuildPluginTags(ctx, root, dir, file, version, "")
}

// BuildPluginTags is BuildPlugin with Go build tags (comma-separated; ""
// for none), e.g. the bench's "pprof", which adds a loopback profiling
// listener.
func BuildPluginTags(ctx context.Context, root, dir, file, version, tags string) (string, error) {
	path := filepath.Join(dir, file)
	ldflags := "-s -w -X " + modulePath + "/backend.Version=" + version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags="+tags, "-ldflags", ldflags, "-o", path, "./cmd/"+PluginName)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the plugin in %s: %v\n%s", root, err, out)
	}
	return path, nil
}

// Server is one `vault server -dev` on loopback.
type Server struct {
	// Bin is the vault binary it runs.
	Bin string
	// Addr is its API address, http://127.0.0.1:PORT.
	Addr string
	// Token is the root token.
	Token string
	// Process is the server's process; its LogPath holds its output,
	// plugin logs included.
	*serverproc.Process
}

// Start runs a dev server whose plugin directory is dir/plugins, logging at
// logLevel into dir/vault.log, with extraConfig (HCL) added to its
// configuration. It returns once the server is unsealed and answers. The
// server runs in its own process group, so that Stop can end its plugin
// processes too.
func Start(bin, dir, logLevel, extraConfig string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "devvault.hcl")
	hcl := fmt.Sprintf("plugin_directory = %q\n%s", filepath.Join(dir, "plugins"), extraConfig)
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		return nil, err
	}
	s := &Server{Bin: bin, Addr: fmt.Sprintf("http://127.0.0.1:%d", port), Token: rootToken}
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id="+s.Token, "-dev-no-store-token",
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-config="+config, "-log-level="+logLevel)
	if s.Process, err = serverproc.Start(cmd, filepath.Join(dir, "vault.log")); err != nil {
		return nil, err
	}
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(limit time.Duration) error {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if health, err := client.Sys().Health(); err == nil && health.Initialized && !health.Sealed {
			return nil
		}
		select {
		case <-s.Exited():
			return fmt.Errorf("vault exited during start; its log:\n%s", s.LogTail(40))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("vault did not become ready within %s; its log:\n%s", limit, s.LogTail(40))
}
