#!/usr/bin/env bash
# Builds a real `vault` server binary from the github.com/hashicorp/vault Go module,
# once per Vault version, into a cache outside the clone so every checkout on the
# machine reuses it. Prints the binary's path on stdout.
#
#   VAULT_BIN      use this binary instead (no build)
#   VAULT_VERSION  Vault module version to build (default v1.21.0; v1.21.4 does not build)
#   VAULT_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikeys)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cached-binary.sh"
cached_binary vault VAULT v1.21.0

src="$dir/src"
rm -rf "$src"
mkdir -p "$src"
cat >"$src/main.go" <<'GO'
// Command vault is the stock Vault CLI and server, built from the Go module.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
GO
cat >"$src/go.mod" <<GOMOD
module vaultbuild

go 1.25

require github.com/hashicorp/vault $version

replace (
	github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3
	github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
)
GOMOD

log="$dir/build.log"
echo "building vault $version into $dir (one-time, about 20 CPU-minutes; log: $log)" >&2
(
  cd "$src"
  GOFLAGS=-mod=mod go mod tidy -e >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" . >>"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
)
mv "$bin.tmp" "$bin"
rm -rf "$src"
echo "$bin"
