package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// The scaling phase: creds throughput at 20 ms upstream latency with 1, 8
// and 32 clients, as a multiple of one client's. With the upstream's
// latency dominating, issues that never wait on one another scale with the
// clients until the CPU runs out; a lock held across the upstream call
// would hold them near one client's rate.
const scaleLatencyMS = 20

// Targets of the scaling phase, as multiples of one client's rate.
const (
	targetScale8  = 6.0
	targetScale32 = 20.0
)

// scaleProviders are the providers the phase measures: one upstream call
// per credential that creates an object (storyden), one that mints a token
// (dstor), two calls (katapult).
var scaleProviders = []string{"storyden", "dstor", "katapult"}

// scaleClients are the concurrencies the phase measures.
var scaleClients = []int{1, 8, 32}

// scaleResult is one provider at one concurrency.
type scaleResult struct {
	provider string
	clients  int
	creds    int
	errs     int
	firstErr error
	elapsed  time.Duration
	cpu      cpuSample
}

func (r scaleResult) rate() float64 { return float64(r.creds) / r.elapsed.Seconds() }

// measureScaling reads each provider's creds with 1, 8 and 32 clients,
// rounds slices of slice each, with scaleLatencyMS on every upstream call.
func measureScaling(ctx context.Context, c *api.Client, p procs, targets []*target, rounds int, slice time.Duration) ([]scaleResult, error) {
	var out []scaleResult
	for _, t := range targets {
		if !slices.Contains(scaleProviders, t.name) {
			continue
		}
		t.addFault(sandbox.Fault{LatencyMS: scaleLatencyMS})
		for _, clients := range scaleClients {
			logf("scaling: %s, %d clients, %d slices of %s at %d ms upstream latency", t.name, clients, rounds, slice, scaleLatencyMS)
			r := scaleResult{provider: t.name, clients: clients}
			for range rounds {
				before := p.sample()
				ops, errs, elapsed, first := burst(ctx, c, t.path, clients, slice, 1<<20)
				r.cpu = r.cpu.add(p.sample().sub(before))
				r.creds, r.errs, r.elapsed = r.creds+ops, r.errs+errs, r.elapsed+elapsed
				if r.firstErr == nil {
					r.firstErr = first
				}
			}
			out = append(out, r)
			if err := ctx.Err(); err != nil {
				t.clearFaults()
				return out, err
			}
		}
		t.clearFaults()
	}
	return out, nil
}

// scaleBase is one client's rate of provider.
func scaleBase(rs []scaleResult, provider string) float64 {
	for _, r := range rs {
		if r.provider == provider && r.clients == 1 {
			return r.rate()
		}
	}
	return math.NaN()
}

// scalingMarkdown is the phase's section of the report.
func scalingMarkdown(rs []scaleResult, o options, cores int) string {
	if len(rs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### 7. Concurrency at %d ms upstream latency\n\n"+
		"Creds reads with 1, 8 and 32 clients, %d slices of %s each, with %d ms on every upstream route. Each credential waits on the upstream, so issues that never wait on one another scale with the clients until a CPU runs out; × one client is the ratio of the rates. CPU per credential is of all processes (vault, plugin, bench with its emulators) on this machine's %d cores.\n\n",
		scaleLatencyMS, o.scaleRounds, o.aclSlice, scaleLatencyMS, cores)
	b.WriteString("The CPU bound is the rate at which this run's CPU per credential would use every core, and the same as a multiple of one client's rate: no concurrency can scale past it on this machine (less when other work shares the cores; see the load average above).\n\n")
	b.WriteString("| provider | clients | creds/s | **× one client** | CPU per credential (all processes) | CPU bound, creds/s | CPU bound × one client | errors | target |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rs {
		errs := "0"
		if r.errs > 0 {
			errs = oneLine(fmt.Sprintf("%d: %v", r.errs, r.firstErr))
		}
		x := r.rate() / scaleBase(rs, r.provider)
		target := "—"
		switch r.clients {
		case 8:
			target = fmt.Sprintf("≥ %.0f×: %s", targetScale8, verdict(x >= targetScale8))
		case 32:
			target = fmt.Sprintf("≥ %.0f×: %s", targetScale32, verdict(x >= targetScale32))
		}
		cpu := per(r.cpu.vault+r.cpu.plugin+r.cpu.bench, r.creds)
		bound := math.NaN()
		if cpu > 0 {
			bound = float64(cores) * float64(time.Second) / float64(cpu)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | **%.2f** | %s | %.0f | %.1f | %s | %s |\n", r.provider, r.clients, r.rate(), x, us(cpu), bound, bound/scaleBase(rs, r.provider), errs, target)
	}
	return b.String()
}

// scalingTargets are the phase's lines of the Targets list.
func scalingTargets(rs []scaleResult) []string {
	var out []string
	for _, r := range rs {
		x := r.rate() / scaleBase(rs, r.provider)
		switch r.clients {
		case 8:
			out = append(out, fmt.Sprintf("%s creds at %d ms with 8 clients: %.2f× one client (target ≥ %.0f×): %s", r.provider, scaleLatencyMS, x, targetScale8, verdict(x >= targetScale8)))
		case 32:
			out = append(out, fmt.Sprintf("%s creds at %d ms with 32 clients: %.2f× one client (target ≥ %.0f×): %s", r.provider, scaleLatencyMS, x, targetScale32, verdict(x >= targetScale32)))
		}
	}
	return out
}

// scalingChart is the chart's third panel: × one client per provider and
// concurrency, with the targets.
func scalingChart(w func(string, ...any), rs []scaleResult, left, top, pw, ph float64) {
	if len(rs) == 0 {
		return
	}
	maxX := 32.0
	for _, r := range rs {
		maxX = math.Max(maxX, r.rate()/scaleBase(rs, r.provider))
	}
	maxX = math.Ceil(maxX/8) * 8
	y := func(v float64) float64 { return top + ph - v/maxX*ph }
	w(`<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">Creds/s at %d ms upstream latency as a multiple of one client's (higher is better)</text>`+"\n", left, top-18, scaleLatencyMS)
	for tick := 0.0; tick <= maxX+1e-9; tick += 8 {
		w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e2e8f0"/>`+"\n", left, y(tick), left+pw, y(tick))
		w(`<text x="%.0f" y="%.1f" text-anchor="end" dy="4">%.0f×</text>`+"\n", left-6, y(tick), tick)
	}
	for _, t := range []struct {
		v     float64
		label string
	}{{targetScale8, "target 8 clients"}, {targetScale32, "target 32 clients"}} {
		w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#c53030" stroke-dasharray="6 4" stroke-width="1.5"><title>%s: %.0f×</title></line>`+"\n",
			left, y(t.v), left+pw, y(t.v), t.label, t.v)
	}
	colors := map[int]string{1: "#553c9a", 8: "#805ad5", 32: "#d6bcfa"}
	group := pw / float64(len(scaleProviders))
	bar := group * 0.8 / float64(len(scaleClients))
	for i, p := range scaleProviders {
		gx := left + float64(i)*group + group*0.1
		for j, n := range scaleClients {
			for _, r := range rs {
				if r.provider != p || r.clients != n {
					continue
				}
				v := r.rate() / scaleBase(rs, p)
				x := gx + float64(j)*bar
				w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %d clients: %.0f creds/s, %.2f× one client</title></rect>`+"\n", x, y(v), bar-2, top+ph-y(v), colors[n], p, n, r.rate(), v)
				w(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.1f</text>`+"\n", x+(bar-2)/2, y(v)-3, v)
			}
		}
		w(`<text x="%.1f" y="%.0f" text-anchor="middle" font-size="13">%s</text>`+"\n", left+float64(i)*group+group/2, top+ph+18, p)
	}
	w(`<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#4a5568"/>`+"\n", left, top+ph, left+pw, top+ph)
	for j, n := range scaleClients {
		lx := left + float64(j)*200
		w(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%d concurrent clients</text>`+"\n", lx, top+ph+30, colors[n], lx+16, top+ph+40, n)
	}
	lx := left + float64(len(scaleClients))*200
	w(`<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#c53030" stroke-dasharray="6 4" stroke-width="1.5"/><text x="%.0f" y="%.0f">targets: %.0f× at 8 clients, %.0f× at 32</text>`+"\n",
		lx, top+ph+36, lx+24, top+ph+36, lx+28, top+ph+40, targetScale8, targetScale32)
}
