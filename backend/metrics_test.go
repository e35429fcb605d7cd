package backend

// Issue 18, second bullet: the engine's metrics.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// scrape reads metrics?format=prometheus and returns its body.
func (e *testEnv) scrape() string {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "metrics", map[string]any{"format": "prometheus"})
	if ct := resp.Data[logical.HTTPContentType]; ct != prometheusContentType {
		e.t.Fatalf("content type %v, want %s", ct, prometheusContentType)
	}
	if st := resp.Data[logical.HTTPStatusCode]; st != http.StatusOK {
		e.t.Fatalf("status %v, want 200", st)
	}
	return string(resp.Data[logical.HTTPRawBody].([]byte))
}

// sampleValue is the value of the series line (name and labels as written)
// in a scrape, "" when absent.
func sampleValue(body, series string) string {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), series+" "); ok {
			return v
		}
	}
	return ""
}

func TestMetrics_CountsOperations(t *testing.T) {
	env := newTestEnv(t)
	env.setup(map[string]any{"max_live_credentials": 2})
	first, second := env.issue(), env.issue()
	// Over the cap: refused, counted as cap_reached.
	if _, err := env.request(logical.ReadOperation, "creds/app", nil); capStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("third issue: %v, want a 429", err)
	}
	if _, err := env.renew(first, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := env.revoke(first); err != nil {
		t.Fatal(err)
	}
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: "/api/auth/access-keys/", Status: http.StatusServiceUnavailable})
	if err := env.revoke(second); err == nil {
		t.Fatal("revoke succeeded through a failing upstream")
	}
	env.upstream.ClearFaults()
	env.upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", Status: http.StatusBadRequest, Times: 1})
	if resp, err := env.request(logical.ReadOperation, "creds/app", nil); err == nil && !resp.IsError() {
		t.Fatal("issue succeeded through a failing upstream")
	}

	body := env.scrape()
	conn := `connection="main",provider="storyden",role="app"`
	cases := []struct{ series, want string }{
		{`vault_apikeys_issues_total{` + conn + `,outcome="success"}`, "2"},
		{`vault_apikeys_issues_total{` + conn + `,outcome="cap_reached"}`, "1"},
		{`vault_apikeys_issues_total{` + conn + `,outcome="failure"}`, "1"},
		{`vault_apikeys_renewals_total{` + conn + `,outcome="success"}`, "1"},
		{`vault_apikeys_revokes_total{` + conn + `,outcome="success"}`, "1"},
		// The failing revoke is tried 4 times by the client, counted once.
		{`vault_apikeys_revokes_total{` + conn + `,outcome="failure"}`, "1"},
		{`vault_apikeys_upstream_request_duration_seconds_count{provider="storyden",op="revoke",status="503"}`, "4"},
		{`vault_apikeys_live_credentials{` + conn + `}`, "1"},
		// The issue the upstream answered with 400 is rolled back at once.
		{`vault_apikeys_rollbacks_total{` + conn + `,outcome="success"}`, "1"},
		{`vault_apikeys_upstream_request_duration_seconds_count{provider="storyden",op="create",status="200"}`, "2"},
		{`vault_apikeys_upstream_request_duration_seconds_count{provider="storyden",op="create",status="400"}`, "1"},
		{`vault_apikeys_upstream_request_duration_seconds_bucket{provider="storyden",op="create",status="200",le="+Inf"}`, "2"},
		{`vault_apikeys_upstream_retries_total{provider="storyden",op="revoke"}`, "3"},
	}
	for _, tc := range cases {
		if got := sampleValue(body, tc.series); got != tc.want {
			t.Errorf("%s = %q, want %s", tc.series, got, tc.want)
		}
	}
	// No object names or lease ids as labels.
	if strings.Contains(body, "vault-app-") || strings.Contains(body, "access-keys") {
		t.Errorf("a scrape names upstream objects:\n%s", body)
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestMetrics_JSONAndBadFormat(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.issue()
	resp := env.mustOK(logical.ReadOperation, "metrics", nil)
	families, ok := resp.Data["metrics"].([]family)
	if !ok {
		t.Fatalf("metrics is %T, want []family", resp.Data["metrics"])
	}
	found := false
	for _, f := range families {
		if f.Name == "vault_apikeys_issues_total" {
			found = len(f.Samples) == 1 && f.Samples[0].Value == 1 && f.Samples[0].Labels["outcome"] == outcomeSuccess
		}
	}
	if !found {
		t.Fatalf("no issue counted in the JSON: %+v", families)
	}
	env.mustBadRequest(logical.ReadOperation, "metrics", map[string]any{"format": "xml"}, "format must be prometheus")
}

func TestMetrics_RootRotationAge(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env.b.now = func() time.Time { return now }
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"rotation_period": "1h"})
	env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)
	now = now.Add(90 * time.Second)
	body := env.scrape()
	conn := `connection="main",provider="storyden"`
	cases := []struct{ series, want string }{
		{`vault_apikeys_root_rotation_age_seconds{` + conn + `}`, "90"},
		{`vault_apikeys_root_rotation_period_seconds{` + conn + `}`, "3600"},
		{`vault_apikeys_rotations_total{` + conn + `,role="",outcome="success"}`, "1"},
	}
	for _, tc := range cases {
		if got := sampleValue(body, tc.series); got != tc.want {
			t.Errorf("%s = %q, want %s\nscrape:\n%s", tc.series, got, tc.want, body)
		}
	}
}

func TestWriteText_Escapes(t *testing.T) {
	got := string(writeText([]family{{Name: "m", Help: "a\\b\nc", Type: "gauge", Samples: []sample{{Labels: map[string]string{"role": "x\"y\\z\n"}, Value: 1.5}}}}))
	want := "# HELP m a\\\\b\\nc\n# TYPE m gauge\nm{role=\"x\\\"y\\\\z\\n\"} 1.5\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// A scrape loads the live count of a connection whose roles have no cap;
// issues after it must still be counted.
func TestMetrics_LiveCredentialsWithoutCap(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	env.issue()
	series := `vault_apikeys_live_credentials{connection="main",provider="storyden",role="app"}`
	if got := sampleValue(env.scrape(), series); got != "1" {
		t.Fatalf("%s = %q, want 1", series, got)
	}
	first := env.issue()
	env.issue()
	if got := sampleValue(env.scrape(), series); got != "3" {
		t.Fatalf("after two more issues, %s = %q, want 3", series, got)
	}
	if err := env.revoke(first); err != nil {
		t.Fatal(err)
	}
	if got := sampleValue(env.scrape(), series); got != "2" {
		t.Fatalf("after a revoke, %s = %q, want 2", series, got)
	}
}

func TestMetrics_CountsTidyDeletions(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	// A lost inventory record: tidy finds the key and, with no buffer, deletes it.
	lost := env.issue()
	if err := env.storage.Delete(context.Background(), inventoryKey("main", env.leaseName(lost))); err != nil {
		t.Fatal(err)
	}
	env.mustOK(logical.UpdateOperation, "tidy/main", map[string]any{"dry_run": false, "safety_buffer": 0})
	series := `vault_apikeys_tidy_deletions_total{connection="main",provider="storyden",role="",outcome="success"}`
	if got := sampleValue(env.scrape(), series); got != "1" {
		t.Fatalf("%s = %q, want 1", series, got)
	}
}
