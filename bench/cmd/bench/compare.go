package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
)

// The -compare build is registered as a second version of the plugin, so
// both run side by side in one Vault, each in its own plugin process.
const (
	compareVersion = "v0.1.1-compare"
	compareFile    = pluginName + "-compare"
	comparePrefix  = "cmp-"
)

// compareMounts are the mounts of the -compare build.
var compareMounts = []string{comparePrefix + "storyden", comparePrefix + "dstor", comparePrefix + "storable", comparePrefix + "revoke-async", comparePrefix + "revoke-sync"}

// compareResult is this tree's plugin measured side by side with the plugin
// built from another source tree (an engine change, before and after).
type compareResult struct {
	dir        string
	latency    breakdownResult
	throughput []sideBySide
	revokes    []revokeResult // this tree, then the compare tree, per mode
}

// sideBySide is paths read in turn, slice after slice, by the same clients.
type sideBySide struct {
	provider string
	clients  int
	ops      []int
	elapsed  []time.Duration
	// cpu is the CPU time of every process (vault, the sides' plugins, the
	// bench) during each side's slices; pluginCPU is that of the side's own
	// plugin process, vaultCPU the vault server's.
	cpu, pluginCPU, vaultCPU []time.Duration
}

func (r sideBySide) rate(i int) float64 { return float64(r.ops[i]) / r.elapsed[i].Seconds() }

func (r sideBySide) cpuPerOp(i int) time.Duration { return per(r.cpu[i], r.ops[i]) }

// pluginCPUPerOp is side i's plugin CPU per read, 0 before any read.
func (r sideBySide) pluginCPUPerOp(i int) time.Duration {
	if i >= len(r.ops) || r.ops[i] == 0 {
		return 0
	}
	return per(r.pluginCPU[i], r.ops[i])
}

// measured reports whether every side has reads.
func (r sideBySide) measured() bool {
	for _, n := range r.ops {
		if n == 0 {
			return false
		}
	}
	return len(r.ops) > 0
}

// runCompare builds the plugin from dir, registers it as compareVersion
// beside this tree's, and measures both side by side: latency in one
// rotating loop, throughput at 8 clients in alternating slices, and the
// mass revokes back to back.
func runCompare(ctx context.Context, o options, v *vaultServer, root, tmp string, emus *emulators, this []*target, res *compareResult) error {
	logf("compare: building the plugin from %s", o.compare)
	bin, err := devvault.BuildPlugin(ctx, o.compare, filepath.Join(tmp, "plugins"), compareFile, compareVersion)
	if err != nil {
		return err
	}
	if err := v.register(ctx, root, bin, compareVersion, "", compareMounts...); err != nil {
		return err
	}
	c := v.client
	var other []*target
	for _, b := range []func(*api.Client, *emulators, string) (*target, error){
		func(c *api.Client, e *emulators, m string) (*target, error) { return newStoryden(c, e, m, nil) },
		newDstor, newStorable,
	} {
		name := compareMounts[len(other)]
		t, err := b(c, emus, name)
		if err != nil {
			return err
		}
		other = append(other, t)
	}
	byName := map[string]*target{}
	for _, t := range this {
		byName[t.name] = t
	}
	pluginB, err := v.pluginPIDOf(compareFile)
	if err != nil {
		return err
	}
	pluginA, err := v.pluginPID()
	if err != nil {
		return err
	}

	logf("compare: latency, %d rounds", o.reads)
	steps := []breakdownStep{{label: "KV v2 read", path: kvPath},
		{label: "this tree: storable/roles/app", path: "storable/roles/app"}, {label: "compare tree: storable/roles/app", path: comparePrefix + "storable/roles/app"}}
	for _, t := range other {
		a := byName[t.name]
		steps = append(steps, breakdownStep{label: "this tree: " + a.path, path: a.path}, breakdownStep{label: "compare tree: " + t.path, path: t.path})
	}
	if res.latency, err = measureBreakdown(ctx, c, steps, o.warm, o.reads); err != nil {
		return err
	}

	for _, t := range other {
		logf("compare: throughput of %s, 8 clients", t.name)
		r, err := measureSides(ctx, c, v.PID(), []string{byName[t.name].path, t.path}, []int{pluginA, pluginB}, o.rounds, o.slice)
		if err != nil {
			return err
		}
		r.provider = t.name
		res.throughput = append(res.throughput, r)
	}

	for _, mode := range []string{"async", "sync"} {
		mounts := []string{"revoke-" + mode, comparePrefix + "revoke-" + mode}
		for i, mount := range mounts {
			logf("compare: mass revoke (%s) on %s", mode, mount)
			r, err := massRevoke(ctx, v, emus, mount, mode, o.revokeLeases, o.revokeRate, o.revokeBurst, o.revokeLimit)
			if err != nil {
				return err
			}
			r.mode = []string{"this tree, ", "compare tree, "}[i] + mode
			res.revokes = append(res.revokes, r)
		}
	}
	return nil
}

// measureSides reads paths with 8 clients in turn, one slice each per
// round, each round starting one path later than the one before; pids are
// the plugin processes that serve them, each side's plugin CPU taken from
// its own.
func measureSides(ctx context.Context, c *api.Client, vaultPID int, paths []string, pids []int, rounds int, slice time.Duration) (sideBySide, error) {
	n := len(paths)
	r := sideBySide{clients: 8, ops: make([]int, n), elapsed: make([]time.Duration, n),
		cpu: make([]time.Duration, n), pluginCPU: make([]time.Duration, n), vaultCPU: make([]time.Duration, n)}
	all := append([]int{vaultPID}, pids...)
	for round := 0; round < rounds; round++ {
		for k := 0; k < n; k++ {
			i := (k + round) % n
			before, beforeOwn, beforeVault := totalCPU(all...), cpuTime(pids[i]), cpuTime(vaultPID)
			ops, _, elapsed, first := burst(ctx, c, paths[i], 8, slice, 20000)
			if first != nil {
				return r, fmt.Errorf("%s: %w", paths[i], first)
			}
			r.cpu[i] += totalCPU(all...) - before
			r.pluginCPU[i] += cpuTime(pids[i]) - beforeOwn
			r.vaultCPU[i] += cpuTime(vaultPID) - beforeVault
			r.ops[i] += ops
			r.elapsed[i] += elapsed
		}
	}
	return r, ctx.Err()
}

func totalCPU(pids ...int) time.Duration {
	total := cpuTime(0)
	for _, pid := range pids {
		total += cpuTime(pid)
	}
	return total
}

func compareMarkdown(res *compareResult, o options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("### Before/after: this tree against `-compare %s`\n\n", res.dir)
	w("Both plugins run in the same Vault (the compare build registered as %s, each version in its own plugin process) and are read in one rotating loop (%d rounds); ratio = compare tree / this tree.\n\n", compareVersion, o.reads)
	w("| read | this tree p50 | compare tree p50 | **compare / this, p50** | this tree p99 | compare tree p99 | compare / this, p99 | this / KV p50 | compare / KV p50 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	steps := res.latency.steps
	if len(steps) > 0 {
		kv := percentile(steps[0].durations, 50)
		for i := 1; i+1 < len(steps); i += 2 {
			a, c := steps[i], steps[i+1]
			a50, c50, a99, c99 := percentile(a.durations, 50), percentile(c.durations, 50), percentile(a.durations, 99), percentile(c.durations, 99)
			w("| `%s` | %s | %s | **%.2f** | %s | %s | %.2f | %.2f | %.2f |\n", strings.TrimPrefix(a.label, "this tree: "), ms(a50), ms(c50), ratio(c50, a50),
				ms(a99), ms(c99), ratio(c99, a99), ratio(a50, kv), ratio(c50, kv))
		}
	}
	w("\n| creds, 8 clients | this tree creds/s | compare tree creds/s | **compare / this** | CPU per credential, this tree (all processes) | compare tree | **compare / this** | plugin CPU per credential, this tree | compare tree | **compare / this** | vault CPU per credential, this tree | compare tree |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range res.throughput {
		pa, pc := r.pluginCPUPerOp(0), r.pluginCPUPerOp(1)
		w("| %s | %.0f | %.0f | **%.2f** | %s | %s | **%.2f** | %s | %s | **%.2f** | %s | %s |\n", r.provider, r.rate(0), r.rate(1), r.rate(1)/r.rate(0),
			us(r.cpuPerOp(0)), us(r.cpuPerOp(1)), ratio(r.cpuPerOp(1), r.cpuPerOp(0)), us(pa), us(pc), ratio(pc, pa),
			us(per(r.vaultCPU[0], r.ops[0])), us(per(r.vaultCPU[1], r.ops[1])))
	}
	w("\n| mass revoke | leases | floor | time | **time / floor** | DELETE attempts | answered 429 | revokes Vault had to retry | orphans |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range res.revokes {
		t := r.elapsed.Round(10 * time.Millisecond).String()
		if !r.finished {
			t = "> " + t + " (gave up)"
		}
		w("| %s | %d | %s | %s | **%.2f** | %d | %d | %d | %d |\n", r.mode, r.leases, r.floor.Round(10*time.Millisecond), t, ratio(r.elapsed, r.floor),
			r.deletes, r.refused, r.vaultRetries, r.orphans)
	}
	w("\n")
	return b.String()
}
