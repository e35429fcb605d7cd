package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
)

// profileVault saves a CPU profile of the vault server (sys/pprof/profile)
// taken while 8 clients read each path as fast as they can, one profile per
// path, into dir: for reading with `go tool pprof -top VAULT_BIN FILE`. The
// plugin process cannot be profiled this way; bench/backend_test.go profiles
// the engine in process instead.
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/sys/pprof/profile?seconds=%d", v.Addr, seconds), nil)
	if err != nil {
		return err
	}
	req.Header.Set(api.AuthHeaderName, v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("sys/pprof/profile: HTTP %d: %s", resp.StatusCode, body)
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	_, err = io.Copy(out, resp.Body)
	return err
}
