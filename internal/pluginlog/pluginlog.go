// Package pluginlog makes the logger a plugin process serves with.
package pluginlog

import (
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
)

// LevelEnv names the plugin environment variable (`vault plugin register
// -env APIKEYS_LOG_LEVEL=info …`) that sets the lowest level the plugin
// writes. Vault filters a plugin's lines at its own level only after the
// plugin has encoded them and Vault has parsed them, and it does not tell the
// plugin that level; so by default (unset) the plugin writes every level, as
// the SDK's own logger does, and an operator whose Vault runs at info can save
// both processes the per-credential debug lines.
const LevelEnv = "APIKEYS_LOG_LEVEL"

// New returns the JSON logger to out that the SDK would make (every level,
// for Vault to filter), at the level value names instead when it is set.
// A value that names no level leaves every level on and is reported in
// the returned problem, for the caller to log.
func New(out io.Writer, value string) (logger hclog.Logger, problem string) {
	level := hclog.Trace
	if value != "" {
		if parsed := hclog.LevelFromString(value); parsed != hclog.NoLevel && parsed != hclog.Off {
			level = parsed
		} else {
			problem = fmt.Sprintf("%s=%q is not one of trace, debug, info, warn or error; writing every level", LevelEnv, value)
		}
	}
	return hclog.New(&hclog.LoggerOptions{Level: level, Output: out, JSONFormat: true}), problem
}
