package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
)

// floorName is bench/cmd/floorplugin's catalog name and binary, and
// floorMount its mount: the smallest external plugin, answering from memory.
const (
	floorName  = "apikeys-bench-floor"
	floorMount = "floor"
)

// floorSteps are the floor plugin's two reads in the breakdown: what any
// external plugin costs before it does any work of its own.
var floorSteps = []breakdownStep{
	{label: "external plugin floor (`floor/plain`, bench/cmd/floorplugin): a gRPC request to a plugin that answers from memory, no callback but the framework's own", path: floorMount + "/plain"},
	{label: "external plugin floor with a lease (`floor/lease`): the same, returning a lease Vault registers", path: floorMount + "/lease"},
	{label: "external plugin floor of a credential with one upstream object (`floor/issue`): the lease after two storage writes with the mount's maximum TTL asked alongside the first, an event after answering, no upstream call", path: floorMount + "/issue"},
	{label: "external plugin floor of a credential with one upstream call (`floor/upstream`): `floor/issue` with its create, one HTTP exchange with a loopback server through net/http", path: floorMount + "/upstream"},
}

// floorCPUReads are the floor plugin's reads in the CPU table: the floor
// of a leased read, and of a credential with one upstream object.
var floorCPUReads = []struct{ label, path string }{
	{"external plugin floor with a lease (`floor/lease`)", floorMount + "/lease"},
	{"external plugin floor of a credential with one upstream object (`floor/issue`): two storage writes, the mount's maximum TTL, an event", floorMount + "/issue"},
	floorUpstreamRead,
}

// floorUpstreamRead is the floor of a credential like Storyden's, against
// which the engine's CPU per storyden credential is read.
var floorUpstreamRead = struct{ label, path string }{
	"external plugin floor of a credential with one upstream call (`floor/upstream`): `floor/issue` and one HTTP exchange, as a Storyden credential", floorMount + "/upstream",
}

// measureFloorCPU measures the floor plugin's reads as section 3 measures
// the engine's at 8 clients, with the floor plugin's own process as the
// plugin column.
func measureFloorCPU(ctx context.Context, c *api.Client, v *vaultServer, o options) ([]throughputResult, error) {
	// Vault starts a plugin's process at its first request.
	if err := read(ctx, c, floorCPUReads[0].path); err != nil {
		return nil, err
	}
	pid, err := v.pluginPIDOf(floorName)
	if err != nil {
		return nil, err
	}
	var out []throughputResult
	for _, f := range floorCPUReads {
		logf("throughput: %s, 8 clients", f.path)
		r := measureThroughput(ctx, c, procs{vault: v.PID(), plugin: pid}, &target{name: f.label, path: f.path}, 8, o.rounds, o.slice, 20000)
		if r.firstErr != nil {
			return nil, fmt.Errorf("%s: %w", f.path, r.firstErr)
		}
		out = append(out, r)
	}
	return out, ctx.Err()
}

// measureBesideFloor reads storyden creds and `floor/upstream` in
// alternating slices at 8 clients (twice section 3's rounds), so that the
// engine's CPU above the floor is not a difference of two figures taken
// minutes apart, each drifting with the machine.
func measureBesideFloor(ctx context.Context, c *api.Client, v *vaultServer, enginePID int, o options) (sideBySide, error) {
	floorPID, err := v.pluginPIDOf(floorName)
	if err != nil {
		return sideBySide{}, err
	}
	logf("throughput: %s beside %s, 8 clients", storydenCredsPath, floorUpstreamRead.path)
	return measureSides(ctx, c, v.PID(), []string{storydenCredsPath, floorUpstreamRead.path}, []int{enginePID, floorPID}, 2*o.rounds, o.slice)
}

// floorCreated is the loopback upstream's answer to the floor plugin's
// create, about the size of Storyden's.
var floorCreated = []byte(`{"id":"d4f5k2h0tcqijimphimg","name":"vault-app-abcdefghijklmnop","secret":"sdpak_floorfloorfloorfloorfloorfloor","enabled":true,"created_at":"2026-12-02T00:00:00Z","expires_at":"2026-12-02T01:00:00Z"}`)

// startFloorUpstream serves the floor plugin's create on loopback until ctx
// ends, and returns its URL.
func startFloorUpstream(ctx context.Context) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 64<<10)); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(floorCreated)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/access-keys", nil
}

// mountFloor builds bench/cmd/floorplugin into pluginDir, registers it by
// SHA-256 with the URL of its loopback upstream, which serves until ctx
// ends, and mounts it at floorMount.
func mountFloor(ctx context.Context, c *api.Client, root, pluginDir string) error {
	upstream, err := startFloorUpstream(ctx)
	if err != nil {
		return err
	}
	bin := filepath.Join(pluginDir, floorName)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./bench/cmd/floorplugin")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the floor plugin: %v\n%s", err, out)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if err := c.Sys().RegisterPluginWithContext(ctx, &api.RegisterPluginInput{
		Name: floorName, Type: api.PluginTypeSecrets, Command: floorName, SHA256: hex.EncodeToString(sum[:]),
		Env: []string{"APIKEYS_BENCH_FLOOR_UPSTREAM=" + upstream},
	}); err != nil {
		return fmt.Errorf("register the floor plugin: %w", err)
	}
	if err := c.Sys().MountWithContext(ctx, floorMount, &api.MountInput{Type: floorName}); err != nil {
		return fmt.Errorf("mount the floor plugin: %w", err)
	}
	return nil
}
