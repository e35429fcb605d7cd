# vault-plugin-secrets-apikeys — the two commands: `make demo` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

PLUGIN      := vault-plugin-secrets-apikeys
VERSION     ?= v0.2.0-dev
MODULE      := $(shell go list -m)
LDFLAGS     := -s -w -X $(MODULE)/backend.Version=$(VERSION)
BIN_DIR     := bin
PLUGIN_DIR  := $(BIN_DIR)/plugins
GO_TEST_FLAGS ?= -race -count=1 -timeout 40m -parallel 8

.PHONY: build release vault authservice storyden test test-long test-unit bench demo sandbox fmt fmtcheck vet clean

## build: the plugin binary, with its version set by -ldflags
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN_DIR)/$(PLUGIN) ./cmd/$(PLUGIN)

## release: binaries for linux and darwin on amd64 and arm64, version set by -ldflags, plus SHA256SUMS
release:
	rm -rf dist && mkdir -p dist
	for os in linux darwin; do for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags "$(LDFLAGS)" \
	    -o dist/$(PLUGIN)_$(VERSION)_$${os}_$${arch} ./cmd/$(PLUGIN); \
	done; done
	cd dist && sha256sum $(PLUGIN)_* > SHA256SUMS && cat SHA256SUMS

## vault: build the real vault binary from the Go module once (cached outside the clone)
vault:
	@scripts/build-vault.sh

## authservice: build the real Storj auth service from the Go module once (cached outside the clone)
authservice:
	@scripts/build-authservice.sh

## storyden: build the real Storyden server from its Go module once (cached outside the clone)
storyden:
	@scripts/build-storyden.sh

## test: every test, unit and end-to-end against a real Vault server (and the real Storj auth service and Storyden server)
test: fmtcheck vet
	VAULT_BIN="$$(scripts/build-vault.sh)" AUTHSERVICE_BIN="$$(scripts/build-authservice.sh)" STORYDEN_BIN="$$(scripts/build-storyden.sh)" PLUGIN_VERSION=$(VERSION) go test $(GO_TEST_FLAGS) ./...

## test-long: crash and HA end-to-end tests (Vault SIGKILLed mid-issue; a 3-node Raft cluster losing its leader)
test-long:
	VAULT_BIN="$$(scripts/build-vault.sh)" PLUGIN_VERSION=$(VERSION) go test -tags long -count=1 -timeout 30m ./e2e/ -run 'Crash|HA'

## test-unit: tests that need no Vault binary (the auth service is still built once, if missing)
test-unit:
	AUTHSERVICE_BIN="$$(scripts/build-authservice.sh)" go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v /e2e)

## bench: cost per credential against the floors, through a real Vault and the sandbox; rewrites docs/benchmarks.md
bench: build
	VAULT_BIN="$$(scripts/build-vault.sh)" PLUGIN_VERSION=$(VERSION) go run ./bench/cmd/bench

## demo: Vault + sandbox on loopback; issue, renew and revoke a credential of each provider
demo: build
	VAULT_BIN="$$(scripts/build-vault.sh)" AUTHSERVICE_BIN="$$(scripts/build-authservice.sh)" PLUGIN_VERSION=$(VERSION) scripts/demo.sh

## sandbox: run the upstream emulators on 127.0.0.1 until interrupted
sandbox:
	AUTHSERVICE_BIN="$$(scripts/build-authservice.sh)" go run ./bootstrap/cmd/sandbox -state $(BIN_DIR)/sandbox.json

fmt:
	gofmt -w $$(git ls-files '*.go')

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go')); \
	  if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	go vet ./...
	go vet -tags long ./e2e/

clean:
	rm -rf $(BIN_DIR) dist
