// Package e2e drives the plugin through a real `vault` server: the binary built
// from the github.com/hashicorp/vault module by scripts/build-vault.sh, with
// the plugin registered by SHA-256 and version through scripts/register-plugin.sh,
// and driven by the real CLI and HTTP API. Upstreams are the sandbox
// emulators, started in this process on 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/serverproc"
)

// pluginVersion is built into the binary and registered in Vault's catalog.
var pluginVersion = envOr("PLUGIN_VERSION", "v0.2.0-dev")

const pluginName = devvault.PluginName

// walMinAgeEnv is what the plugin reads its WAL rollback's minimum age from.
const walMinAgeEnv = "APIKEYS_WAL_ROLLBACK_MIN_AGE"

// vault is the one server every test in the package shares.
var vault *vaultServer

// vaultServer is the dev server with an API client on it.
type vaultServer struct {
	*devvault.Server
	client *api.Client
	// pluginDir is the server's plugin_directory.
	pluginDir string
}

// pluginPath is this tree's plugin binary, built by TestMain at pluginVersion.
var pluginPath string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "apikeys-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin, err := devvault.Binary("..")
	if err != nil {
		return 0, err
	}
	plugin, err := buildPlugin(filepath.Join(dir, "plugins"))
	if err != nil {
		return 0, err
	}
	pluginPath = plugin
	vault, err = startVault(bin, dir, "")
	if err != nil {
		return 0, err
	}
	defer vault.Stop()
	if out, err := vault.script("../scripts/register-plugin.sh", plugin); err != nil {
		return 0, fmt.Errorf("register the plugin: %v\n%s", err, out)
	}
	code := m.Run()
	if leaked := leakedSecrets(vault.Log()); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: the vault server log (trace level, plugin included) contains secrets: %s\n", strings.Join(leaked, ", "))
		code = 1
	}
	if code != 0 {
		vault.dumpLog()
	}
	return code, nil
}

// knownSecrets are registered by tests: root credentials they configure.
// Issued credentials are caught by their prefixes.
var (
	knownSecretsMu sync.Mutex
	knownSecrets   = map[string]string{}
	issuedPrefixes = []string{"sdpak_"}
)

func registerSecret(label, value string) {
	knownSecretsMu.Lock()
	defer knownSecretsMu.Unlock()
	knownSecrets[label] = value
}

func leakedSecrets(log string) []string {
	knownSecretsMu.Lock()
	defer knownSecretsMu.Unlock()
	var leaked []string
	for label, value := range knownSecrets {
		if strings.Contains(log, value) {
			leaked = append(leaked, label)
		}
	}
	for _, prefix := range issuedPrefixes {
		if strings.Contains(log, prefix) {
			leaked = append(leaked, "an issued credential ("+prefix+"…)")
		}
	}
	return leaked
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// buildPlugin builds this clone's plugin, at pluginVersion, into dir.
func buildPlugin(dir string) (string, error) {
	return devvault.BuildPlugin(context.Background(), "..", dir, pluginName, pluginVersion)
}

// startVault runs a dev server in dir, with extraConfig (HCL) added to its
// configuration, at trace level so that the secret scan sees everything the
// plugin logs.
func startVault(bin, dir, extraConfig string) (*vaultServer, error) {
	server, err := devvault.Start(bin, dir, "trace", extraConfig)
	if err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	cfg.Address = server.Addr
	client, err := api.NewClient(cfg)
	if err != nil {
		server.Stop()
		return nil, err
	}
	client.SetToken(server.Token)
	return &vaultServer{Server: server, client: client, pluginDir: filepath.Join(dir, "plugins")}, nil
}

// startOwnVault starts a dev server of the test's own, for what the shared
// one must not see: other plugin versions in the catalog, raw storage reads,
// or plugin reloads, which restart the one plugin process that serves every
// mount of a plugin version. The server's log is scanned for secrets, and
// its tail printed if the test fails.
func startOwnVault(t *testing.T, extraConfig string) *vaultServer {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := startVault(vault.Bin, dir, extraConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Stop()
		if leaked := leakedSecrets(v.Log()); len(leaked) > 0 {
			t.Errorf("the log of %s's vault server contains secrets: %s", t.Name(), strings.Join(leaked, ", "))
		}
		if t.Failed() {
			t.Logf("--- last lines of %s's vault server log ---\n%s", t.Name(), serverproc.LogTail(v.LogPath, 80))
		}
	})
	return v
}

// addPlugin copies a plugin binary into v's plugin directory as file (Vault
// runs nothing from outside it, links included) and returns the copy's path.
func (v *vaultServer) addPlugin(t *testing.T, binary, file string) string {
	t.Helper()
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(v.pluginDir, file)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func (v *vaultServer) env() []string {
	return append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "VAULT_BIN="+v.Bin,
		"PLUGIN_VERSION="+pluginVersion, "VAULT_FORMAT=json")
}

func (v *vaultServer) script(path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = v.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (v *vaultServer) dumpLog() {
	fmt.Fprintf(os.Stderr, "--- last lines of the vault server log ---\n%s\n", serverproc.LogTail(v.LogPath, 80))
}

// cliResult is one run of the vault CLI.
type cliResult struct {
	stdout, stderr string
	err            error
}

// cli runs the real vault CLI against the shared server, with stdin when given.
func cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	return vault.cli(stdin, args...)
}

// cli runs the real vault CLI against v, with stdin when given.
func (v *vaultServer) cli(stdin string, args ...string) cliResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.Bin, args...)
	cmd.Env = v.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustCLI runs the CLI against the shared server and fails the test unless it succeeds.
func mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	return vault.mustCLI(t, stdin, args...)
}

// mustCLI runs the CLI against v and fails the test unless it succeeds.
func (v *vaultServer) mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := v.cli(stdin, args...)
	if r.err != nil {
		t.Fatalf("vault %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

// cliJSON runs the CLI (VAULT_FORMAT=json) against the shared server and decodes its output.
func cliJSON(t *testing.T, args ...string) *api.Secret {
	t.Helper()
	return vault.cliJSON(t, args...)
}

// cliJSON runs the CLI (VAULT_FORMAT=json) against v and decodes its output.
func (v *vaultServer) cliJSON(t *testing.T, args ...string) *api.Secret {
	t.Helper()
	out := v.mustCLI(t, "", args...)
	var secret api.Secret
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		t.Fatalf("vault %s printed no JSON secret: %v\n%s", strings.Join(args, " "), err, out)
	}
	return &secret
}

var mountSeq atomic.Int64

// newMount enables the plugin at a fresh path, through the CLI with the
// registered version.
func newMount(t *testing.T, prefix string) string {
	t.Helper()
	mount := fmt.Sprintf("%s-%d", prefix, mountSeq.Add(1))
	mustCLI(t, "", "secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName)
	return mount
}

var codePattern = regexp.MustCompile(`Code: (\d{3})`)

// wantCLIError fails unless the CLI failed with HTTP status code and a message containing want.
func wantCLIError(t *testing.T, r cliResult, code, want string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("want HTTP %s, the command succeeded: %s", code, r.stdout)
	}
	if m := codePattern.FindStringSubmatch(r.stderr); m == nil || m[1] != code {
		t.Fatalf("want HTTP %s, got: %s", code, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("error does not contain %q: %s", want, r.stderr)
	}
}

// eventually polls cond every 200 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }

func containsAny(list []any, v any) bool {
	for _, item := range list {
		if item == v {
			return true
		}
	}
	return false
}

// liveObjects counts the live upstream objects of one kind.
func liveObjects(srv interface{ Objects() []sandbox.Object }, kind string) int {
	n := 0
	for _, o := range srv.Objects() {
		if o.Kind == kind && o.Live {
			n++
		}
	}
	return n
}

// liveKeyObjects lists the live objects upstream (of the emulators whose
// objects are all keys: the live keys).
func liveKeyObjects(upstream interface{ Objects() []sandbox.Object }) []sandbox.Object {
	var live []sandbox.Object
	for _, o := range upstream.Objects() {
		if o.Live {
			live = append(live, o)
		}
	}
	return live
}

// leasesUnder lists the lease ids Vault holds under prefix (e.g.
// "storyden/creds/app/"), through sys/leases/lookup.
func leasesUnder(t *testing.T, client *api.Client, prefix string) []string {
	t.Helper()
	secret, err := client.Logical().List("sys/leases/lookup/" + prefix)
	if err != nil {
		t.Fatalf("list leases under %s: %v", prefix, err)
	}
	if secret == nil || secret.Data["keys"] == nil {
		return nil
	}
	var ids []string
	for _, k := range secret.Data["keys"].([]any) {
		ids = append(ids, prefix+k.(string))
	}
	return ids
}

// isLive reports whether the upstream object with id exists and grants access.
func isLive(upstream interface{ Objects() []sandbox.Object }, id string) bool {
	for _, o := range upstream.Objects() {
		if o.ID == id {
			return o.Live
		}
	}
	return false
}

// sha256File is the hex SHA-256 of a file, as vault plugin register -sha256 takes it.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
