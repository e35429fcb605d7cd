// Package pluginruntime sets the Go runtime of a plugin process: its garbage
// collector and the number of threads that run its Go code at once. Each
// setting yields to the same variable in the process's environment, which
// holds Vault's own environment and the plugin's registered -env.
package pluginruntime

import (
	"os"
	"runtime"
	"runtime/debug"
)

// DefaultGCPercent is the plugin's GOGC unless its environment sets one. The
// plugin keeps nothing per lease, so its live heap stays a few MiB, and
// nearly all it allocates is the garbage of single requests: collecting at
// every 100 % of growth cost a tenth of its CPU under load, and at 400 % the
// heap still peaks at tens of MiB (docs/benchmarks.md, sections 5 and 8).
const DefaultGCPercent = 400

// DefaultMaxProcs is the plugin's GOMAXPROCS unless its environment sets one.
// A request to the plugin is a chain of short waits on other processes: on
// Vault for the request, each storage write and the answer, on the upstream
// for its call. With an idle processor Go wakes a thread for the goroutines
// those waits ready, on cores Vault is using: with two, the plugin took 10–28 %
// more CPU per credential and up to 16 % more time, while its own work per
// credential is about half of Vault's. On one, it served as many
// credentials a second at 8 and 32 clients (docs/benchmarks.md, "GOMAXPROCS").
const DefaultMaxProcs = 1

// setting returns the value to set for the environment variable name, or
// false when the environment chose.
func setting(getenv func(string) string, name string, value int) (int, bool) {
	if getenv(name) != "" {
		return 0, false
	}
	return value, true
}

// Tune applies DefaultGCPercent unless the environment sets GOGC, and
// DefaultMaxProcs unless it sets GOMAXPROCS.
func Tune() {
	if percent, ok := setting(os.Getenv, "GOGC", DefaultGCPercent); ok {
		debug.SetGCPercent(percent)
	}
	if procs, ok := setting(os.Getenv, "GOMAXPROCS", DefaultMaxProcs); ok {
		runtime.GOMAXPROCS(procs)
	}
}
