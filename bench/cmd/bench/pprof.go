package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// profileVault saves a CPU profile of the vault server (sys/pprof/profile)
// taken while 8 clients read each path as fast as they can, one profile per
// path, into dir: for reading with `go tool pprof -top VAULT_BIN FILE`. The
// plugin process is profiled apart, by profilePlugin.
func profileVault(ctx context.Context, v *vaultServer, dir string, seconds int, paths map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, path := range paths {
		logf("pprof: vault CPU profile for %ds under 8 clients reading %s", seconds, path)
		loadCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _, _, _ = burst(loadCtx, v.client, path, 8, time.Duration(seconds+2)*time.Second, 1<<30)
		}()
		err := fetchProfile(ctx, v, seconds, filepath.Join(dir, "vault-"+name+".pprof"))
		stop()
		<-done
		if err != nil {
			return err
		}
	}
	return nil
}

func fetchProfile(ctx context.Context, v *vaultServer, seconds int, file string) error {
	return download(ctx, fmt.Sprintf("%s/v1/sys/pprof/profile?seconds=%d", v.Addr, seconds), v.Token, file)
}

// download GETs url (with a Vault token unless "") into file.
func download(ctx context.Context, url, token, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set(api.AuthHeaderName, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: HTTP %d: %s", req.URL.Path, resp.StatusCode, body)
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	_, err = io.Copy(out, resp.Body)
	return err
}

// pluginProfile is a CPU profile of the plugin process and its top
// functions as `go tool pprof -top` prints them.
type pluginProfile struct {
	path    string
	seconds int
	file    string
	top     string
}

// profilePlugin saves a CPU profile of the plugin process, taken from the
// loopback pprof listener a plugin built with the pprof tag opens at addr,
// while 8 clients read path for seconds, and keeps its top functions.
func profilePlugin(ctx context.Context, c *api.Client, addr, dir string, seconds int, path string) (pluginProfile, error) {
	res := pluginProfile{path: path, seconds: seconds, file: filepath.Join(dir, "plugin-"+strings.ReplaceAll(path, "/", "-")+".pprof")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	logf("pprof: plugin CPU profile for %ds under 8 clients reading %s", seconds, path)
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _, _ = burst(loadCtx, c, path, 8, time.Duration(seconds+2)*time.Second, 1<<30)
	}()
	err := download(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), "", res.file)
	stop()
	<-done
	if err != nil {
		return res, fmt.Errorf("plugin profile: %w", err)
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", res.file).Output()
	if err != nil {
		return res, fmt.Errorf("go tool pprof -top %s: %w", res.file, err)
	}
	res.top = string(out)
	return res, nil
}

// pluginProfileMarkdown is the profile's section of the report.
func pluginProfileMarkdown(p pluginProfile) string {
	if p.top == "" {
		return ""
	}
	return fmt.Sprintf("\n### 8. Where the plugin's CPU goes\n\n"+
		"A CPU profile of the plugin process (built with `-tags pprof`, which adds a loopback `net/http/pprof` listener when `APIKEYS_PPROF_ADDR` is set; release builds have none) over %ds while 8 clients read `%s` at 0 ms upstream latency; `go tool pprof -top -nodecount=25`:\n\n```\n%s```\n",
		p.seconds, p.path, p.top)
}
