package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
)

const (
	pluginName = devvault.PluginName
	modulePath = "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys"
)

// pluginVersion is what `make bench` builds (PLUGIN_VERSION, the Makefile's
// VERSION), so the report names the tree it measured.
var pluginVersion = cmp.Or(os.Getenv("PLUGIN_VERSION"), "v0.2.0-dev")

// vaultServer is the bench's dev server, with an API client sized for the
// most concurrent phase.
type vaultServer struct {
	*devvault.Server
	client  *api.Client
	version string
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

// vaultBinary is -vault, else devvault.Binary.
func vaultBinary(root, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	return devvault.Binary(root)
}

// startVault runs a dev server on 127.0.0.1 whose plugin directory is
// dir/plugins. default_max_request_duration is raised so that a synchronous
// revoke-prefix slowed by a rate-limited upstream can finish in one request.
func startVault(bin, dir string) (*vaultServer, error) {
	server, err := devvault.Start(bin, dir, "info", "default_max_request_duration = \"600s\"\n")
	if err != nil {
		return nil, err
	}
	v := &vaultServer{Server: server}
	if v.client, err = newClient(server.Addr, server.Token); err != nil {
		server.Stop()
		return nil, err
	}
	status, err := v.client.Sys().SealStatus()
	if err != nil {
		server.Stop()
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

// pluginCommand is the file name process pid runs ("" when unreadable).
func pluginCommand(pid int) string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	return filepath.Base(argv0)
}

// register runs scripts/register-plugin.sh, which registers the binary by
// SHA-256 and version, with env (KEY=VALUE, or "") in the plugin's
// environment, and enables it at each mount.
func (v *vaultServer) register(ctx context.Context, root, plugin, version, env string, mounts ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "register-plugin.sh"), append([]string{plugin}, mounts...)...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "VAULT_BIN="+v.Bin, "PLUGIN_VERSION="+version, "PLUGIN_ENV="+env)
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
		if ppid, err := parentPID(pid); err != nil || ppid != v.PID() {
			continue
		}
		if pluginCommand(pid) == file {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process among the children of vault (pid %d)", file, v.PID())
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
	data, _ := os.ReadFile(v.LogPath)
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
