#!/usr/bin/env bash
# make demo: a real Vault dev server and the upstream sandbox on 127.0.0.1,
# the plugin registered by SHA-256 and mounted once per provider; for each
# provider, issue, renew and revoke one credential and show what existed
# upstream before and after the revoke.
#
# The storj provider, and StorX in access-grant mode, run against the
# sandbox's satellite stand-in, the real Storj auth service and an S3
# gateway: their credentials are also tried with S3 requests, before the
# revoke (accepted) and after it (refused).
#
#   VAULT_BIN        vault binary (default: scripts/build-vault.sh)
#   AUTHSERVICE_BIN  Storj auth service binary (default: scripts/build-authservice.sh)
#   VAULT_PORT       Vault's port (default 18200)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
run_dir="$repo/bin/demo"
mkdir -p "$run_dir"
export VAULT_BIN="${VAULT_BIN:-$(scripts/build-vault.sh)}"
vault="$VAULT_BIN"
export AUTHSERVICE_BIN="${AUTHSERVICE_BIN:-$(scripts/build-authservice.sh)}"
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

# json_field NAME prints one string field of the JSON on stdin.
json_field() { sed -n 's/.*"'"$1"'": "\([^"]*\)".*/\1/p'; }

# s3_try: a PUT and a LIST on the sandbox's S3 gateway with the lease's
# keys; fails if the gateway refuses them.
s3_try() {
  printf '$ AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=… sandbox -s3 storj\n' "$key_id" >&2
  AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret_key" "$sandbox" -state "$state" -s3 storj
}

# upstream CHECK: what exists upstream ("objects NAME"), or whether the
# lease's S3 keys work ("s3").
upstream() {
  case "$1" in
    objects) "$sandbox" -state "$state" -objects "$2" ;;
    s3) s3_try ;;
  esac
}

# lease_demo TITLE MOUNT CONNECTION ROLE CHECK...: issue, renew and revoke
# one credential of MOUNT/creds/ROLE, showing CHECK before and after the
# revoke. An S3 check must pass before the revoke and fail after it.
lease_demo() {
  local title="$1" mount="$2" conn="$3" role="$4"
  shift 4
  "$vault" read "$mount/config/$conn" >/dev/null 2>&1 || return 0
  step "$title"
  show "$vault" read "$mount/config/$conn"
  lease_json="$(show "$vault" read -format=json "$mount/creds/$role")"
  lease_id="$(json_field lease_id <<<"$lease_json")"
  key_id="$(json_field access_key_id <<<"$lease_json")"
  secret_key="$(json_field secret_access_key <<<"$lease_json")"
  "$vault" read "$mount/creds/$role" >/dev/null   # a second lease, left to expire with the demo
  echo "$lease_json" | sed -E 's/("(secret_access_key|access_key|access_token|access_grant)": "[^"]{8})[^"]*"/\1…(shortened by the demo)"/'
  show "$vault" lease renew -increment=30m "$lease_id"
  echo "-- upstream before revoke:"
  upstream "$@"
  show "$vault" lease revoke -sync "$lease_id"
  echo "-- upstream after revoke:"
  if [[ "$1" == s3 ]]; then
    if s3_try; then echo "the S3 gateway still accepts the revoked credential" >&2; exit 1; fi
  else
    upstream "$@"
  fi
}

for provider in storyden storx katapult dstor storable; do
  lease_demo "$provider" "$provider" sandbox app objects "$provider"
done
lease_demo "storj (access grant; the real Storj auth service, S3 through the sandbox gateway)" storj sandbox app s3
lease_demo "storx in access-grant mode (same grant stack)" storx grant grant s3

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
