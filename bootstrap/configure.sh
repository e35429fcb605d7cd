#!/usr/bin/env bash
# Configures a running Vault against a running sandbox (bootstrap/cmd/sandbox):
# enables the plugin's mount for each emulator in the sandbox's state file if it
# is missing, writes a connection named "sandbox" with the emulator's URL and
# seeded root credentials, and a role named "app". The emulators serve plain
# HTTP on loopback, so every connection sets allow_http=true.
#
#   bootstrap/configure.sh [STATE_FILE]
#
#   STATE_FILE     the sandbox's -state file (default: $SANDBOX_STATE)
#   VAULT_ADDR     Vault to configure (required), VAULT_TOKEN its token (required)
#   VAULT_BIN      vault binary (default: vault from PATH)
#   PLUGIN_NAME    registered plugin name (default: vault-plugin-secrets-apikeys)
#   MOUNT          mount path for Storyden (default: storyden); STORYDEN_MOUNT wins
#   STORX_MOUNT    mount path for StorX (default: storx)
#   STORJ_MOUNT    mount path for Storj DCS (default: storj)
#   SANDBOX_BIN    a built bootstrap/cmd/sandbox binary (default: built here)
set -euo pipefail

die() { echo "configure.sh: $*" >&2; exit 1; }
say() { echo "configure.sh: $*" >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${1:-${SANDBOX_STATE:-}}"
[[ -n "$state" ]] || die "usage: $0 STATE_FILE (or set SANDBOX_STATE to the sandbox's -state file)"
[[ -r "$state" ]] || die "cannot read sandbox state file $state: is the sandbox running with -state $state?"
[[ -n "${VAULT_ADDR:-}" ]] || die "set VAULT_ADDR to the Vault server to configure"
[[ -n "${VAULT_TOKEN:-}" ]] || die "set VAULT_TOKEN to a token that may enable mounts and write config"
vault="${VAULT_BIN:-$(command -v vault || true)}"
[[ -n "$vault" && -x "$vault" ]] || die "no vault binary: put vault on PATH or set VAULT_BIN (scripts/build-vault.sh builds one)"
plugin="${PLUGIN_NAME:-vault-plugin-secrets-apikeys}"
"$vault" token lookup >/dev/null || die "cannot use Vault at $VAULT_ADDR with VAULT_TOKEN (see the error above)"

sandbox="${SANDBOX_BIN:-}"
if [[ -z "$sandbox" ]]; then
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
  sandbox="$build_dir/sandbox"
  (cd "$repo" && go build -o "$sandbox" ./bootstrap/cmd/sandbox) || die "cannot build bootstrap/cmd/sandbox"
fi

# state_get KEY prints one value of the state file, e.g. state_get storyden.url.
state_get() { "$sandbox" -state "$state" -get "$1"; }

# has_upstream NAME tells whether the sandbox runs that emulator.
has_upstream() { state_get "$1.url" >/dev/null 2>&1; }

# enable_mount PATH enables the plugin at PATH unless a mount of the plugin is
# already there.
enable_mount() {
  local path="$1" type
  if type="$("$vault" read -field=type "sys/mounts/$path" 2>/dev/null)"; then
    [[ "$type" == "$plugin" ]] || die "mount $path/ exists with type $type, not $plugin: pick another path"
    say "mount $path/ already enabled"
    return
  fi
  "$vault" secrets enable -path="$path" "$plugin" >/dev/null \
    || die "cannot enable $plugin at $path/: is the plugin registered in Vault's catalog?"
  say "enabled $plugin at $path/"
}

# write_config PATH PASSWORD ARGS... writes PATH with ARGS plus password=PASSWORD;
# the password goes through stdin so it never shows in the process list.
write_config() {
  local path="$1" password="$2"
  shift 2
  printf '%s' "$password" | "$vault" write "$path" "$@" password=- >/dev/null \
    || die "vault write $path failed"
  say "wrote $path"
}

configure_storyden() {
  local mount="${STORYDEN_MOUNT:-${MOUNT:-storyden}}"
  enable_mount "$mount"
  write_config "$mount/config/sandbox" "$(state_get storyden.password)" \
    provider=storyden base_url="$(state_get storyden.url)" allow_http=true username="$(state_get storyden.username)"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
}

# json_string VALUE prints VALUE as a JSON string.
json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  printf '"%s"' "$s"
}

# StorX has two secrets, the developer password and the grant passphrase:
# both go through stdin as JSON, so neither shows in the process list. The
# connection needs the satellite (storx) and its auth service (storx-auth).
configure_storx() {
  local mount="${STORX_MOUNT:-storx}" secrets
  has_upstream storx-auth || die "the state file has storx but no storx-auth: the StorX provider needs both"
  enable_mount "$mount"
  secrets="$(printf '{"password":%s,"passphrase":%s}' \
    "$(json_string "$(state_get storx.password)")" "$(json_string "$(state_get storx.passphrase)")")"
  printf '%s' "$secrets" | "$vault" write "$mount/config/sandbox" - provider=storx \
    base_url="$(state_get storx.url)" auth_url="$(state_get storx-auth.url)" allow_http=true email="$(state_get storx.email)" >/dev/null \
    || die "vault write $mount/config/sandbox failed"
  say "wrote $mount/config/sandbox"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h user_email="$(state_get storx.user_email)" >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
}

# The API token goes through stdin, so it never shows in the process list.
# The emulator serves the API under api_path, as Katapult does. The mount is
# KATAPULT_MOUNT, default katapult.
configure_katapult() {
  local mount="${KATAPULT_MOUNT:-katapult}" bucket
  enable_mount "$mount"
  printf '%s' "$(state_get katapult.api_token)" | "$vault" write "$mount/config/sandbox" provider=katapult \
    base_url="$(state_get katapult.url)$(state_get katapult.api_path)" allow_http=true organization="$(state_get katapult.organization)" api_token=- >/dev/null \
    || die "vault write $mount/config/sandbox failed"
  say "wrote $mount/config/sandbox"
  bucket="$(state_get katapult.bucket)"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h read_buckets="$bucket" write_buckets="$bucket" >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
}

# The API key goes through stdin, so it never shows in the process list. The
# emulator serves the API under api_path (/v1), as dStor does. The mount is
# DSTOR_MOUNT, default dstor.
configure_dstor() {
  local mount="${DSTOR_MOUNT:-dstor}"
  enable_mount "$mount"
  printf '%s' "$(state_get dstor.api_key)" | "$vault" write "$mount/config/sandbox" provider=dstor \
    base_url="$(state_get dstor.url)$(state_get dstor.api_path)" allow_http=true api_key=- >/dev/null \
    || die "vault write $mount/config/sandbox failed"
  say "wrote $mount/config/sandbox"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
}

# Storable has two secrets: the client secret goes through stdin and the API
# key through a pipe that vault reads as a file (@/dev/fd/N), so neither shows
# in the process list. The mount is STORABLE_MOUNT, default storable.
configure_storable() {
  local mount="${STORABLE_MOUNT:-storable}"
  enable_mount "$mount"
  printf '%s' "$(state_get storable.client_secret)" | "$vault" write "$mount/config/sandbox" provider=storable \
    base_url="$(state_get storable.url)" allow_http=true client_id="$(state_get storable.client_id)" client_secret=- \
    api_key=@<(printf '%s' "$(state_get storable.api_key)") >/dev/null \
    || die "vault write $mount/config/sandbox failed"
  say "wrote $mount/config/sandbox"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
}

# The storj upstream is the satellite stand-in, the real Storj auth service
# and an S3 gateway. The root grant goes through stdin as JSON, so it never
# shows in the process list. The storj mount (STORJ_MOUNT, default storj)
# gets a connection and a role "app"; the StorX mount, when configured, gets
# a second connection "grant" in access-grant mode with a role "grant".
configure_storj() {
  local mount="${STORJ_MOUNT:-storj}" grant auth_url bucket
  grant="$(printf '{"access_grant":%s}' "$(json_string "$(state_get storj.access_grant)")")"
  auth_url="$(state_get storj.auth_url)"
  bucket="$(state_get storj.bucket)"
  enable_mount "$mount"
  printf '%s' "$grant" | "$vault" write "$mount/config/sandbox" - provider=storj base_url="$auth_url" allow_http=true >/dev/null \
    || die "vault write $mount/config/sandbox failed"
  say "wrote $mount/config/sandbox"
  "$vault" write "$mount/roles/app" connection=sandbox ttl=5m max_ttl=1h buckets="$bucket" permissions=upload,download,list >/dev/null \
    || die "vault write $mount/roles/app failed"
  say "wrote $mount/roles/app; try: vault read $mount/creds/app"
  has_upstream storx || return 0
  local storx_mount="${STORX_MOUNT:-storx}"
  printf '%s' "$grant" | "$vault" write "$storx_mount/config/grant" - provider=storx auth_url="$auth_url" allow_http=true >/dev/null \
    || die "vault write $storx_mount/config/grant failed"
  say "wrote $storx_mount/config/grant (access-grant mode)"
  "$vault" write "$storx_mount/roles/grant" connection=grant ttl=5m max_ttl=1h buckets="$bucket" permissions=upload,download,list >/dev/null \
    || die "vault write $storx_mount/roles/grant failed"
  say "wrote $storx_mount/roles/grant; try: vault read $storx_mount/creds/grant"
}

# One block per provider the sandbox runs.
configured=0
if has_upstream storyden; then configure_storyden; configured=$((configured + 1)); fi
if has_upstream storx; then configure_storx; configured=$((configured + 1)); fi
if has_upstream katapult; then configure_katapult; configured=$((configured + 1)); fi
if has_upstream dstor; then configure_dstor; configured=$((configured + 1)); fi
if has_upstream storable; then configure_storable; configured=$((configured + 1)); fi
if has_upstream storj; then configure_storj; configured=$((configured + 1)); fi
((configured > 0)) || die "the state file $state names no known emulator"
