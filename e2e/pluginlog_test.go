package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/pluginlog"
)

// The plugin's lowest log level comes from its registered environment; a
// value that names no level is reported in Vault's log and changes nothing.
// (Which lines each level keeps is internal/pluginlog's test.)
func TestPluginLogLevelFromItsRegisteredEnvironment(t *testing.T) {
	t.Parallel()
	v := startOwnVault(t, "")
	plugin := v.addPlugin(t, pluginPath, pluginName)
	v.mustCLI(t, "", "plugin", "register", "-sha256="+sha256File(t, plugin), "-version="+pluginVersion,
		"-command="+pluginName, "-env="+pluginlog.LevelEnv+"=verbose", "secret", pluginName)
	v.mustCLI(t, "", "secrets", "enable", "-path=apikeys", "-plugin-version="+pluginVersion, pluginName)
	// The plugin serves as before.
	if help := v.mustCLI(t, "", "path-help", "apikeys/roles/app"); !strings.Contains(help, "connection") {
		t.Fatalf("path-help of roles/app names no connection field:\n%s", help)
	}

	want := pluginlog.LevelEnv + `="verbose" is not one of trace, debug, info, warn or error`
	eventually(t, 30*time.Second, "the plugin's warning about "+pluginlog.LevelEnv+" in Vault's log", func() bool {
		return strings.Contains(v.Log(), want)
	})
}
