#!/usr/bin/env bash
# Builds the real Storyden backend (github.com/Southclaws/storyden/cmd/backend) from its
# Go module, once per version, into the same cache as Vault so every checkout on the
# machine reuses it. Pure Go (CGO_ENABLED=0; SQLite is github.com/glebarez/go-sqlite).
# Prints the binary's path on stdout.
#
#   STORYDEN_BIN      use this binary instead (no build)
#   STORYDEN_VERSION  Storyden module version to build (default v1.26.15; the module proxy
#                     serves this exact version but not a version list, so name it exactly)
#   STORYDEN_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikeys)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cached-binary.sh"
cached_binary storyden STORYDEN v1.26.15

src="$dir/src"
rm -rf "$src"
mkdir -p "$src"
# The wrapper only requires Storyden, so module selection picks exactly the versions
# Storyden's own go.mod names, and its main package is built from there. Storyden
# v1.26.15's go.mod has no replace lines; a version that adds some needs them copied here.
cat >"$src/go.mod" <<GOMOD
module storydenbuild

go 1.26

require github.com/Southclaws/storyden $version
GOMOD

log="$dir/build.log"
echo "building storyden $version into $dir (one-time, 10-40 minutes on 2 cores; log: $log)" >&2
(
  cd "$src"
  # Storyden's go.sum goes in first, and there is no `go mod tidy`: the checksum
  # database does not know github.com/britishboop/hermes (a mail-template fork
  # Storyden imports; the lookup answers 404), so that module can only be verified
  # against the hash Storyden itself recorded, which tidy would not keep. Storyden's
  # own module is verified against the checksum database.
  moddir=$(go mod download -json "github.com/Southclaws/storyden@$version" 2>>"$log" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') ||
    { tail -20 "$log" >&2; exit 1; }
  [[ -f "$moddir/go.sum" ]] || { echo "storyden $version: no go.sum in the module (${moddir:-download failed}; log: $log)" >&2; exit 1; }
  cp "$moddir/go.sum" go.sum
  chmod u+w go.sum
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/Southclaws/storyden/cmd/backend >>"$log" 2>&1 ||
    { tail -20 "$log" >&2; exit 1; }
)
mv "$bin.tmp" "$bin"
rm -rf "$src"
echo "$bin"
