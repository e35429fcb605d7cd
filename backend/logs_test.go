package backend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// logLines returns the fields of every JSON log line whose message starts
// with prefix.
func (e *testEnv) logLines(prefix string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			e.t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if msg, _ := fields["@message"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, fields)
		}
	}
	return out
}

// Vault reads a plugin's JSON log lines, where a time.Duration is a number
// of nanoseconds (Vault then prints ttl=3e+11); durations are logged as text.
func TestLogs_DurationsAreText(t *testing.T) {
	cases := []struct {
		name    string
		act     func(*testEnv)
		message string
		key     string
		want    string
	}{
		{"issued credential ttl", func(e *testEnv) {
			e.setup(map[string]any{"ttl": "5m"})
			e.issue()
			// The line is written after the response; Cleanup flushes it.
			e.b.clean(context.Background())
		}, "issued credential", "ttl", "5m0s"},
		{"abandoned WAL entry age", func(e *testEnv) {
			_, _ = framework.PutWAL(context.Background(), e.storage, walKindIssue,
				walIssue{Connection: "gone", Provider: "storyden", Role: "app", Name: "vault-app-old", CreatedAt: time.Now().Add(-25 * time.Hour).Unix()})
			e.rollbackAll()
		}, "giving up", "age", "25h0m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			tc.act(env)
			lines := env.logLines(tc.message)
			if len(lines) != 1 {
				t.Fatalf("%d log lines %q, want 1:\n%s", len(lines), tc.message, env.logs.String())
			}
			if got := lines[0][tc.key]; got != tc.want {
				t.Fatalf("%s=%#v, want %q", tc.key, got, tc.want)
			}
		})
	}
}
