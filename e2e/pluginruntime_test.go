package e2e

import (
	"cmp"
	"os"
	"strconv"
	"testing"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/pluginruntime"
)

// The plugin process runs its Go code on pluginruntime.DefaultMaxProcs
// processors unless its environment sets GOMAXPROCS: Vault's own (this test
// process's, which Vault passes on) or the registered -env. The mount's
// metrics report what the process runs with.
func TestPluginGOMAXPROCS(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		want := cmp.Or(os.Getenv("GOMAXPROCS"), strconv.Itoa(pluginruntime.DefaultMaxProcs))
		if got := pluginMaxProcs(t, vault, newMount(t, "procs")); got != want {
			t.Fatalf("the plugin runs on GOMAXPROCS=%s, want %s", got, want)
		}
	})
	t.Run("registered -env", func(t *testing.T) {
		t.Parallel()
		v := startOwnVault(t, "")
		plugin := v.addPlugin(t, pluginPath, pluginName)
		v.mustCLI(t, "", "plugin", "register", "-sha256="+sha256File(t, plugin), "-version="+pluginVersion,
			"-command="+pluginName, "-env=GOMAXPROCS=3", "secret", pluginName)
		v.mustCLI(t, "", "secrets", "enable", "-path=apikeys", "-plugin-version="+pluginVersion, pluginName)
		if got := pluginMaxProcs(t, v, "apikeys"); got != "3" {
			t.Fatalf("the plugin registered with -env=GOMAXPROCS=3 runs on GOMAXPROCS=%s", got)
		}
	})
}

// pluginMaxProcs reads the plugin_gomaxprocs gauge of mount's metrics.
func pluginMaxProcs(t *testing.T, v *vaultServer, mount string) string {
	t.Helper()
	secret := v.cliJSON(t, "read", mount+"/metrics")
	families, _ := secret.Data["metrics"].([]any)
	for _, f := range families {
		family, _ := f.(map[string]any)
		if family["name"] != "vault_apikeys_plugin_gomaxprocs" {
			continue
		}
		samples, _ := family["samples"].([]any)
		if len(samples) != 1 {
			t.Fatalf("plugin_gomaxprocs has %d samples, want 1: %v", len(samples), family)
		}
		sample, _ := samples[0].(map[string]any)
		value, ok := sample["value"].(float64)
		if !ok {
			t.Fatalf("plugin_gomaxprocs has no number: %v", sample)
		}
		return strconv.FormatFloat(value, 'f', -1, 64)
	}
	t.Fatalf("%s/metrics has no vault_apikeys_plugin_gomaxprocs: %v", mount, secret.Data)
	return ""
}
