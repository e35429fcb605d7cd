// Command bench measures what one credential costs through a real Vault
// server, against floors: creds read latency as a ratio to a KV v2 read on
// the same server in the same loop, upstream calls per credential against
// the fewest the provider's API allows, throughput at 1, 8 and 32 clients,
// a mass revoke against a rate-limited upstream, and the plugin's resident
// memory with many live leases.
//
// It starts everything itself on 127.0.0.1: a `vault server -dev` (the
// binary of -vault, $VAULT_BIN or scripts/build-vault.sh), the plugin built
// as `make build` builds it and registered by scripts/register-plugin.sh,
// and the sandbox emulators in this process. It is bounded in time
// (-timeout) and in requests (every phase has a count), and writes its
// tables between the markers of -out and its chart to -svg.
//
//	go run ./bench/cmd/bench [-out docs/benchmarks.md] [-svg docs/benchmarks.svg] [-quick]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
)

type options struct {
	vault        string
	out, svg     string
	reads        int
	readsSlow    int
	warm         int
	slice        time.Duration
	rounds       int
	revokeLeases int
	revokeRate   float64
	revokeBurst  int
	revokeLimit  time.Duration
	rssLeases    int
	timeout      time.Duration
	pprofDir     string
	cliReads     int
	realReads    int
	aclSlice     time.Duration
	scaleRounds  int
	phases       map[string]bool
	compare      string
	baseline     string
}

// allPhases are the bench's phases in the order they run.
var allPhases = []string{"breakdown", "cli", "latency", "throughput", "baseline", "scaling", "bucket-acl", "profile", "revoke", "rss"}

func main() {
	var o options
	quick := flag.Bool("quick", false, "a short run with small counts, to check the bench itself")
	flag.StringVar(&o.vault, "vault", "", "vault binary (default $VAULT_BIN, else scripts/build-vault.sh)")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "markdown file whose generated section is replaced (empty: print only)")
	flag.StringVar(&o.svg, "svg", "docs/benchmarks.svg", "SVG chart to write (empty: none)")
	flag.IntVar(&o.reads, "reads", 300, "measured creds reads per provider at 0 ms upstream latency (after warm-up)")
	flag.IntVar(&o.readsSlow, "reads-slow", 100, "measured creds reads per provider at 20 ms upstream latency")
	flag.IntVar(&o.cliReads, "cli-reads", 20, "measured rounds of the vault CLI (kv get against creds reads)")
	flag.IntVar(&o.realReads, "storyden-reads", 100, "measured rounds against the real Storyden server (only when STORYDEN_BIN is set)")
	flag.IntVar(&o.warm, "warm", 20, "warm-up reads per provider before measuring")
	flag.DurationVar(&o.slice, "slice", 500*time.Millisecond, "length of one throughput slice")
	flag.IntVar(&o.rounds, "rounds", 6, "throughput slices per side (KV, creds) per provider and concurrency")
	flag.DurationVar(&o.aclSlice, "acl-slice", 2*time.Second, "length of one slice of the bucket-acl and scaling phases (20 ms per upstream call)")
	flag.IntVar(&o.scaleRounds, "scale-rounds", 3, "slices per provider and concurrency of the scaling phase")
	flag.IntVar(&o.revokeLeases, "revoke-leases", 1000, "leases revoked in each mass revoke")
	flag.Float64Var(&o.revokeRate, "revoke-rate", 50, "upstream DELETE rate limit during the mass revoke, per second")
	flag.IntVar(&o.revokeBurst, "revoke-burst", 50, "upstream DELETE burst during the mass revoke")
	flag.DurationVar(&o.revokeLimit, "revoke-limit", 4*time.Minute, "give up on a mass revoke after this long")
	flag.IntVar(&o.rssLeases, "rss-leases", 10000, "live leases held while the plugin's RSS is read")
	flag.DurationVar(&o.timeout, "timeout", 14*time.Minute, "stop everything after this long")
	flag.StringVar(&o.pprofDir, "pprof", "", "also save CPU profiles of the vault server under load into this folder, and keep the plugin's there (default: a temporary folder)")
	flag.StringVar(&o.compare, "compare", "", "also build the plugin from this source tree and measure it side by side with this tree's (before/after of an engine change)")
	flag.StringVar(&o.baseline, "baseline", defaultBaseline, "commit of this repository whose plugin the baseline phase builds and reads side by side with this tree's (issue 19's 916 µs was measured on the default)")
	phases := flag.String("phases", "all", "comma-separated phases to run, of "+strings.Join(allPhases, ",")+"; a partial run only prints its tables")
	flag.Parse()
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		if p == "none" {
			continue
		}
		if p == "all" {
			for _, a := range allPhases {
				o.phases[a] = true
			}
			continue
		}
		if !slices.Contains(allPhases, p) {
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q (phases: %s)\n", p, strings.Join(allPhases, ","))
			os.Exit(2)
		}
		o.phases[p] = true
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if len(o.phases) < len(allPhases) {
		o.out, o.svg = "", ""
	}
	if *quick {
		o.reads, o.readsSlow, o.warm, o.slice, o.rounds, o.cliReads, o.realReads = 30, 20, 5, 300*time.Millisecond, 1, 5, 10
		o.aclSlice, o.scaleRounds = time.Second, 1
		o.revokeLeases, o.revokeRate, o.revokeBurst, o.revokeLimit, o.rssLeases = 100, 50, 20, time.Minute, 500
		// A smoke run never overwrites the recorded results unless told to.
		if !explicit["out"] {
			o.out = ""
		}
		if !explicit["svg"] {
			o.svg = ""
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// results is everything the report shows.
type results struct {
	date         time.Time
	cores        int
	goVersion    string
	goarch       string
	cpuModel     string
	vaultVersion string
	opts         options
	latency      []latencyResult
	breakdown    breakdownResult
	compare      *compareResult
	baseline     baselineResult
	cli          breakdownResult
	throughput   []throughputResult
	// floorCPU is the floor plugin's reads at 8 clients, for the CPU table.
	floorCPU []throughputResult
	// beside is storyden creds and `floor/upstream` in alternating slices
	// at 8 clients, each side's plugin CPU from its own process.
	beside    sideBySide
	bucketACL []aclResult
	scaling   []scaleResult
	profile   pluginProfile
	revokes   []revokeResult
	rss       rssResult
	// realStoryden is measured only when STORYDEN_BIN is set.
	realStoryden *realStorydenResult
	elapsed      time.Duration
	// loadStart and loadEnd are /proc/loadavg's 1, 5 and 15 minute loads:
	// other work on the machine the ratios had to share it with.
	loadStart, loadEnd string
}

func run(o options) error {
	// Ctrl-C or SIGTERM end the run through the deferred clean-up: the vault
	// server, its plugin process and the emulators all stop.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(sigCtx, o.timeout)
	defer cancel()
	began := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bin, err := vaultBinary(root, o.vault)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "apikeys-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf("building the plugin")
	plugin, err := devvault.BuildPluginTags(ctx, root, filepath.Join(dir, "plugins"), pluginName, pluginVersion, "pprof")
	if err != nil {
		return err
	}
	pprofPort, err := devvault.FreePort()
	if err != nil {
		return err
	}
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", pprofPort)
	logf("starting %s server -dev", bin)
	v, err := startVault(bin, dir)
	if err != nil {
		return err
	}
	defer v.Stop()
	mounts := []string{"storyden", "storx", "katapult", "katapult-bucket", "dstor", "storable", "revoke-sync", "revoke-async", "rss"}
	if realStorydenWanted(o) {
		mounts = append(mounts, realStorydenMount)
	}
	if err := v.register(ctx, root, plugin, pluginVersion, "APIKEYS_PPROF_ADDR="+pprofAddr, mounts...); err != nil {
		return err
	}
	emus := &emulators{}
	defer emus.closeAll()
	c := v.client
	if _, err := c.Logical().Write(kvPath, map[string]any{"data": map[string]any{"username": "bench", "password": "not-a-secret"}}); err != nil {
		return fmt.Errorf("write the KV secret: %w", err)
	}
	targets, err := setUp(c, emus)
	if err != nil {
		return err
	}
	res := &results{date: time.Now().UTC(), cores: runtime.NumCPU(), goVersion: runtime.Version(), goarch: runtime.GOOS + "/" + runtime.GOARCH,
		cpuModel: cpuModel(), vaultVersion: v.version, opts: o, loadStart: loadAvg()}
	pid, err := v.pluginPID()
	if err != nil {
		return err
	}
	res.rss.pluginPID, res.rss.vaultPID = pid, v.PID()
	res.rss.pluginAtStart, _ = rssKiB(pid)

	if o.phases["breakdown"] || o.phases["throughput"] || o.phases["baseline"] {
		if err := mountFloor(ctx, c, root, filepath.Join(dir, "plugins")); err != nil {
			return err
		}
	}
	if o.phases["breakdown"] {
		logf("breakdown: KV, the floor of an external plugin, a plugin read without a lease, creds without and with an upstream call")
		res.breakdown, err = measureBreakdown(ctx, c, []breakdownStep{
			{label: "KV v2 read (`secret/data/bench`), the baseline", path: kvPath},
			floorSteps[0], floorSteps[1], floorSteps[2], floorSteps[3],
			{label: "plugin read without a lease (`storable/roles/app`): a gRPC request to the plugin, which reads one storage entry back through Vault", path: "storable/roles/app"},
			{label: "creds without an upstream call (`storable/creds/app`, token cached): adds the engine's issue path and Vault's lease", path: "storable/creds/app"},
			{label: "creds with one upstream call (`storyden/creds/app`): adds one HTTP call to the emulator and the inventory entry", path: storydenCredsPath},
		}, o.warm, o.reads)
		if err != nil {
			return err
		}
	}

	if o.phases["cli"] {
		logf("cli: vault kv get against vault read <provider>/creds/app, %d rounds", o.cliReads)
		res.cli, err = measureCLI(ctx, v, []string{storydenCredsPath, "dstor/creds/app", "storable/creds/app"}, 2, o.cliReads)
		if err != nil {
			return err
		}
	}

	if o.pprofDir != "" {
		err := profileVault(ctx, v, o.pprofDir, 8, map[string]string{
			"kv": kvPath, "roles": "storable/roles/app", "storable-creds": "storable/creds/app", "storyden-creds": storydenCredsPath,
		})
		if err != nil {
			return err
		}
	}

	if o.phases["latency"] {
		for _, latency := range []int{0, 20} {
			n, warm := o.reads, o.warm
			if latency > 0 {
				n, warm = o.readsSlow, max(o.warm/4, 2)
			}
			for _, t := range targets {
				logf("latency: %s, upstream latency %d ms, %d reads after %d warm-up", t.name, latency, n, warm)
				r, err := measureLatency(ctx, c, t, latency, warm, n)
				if err != nil {
					return err
				}
				res.latency = append(res.latency, r)
			}
		}
	}

	if realStorydenWanted(o) {
		warm := max(o.warm/4, 2)
		logf("latency: storyden, the real server against the emulator, %d rounds after %d warm-up", o.realReads, warm)
		if res.realStoryden, err = measureRealStoryden(ctx, c, dir, warm, o.realReads); err != nil {
			return err
		}
	}

	if o.phases["throughput"] {
		for _, clients := range []int{1, 8, 32} {
			for _, t := range targets {
				logf("throughput: %s, %d clients", t.name, clients)
				t.resetCalls()
				r := measureThroughput(ctx, c, procs{vault: res.rss.vaultPID, plugin: res.rss.pluginPID}, t, clients, o.rounds, o.slice, 20000)
				total := 0
				for _, n := range t.calls() {
					total += n
				}
				if r.credsOps > 0 {
					r.credsCalls = float64(total) / float64(r.credsOps+r.credsErrs)
				}
				res.throughput = append(res.throughput, r)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		if res.floorCPU, err = measureFloorCPU(ctx, c, v, o); err != nil {
			return err
		}
		if res.beside, err = measureBesideFloor(ctx, c, v, res.rss.pluginPID, o); err != nil {
			return err
		}
	}

	if o.phases["baseline"] && o.baseline != "" {
		if res.baseline, err = measureBaseline(ctx, o, v, root, dir, emus); err != nil {
			return err
		}
	}

	if o.phases["scaling"] {
		if res.scaling, err = measureScaling(ctx, c, procs{vault: res.rss.vaultPID, plugin: res.rss.pluginPID}, targets, o.scaleRounds, o.aclSlice); err != nil {
			return err
		}
	}

	if o.phases["bucket-acl"] {
		t, err := newKatapultBucket(c, emus, "katapult-bucket")
		if err != nil {
			return err
		}
		if res.bucketACL, err = measureBucketACL(ctx, c, t, o.warm, o.rounds, o.aclSlice); err != nil {
			return err
		}
	}

	if o.phases["profile"] {
		profileDir := o.pprofDir
		if profileDir == "" {
			profileDir = filepath.Join(dir, "pprof")
		}
		if res.profile, err = profilePlugin(ctx, c, pprofAddr, profileDir, 8, storydenCredsPath); err != nil {
			return err
		}
	}

	if o.phases["revoke"] {
		for _, mode := range []string{"sync", "async"} {
			logf("mass revoke (%s): %d leases, DELETE limited to %g/s (burst %d)", mode, o.revokeLeases, o.revokeRate, o.revokeBurst)
			r, err := massRevoke(ctx, v, emus, "revoke-"+mode, mode, o.revokeLeases, o.revokeRate, o.revokeBurst, o.revokeLimit)
			if err != nil {
				return err
			}
			logf("mass revoke (%s): %s (floor %s), %d DELETEs of which %d refused, %d live keys and %d leases left",
				mode, r.elapsed.Round(10*time.Millisecond), r.floor, r.deletes, r.refused, r.orphans, r.leasesLeft)
			res.revokes = append(res.revokes, r)
		}
	}

	if o.phases["rss"] {
		logf("rss: issuing %d leases", o.rssLeases)
		if err := measureRSS(ctx, c, v, emus, o.rssLeases, targets, &res.rss); err != nil {
			return err
		}
	}
	if o.compare != "" {
		res.compare = &compareResult{dir: o.compare}
		if err := runCompare(ctx, o, v, root, dir, emus, targets, res.compare); err != nil {
			return err
		}
	}
	res.elapsed, res.loadEnd = time.Since(began), loadAvg()
	return report(res, root)
}

// setUp starts every provider's emulator and configures its mount.
func setUp(c *api.Client, emus *emulators) ([]*target, error) {
	builders := []struct {
		mount string
		build func(*api.Client, *emulators, string) (*target, error)
	}{
		{"storyden", func(c *api.Client, e *emulators, m string) (*target, error) { return newStoryden(c, e, m, nil) }},
		{"storx", newStorx},
		{"katapult", newKatapult},
		{"dstor", newDstor},
		{"storable", newStorable},
	}
	var targets []*target
	for _, b := range builders {
		t, err := b.build(c, emus, b.mount)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

func measureRSS(ctx context.Context, c *api.Client, v *vaultServer, emus *emulators, n int, targets []*target, r *rssResult) error {
	t, err := newStoryden(c, emus, "rss", nil)
	if err != nil {
		return err
	}
	if err := read(ctx, c, t.path); err != nil { // the session is set up before the first reading
		return err
	}
	r.pluginBefore, _ = rssKiB(r.pluginPID)
	r.vaultBefore, _ = rssKiB(r.vaultPID)
	start := time.Now()
	if err := issueMany(ctx, c, t.path, n-1, 8); err != nil {
		return err
	}
	r.issueTime = time.Since(start)
	r.leases, err = leaseCount(ctx, c, t.path+"/")
	if err != nil {
		return err
	}
	paths := []string{t.path}
	for _, o := range targets {
		paths = append(paths, o.path)
	}
	r.totalLeases = countAllLeases(ctx, c, paths)
	if pid, err := v.pluginPID(); err != nil || pid != r.pluginPID {
		return fmt.Errorf("the plugin process changed during the run (pid %d, now %d): %v", r.pluginPID, pid, err)
	}
	r.pluginAfter, _ = rssKiB(r.pluginPID)
	r.vaultAfter, _ = rssKiB(r.vaultPID)
	return nil
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}
