// Package cachedbin finds the binaries the project's build scripts make
// once and cache outside the clone (Vault, the Storyden server, the Storj
// auth service), honouring each one's *_BIN override.
package cachedbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Path is $envVar when set, else what scripts/<script> in the clone at root
// prints: the cached binary, built first when missing. The build's progress
// goes to stderr, so a first build that takes minutes says so.
func Path(root, envVar, script string) (string, error) {
	if bin := os.Getenv(envVar); bin != "" {
		return bin, nil
	}
	cmd := exec.Command(filepath.Join(root, "scripts", script))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/%s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}
