package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Under a CallLog the client writes no trace line: the log lists each
// exchange, an unanswered one too, and Trace writes the lines the client
// would have written, in order.
func TestCallLog_TakesTheTraceLines(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	traced := func(do func(c *Client, ctx context.Context)) string {
		logs := &testutil.LogBuffer{}
		c := &Client{Provider: "test", Sleep: func(context.Context, time.Duration) error { return nil },
			Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs, JSONFormat: true})}
		do(c, context.Background())
		return logs.String()
	}
	direct := traced(func(c *Client, ctx context.Context) { exchanges(t, c, ctx, gone.URL) })
	var calls CallLog
	withLog := traced(func(c *Client, ctx context.Context) { exchanges(t, c, WithCallLog(ctx, &calls), gone.URL) })
	if strings.Contains(withLog, `"@message":"upstream call`) {
		t.Errorf("trace lines written under a CallLog:\n%s", withLog)
	}
	want := regexp.MustCompile(`^POST /keys 503 \S+; POST /keys 201 \S+; GET /gone no answer \S+$`)
	if got := calls.String(); !want.MatchString(got) {
		t.Errorf("CallLog = %q, want it to match %s", got, want)
	}
	replayed := traced(func(c *Client, _ context.Context) { calls.Trace(c.Log(), c.Provider) })
	if got, want := messages(t, replayed), messages(t, direct); !slices.Equal(got, want) {
		t.Errorf("Trace wrote %v, want the client's own lines %v", got, want)
	}
}

// exchanges makes a POST answered 503 and retried to a 201, then a GET
// nobody answers.
func exchanges(t *testing.T, c *Client, ctx context.Context, gone string) {
	srv, _ := scripted(t, nil, http.StatusServiceUnavailable, http.StatusCreated)
	c.BaseURL = srv.URL
	_, _ = c.Do(ctx, Request{Op: "create key", Method: http.MethodPost, Path: "/keys", Idempotent: true})
	c.BaseURL, c.MaxAttempts = gone, 1
	_, _ = c.Do(ctx, Request{Op: "read", Method: http.MethodGet, Path: "/gone"})
}

// messages lists each JSON line's message, method, path and status.
func messages(t *testing.T, logs string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var f map[string]any
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if f["@level"] == "trace" {
			out = append(out, fmt.Sprint(f["@message"], " ", f["method"], " ", f["path"], " ", f["status"]))
		}
	}
	return out
}
