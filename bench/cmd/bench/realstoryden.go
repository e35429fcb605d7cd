package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devstoryden"
)

// realStorydenMount is the mount configured against the real Storyden server.
const realStorydenMount = "storyden-real"

// realStorydenWanted tells whether this run measures the real Storyden server
// too: only when STORYDEN_BIN names its binary, since building it takes long.
func realStorydenWanted(o options) bool {
	return o.phases["latency"] && os.Getenv("STORYDEN_BIN") != ""
}

// realStorydenResult is one alternating loop of a KV read, a creds read
// against the emulator, one against the real server, and, straight to the
// real server, GET /api/accounts with the key just issued and with an unknown
// key.
type realStorydenResult struct {
	reads                               int
	kv, emulated, real, bearer, unknown []time.Duration
}

// measureRealStoryden starts the real server in dir, signs up its admin,
// configures realStorydenMount against it and runs the loop. The server's
// rate limit is lifted: the loop is not a load test of it.
func measureRealStoryden(ctx context.Context, c *api.Client, dir string, warm, n int) (*realStorydenResult, error) {
	srv, err := devstoryden.Start(os.Getenv("STORYDEN_BIN"), filepath.Join(dir, "storyden"), "RATE_LIMIT=100000000")
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if err := srv.SignUp(sdAdmin, sdPassword); err != nil {
		return nil, err
	}
	err = configure(c, realStorydenMount, map[string]any{
		"provider": "storyden", "base_url": srv.URL, "allow_http": true, "username": sdAdmin, "password": sdPassword,
	}, map[string]any{})
	if err != nil {
		return nil, err
	}
	res := &realStorydenResult{reads: n}
	for i := 0; i < warm+n; i++ {
		kv, err := timedRead(ctx, c, kvPath)
		if err != nil {
			return nil, err
		}
		emulated, err := timedRead(ctx, c, storydenCredsPath)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		secret, err := c.Logical().ReadWithContext(ctx, realStorydenMount+"/creds/app")
		real := time.Since(start)
		if err != nil {
			return nil, err
		}
		bearer, err := timedProbe(srv.URL, fmt.Sprint(secret.Data["access_key"]), http.StatusOK)
		if err != nil {
			return nil, err
		}
		unknown, err := timedProbe(srv.URL, "sdpak_"+strings.Repeat("0", 44), http.StatusUnauthorized)
		if err != nil {
			return nil, err
		}
		if i < warm {
			continue
		}
		res.kv, res.emulated, res.real = append(res.kv, kv), append(res.emulated, emulated), append(res.real, real)
		res.bearer, res.unknown = append(res.bearer, bearer), append(res.unknown, unknown)
	}
	return res, nil
}

// timedProbe times GET /api/accounts with key and checks its status.
func timedProbe(base, key string, want int) (time.Duration, error) {
	start := time.Now()
	status, err := storyden.ProbeKey(base, key)
	elapsed := time.Since(start)
	if err == nil && status != want {
		err = fmt.Errorf("GET /api/accounts with a key: HTTP %d, want %d", status, want)
	}
	return elapsed, err
}

// realStorydenMarkdown is the report's section on the real server.
func realStorydenMarkdown(r *realStorydenResult) string {
	var b strings.Builder
	b.WriteString("### Storyden: the real server against the emulator\n\n")
	fmt.Fprintf(&b, "Run only when `STORYDEN_BIN` names the real Storyden v1.26.15 server (`scripts/build-storyden.sh`), on loopback with SQLite. "+
		"Each of %d rounds (after warm-up) reads KV, `storyden/creds/app` (emulator), `%s/creds/app` (real server), then sends "+
		"`GET /api/accounts` straight to the real server with the key just issued and with an unknown `sdpak_` key. "+
		"Storyden stores keys as argon2id hashes: creating one and checking one each cost a hash.\n\n", r.reads, realStorydenMount)
	b.WriteString("| read | p50 | p50 / KV | p99 | p99 / KV |\n|---|---:|---:|---:|---:|\n")
	kv50, kv99 := percentile(r.kv, 50), percentile(r.kv, 99)
	for _, row := range []struct {
		label string
		ds    []time.Duration
	}{
		{"KV v2 read", r.kv},
		{"creds, Storyden emulator", r.emulated},
		{"creds, real Storyden", r.real},
		{"real Storyden `GET /api/accounts`, issued key (Bearer)", r.bearer},
		{"real Storyden `GET /api/accounts`, unknown key", r.unknown},
	} {
		p50, p99 := percentile(row.ds, 50), percentile(row.ds, 99)
		fmt.Fprintf(&b, "| %s | %s | %.1f | %s | %.1f |\n", row.label, ms(p50), ratio(p50, kv50), ms(p99), ratio(p99, kv99))
	}
	return b.String()
}
