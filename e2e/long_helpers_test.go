//go:build long

package e2e

// Helpers of the long tests (go test -tags long): Vault servers the tests
// start themselves, outside dev mode, and kill like a failing machine would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/serverproc"
)

// runVault runs the vault CLI against addr, with stdin when given, bounded
// by limit. extraEnv comes last, so it wins.
func runVault(addr, token, stdin string, limit time.Duration, extraEnv []string, args ...string) cliResult {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, vault.Bin, args...)
	// No redirects: a standby's answer is its own (forwarded to the active
	// node, or an error), never the client retrying elsewhere.
	cmd.Env = append(append(os.Environ(), "VAULT_ADDR="+addr, "VAULT_TOKEN="+token, "VAULT_FORMAT=json",
		"VAULT_DISABLE_REDIRECTS=true"), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustVault runs the CLI against addr and fails the test unless it succeeds.
func mustVault(t *testing.T, addr, token, stdin string, args ...string) string {
	t.Helper()
	r := runVault(addr, token, stdin, 2*time.Minute, nil, args...)
	if r.err != nil {
		t.Fatalf("vault %s (at %s): %v\n%s", strings.Join(args, " "), addr, r.err, r.stderr)
	}
	return r.stdout
}

// apiClient is a client of the server at addr that never retries on its own
// and never follows a standby's redirect, so that every request the test
// counts is one request to the node it names.
func apiClient(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.DisableRedirects = true
	cfg.Timeout = 30 * time.Second
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(token)
	return client
}

// startStorydenUpstream starts a Storyden emulator with the admin account
// the tests sign in as.
func startStorydenUpstream(t *testing.T) *sandbox.Server {
	t.Helper()
	srv, err := sandbox.Start(storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{
		{Handle: sdAdmin, Password: sdPassword, Admin: true},
	}}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// configureStoryden writes config/main (password on stdin) and roles/app on
// mount through the server at addr.
func configureStoryden(t *testing.T, addr, token, mount string, upstream *sandbox.Server) {
	t.Helper()
	mustVault(t, addr, token, sdPassword, "write", mount+"/config/main", "provider=storyden",
		"base_url="+upstream.URL(), "allow_http=true", "username="+sdAdmin, "password=-")
	mustVault(t, addr, token, "", "write", mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
}

// killGroup SIGKILLs the process group pgid: a Vault server and the plugin
// processes it started, which would otherwise outlive it.
func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// pluginLines are the lines of a Vault log the plugin wrote, plus the
// rollback manager's and expiration manager's: what explains a leftover key.
func pluginLines(path string, n int) string {
	data, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, pluginName) || strings.Contains(line, "rollback") || strings.Contains(line, "expiration") {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// dumpLogsOnFailure prints, if the test failed, the end of each Vault log
// and the plugin's lines in it.
func dumpLogsOnFailure(t *testing.T, logs ...string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, path := range logs {
			t.Logf("--- %s: plugin, rollback and expiration lines ---\n%s", path, pluginLines(path, 60))
			t.Logf("--- %s: last lines ---\n%s", path, serverproc.LogTail(path, 80))
		}
	})
}

// assertNoSecretsInLogs fails if a Vault log holds the root password or an
// issued key, as TestMain checks for the shared dev server.
func assertNoSecretsInLogs(t *testing.T, logs ...string) {
	t.Helper()
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if leaked := leakedIn(string(data)); len(leaked) > 0 {
			t.Errorf("%s contains secrets: %s", path, strings.Join(leaked, ", "))
		}
	}
}

func leakedIn(log string) []string {
	var leaked []string
	if strings.Contains(log, sdPassword) {
		leaked = append(leaked, "the storyden root password")
	}
	for _, prefix := range issuedPrefixes {
		if strings.Contains(log, prefix) {
			leaked = append(leaked, "an issued credential ("+prefix+"…)")
		}
	}
	return leaked
}

// initResult is what vault operator init -format=json prints.
type initResult struct {
	UnsealKeys []string `json:"unseal_keys_b64"`
	RootToken  string   `json:"root_token"`
}

// fileVault is a non-dev Vault server with file storage in dir, which the
// test can crash and restart on the same storage.
type fileVault struct {
	t         *testing.T
	dir       string
	addr      string
	config    string
	logPath   string
	token     string
	unsealKey string
	cmd       *exec.Cmd
	exited    chan struct{}
	starts    int
}

// newFileVault writes the config of a server listening on a free port, with
// its plugin directory at dir/plugins; it does not start it.
func newFileVault(t *testing.T, dir string) *fileVault {
	t.Helper()
	port, err := devvault.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v := &fileVault{t: t, dir: dir, addr: fmt.Sprintf("http://127.0.0.1:%d", port),
		config: filepath.Join(dir, "vault.hcl"), logPath: filepath.Join(dir, "vault.log")}
	hcl := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
plugin_directory = %q
disable_mlock    = true
api_addr         = %q
`, filepath.Join(dir, "data"), port, filepath.Join(dir, "plugins"), v.addr)
	if err := os.WriteFile(v.config, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.kill)
	dumpLogsOnFailure(t, v.logPath)
	return v
}

// start runs the server in its own process group, appending to its log, and
// waits until its API answers (sealed or not).
func (v *fileVault) start() {
	v.t.Helper()
	logFile, err := os.OpenFile(v.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		v.t.Fatal(err)
	}
	defer logFile.Close()
	v.starts++
	fmt.Fprintf(logFile, "===== test: start %d of the server =====\n", v.starts)
	v.cmd = exec.Command(vault.Bin, "server", "-config="+v.config, "-log-level=trace")
	v.cmd.Stdout, v.cmd.Stderr = logFile, logFile
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	exited := make(chan struct{})
	v.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(v.cmd)
	client := apiClient(v.t, v.addr, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := client.Sys().Health(); err == nil {
			return
		}
		select {
		case <-exited:
			v.t.Fatalf("vault exited during start:\n%s", serverproc.LogTail(v.logPath, 40))
		default:
		}
		if time.Now().After(deadline) {
			v.t.Fatal("vault did not answer within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// initialize runs vault operator init with one key share.
func (v *fileVault) initialize() {
	v.t.Helper()
	var res initResult
	out := mustVault(v.t, v.addr, "", "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.UnsealKeys) != 1 || res.RootToken == "" {
		v.t.Fatalf("vault operator init: %v", err)
	}
	v.unsealKey, v.token = res.UnsealKeys[0], res.RootToken
}

// unseal gives the server the key (on stdin) and waits until it is active.
func (v *fileVault) unseal() {
	v.t.Helper()
	mustVault(v.t, v.addr, "", v.unsealKey, "write", "sys/unseal", "key=-")
	client := v.client()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if h, err := client.Sys().Health(); err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatal("vault was not active within 60s of the unseal")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (v *fileVault) client() *api.Client { return apiClient(v.t, v.addr, v.token) }

func (v *fileVault) cli(stdin string, args ...string) cliResult {
	return runVault(v.addr, v.token, stdin, 2*time.Minute, nil, args...)
}

func (v *fileVault) must(stdin string, args ...string) string {
	v.t.Helper()
	return mustVault(v.t, v.addr, v.token, stdin, args...)
}

// crash SIGKILLs the server and its plugin processes, and waits until the
// server is gone.
func (v *fileVault) crash() {
	v.t.Helper()
	killGroup(v.cmd.Process.Pid)
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
		v.t.Fatal("vault still running 10s after SIGKILL")
	}
}

// kill is crash for t.Cleanup: nothing happens if the server already exited.
func (v *fileVault) kill() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	select {
	case <-v.exited:
		return
	default:
	}
	killGroup(v.cmd.Process.Pid)
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
	}
}

func (v *fileVault) log() string {
	data, _ := os.ReadFile(v.logPath)
	return string(data)
}
