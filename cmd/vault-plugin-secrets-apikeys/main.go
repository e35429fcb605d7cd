// Command vault-plugin-secrets-apikeys is the Vault plugin binary. Vault starts
// it; it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/pluginlog"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/pluginruntime"
)

func main() {
	pluginruntime.Tune()
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	logger, problem := pluginlog.New(os.Stderr, os.Getenv(pluginlog.LevelEnv))
	if problem != "" {
		logger.Warn(problem)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		Logger:             logger,
		BackendFactoryFunc: backend.Factory,
		// Vault before 1.12 talks to plugins over mutual TLS set up here.
		TLSProviderFunc: api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
