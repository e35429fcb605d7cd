package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
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

// A credential's upstream calls are logged with its outcome: in the debug
// line written after Vault has the answer when it was issued or revoked, as
// trace lines at once when the issue failed.
func TestLogs_UpstreamCallsGoWithTheOutcome(t *testing.T) {
	t.Run("issued and revoked", func(t *testing.T) {
		env := newTestEnv(t)
		env.setup(nil)
		before := len(env.logLines("upstream call"))
		if err := env.revoke(env.issue()); err != nil {
			t.Fatal(err)
		}
		env.b.clean(context.Background())
		if n := len(env.logLines("upstream call")) - before; n != 0 {
			t.Errorf("%d trace lines of upstream calls for an issue and a revoke that succeeded, want 0:\n%s", n, env.logs.String())
		}
		for message, want := range map[string]string{
			"issued credential":  `POST /api/auth/access-keys 20\d \S+$`,
			"revoked credential": `DELETE /api/auth/access-keys/\S+ 20\d \S+$`,
		} {
			lines := env.logLines(message)
			if len(lines) != 1 {
				t.Fatalf("%d %q lines, want 1", len(lines), message)
			}
			upstream, _ := lines[0]["upstream"].(string)
			if !regexp.MustCompile(want).MatchString(upstream) {
				t.Errorf("%s: upstream=%q, want it to match %s", message, upstream, want)
			}
		}
	})
	t.Run("issue failed", func(t *testing.T) {
		env := newTestEnv(t)
		env.setup(nil)
		before := len(env.logLines("upstream call"))
		env.upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", Status: http.StatusInternalServerError, Times: 1})
		if resp, err := env.request(logical.ReadOperation, "creds/app", nil); err == nil && !resp.IsError() {
			t.Fatalf("creds/app succeeded against a failing create: %#v", resp)
		}
		// The create's line comes first, then those of the rollback's calls.
		lines := env.logLines("upstream call")[before:]
		if len(lines) == 0 || lines[0]["method"] != http.MethodPost || lines[0]["status"] != float64(http.StatusInternalServerError) {
			t.Errorf("trace lines of the failed issue = %v, want the create answered 500 first", lines)
		}
		if issued := env.logLines("issued credential"); len(issued) != 0 {
			t.Errorf("an issue that failed logged %v", issued)
		}
	})
}
