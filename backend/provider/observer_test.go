package provider

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu                   sync.Mutex
	calls                []string
	rateLimited, retries int
}

func (r *recorder) UpstreamCall(op string, status int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %d", op, status))
}

func (r *recorder) UpstreamRateLimited(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rateLimited++
}

func (r *recorder) UpstreamRetry(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries++
}

func TestClient_Observer(t *testing.T) {
	noWait := func(context.Context, time.Duration) error { return nil }
	retryAfter := http.Header{"Retry-After": {"1"}}
	cases := []struct {
		name            string
		statuses        []int
		header          http.Header
		gate            bool
		wantCalls       []string
		wantRateLimited int
		wantRetries     int
	}{
		{"one call", []int{201}, nil, false, []string{"create 201"}, 0, 0},
		{"503 then success", []int{503, 200}, nil, false, []string{"create 503", "create 200"}, 0, 1},
		{"429 backoff is a rate-limit wait and a retry", []int{429, 200}, nil, false, []string{"create 429", "create 200"}, 1, 1},
		{"429 at a gate is a rate-limit wait, no retry", []int{429, 200}, retryAfter, true, []string{"create 429", "create 200"}, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := scripted(t, tc.header, tc.statuses...)
			rec := &recorder{}
			c := &Client{Provider: "test", BaseURL: srv.URL, Sleep: noWait, Observer: rec}
			if tc.gate {
				c.Gate = &RateGate{}
			}
			// The object name in Op must not reach the observer.
			if _, err := c.Do(context.Background(), Request{Op: "create API key vault-role-abc123", Method: http.MethodPost, Path: "/x", Idempotent: true}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rec.calls) != fmt.Sprint(tc.wantCalls) || rec.rateLimited != tc.wantRateLimited || rec.retries != tc.wantRetries {
				t.Fatalf("calls %v, rate-limited %d, retries %d; want %v, %d, %d", rec.calls, rec.rateLimited, rec.retries, tc.wantCalls, tc.wantRateLimited, tc.wantRetries)
			}
		})
	}
}

func TestClient_ObserverSeesTransportFailures(t *testing.T) {
	rec := &recorder{}
	c := &Client{Provider: "test", BaseURL: "http://127.0.0.1:1", MaxAttempts: 1, Observer: rec}
	if _, err := c.Do(context.Background(), Request{Op: "delete x", Method: http.MethodDelete, Path: "/"}); err == nil {
		t.Fatal("want a transport error")
	}
	if fmt.Sprint(rec.calls) != "[delete 0]" {
		t.Fatalf("calls %v, want [delete 0]", rec.calls)
	}
}

func TestOpKind(t *testing.T) {
	cases := map[string]string{
		"create API key vault-r-1":                  "create",
		"delete access key AKIA":                    "delete",
		"list API keys of a@b.c":                    "list",
		"request an access token for client_id abc": "request",
		"Mint access token x":                       "mint",
		"generate S3 credentials for access key 1":  "generate",
		"vault-r-1 something":                       "other",
		"":                                          "other",
	}
	for op, want := range cases {
		if got := OpKind(op); got != want {
			t.Errorf("OpKind(%q) = %q, want %q", op, got, want)
		}
	}
}
