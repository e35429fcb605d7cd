package devvault

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CacheDir is where scripts/build-vault.sh keeps what is built once per
// machine: $VAULT_CACHE, else $XDG_CACHE_HOME/vault-plugin-secrets-apikeys,
// else ~/.cache/vault-plugin-secrets-apikeys. It is the script's rule, not
// os.UserCacheDir's, so that both find the same folder on every system.
func CacheDir() (string, error) {
	if dir := os.Getenv("VAULT_CACHE"); dir != "" {
		return dir, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache folder: set VAULT_CACHE: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "vault-plugin-secrets-apikeys"), nil
}

// ReleasedPlugin is the plugin as it was at commit in the git history of the
// clone at root, built as `make build VERSION=version` builds it (see
// BuildPlugin), and returns the binary's path. The binary is cached under
// CacheDir by commit and version, so a machine builds each release once.
// The source comes from `git archive`, which leaves the clone untouched.
func ReleasedPlugin(ctx context.Context, root, commit, version string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "plugin-"+commit)
	path := filepath.Join(dir, PluginName+"_"+version)
	if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() {
		return path, nil
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("commit %s (%s) is not in the git history of %s (a shallow clone? git fetch --unshallow): %v %s",
			commit, version, root, err, strings.TrimSpace(string(out)))
	}
	src, err := os.MkdirTemp("", "apikeys-"+version+"-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := extract(ctx, root, commit, src); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Built beside the cache entry and renamed into place, so that two test
	// runs building at once each leave a whole binary, never half of one.
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	built, err := BuildPlugin(ctx, src, tmp, PluginName, version)
	if err != nil {
		return "", err
	}
	if err := os.Rename(built, path); err != nil {
		return "", err
	}
	return path, nil
}

// extract writes the tree of commit into dir: git archive piped into tar.
func extract(ctx context.Context, root, commit, dir string) error {
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("git archive %s: %v %s", commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("unpack git archive %s: %v %s", commit, err, untarErr.String())
	}
	return nil
}
