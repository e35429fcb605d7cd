#!/usr/bin/env bash
# Builds the real Storj auth service (`authservice` from the storj.io/edge Go module), once per
# version, into a cache outside the clone so every checkout on the machine reuses it. Prints the
# binary's path on stdout.
#
#   AUTHSERVICE_BIN      use this binary instead (no build)
#   AUTHSERVICE_VERSION  storj.io/edge version to build (default v1.114.0)
#   AUTHSERVICE_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikeys)
#
# storj.io/edge needs storj.io/minio at a pseudo-version whose .info and .mod the Go module proxy
# refuses (403) while it still serves the .zip. The go command asks for .info first and gives up, so
# the minio download goes through a private module cache and a file:// proxy placed before the real
# one that answers only .info and a placeholder .mod; the .zip comes from the real proxy, and its
# hash must equal the one storj.io/edge's own go.sum records (itself verified by the checksum
# database). The build then replaces storj.io/minio with that extracted directory, whose go.mod is
# the module's real one; the replace is relative, so the binary's build info, and with it the binary,
# is the same on every machine.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cached-binary.sh"
cached_binary authservice AUTHSERVICE v1.114.0

log="$dir/build.log"
: >"$log"
fail() { echo "build-authservice: $1 (log: $log)" >&2; tail -20 "$log" >&2; exit 1; }
echo "building authservice $version into $dir (one-time, about 13 minutes on 2 cores; log: $log)" >&2

# storj.io/edge's go.mod and go.sum name the minio version and its hash.
edge_json="$(cd "$dir" && GOFLAGS= go mod download -json "storj.io/edge@$version" 2>>"$log")" || fail "cannot download storj.io/edge@$version"
edge_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$edge_json")"
[[ -d "$edge_dir" ]] || fail "no module directory for storj.io/edge@$version"
minio_version="$(awk '$1 == "storj.io/minio" { print $2; exit }' "$edge_dir/go.mod")"
minio_sum="$(awk -v v="$minio_version" '$1 == "storj.io/minio" && $2 == v { print $3; exit }' "$edge_dir/go.sum")"
[[ -n "$minio_version" && -n "$minio_sum" ]] || fail "storj.io/edge@$version names no storj.io/minio version and hash"

minio_cache="$dir/minio-modcache"
minio_dir="$minio_cache/storj.io/minio@$minio_version"
if [[ ! -f "$minio_dir/go.mod" ]]; then
  stub="$dir/minio-proxy/storj.io/minio/@v"
  rm -rf "$dir/minio-proxy"
  mkdir -p "$stub"
  # The pseudo-version's timestamp is the commit time, which is all .info carries.
  ts="$(sed -E 's/^v0\.0\.0-([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})-.*/\1-\2-\3T\4:\5:\6Z/' <<<"$minio_version")"
  printf '{"Version":"%s","Time":"%s"}\n' "$minio_version" "$ts" >"$stub/$minio_version.info"
  # Placeholder: the replace below reads the real go.mod from the extracted zip.
  printf 'module storj.io/minio\n' >"$stub/$minio_version.mod"
  upstream="${GOPROXY:-$(go env GOPROXY)}"
  minio_json="$(cd "$dir" && GOFLAGS= GOMODCACHE="$minio_cache" GONOSUMDB=storj.io/minio \
    GOPROXY="file://$dir/minio-proxy|$upstream" \
    go mod download -json "storj.io/minio@$minio_version" 2>>"$log")" || { echo "$minio_json" >>"$log"; fail "cannot download storj.io/minio@$minio_version"; }
  got_sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$minio_json")"
  if [[ "$got_sum" != "$minio_sum" ]]; then
    GOMODCACHE="$minio_cache" go clean -modcache
    fail "storj.io/minio@$minio_version hash $got_sum differs from $minio_sum in storj.io/edge's go.sum"
  fi
  rm -rf "$dir/minio-proxy"
fi

src="$dir/src"
rm -rf "$src"
mkdir -p "$src"
cat >"$src/go.mod" <<GOMOD
module authservicebuild

go 1.25.3

require storj.io/edge $version

replace storj.io/minio => ../minio-modcache/storj.io/minio@$minio_version
GOMOD

(
  cd "$src"
  GOFLAGS=-mod=mod go get "storj.io/edge/cmd/authservice@$version" >>"$log" 2>&1 || exit 1
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" storj.io/edge/cmd/authservice >>"$log" 2>&1
) || fail "build failed"
mv "$bin.tmp" "$bin"
rm -rf "$src"
GOMODCACHE="$minio_cache" go clean -modcache
echo "$bin"
