package cachedbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	root := t.TempDir()
	scripts := filepath.Join(root, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(scripts, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("build-ok.sh", "echo building >&2; echo /cache/tool-v1/tool")
	write("build-fails.sh", "exit 3")
	tests := []struct {
		name, env, script, want, wantErr string
	}{
		{name: "override wins, no build", env: "/opt/tool", script: "build-fails.sh", want: "/opt/tool"},
		{name: "the script's path, trimmed", script: "build-ok.sh", want: "/cache/tool-v1/tool"},
		{name: "a failed build names its script", script: "build-fails.sh", wantErr: "scripts/build-fails.sh: exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CACHEDBIN_TEST_BIN", tt.env)
			got, err := Path(root, "CACHEDBIN_TEST_BIN", tt.script)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
