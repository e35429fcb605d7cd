package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// kvPath is the KV v2 secret every creds read is compared with: the read
// `vault kv get secret/bench` makes (after its mount preflight).
const kvPath = "secret/data/bench"

// storydenCredsPath is the storyden credential the breakdown, the profile
// and the side-by-side reads against `floor/upstream` take.
const storydenCredsPath = "storyden/creds/app"

// read GETs path and fails on an error or an empty answer.
func read(ctx context.Context, c *api.Client, path string) error {
	secret, err := c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return err
	}
	if secret == nil || len(secret.Data) == 0 {
		return fmt.Errorf("GET %s returned nothing", path)
	}
	return nil
}

func timedRead(ctx context.Context, c *api.Client, path string) (time.Duration, error) {
	start := time.Now()
	err := read(ctx, c, path)
	return time.Since(start), err
}

// latencyResult is one provider's creds reads next to the KV reads made in
// the same loop, at one upstream latency.
type latencyResult struct {
	provider  string
	latencyMS int
	reads     int
	kv, creds []time.Duration
	// calls are the upstream calls of the measured reads (after warm-up), by route.
	calls map[string]int
	// upstream is the time the plugin spent in upstream HTTP exchanges per
	// measured read, by its own clock (the mount's latency histogram).
	upstream time.Duration
	floor    float64
	note     string
}

func (r latencyResult) callsPerCred() float64 {
	total := 0
	for _, n := range r.calls {
		total += n
	}
	return float64(total) / float64(r.reads)
}

// measureLatency alternates a KV read and a creds read (swapping which goes
// first each round, so neither always follows the other), warm first and
// then n measured rounds. Upstream calls are counted over the measured
// rounds only, so one-time session set-up (sign-ins, token fetches) is out.
func measureLatency(ctx context.Context, c *api.Client, t *target, latencyMS, warm, n int) (latencyResult, error) {
	res := latencyResult{provider: t.name, latencyMS: latencyMS, reads: n, floor: t.floor, note: t.floorNote}
	if latencyMS > 0 {
		t.addFault(sandbox.Fault{LatencyMS: latencyMS})
		defer t.clearFaults()
	}
	mount, _, _ := strings.Cut(t.path, "/")
	var upstreamBefore float64
	for i := 0; i < warm+n; i++ {
		if i == warm {
			t.resetCalls()
			var err error
			if upstreamBefore, err = upstreamSeconds(ctx, c, mount); err != nil {
				return res, err
			}
		}
		paths := []string{kvPath, t.path}
		if i%2 == 1 {
			paths[0], paths[1] = paths[1], paths[0]
		}
		for _, p := range paths {
			d, err := timedRead(ctx, c, p)
			if err != nil {
				return res, fmt.Errorf("%s: %w", p, err)
			}
			if i < warm {
				continue
			}
			if p == kvPath {
				res.kv = append(res.kv, d)
			} else {
				res.creds = append(res.creds, d)
			}
		}
	}
	res.calls = t.calls()
	upstreamAfter, err := upstreamSeconds(ctx, c, mount)
	if err != nil {
		return res, err
	}
	res.upstream = time.Duration((upstreamAfter - upstreamBefore) / float64(n) * float64(time.Second))
	return res, nil
}

// upstreamHistogram is the engine's histogram of upstream HTTP exchanges.
const upstreamHistogram = "vault_apikeys_upstream_request_duration_seconds"

// upstreamSeconds is the total time of the mount's upstream exchanges so
// far: the _sum of its latency histogram, read from <mount>/metrics.
func upstreamSeconds(ctx context.Context, c *api.Client, mount string) (float64, error) {
	secret, err := c.Logical().ReadWithContext(ctx, mount+"/metrics")
	if err != nil {
		return 0, fmt.Errorf("%s/metrics: %w", mount, err)
	}
	var body struct {
		Metrics []struct {
			Name    string `json:"name"`
			Samples []struct {
				Suffix string  `json:"suffix"`
				Value  float64 `json:"value"`
			} `json:"samples"`
		} `json:"metrics"`
	}
	if secret == nil {
		return 0, fmt.Errorf("%s/metrics returned nothing", mount)
	}
	raw, err := json.Marshal(secret.Data)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return 0, fmt.Errorf("%s/metrics: %w", mount, err)
	}
	total := 0.0
	for _, f := range body.Metrics {
		if f.Name != upstreamHistogram {
			continue
		}
		for _, s := range f.Samples {
			if s.Suffix == "_sum" {
				total += s.Value
			}
		}
	}
	return total, nil
}

// percentile of durations (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// throughputResult is creds/s of a provider and reads/s of KV at one
// concurrency, measured in alternating slices.
type throughputResult struct {
	provider          string
	clients           int
	credsOps, kvOps   int
	credsTime, kvTime time.Duration
	credsErrs, kvErrs int
	firstErr          error
	credsRate, kvRate float64
	credsCalls        float64
	// credsCPU and kvCPU are the CPU time each side's slices used, per process.
	credsCPU, kvCPU cpuSample
}

// measureThroughput runs `clients` concurrent readers on one path for a
// slice, then on the other, for rounds rounds, alternating which goes first;
// each slice also stops at maxOps reads.
func measureThroughput(ctx context.Context, c *api.Client, p procs, t *target, clients, rounds int, slice time.Duration, maxOps int) throughputResult {
	res := throughputResult{provider: t.name, clients: clients}
	for r := 0; r < rounds; r++ {
		order := []string{kvPath, t.path}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, path := range order {
			before := p.sample()
			ops, errs, elapsed, first := burst(ctx, c, path, clients, slice, maxOps)
			used := p.sample().sub(before)
			if first != nil && res.firstErr == nil {
				res.firstErr = first
			}
			if path == kvPath {
				res.kvOps, res.kvErrs, res.kvTime = res.kvOps+ops, res.kvErrs+errs, res.kvTime+elapsed
				res.kvCPU = res.kvCPU.add(used)
			} else {
				res.credsOps, res.credsErrs, res.credsTime = res.credsOps+ops, res.credsErrs+errs, res.credsTime+elapsed
				res.credsCPU = res.credsCPU.add(used)
			}
		}
	}
	res.credsRate = float64(res.credsOps) / res.credsTime.Seconds()
	res.kvRate = float64(res.kvOps) / res.kvTime.Seconds()
	return res
}

// burst reads path with n workers until the slice ends or maxOps reads
// started, and returns the successful reads and the time they took.
func burst(ctx context.Context, c *api.Client, path string, n int, slice time.Duration, maxOps int) (ops, errs int, elapsed time.Duration, first error) {
	var started, okOps, errOps atomic.Int64
	var firstErr error
	var mu sync.Mutex
	deadline := time.Now().Add(slice)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && started.Add(1) <= int64(maxOps) && ctx.Err() == nil {
				if err := read(ctx, c, path); err != nil {
					errOps.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				okOps.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(okOps.Load()), int(errOps.Load()), time.Since(start), firstErr
}

// issueMany reads path n times with workers concurrent readers.
func issueMany(ctx context.Context, c *api.Client, path string, n, workers int) error {
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := read(ctx, c, path); err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if firstErr != nil {
		return fmt.Errorf("%d of %d reads of %s failed, the first: %w", failures.Load(), n, path, firstErr)
	}
	return nil
}

// liveObjects counts what still grants access upstream.
func liveObjects(srv *sandbox.Server) int {
	n := 0
	for _, o := range srv.Objects() {
		if o.Live {
			n++
		}
	}
	return n
}

// leaseCount lists the leases under prefix (e.g. "storyden/creds/app/").
func leaseCount(ctx context.Context, c *api.Client, prefix string) (int, error) {
	secret, err := c.Logical().ListWithContext(ctx, "sys/leases/lookup/"+prefix)
	if err != nil {
		return 0, err
	}
	if secret == nil {
		return 0, nil
	}
	keys, _ := secret.Data["keys"].([]any)
	return len(keys), nil
}

// revokeResult is one mass revoke against a rate-limited upstream.
type revokeResult struct {
	mode         string
	leases       int
	rate         float64
	burst        int
	floor        time.Duration
	elapsed      time.Duration
	finished     bool
	deletes      int
	refused      int
	orphans      int
	leasesLeft   int
	requestError string
	// vaultRetries counts the revokes Vault saw fail and queued again
	// ("failed to revoke lease" in its log).
	vaultRetries int
}

// massRevoke issues n credentials on a fresh Storyden mount, turns the
// DELETE rate limit on, and revokes every lease of the mount: "sync" with
// one revoke-prefix request (Vault revokes the leases one after another),
// "async" with revoke-prefix sync=false (Vault's expiration workers revoke
// them concurrently, as when a token with many leases is revoked or many
// leases expire together). It waits until no key is live upstream and no
// lease is left, or limit passes.
func massRevoke(ctx context.Context, v *vaultServer, emus *emulators, mount, mode string, n int, rate float64, burstSize int, limit time.Duration) (revokeResult, error) {
	res := revokeResult{mode: mode, leases: n, rate: rate, burst: burstSize,
		floor: time.Duration(float64(max(n-burstSize, 0)) / rate * float64(time.Second))}
	c := v.client
	limiter := &deleteLimiter{}
	t, err := newStoryden(c, emus, mount, limiter)
	if err != nil {
		return res, err
	}
	srv := t.servers[0]
	if err := issueMany(ctx, c, t.path, n, 8); err != nil {
		return res, err
	}
	if live := liveObjects(srv); live != n {
		return res, fmt.Errorf("%d live keys upstream after issuing %d", live, n)
	}
	limiter.enable(rate, burstSize)
	srv.ResetCalls()
	start := time.Now()
	deadline := start.Add(limit)
	revokeCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var body map[string]any
	if mode == "async" {
		body = map[string]any{"sync": false}
	}
	if _, err := c.Logical().WriteWithContext(revokeCtx, "sys/leases/revoke-prefix/"+t.path, body); err != nil {
		res.requestError = err.Error()
	}
	for {
		left, err := leaseCount(ctx, c, t.path+"/")
		if err != nil {
			return res, err
		}
		res.orphans, res.leasesLeft = liveObjects(srv), left
		if left == 0 && res.orphans == 0 {
			res.finished = true
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.elapsed = time.Since(start)
	passed, refused := limiter.counts()
	res.deletes, res.refused = passed+refused, refused
	limiter.disable()
	res.vaultRetries = v.countLog("failed to revoke lease", "lease_id="+mount+"/")
	if !res.finished && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, ctx.Err()
	}
	return res, nil
}

// rssResult is the plugin process's resident memory before and after a
// mount holds many live leases.
type rssResult struct {
	leases        int
	totalLeases   int
	pluginBefore  int // KiB
	pluginAfter   int
	pluginAtStart int
	vaultBefore   int
	vaultAfter    int
	issueTime     time.Duration
	pluginPID     int
	vaultPID      int
}

// countAllLeases lists every creds lease of the given mounts.
func countAllLeases(ctx context.Context, c *api.Client, paths []string) int {
	total := 0
	for _, p := range paths {
		n, err := leaseCount(ctx, c, p+"/")
		if err == nil {
			total += n
		}
	}
	return total
}

func sortedRoutes(calls map[string]int) []string {
	routes := make([]string, 0, len(calls))
	for r := range calls {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	return routes
}

// breakdownResult is a chain of reads timed in one loop, each adding one
// cost to the one before.
type breakdownResult struct {
	steps []breakdownStep
}

type breakdownStep struct {
	label, path string
	durations   []time.Duration
}

// measureBreakdown times several paths side by side, rotating their order
// every round, warm first and then n measured rounds.
func measureBreakdown(ctx context.Context, c *api.Client, steps []breakdownStep, warm, n int) (breakdownResult, error) {
	for i := 0; i < warm+n; i++ {
		for k := range steps {
			j := (k + i) % len(steps)
			d, err := timedRead(ctx, c, steps[j].path)
			if err != nil {
				return breakdownResult{}, fmt.Errorf("%s: %w", steps[j].path, err)
			}
			if i >= warm {
				steps[j].durations = append(steps[j].durations, d)
			}
		}
	}
	return breakdownResult{steps: steps}, nil
}

// measureCLI times the vault CLI itself, one process per read, for kv get
// and the creds reads of paths, rotating the order every round.
func measureCLI(ctx context.Context, v *vaultServer, paths []string, warm, n int) (breakdownResult, error) {
	steps := []breakdownStep{{label: "`vault kv get secret/bench`", path: ""}}
	for _, p := range paths {
		steps = append(steps, breakdownStep{label: "`vault read " + p + "`", path: p})
	}
	env := append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "VAULT_FORMAT=json")
	for i := 0; i < warm+n; i++ {
		for k := range steps {
			j := (k + i) % len(steps)
			args := []string{"read", steps[j].path}
			if steps[j].path == "" {
				args = []string{"kv", "get", "secret/bench"}
			}
			cmd := exec.CommandContext(ctx, v.Bin, args...)
			cmd.Env = env
			start := time.Now()
			out, err := cmd.CombinedOutput()
			d := time.Since(start)
			if err != nil {
				return breakdownResult{}, fmt.Errorf("vault %v: %v\n%s", args, err, out)
			}
			if i >= warm {
				steps[j].durations = append(steps[j].durations, d)
			}
		}
	}
	return breakdownResult{steps: steps}, nil
}
