// Package authservice runs the real Storj auth service (`authservice` of
// storj.io/edge, built by scripts/build-authservice.sh) on 127.0.0.1, with an
// in-memory store, for tests and the sandbox: it turns access grants into S3
// credentials (POST /v1/access) and gives an S3 gateway the grant behind an
// access key id (GET /v1/access/{id}, with the auth token).
package authservice

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/cachedbin"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/serverproc"
)

// Version is the storj.io/edge release scripts/build-authservice.sh builds.
const Version = "v1.114.0"

// DefaultReadyTimeout bounds how long Start waits for the service to answer.
const DefaultReadyTimeout = time.Minute

// Errors Start returns.
var (
	// ErrOptions means Options lacks something the service needs.
	ErrOptions = errors.New("authservice: incomplete options")
	// ErrNotReady means the service exited or did not answer in time.
	ErrNotReady = errors.New("authservice: not ready")
)

// Binary is $AUTHSERVICE_BIN, else the cached build of
// scripts/build-authservice.sh in the clone at root (which builds it when
// missing, about 13 minutes the first time).
func Binary(root string) (string, error) {
	return cachedbin.Path(root, "AUTHSERVICE_BIN", "build-authservice.sh")
}

// Options configures Start.
type Options struct {
	// Bin is the authservice binary (see Binary).
	Bin string
	// Dir holds the service's configuration folder and its log.
	Dir string
	// AllowedSatellites are the node URLs ("NODEID@127.0.0.1:PORT") whose
	// grants the service accepts; at least one.
	AllowedSatellites []string
	// Endpoint is the S3 gateway URL returned with every credential.
	Endpoint string
	// AuthToken guards GET /v1/access/{id}; empty means a random one.
	AuthToken string
	// ReadyTimeout bounds the wait for the service to answer; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Server is one running authservice.
type Server struct {
	url   string
	token string
	proc  *serverproc.Process
}

// Start runs authservice with an in-memory badger store on loopback ports
// the kernel picks, and returns once its startup probe answers 200. The
// context bounds the start only, not the service's life: Close ends it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Bin == "" || opts.Dir == "" || len(opts.AllowedSatellites) == 0 || opts.Endpoint == "" {
		return nil, fmt.Errorf("%w: Bin, Dir, AllowedSatellites and Endpoint are required", ErrOptions)
	}
	s := &Server{token: opts.AuthToken}
	if s.token == "" {
		s.token = randomToken()
	}
	// The token goes in the configuration file, not on the command line,
	// where any local user could read it.
	config := fmt.Sprintf("auth-token: [%q]\n", s.token)
	if err := os.WriteFile(filepath.Join(opts.Dir, "config.yaml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	proc, err := serverproc.Start(exec.Command(opts.Bin, args(opts)...), filepath.Join(opts.Dir, "authservice.log"))
	if err != nil {
		return nil, err
	}
	s.proc = proc
	limit := opts.ReadyTimeout
	if limit <= 0 {
		limit = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// args is the command line. Port 0 everywhere: the service logs the HTTP
// address it got, so no port is picked here that another process could
// take first. Metrics and tracing would otherwise send to Storj's
// collectors; the project-info lookup would dial the satellite.
func args(opts Options) []string {
	return []string{"run",
		"--defaults", "dev",
		"--config-dir", opts.Dir,
		"--kv-backend", "badger://",
		"--node.first-start=true",
		"--allowed-satellites", strings.Join(opts.AllowedSatellites, ","),
		"--retrieve-project-info=false",
		"--endpoint", opts.Endpoint,
		"--listen-addr", "127.0.0.1:0",
		"--drpc-listen-addr", "127.0.0.1:0",
		"--debug.addr", "127.0.0.1:0",
		"--metrics.addr", "",
		"--tracing.enabled=false",
		"--log.encoding", "json",
	}
}

// httpAddr finds the line "Starting HTTP server" with its "address" field.
var httpAddr = regexp.MustCompile(`Starting HTTP server.*"address":\s*"([^"]+)"`)

// waitReady waits for the HTTP address in the log, then for
// GET /v1/health/startup to answer 200.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.url == "" {
			if addr := s.findAddr(); addr != "" {
				s.url = "http://" + addr
			}
		}
		if s.url != "" && s.started(ctx) {
			return nil
		}
		select {
		case <-s.proc.Exited():
			return fmt.Errorf("%w: it exited during start; its log:\n%s", ErrNotReady, s.LogTail(40))
		case <-ctx.Done():
			return fmt.Errorf("%w: %v; its log:\n%s", ErrNotReady, ctx.Err(), s.LogTail(40))
		case <-tick.C:
		}
	}
}

func (s *Server) findAddr() string {
	f, err := os.Open(s.proc.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		if m := httpAddr.FindStringSubmatch(lines.Text()); m != nil {
			return m[1]
		}
	}
	return ""
}

func (s *Server) started(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/health/startup", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// URL is the service's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.url }

// AuthToken is the token GET /v1/access/{id} needs as
// "Authorization: Bearer <token>".
func (s *Server) AuthToken() string { return s.token }

// LogPath is the file holding the service's output.
func (s *Server) LogPath() string { return s.proc.LogPath }

// LogTail is the last n lines of the service's output.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// Close kills the service and waits for it to exit. Its store is in
// memory, so nothing is lost that a graceful stop would keep; a kill also
// skips the dev shutdown delay. Close is safe to call twice.
func (s *Server) Close() error {
	s.proc.Kill()
	return nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
