#!/usr/bin/env bash
# Registers the plugin binary in a running Vault's catalog by its SHA-256 and
# version, then enables it at each mount path given (skipping mounts that
# already exist with this plugin).
#
#   scripts/register-plugin.sh PLUGIN_BINARY [MOUNT...]
#
#   VAULT_ADDR, VAULT_TOKEN  the Vault to use (required)
#   VAULT_BIN                vault binary (default: scripts/build-vault.sh)
#   PLUGIN_VERSION           version to register (default v0.2.0-dev); must match
#                            the version built into the binary
#   PLUGIN_ENV               optional KEY=VALUE set in the plugin's environment
# The binary must sit in the server's plugin_directory.
set -euo pipefail

die() { echo "register-plugin.sh: $*" >&2; exit 1; }

binary="${1:-}"
[[ -n "$binary" && -x "$binary" ]] || die "usage: $0 PLUGIN_BINARY [MOUNT...] (the binary must be executable)"
shift
[[ -n "${VAULT_ADDR:-}" && -n "${VAULT_TOKEN:-}" ]] || die "set VAULT_ADDR and VAULT_TOKEN"
vault="${VAULT_BIN:-$("$(dirname "$0")/build-vault.sh")}"
version="${PLUGIN_VERSION:-v0.2.0-dev}"
name="vault-plugin-secrets-apikeys"

sha="$(sha256sum "$binary" | cut -d' ' -f1)"
env_args=()
[[ -n "${PLUGIN_ENV:-}" ]] && env_args=(-env="$PLUGIN_ENV")
"$vault" plugin register -sha256="$sha" -version="$version" -command="$(basename "$binary")" "${env_args[@]}" secret "$name" >/dev/null \
  || die "vault plugin register failed"
echo "registered $name $version (sha256 $sha)" >&2

for mount in "$@"; do
  if "$vault" read -field=type "sys/mounts/$mount" >/dev/null 2>&1; then
    echo "mount $mount/ exists" >&2
    continue
  fi
  "$vault" secrets enable -path="$mount" -plugin-version="$version" "$name" >/dev/null \
    || die "vault secrets enable -path=$mount failed"
  echo "enabled $name $version at $mount/" >&2
done
