package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
)

// defaultBaseline is the commit whose `make bench` run measured the 916 µs
// of plugin CPU per storyden credential that issue 19 asks to halve.
const defaultBaseline = "3bc3e1a"

// targetHalvedRatio is issue 19's "halved", as a ratio of two builds read
// side by side.
const targetHalvedRatio = 0.5

// The baseline phase runs two more builds beside the bench's own plugin,
// each a process with one storyden mount of its own: the baseline commit
// and this tree again. The two sit in the same place (neither serves the
// other mounts, neither has the profiling listener), so neither side is
// favoured by its process as this tree's multiplexed plugin and a -compare
// build are (about 3 % on plugin CPU, measured with two builds of nearly the
// same tree in both places, each way round).
const (
	baselineFile    = pluginName + "-baseline"
	baselineVersion = "v0.1.1-baseline"
	baselineMount   = "baseline-storyden"
	besideFile      = pluginName + "-beside"
	besideVersion   = "v0.2.1-beside"
	besideMount     = "beside-storyden"
)

// The sides of the baseline phase, in sideBySide's order.
const (
	sideBaseline = iota
	sideThis
	sideFloor
)

// baselineResult is the baseline commit, this tree and the floor plugin's
// `floor/upstream` read side by side, or why the phase was skipped.
type baselineResult struct {
	rev     string
	skipped string
	sides   sideBySide
}

// measureBaseline builds the baseline commit's plugin from this checkout's
// history (cached, as the upgrade tests' release) and this tree's again,
// mounts each at its own storyden mount and reads the two and
// `floor/upstream` in turn at 8 clients.
func measureBaseline(ctx context.Context, o options, v *vaultServer, root, tmp string, emus *emulators) (baselineResult, error) {
	res := baselineResult{rev: o.baseline}
	plugins := filepath.Join(tmp, "plugins")
	logf("baseline: building the plugin of %s and this tree's again", o.baseline)
	released, err := devvault.ReleasedPlugin(ctx, root, o.baseline, baselineVersion)
	if err != nil {
		res.skipped = err.Error()
		logf("baseline: skipped: %v", err)
		return res, nil
	}
	baselineBin := filepath.Join(plugins, baselineFile)
	if err := copyExecutable(released, baselineBin); err != nil {
		return res, err
	}
	thisBin, err := devvault.BuildPlugin(ctx, root, plugins, besideFile, besideVersion)
	if err != nil {
		return res, err
	}
	builds := []struct{ bin, file, version, mount string }{
		{baselineBin, baselineFile, baselineVersion, baselineMount},
		{thisBin, besideFile, besideVersion, besideMount},
	}
	paths, pids := make([]string, len(builds)+1), make([]int, len(builds)+1)
	for i, b := range builds {
		if err := v.register(ctx, root, b.bin, b.version, "", b.mount); err != nil {
			return res, err
		}
		t, err := newStoryden(v.client, emus, b.mount, nil)
		if err != nil {
			return res, err
		}
		if err := warmUp(ctx, v.client, t.path, o.warm); err != nil {
			return res, err
		}
		if pids[i], err = v.pluginPIDOf(b.file); err != nil {
			return res, err
		}
		paths[i] = t.path
	}
	paths[sideFloor] = floorUpstreamRead.path
	if err := warmUp(ctx, v.client, paths[sideFloor], o.warm); err != nil {
		return res, err
	}
	if pids[sideFloor], err = v.pluginPIDOf(floorName); err != nil {
		return res, err
	}
	logf("baseline: %s, 8 clients", strings.Join(paths, " beside "))
	res.sides, err = measureSides(ctx, v.client, v.PID(), paths, pids, 2*o.rounds, o.slice)
	return res, err
}

// copyExecutable copies the binary at from to to, executable: the plugin
// directory must hold what Vault runs.
func copyExecutable(from, to string) error {
	body, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, body, 0o755)
}

// warmUp reads path n times, so that its plugin process is up and its
// connection signed in before anything is measured.
func warmUp(ctx context.Context, c *api.Client, path string, n int) error {
	for range max(n, 1) {
		if err := read(ctx, c, path); err != nil {
			return fmt.Errorf("warm-up read of %s: %w", path, err)
		}
	}
	return nil
}

// measured reports whether the phase ran and every side has reads.
func (r baselineResult) measured() bool { return r.skipped == "" && r.sides.measured() }

// ratioToBaseline is side i's plugin CPU per credential over the baseline's.
func (r baselineResult) ratioToBaseline(i int) float64 {
	return ratio(r.sides.pluginCPUPerOp(i), r.sides.pluginCPUPerOp(sideBaseline))
}

// whatItMeasured says what the baseline is to issue 19, "" for another commit.
func whatItMeasured(rev string) string {
	if rev != defaultBaseline {
		return ""
	}
	return ", whose run measured the 916 µs issue 19 asks to halve"
}

// baselineMarkdown is the phase's paragraph in section 1.
func baselineMarkdown(r baselineResult, o options) string {
	if r.rev == "" {
		return ""
	}
	if r.skipped != "" {
		return fmt.Sprintf("\nSide by side with the baseline commit `%s`: not measured: %s.\n", r.rev, r.skipped)
	}
	if !r.measured() {
		return ""
	}
	s := r.sides
	return fmt.Sprintf("\nSide by side with the baseline commit `%s`%s: its plugin and this tree's, built again, each in a process of its own with one storyden mount, and the floor plugin's `%s`, read in turn (%d slices of %s each, 8 clients). Plugin CPU per credential: the baseline %s (%.0f creds/s), this tree %s (%.0f creds/s, **%.2f×** the baseline), the floor %s (%.2f× the baseline: what any external plugin making the same round trips costs). Absolute figures drift with the machine; these ratios do not.\n",
		r.rev, whatItMeasured(r.rev), floorUpstreamRead.path, 2*o.rounds, o.slice,
		us(s.pluginCPUPerOp(sideBaseline)), s.rate(sideBaseline), us(s.pluginCPUPerOp(sideThis)), s.rate(sideThis), r.ratioToBaseline(sideThis),
		us(s.pluginCPUPerOp(sideFloor)), r.ratioToBaseline(sideFloor))
}

// judgesHalved reports whether r measured the commit of the 916 µs side by
// side with this tree, so that its line, not the absolute figure, judges
// issue 19's "halved".
func judgesHalved(r baselineResult) bool {
	return r.measured() && r.rev == defaultBaseline
}

// baselineTargetLine is the target as issue 19 words it, read side by side.
func baselineTargetLine(r baselineResult) (string, bool) {
	if !r.measured() {
		return "", false
	}
	got := r.ratioToBaseline(sideThis)
	return fmt.Sprintf("plugin CPU per storyden credential halved from the baseline `%s`%s, side by side: %s against its %s, %.2f× (target ≤ %.2f×; the floor plugin %.2f×): %s",
		r.rev, whatItMeasured(r.rev), us(r.sides.pluginCPUPerOp(sideThis)), us(r.sides.pluginCPUPerOp(sideBaseline)), got, targetHalvedRatio, r.ratioToBaseline(sideFloor), verdict(got <= targetHalvedRatio)), true
}
