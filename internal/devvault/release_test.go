package devvault

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheDir_FollowsBuildVaultScript(t *testing.T) {
	for _, tc := range []struct {
		name, vaultCache, xdg, home, want string
	}{
		{"VAULT_CACHE wins", "/c/vault", "/c/xdg", "/h", "/c/vault"},
		{"then XDG_CACHE_HOME", "", "/c/xdg", "/h", "/c/xdg/vault-plugin-secrets-apikeys"},
		{"then ~/.cache", "", "", "/h", "/h/.cache/vault-plugin-secrets-apikeys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VAULT_CACHE", tc.vaultCache)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := CacheDir()
			if err != nil || got != tc.want {
				t.Fatalf("CacheDir() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

const someCommit = "0123456789abcdef0123456789abcdef01234567"

func TestReleasedPlugin_UsesTheCachedBuild(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("VAULT_CACHE", cache)
	cached := filepath.Join(cache, "plugin-"+someCommit, PluginName+"_v9.9.9")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The root is no clone at all: a cache hit never looks at it.
	got, err := ReleasedPlugin(context.Background(), t.TempDir(), someCommit, "v9.9.9")
	if err != nil || got != cached {
		t.Fatalf("ReleasedPlugin = %q, %v; want the cached %q", got, err, cached)
	}
}

func TestReleasedPlugin_NamesAMissingCommit(t *testing.T) {
	t.Setenv("VAULT_CACHE", t.TempDir())
	_, err := ReleasedPlugin(context.Background(), t.TempDir(), someCommit, "v9.9.9")
	if err == nil || !strings.Contains(err.Error(), someCommit+" (v9.9.9) is not in the git history") {
		t.Fatalf("want an error naming the missing commit, got %v", err)
	}
}
