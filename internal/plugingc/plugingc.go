// Package plugingc sets the garbage collector of a plugin process.
package plugingc

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the plugin's GOGC unless its environment sets one
// (Vault passes its own environment and the plugin's registered -env). The
// plugin keeps nothing per lease, so its live heap stays a few MiB, and
// nearly all it allocates is the garbage of single requests: collecting at
// every 100 % of growth cost a tenth of its CPU under load, and at 400 % the
// heap still peaks at tens of MiB (docs/benchmarks.md, sections 5 and 8).
const DefaultGCPercent = 400

// gcPercent returns the GOGC to set, or false when the environment chose.
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return DefaultGCPercent, true
}

// Tune applies DefaultGCPercent unless the environment sets GOGC.
func Tune() {
	if percent, ok := gcPercent(os.Getenv); ok {
		debug.SetGCPercent(percent)
	}
}
