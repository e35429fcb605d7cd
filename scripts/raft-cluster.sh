#!/usr/bin/env bash
# A 3-node Vault cluster with integrated (Raft) storage on 127.0.0.1, for HA
# tests of the plugin. Each node has its own data folder, plugin directory
# (holding a copy of the plugin binary), API and cluster ports; the nodes join
# through retry_join and share one unseal key. The plugin is registered once,
# by SHA-256 and version, on the leader: the catalog replicates through Raft.
#
#   scripts/raft-cluster.sh start   start, init, unseal, join, register; prints
#                                   `export VAULT_ADDR=<leader> VAULT_TOKEN=<root>`
#                                   and `export VAULT_CLUSTER_NODES="<addr> <addr> <addr>"`
#   scripts/raft-cluster.sh stop    stop every node (and its plugin processes);
#                                   data and logs stay until the next start
#
#   VAULT_BIN        vault binary (default: scripts/build-vault.sh)
#   RUN_DIR          data, config, logs, pid files, init.json (default: bin/raft-cluster)
#   PLUGIN_BINARY    plugin binary (default: bin/plugins/vault-plugin-secrets-apikeys; make build)
#   PLUGIN_VERSION   version to register (default v0.2.0-dev); must match the binary's
#   PLUGIN_ENV       space-separated KEY=VALUE pairs registered with the plugin
#                    (vault plugin register -env), e.g. APIKEYS_WAL_ROLLBACK_MIN_AGE=5s
#   RAFT_PORTS       six ports: api1 cluster1 api2 cluster2 api3 cluster3
#                    (default 18300 18301 18302 18303 18304 18305)
#   VAULT_LOG_LEVEL  server log level (default info)
#   RAFT_PERFORMANCE_MULTIPLIER  raft timing (default: unset, Vault's default of 5;
#                    1 fails over faster but needs idle CPUs)
#
# Each node runs in its own process group (pid = pgid, in RUN_DIR/nodeN/vault.pid),
# so that killing the group takes its plugin processes with it, as a machine
# failing would. init.json (mode 600) holds the unseal key and the root token.
set -euo pipefail

die() { echo "raft-cluster.sh: $*" >&2; exit 1; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RUN_DIR:-$repo/bin/raft-cluster}"
nodes=(1 2 3)

# group_alive N PGID: a process of group PGID still runs node N's files (the
# vault server, or a plugin it started). Checked before every signal, so that
# a group id the system reused after the node died is never signalled.
group_alive() {
  ps -eo pgid=,args= | awk -v g="$2" -v d="$run_dir/node$1/" '$1 == g && index($0, d) { found = 1 } END { exit !found }'
}

# stop_node N: SIGTERM the node's process group, SIGKILL what is left after 15 s.
stop_node() {
  local pid_file="$run_dir/node$1/vault.pid" pid
  [[ -f "$pid_file" ]] || return 0
  pid="$(cat "$pid_file")"
  if group_alive "$1" "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      group_alive "$1" "$pid" || break
      sleep 0.1
    done
  fi
  if group_alive "$1" "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
}

if [[ "${1:-}" == "stop" ]]; then
  for n in "${nodes[@]}"; do stop_node "$n"; done
  exit 0
fi
[[ "${1:-}" == "start" ]] || die "usage: $0 start|stop"

vault="${VAULT_BIN:-$("$repo/scripts/build-vault.sh")}"
plugin="${PLUGIN_BINARY:-$repo/bin/plugins/vault-plugin-secrets-apikeys}"
[[ -x "$plugin" ]] || die "no plugin binary at $plugin: run make build or set PLUGIN_BINARY"
version="${PLUGIN_VERSION:-v0.2.0-dev}"
name="vault-plugin-secrets-apikeys"
read -r -a ports <<<"${RAFT_PORTS:-18300 18301 18302 18303 18304 18305}"
[[ ${#ports[@]} -eq 6 ]] || die "RAFT_PORTS needs six ports: api1 cluster1 api2 cluster2 api3 cluster3"
for port in "${ports[@]}"; do
  [[ "$port" =~ ^[0-9]+$ ]] || die "RAFT_PORTS: $port is not a port"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is in use"
  fi
done
for n in "${nodes[@]}"; do
  [[ ! -f "$run_dir/node$n/vault.pid" ]] || die "$run_dir/node$n/vault.pid exists: run $0 stop first"
done
# Every start is a new cluster: drop what an earlier one left.
for n in "${nodes[@]}"; do rm -rf "$run_dir/node$n"; done
rm -f "$run_dir/init.json"

api_addr() { echo "http://127.0.0.1:${ports[$((2 * ($1 - 1)))]}"; }
cluster_port() { echo "${ports[$((2 * ($1 - 1) + 1))]}"; }

# on N CMD...: run the vault CLI against node N.
on() {
  local n="$1"
  shift
  VAULT_ADDR="$(api_addr "$n")" "$vault" "$@"
}

# wait_for N WHAT CHECK...: run CHECK every 0.5 s until it succeeds, for at most 60 s.
wait_for() {
  local n="$1" what="$2"
  shift 2
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$run_dir/node$n/vault.pid")" 2>/dev/null \
      || { tail -30 "$run_dir/node$n/vault.log" >&2; die "node$n exited"; }
    sleep 0.5
  done
  tail -30 "$run_dir/node$n/vault.log" >&2
  die "node$n: $what did not happen within 60 s"
}

# answers N: the node's API answers, sealed or not (status exits 2 when sealed).
answers() {
  local rc=0
  on "$1" status >/dev/null 2>&1 || rc=$?
  [[ $rc -eq 0 || $rc -eq 2 ]]
}
unsealed() { on "$1" status >/dev/null 2>&1; }
active() { on "$1" read -format=json sys/leader | grep -q '"is_self": true'; }
voters() { [[ "$(on 1 read -format=json sys/storage/raft/configuration | grep -c '"voter": true')" -eq 3 ]]; }

start_node() {
  local n="$1" dir="$run_dir/node$1"
  mkdir -p "$dir/data" "$dir/plugins"
  cp "$plugin" "$dir/plugins/$name"
  {
    echo "storage \"raft\" {"
    echo "  path    = \"$dir/data\""
    echo "  node_id = \"node$n\""
    # Unset, Vault's default timing (5) tolerates a busy machine; 1, the
    # production setting for dedicated hosts, fails over faster but lets a
    # loaded laptop's cluster change leaders on its own.
    if [[ -n "${RAFT_PERFORMANCE_MULTIPLIER:-}" ]]; then
      echo "  performance_multiplier = $RAFT_PERFORMANCE_MULTIPLIER"
    fi
    for peer in "${nodes[@]}"; do
      [[ "$peer" == "$n" ]] && continue
      echo "  retry_join { leader_api_addr = \"$(api_addr "$peer")\" }"
    done
    echo "}"
    echo "listener \"tcp\" {"
    echo "  address         = \"127.0.0.1:${ports[$((2 * (n - 1)))]}\""
    echo "  cluster_address = \"127.0.0.1:$(cluster_port "$n")\""
    echo "  tls_disable     = true"
    echo "}"
    echo "api_addr         = \"$(api_addr "$n")\""
    echo "cluster_addr     = \"https://127.0.0.1:$(cluster_port "$n")\""
    echo "plugin_directory = \"$dir/plugins\""
    echo "disable_mlock    = true"
  } >"$dir/vault.hcl"
  # Job control gives the node its own process group, whose id is its pid.
  set -m
  "$vault" server -config="$dir/vault.hcl" -log-level="${VAULT_LOG_LEVEL:-info}" \
    </dev/null >"$dir/vault.log" 2>&1 &
  echo $! >"$dir/vault.pid"
  set +m
  wait_for "$n" "answering" answers "$n"
}

unseal() {
  on "$1" write -format=json sys/unseal key=- <<<"$unseal_key" >/dev/null
  wait_for "$1" "unseal" unsealed "$1"
}

mkdir -p "$run_dir"
chmod 700 "$run_dir"
# A start that fails stops the nodes it started; their logs stay.
stop_all_on_failure() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    for n in "${nodes[@]}"; do stop_node "$n"; done
  fi
  return $status
}
trap stop_all_on_failure EXIT

start_node 1
(umask 077 && on 1 operator init -key-shares=1 -key-threshold=1 -format=json >"$run_dir/init.json")
unseal_key="$(awk '/"unseal_keys_b64"/ { getline; gsub(/[ ",]/, ""); print; exit }' "$run_dir/init.json")"
root_token="$(sed -n 's/.*"root_token": "\([^"]*\)".*/\1/p' "$run_dir/init.json")"
[[ -n "$unseal_key" && -n "$root_token" ]] || die "vault operator init printed no unseal key or root token"
unseal 1
wait_for 1 "becoming the active node" active 1
export VAULT_TOKEN="$root_token"

for n in 2 3; do
  start_node "$n"
  # With Shamir seals, retry_join completes once the joining node is given the key.
  unseal "$n"
done
# Autopilot promotes joined nodes to voters once they are stable (10 s).
wait_for 1 "all three nodes being Raft voters" voters

current_leader() { on 1 read -format=json sys/leader | sed -n 's/.*"leader_address": "\([^"]*\)".*/\1/p'; }
sha="$(sha256sum "$plugin" | cut -d' ' -f1)"
env_flags=()
for kv in ${PLUGIN_ENV:-}; do env_flags+=("-env=$kv"); done
# On the leader of the moment: an election (a busy machine) gets a few retries.
registered=""
for _ in $(seq 1 10); do
  leader="$(current_leader || true)"
  if [[ -n "$leader" ]] && VAULT_ADDR="$leader" "$vault" plugin register -sha256="$sha" -version="$version" \
    -command="$name" "${env_flags[@]}" secret "$name" >/dev/null; then
    registered=yes
    break
  fi
  sleep 2
done
[[ -n "$registered" ]] || die "vault plugin register failed"
echo "registered $name $version (sha256 $sha) on $leader; 3 voters; logs in $run_dir/node*/vault.log" >&2

echo "export VAULT_ADDR=$leader VAULT_TOKEN=$root_token"
echo "export VAULT_CLUSTER_NODES=\"$(api_addr 1) $(api_addr 2) $(api_addr 3)\""
