#!/usr/bin/env bash
# Starts a Vault dev server on 127.0.0.1 whose plugin directory holds the
# plugin, waits until it answers, and prints `export` lines for VAULT_ADDR and
# VAULT_TOKEN. `dev-server.sh stop` stops it.
#
#   VAULT_BIN    vault binary (default: scripts/build-vault.sh)
#   VAULT_PORT   listen port (default 8200)
#   PLUGIN_DIR   folder with the plugin binary (default: bin/plugins)
#   RUN_DIR      where the pid file, config and log go (default: bin/vault-dev)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RUN_DIR:-$repo/bin/vault-dev}"
pid_file="$run_dir/vault.pid"

if [[ "${1:-start}" == "stop" ]]; then
  if [[ -f "$pid_file" ]]; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  fi
  exit 0
fi

vault="${VAULT_BIN:-$("$repo/scripts/build-vault.sh")}"
port="${VAULT_PORT:-8200}"
plugin_dir="$(cd "${PLUGIN_DIR:-$repo/bin/plugins}" && pwd)"
mkdir -p "$run_dir"
cat >"$run_dir/plugins.hcl" <<HCL
plugin_directory = "$plugin_dir"
HCL

"$vault" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
  -config="$run_dir/plugins.hcl" -log-level="${VAULT_LOG_LEVEL:-info}" >"$run_dir/vault.log" 2>&1 &
echo $! >"$pid_file"

export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN=root
for _ in $(seq 1 60); do
  if "$vault" status >/dev/null 2>&1; then
    echo "export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN"
    exit 0
  fi
  kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -20 "$run_dir/vault.log" >&2; echo "vault exited" >&2; exit 1; }
  sleep 0.5
done
echo "vault did not answer within 30 s; see $run_dir/vault.log" >&2
exit 1
