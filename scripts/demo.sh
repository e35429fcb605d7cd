#!/usr/bin/env bash
# make demo: a real Vault dev server and the upstream sandbox on 127.0.0.1,
# the plugin registered by SHA-256 and mounted once per provider; for each
# provider, issue, renew and revoke one credential and show what existed
# upstream before and after the revoke.
#
#   VAULT_BIN    vault binary (default: scripts/build-vault.sh)
#   VAULT_PORT   Vault's port (default 18200)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
run_dir="$repo/bin/demo"
mkdir -p "$run_dir"
export VAULT_BIN="${VAULT_BIN:-$(scripts/build-vault.sh)}"
vault="$VAULT_BIN"
state="$run_dir/sandbox.json"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" >&2; "$@"; }

go build -o "$run_dir/sandbox" ./bootstrap/cmd/sandbox
sandbox="$run_dir/sandbox"

cleanup() {
  RUN_DIR="$run_dir" scripts/dev-server.sh stop
  [[ -n "${sandbox_pid:-}" ]] && kill "$sandbox_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "upstream sandbox on 127.0.0.1"
"$sandbox" -state "$state" -duration 30m 2>"$run_dir/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 1 100); do [[ -s "$state" ]] && break; sleep 0.1; done
[[ -s "$state" ]] || { cat "$run_dir/sandbox.log" >&2; echo "the sandbox did not start" >&2; exit 1; }
cat "$run_dir/sandbox.log"

step "vault dev server (built from the github.com/hashicorp/vault module)"
eval "$(VAULT_PORT="${VAULT_PORT:-18200}" RUN_DIR="$run_dir" scripts/dev-server.sh)"
export VAULT_ADDR VAULT_TOKEN
show "$vault" version

step "register the plugin by SHA-256 and version; mount and configure each provider"
scripts/register-plugin.sh bin/plugins/vault-plugin-secrets-apikeys
SANDBOX_BIN="$sandbox" bootstrap/configure.sh "$state"

for provider in storyden storx katapult dstor storable; do
  "$vault" read "$provider/config/sandbox" >/dev/null 2>&1 || continue
  step "$provider"
  show "$vault" read "$provider/config/sandbox"
  lease_json="$(show "$vault" read -format=json "$provider/creds/app")"
  lease_id="$(sed -n 's/.*"lease_id": "\([^"]*\)".*/\1/p' <<<"$lease_json")"
  "$vault" read "$provider/creds/app" >/dev/null   # a second lease, left to expire with the demo
  echo "$lease_json" | sed -E 's/("(secret_access_key|access_key|access_token|access_grant)": "[^"]{8})[^"]*"/\1…(shortened by the demo)"/'
  show "$vault" lease renew -increment=30m "$lease_id"
  echo "-- upstream before revoke:"
  "$sandbox" -state "$state" -objects "$provider"
  show "$vault" lease revoke -sync "$lease_id"
  echo "-- upstream after revoke:"
  "$sandbox" -state "$state" -objects "$provider"
done

step "metrics: what a Prometheus server scrapes from GET /v1/<mount>/metrics?format=prometheus (a few lines; see docs/metrics.md)"
# A plain HTTP GET with bash alone (a fresh machine may have no curl): the
# body of GET $1 from the loopback Vault, with the token.
vault_get() {
  local hostport="${VAULT_ADDR#http://}"
  exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}"
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nX-Vault-Token: %s\r\n\r\n' "$1" "$hostport" "$VAULT_TOKEN" >&3
  sed '1,/^\r\{0,1\}$/d' <&3
  exec 3<&-
}
for provider in storyden katapult; do
  "$vault" read "$provider/config/sandbox" >/dev/null 2>&1 || continue
  path="/v1/$provider/metrics?format=prometheus"
  printf '$ GET %s%s (X-Vault-Token: …)\n' "$VAULT_ADDR" "$path"
  metrics="$(vault_get "$path")"
  grep -E '^vault_apikeys_((issues|revokes|renewals)_total|live_credentials)[{ ]|^vault_apikeys_upstream_request_duration_seconds_count[{].*op="create"' <<<"$metrics" || true
done

step "done: every lease above was issued, renewed and revoked through the real vault CLI"
