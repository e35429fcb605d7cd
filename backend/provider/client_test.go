package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// scripted answers each request with the next status in statuses (the last
// one repeats) and counts requests.
func scripted(t *testing.T, header http.Header, statuses ...int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i >= len(statuses) {
			i = len(statuses) - 1
		}
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(statuses[i])
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestClient_RetryRules(t *testing.T) {
	cases := []struct {
		name       string
		statuses   []int
		header     http.Header
		idempotent bool
		wantStatus int
		wantCalls  int32
	}{
		{"503 idempotent is retried", []int{503, 503, 200}, nil, true, 200, 3},
		{"503 create is not retried", []int{503, 200}, nil, false, 503, 1},
		{"429 create is retried after backoff", []int{429, 201}, nil, false, 201, 2},
		{"429 with short Retry-After is retried", []int{429, 200}, http.Header{"Retry-After": {"1"}}, false, 200, 2},
		{"429 with long Retry-After is returned", []int{429, 200}, http.Header{"Retry-After": {"3600"}}, true, 429, 1},
		{"attempts are bounded", []int{503}, nil, true, 503, 4},
		{"4xx is final", []int{404, 200}, nil, true, 404, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := scripted(t, tc.header, tc.statuses...)
			c := &Client{Provider: "test", BaseURL: srv.URL}
			resp, err := c.Do(context.Background(), Request{Op: "op", Method: http.MethodPost, Path: "/x", Idempotent: tc.idempotent})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.wantStatus || calls.Load() != tc.wantCalls {
				t.Fatalf("status %d after %d calls, want %d after %d", resp.Status, calls.Load(), tc.wantStatus, tc.wantCalls)
			}
		})
	}
}

func TestClient_TransportFailures(t *testing.T) {
	// A refused connection never reached the upstream: retried even for a create.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var waits []time.Duration
	c := &Client{Provider: "test", BaseURL: "http://" + addr, MaxAttempts: 2, Sleep: func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}}
	_, err = c.Do(context.Background(), Request{Op: "create thing", Method: http.MethodPost, Path: "/x?secret=hunter2"})
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != 0 || !strings.Contains(err.Error(), "test: create thing failed") {
		t.Fatalf("want an UpstreamError naming the operation, got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), addr+"/x") {
		t.Fatalf("the error carries the URL: %v", err)
	}
	if len(waits) != 1 || waits[0] < firstBackoff/2 || waits[0] > firstBackoff {
		t.Fatalf("waits between the two attempts: %v, want one backoff of %s to %s", waits, firstBackoff/2, firstBackoff)
	}

	// One attempt timing out is retried for an idempotent request, not for a
	// create. The first call of each hangs until the client gives up, so
	// the timeout, not a race against a sleep, ends it.
	var slowCalls atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slowCalls.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer slow.Close()
	// The timeout only has to let the answered calls through.
	c = &Client{Provider: "test", BaseURL: slow.URL, HTTP: &http.Client{Timeout: 500 * time.Millisecond}}
	if resp, err := c.Do(context.Background(), Request{Op: "read", Method: http.MethodGet, Path: "/", Idempotent: true}); err != nil || resp.Status != 200 || slowCalls.Load() != 2 {
		t.Fatalf("an idempotent request after one timed-out attempt: %v, %d calls", err, slowCalls.Load())
	}
	slowCalls.Store(0)
	if _, err := c.Do(context.Background(), Request{Op: "create", Method: http.MethodPost, Path: "/"}); err == nil || slowCalls.Load() != 1 {
		t.Fatalf("a create that timed out was retried: %v, %d calls", err, slowCalls.Load())
	}

	// A cancelled context ends the retries at once.
	srv, calls := scripted(t, nil, 503)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c = &Client{Provider: "test", BaseURL: srv.URL}
	if _, err := c.Do(ctx, Request{Op: "op", Method: http.MethodGet, Path: "/", Idempotent: true}); err == nil || calls.Load() > 1 {
		t.Fatalf("cancelled context: err=%v calls=%d", err, calls.Load())
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"0":                             0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:01:00 GMT": time.Minute,
		"Wed, 31 Dec 2025 00:00:00 GMT": 0,
	}
	for value, want := range cases {
		h := http.Header{}
		if value != "" {
			h.Set("Retry-After", value)
		}
		if got := RetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q = %s, want %s", value, got, want)
		}
	}
}

func TestUpstreamError_Text(t *testing.T) {
	cases := []struct {
		err  *UpstreamError
		want string
	}{
		{&UpstreamError{Provider: "p", Op: "sign in", Status: 401, Code: "unauthenticated", Message: "bad password"}, "p: sign in failed with HTTP 401 Unauthorized (unauthenticated): bad password"},
		{&UpstreamError{Provider: "p", Op: "create", Status: 429, RetryAfter: 90 * time.Second}, "p: create failed with HTTP 429 Too Many Requests; the upstream asks to retry after 1m30s"},
		{&UpstreamError{Provider: "p", Op: "create", Status: 429}, "rate limit is exhausted, retry later"},
		{&UpstreamError{Provider: "p", Op: "list", Err: errors.New("connection reset")}, "p: list failed: connection reset"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%q does not contain %q", got, tc.want)
		}
	}
	if StatusOf(errors.Join(errors.New("x"), cases[0].err)) != 401 {
		t.Error("StatusOf does not see a wrapped UpstreamError")
	}
	if len(CleanMessage(strings.Repeat("a ", 500))) > maxMessageLen+4 {
		t.Error("CleanMessage does not bound the text")
	}
}

func TestField_Normalize(t *testing.T) {
	perms := Field{Name: "permissions", Type: TypeStringList, Allowed: []string{"read", "write"}}
	cases := []struct {
		field   Field
		raw     any
		want    any
		wantErr string
	}{
		{Field{Name: "s", Type: TypeString}, "  x ", "x", ""},
		{Field{Name: "s", Type: TypeString}, 5, nil, "s must be a string"},
		{Field{Name: "m", Type: TypeString, Allowed: []string{"a"}}, "b", nil, `m="b" is not allowed`},
		{Field{Name: "b", Type: TypeBool}, "true", true, ""},
		{Field{Name: "b", Type: TypeBool}, "yes please", nil, "b must be true or false"},
		{Field{Name: "i", Type: TypeInt}, float64(3), 3, ""},
		{Field{Name: "i", Type: TypeInt}, 2.5, nil, "whole number"},
		{perms, "write, read,read", []string{"read", "write"}, ""},
		{perms, []any{"read", 1}, nil, "list of strings"},
		{perms, []any{"read", "admin"}, nil, `may not contain "admin"`},
	}
	for _, tc := range cases {
		got, err := tc.field.Normalize(tc.raw)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%s(%v): err %v, want %q", tc.field.Name, tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !equalValue(got, tc.want) {
			t.Errorf("%s(%v) = %v, %v; want %v", tc.field.Name, tc.raw, got, err, tc.want)
		}
	}
}

func equalValue(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return strings.Join(as, ",") == strings.Join(bs, ",")
	}
	return a == b
}

func TestValues_GettersSurviveJSON(t *testing.T) {
	v := Values{"n": float64(7), "l": []any{"a", "b"}, "s": "x", "b": true}
	if v.Int("n") != 7 || strings.Join(v.Strings("l"), ",") != "a,b" || v.String("s") != "x" || !v.Bool("b") {
		t.Fatalf("getters: %d %v %q %v", v.Int("n"), v.Strings("l"), v.String("s"), v.Bool("b"))
	}
	if v.String("missing") != "" || v.Strings("missing") != nil || v.Int("s") != 0 {
		t.Fatal("missing or mistyped values must read as zero")
	}
}

func TestRandomString(t *testing.T) {
	a, err := RandomString(32, "ab")
	if err != nil || len(a) != 32 || strings.Trim(a, "ab") != "" {
		t.Fatalf("RandomString = %q, %v", a, err)
	}
	b, _ := RandomString(32, "ab")
	if a == b {
		t.Fatal("two random strings are equal")
	}
	if _, err := RandomString(4, strings.Repeat("x", 257)); err == nil {
		t.Fatal("an alphabet longer than a byte can index was accepted")
	}
}

// Every character is equally likely, also where the alphabet's size does not
// divide 256: taking bytes modulo 36 would draw the first four characters
// 8/7 as often as the others (11,250 against 9,844 here), far outside the
// band below, which an even draw leaves only with odds under one in 10^8.
func TestRandomString_Uniform(t *testing.T) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	const draws = 360_000
	s, err := RandomString(draws, alphabet)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
	}
	want := draws / len(alphabet)
	for _, c := range alphabet {
		if n := counts[c]; n < want-600 || n > want+600 {
			t.Errorf("%q drawn %d times, want %d±600", c, n, want)
		}
	}
}

// A 429 with a Retry-After closes the shared gate: the refused call goes
// again once it opens without spending an attempt, and another client's call
// waits at the gate instead of running into the same exhausted limit.
func TestClient_RateGate(t *testing.T) {
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		first := len(arrivals) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	t.Cleanup(srv.Close)
	gate := &RateGate{}
	// One attempt each: without the gate the 429 would be the answer.
	// a says when it starts waiting at the gate, which its 429 closed.
	aWaits := make(chan struct{})
	var once sync.Once
	a := &Client{Provider: "test", BaseURL: srv.URL, MaxAttempts: 1, Gate: gate, Sleep: func(ctx context.Context, d time.Duration) error {
		once.Do(func() { close(aWaits) })
		return Sleep(ctx, d)
	}}
	b := &Client{Provider: "test", BaseURL: srv.URL, MaxAttempts: 1, Gate: gate}
	results := make(chan *Response, 2)
	go func() {
		resp, _ := a.Do(context.Background(), Request{Op: "a", Method: http.MethodDelete, Path: "/a"})
		results <- resp
	}()
	<-aWaits
	gate.mu.Lock()
	closedUntil := gate.open
	gate.mu.Unlock()
	if closedUntil.IsZero() {
		t.Fatal("a waits at a gate that was never closed")
	}
	go func() {
		resp, _ := b.Do(context.Background(), Request{Op: "b", Method: http.MethodDelete, Path: "/b"})
		results <- resp
	}()
	for range 2 {
		if resp := <-results; resp == nil || resp.Status != http.StatusOK {
			t.Fatalf("a call ended with %#v, want 200 after the gate opened", resp)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 3 {
		t.Fatalf("%d calls reached the upstream, want 3 (the refused one, its retry, the other client's)", len(arrivals))
	}
	for _, at := range arrivals[1:] {
		if at.Before(closedUntil) {
			t.Fatalf("a call reached the upstream at %s, before the gate opened at %s", at, closedUntil)
		}
	}
}

// A 429 without a usable Retry-After leaves the gate open and spends an
// attempt, as without a gate.
func TestClient_RateGateNeedsRetryAfter(t *testing.T) {
	srv, calls := scripted(t, http.Header{"Retry-After": {"0"}}, 429)
	c := &Client{Provider: "test", BaseURL: srv.URL, MaxAttempts: 1, Gate: &RateGate{}}
	resp, err := c.Do(context.Background(), Request{Op: "op", Method: http.MethodGet, Path: "/x"})
	if err != nil || resp.Status != http.StatusTooManyRequests {
		t.Fatalf("got %v, %v", resp, err)
	}
	if calls.Load() != 1 || !c.Gate.open.IsZero() {
		t.Fatalf("%d calls for a 429 without a usable Retry-After and one attempt; gate closed until %s", calls.Load(), c.Gate.open)
	}
}

// Vault reads a plugin's JSON log lines, where a time.Duration is a number
// of nanoseconds (Vault then prints wait=1e+09); durations are logged as text.
func TestClient_LogsDurationsAsText(t *testing.T) {
	cases := []struct {
		name    string
		gate    *RateGate
		message string
	}{
		{"retry after a Retry-After", nil, "retrying upstream call"},
		{"wait at the rate gate", &RateGate{}, "upstream rate limit: holding calls back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := scripted(t, http.Header{"Retry-After": {"1"}}, 429, 200)
			logs := &testutil.LogBuffer{}
			c := &Client{Provider: "test", BaseURL: srv.URL, Gate: tc.gate,
				Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs, JSONFormat: true})}
			if _, err := c.Do(context.Background(), Request{Op: "op", Method: http.MethodGet, Path: "/x"}); err != nil {
				t.Fatal(err)
			}
			seen := map[string]map[string]any{}
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var fields map[string]any
				if err := json.Unmarshal([]byte(line), &fields); err != nil {
					t.Fatalf("log line %q is not JSON: %v", line, err)
				}
				seen[fields["@message"].(string)] = fields
			}
			if wait := seen[tc.message]["wait"]; wait != "1s" {
				t.Errorf("%s: wait=%#v, want \"1s\"", tc.message, wait)
			}
			duration, _ := seen["upstream call"]["duration"].(string)
			if _, err := time.ParseDuration(duration); err != nil {
				t.Errorf("upstream call: duration=%#v is not a duration", seen["upstream call"]["duration"])
			}
		})
	}
}

// A redirect is never followed, whatever the status, the method and the
// HTTP client's own policy, nor retried; the error names the status and the
// target without its query, and wraps ErrRedirect.
func TestClient_RefusesEveryRedirect(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(target.Close)
	location := target.URL + "/moved?key=echoed-secret"
	for _, status := range []int{301, 302, 303, 307, 308} {
		for _, idempotent := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d idempotent=%v", status, idempotent), func(t *testing.T) {
				srv, calls := scripted(t, http.Header{"Location": {location}}, status)
				following := &http.Client{}
				c := &Client{Provider: "test", BaseURL: srv.URL, HTTP: following}
				resp, err := c.Do(context.Background(), Request{Op: "create key", Method: http.MethodPost, Path: "/x",
					Header: http.Header{"X-Api-Key": {"root-secret"}}, Body: []byte(`{"password":"root-secret"}`), Idempotent: idempotent})
				if err == nil {
					t.Fatalf("got %d, want an error", resp.Status)
				}
				want := fmt.Sprintf("test: create key failed with HTTP %d %s: a redirect to %s/moved?…: redirects are not followed", status, http.StatusText(status), target.URL)
				if !errors.Is(err, ErrRedirect) || StatusOf(err) != status || !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error %q (status %d), want one starting %q wrapping ErrRedirect", err, StatusOf(err), want)
				}
				if strings.Contains(err.Error(), "echoed-secret") || strings.Contains(err.Error(), "root-secret") {
					t.Fatalf("the error quotes a secret: %s", err)
				}
				if calls.Load() != 1 || elsewhere.Load() != 0 {
					t.Fatalf("%d calls upstream, %d at the target; want 1 and 0", calls.Load(), elsewhere.Load())
				}
				if following.CheckRedirect != nil {
					t.Fatal("the caller's HTTP client was changed")
				}
			})
		}
	}
}
