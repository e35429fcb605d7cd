package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	pluginName    = "vault-plugin-secrets-apikeys"
	pluginVersion = "v0.1.0"
	modulePath    = "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys"
)

// vaultServer is one `vault server -dev` on loopback, started by the bench
// with the plugin directory in its temporary folder.
type vaultServer struct {
	bin     string
	addr    string
	token   string
	dir     string
	logPath string
	cmd     *exec.Cmd
	client  *api.Client
	version string
	// children are the plugin processes seen under the server, ended with it.
	children []int
}

// repoRoot is the folder holding this module's go.mod, found from the
// working directory upward.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the vault-plugin-secrets-apikeys clone (no go.mod of " + modulePath + " above the working directory)")
		}
		dir = parent
	}
}

// vaultBinary is -vault, $VAULT_BIN, or the cached build of scripts/build-vault.sh.
func vaultBinary(root, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		return bin, nil
	}
	out, err := exec.Command(filepath.Join(root, "scripts", "build-vault.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("scripts/build-vault.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildPlugin builds the plugin as `make build` does (CGO off, -trimpath,
// stripped, version set by -ldflags) into dir.
func buildPlugin(ctx context.Context, root, dir, file, version string) (string, error) {
	path := filepath.Join(dir, file)
	ldflags := "-s -w -X " + modulePath + "/backend.Version=" + version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", path, "./cmd/"+pluginName)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the plugin in %s: %v\n%s", root, err, out)
	}
	return path, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startVault runs a dev server on 127.0.0.1 whose plugin directory is
// dir/plugins. default_max_request_duration is raised so that a synchronous
// revoke-prefix slowed by a rate-limited upstream can finish in one request.
func startVault(bin, dir string) (*vaultServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "bench.hcl")
	hcl := fmt.Sprintf("plugin_directory = %q\ndefault_max_request_duration = \"600s\"\n", filepath.Join(dir, "plugins"))
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		return nil, err
	}
	v := &vaultServer{bin: bin, addr: fmt.Sprintf("http://127.0.0.1:%d", port), token: "root", dir: dir, logPath: filepath.Join(dir, "vault.log")}
	logFile, err := os.Create(v.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	v.cmd = exec.Command(bin, "server", "-dev", "-dev-root-token-id="+v.token, "-dev-no-store-token",
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-config="+config, "-log-level=info")
	v.cmd.Stdout, v.cmd.Stderr = logFile, logFile
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	if v.client, err = newClient(v.addr, v.token); err != nil {
		v.stop()
		return nil, err
	}
	if err := v.waitReady(30 * time.Second); err != nil {
		v.stop()
		return nil, err
	}
	status, err := v.client.Sys().SealStatus()
	if err != nil {
		v.stop()
		return nil, err
	}
	v.version = status.Version
	return v, nil
}

// newClient is an API client that keeps enough idle connections for the
// most concurrent phase and never retries on its own (a retry would hide an
// error and skew a latency).
func newClient(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Minute
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

func (v *vaultServer) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if health, err := v.client.Sys().Health(); err == nil && health.Initialized && !health.Sealed {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("vault did not become ready within %s; its log:\n%s", limit, v.logTail(40))
}

// stop ends the server the way an operator would (SIGTERM), so that it
// stops its plugin processes too; a SIGKILL would leave them running as
// orphans. Whatever is still alive after the grace period is killed, the
// plugin process found during the run included.
func (v *vaultServer) stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = v.cmd.Process.Wait()
		close(done)
	}()
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = v.cmd.Process.Kill()
		<-done
	}
	for _, pid := range v.children {
		if p, err := os.FindProcess(pid); err == nil && processAlive(pid) {
			_ = p.Kill()
		}
	}
}

// processAlive tells whether pid still runs the plugin binary.
func processAlive(pid int) bool {
	return pluginCommand(pid) != ""
}

// pluginCommand is the file name a plugin process runs ("" for any other
// process): vault-plugin-secrets-apikeys, or the -compare build's.
func pluginCommand(pid int) string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	if name := filepath.Base(argv0); strings.HasPrefix(name, pluginName) {
		return name
	}
	return ""
}

func (v *vaultServer) logTail(n int) string {
	data, _ := os.ReadFile(v.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// register runs scripts/register-plugin.sh, which registers the binary by
// SHA-256 and version and enables it at each mount.
func (v *vaultServer) register(ctx context.Context, root, plugin, version string, mounts ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "register-plugin.sh"), append([]string{plugin}, mounts...)...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+v.token, "VAULT_BIN="+v.bin, "PLUGIN_VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/register-plugin.sh: %v\n%s", err, out)
	}
	return nil
}

// pluginPID finds the plugin's process among the vault server's children.
// The plugin is multiplexed: every mount of one version shares one process.
func (v *vaultServer) pluginPID() (int, error) { return v.pluginPIDOf(pluginName) }

func (v *vaultServer) pluginPIDOf(file string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentPID(pid); err != nil || ppid != v.cmd.Process.Pid {
			continue
		}
		if pluginCommand(pid) == file {
			if !slices.Contains(v.children, pid) {
				v.children = append(v.children, pid)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process among the children of vault (pid %d)", file, v.cmd.Process.Pid)
}

// parentPID reads the PPid line of /proc/<pid>/status.
func parentPID(pid int) (int, error) {
	v, err := procStatus(pid, "PPid")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// rssKiB reads VmRSS (resident set size, KiB) of a process.
func rssKiB(pid int) (int, error) {
	v, err := procStatus(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(v, "kB")))
}

func procStatus(pid int, field string) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && name == field {
			return strings.TrimSpace(value), nil
		}
	}
	return "", fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it
// is 100 on every Linux the bench runs on.
const clockTick = 10 * time.Millisecond

// cpuTime is the user plus system CPU time a process has used so far.
func cpuTime(pid int) time.Duration {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// cpuSample is the CPU time of the vault server, the plugin and this
// process (client and emulators) at one moment.
type cpuSample struct{ vault, plugin, bench time.Duration }

type procs struct{ vault, plugin int }

func (p procs) sample() cpuSample {
	return cpuSample{vault: cpuTime(p.vault), plugin: cpuTime(p.plugin), bench: cpuTime(0)}
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{vault: s.vault - o.vault, plugin: s.plugin - o.plugin, bench: s.bench - o.bench}
}

func (s cpuSample) add(o cpuSample) cpuSample {
	return cpuSample{vault: s.vault + o.vault, plugin: s.plugin + o.plugin, bench: s.bench + o.bench}
}

// countLog counts the lines of the server's log that contain every part.
func (v *vaultServer) countLog(parts ...string) int {
	data, _ := os.ReadFile(v.logPath)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
