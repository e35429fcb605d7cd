package backend

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// The redirect matrix of issue 14, item 2: every provider × every upstream
// call (verify, issue, revoke, rotate-root where the provider makes one) ×
// every redirect status × two targets, run in process through the backend
// against the emulators served over HTTPS. Each cell answers the call's
// route with the redirect; the target is a recording listener on 127.0.0.1
// that must receive nothing. Go's client, when it follows, strips only
// Authorization and Cookie, and only for another host name: x-api-key and
// api-key go anywhere, a 307/308 re-sends a sign-in body, and an https→http
// redirect on the same host name sends the Bearer token in clear.

// redirectStatuses are the statuses net/http follows.
var redirectStatuses = []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}

// redirectQuery is put on every Location: an error may name the target, but
// not its query, where an upstream could echo a secret.
const redirectQuery = "?token=redirect-query-secret"

// recorder is a listener on 127.0.0.1 that keeps every request it gets.
type recorder struct {
	url      string
	mu       sync.Mutex
	requests []string
}

// startRecorder serves a recorder, over HTTPS with a certificate for
// localhost when tls is true; its url then names localhost, another host
// than the emulators' 127.0.0.1.
func startRecorder(t *testing.T, ca *testutil.CA, tls bool) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL)
		_ = req.Header.Write(&b)
		b.Write(body)
		r.mu.Lock()
		r.requests = append(r.requests, b.String())
		r.mu.Unlock()
		http.NotFound(w, req)
	})}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if tls {
		srv.TLSConfig = ca.ServerConfig(t, "localhost")
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		r.url = "https://localhost:" + port
	} else {
		go func() { _ = srv.Serve(ln) }()
		r.url = "http://127.0.0.1:" + port
	}
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// take returns and forgets what the recorder got.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.requests
	r.requests = nil
	return got
}

// redirectCall is one upstream call of a provider, with the route its
// redirect answers on (an empty server: every route of every emulator).
type redirectCall struct {
	label string
	op    string // "verify", or an fmOp's name
	row   fmRow
}

func redirectCalls(p *fmProvider) []redirectCall {
	calls := []redirectCall{{label: "verify", op: "verify"}}
	for _, row := range p.rows {
		if row.path == "" {
			continue // no upstream call by design
		}
		calls = append(calls, redirectCall{label: row.label, op: map[fmOp]string{fmIssue: "issue", fmRevoke: "revoke", fmRotate: "rotate"}[row.op], row: row})
	}
	return calls
}

func TestRedirects_NeverFollowed(t *testing.T) {
	ca := testutil.NewCA(t)
	providers := fmProviders()
	var mu sync.Mutex
	counts := map[string]int{}
	t.Run("cells", func(t *testing.T) {
		for _, p := range providers {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				n := runRedirectCells(t, p, ca)
				mu.Lock()
				counts[p.name] = n
				mu.Unlock()
			})
		}
	})
	total := 0
	var lines []string
	for _, p := range providers {
		total += counts[p.name]
		lines = append(lines, fmt.Sprintf("%s: %d calls × %d statuses × 2 targets = %d", p.name, len(redirectCalls(p)), len(redirectStatuses), counts[p.name]))
	}
	t.Logf("redirect matrix: %d cells\n%s", total, strings.Join(lines, "\n"))
}

// runRedirectCells runs every cell of one provider in one backend and
// returns how many ran.
func runRedirectCells(t *testing.T, p *fmProvider, ca *testutil.CA) int {
	e, config, role := startFMEnv(t, p, fmColumn{name: "redirect"}, ca.ServerConfig(t, "127.0.0.1"))
	config["ca_cert"] = ca.CertPEM
	e.configure(config, role)
	e.mustRevoke(e.mustIssue())
	targets := []struct {
		name string
		rec  *recorder
	}{
		{"cross-host", startRecorder(t, ca, true)},
		{"https→http", startRecorder(t, ca, false)},
	}
	cells := 0
	for _, call := range redirectCalls(p) {
		for _, status := range redirectStatuses {
			for _, target := range targets {
				t.Run(fmt.Sprintf("%s/%d/%s", call.label, status, target.name), func(t *testing.T) {
					e.t = t
					e.redirectCell(call, sandbox.Fault{Status: status, Location: target.rec.url + "/redirected" + redirectQuery}, target.rec)
				})
				cells++
			}
		}
	}
	e.t = t
	e.failure(e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation, Storage: e.storage, Data: map[string]any{"immediate": true},
	}))
	e.checkOrphans("after the redirects")
	for len(e.live) > 0 {
		e.mustRevoke(e.live[0])
	}
	return cells
}

// redirectCell answers the call's route with the redirect, runs the call
// and requires an error naming the status and the target without its query,
// and nothing at the target.
func (e *fmEnv) redirectCell(call redirectCall, redirect sandbox.Fault, rec *recorder) {
	t := e.t
	var lease *logical.Response
	switch call.op {
	case "revoke":
		lease = e.mustIssue()
	case "issue":
		if e.p.cachesToken {
			e.reopen()
		}
	}
	if call.op == "verify" {
		for _, srv := range e.servers {
			srv.AddFault(redirect)
		}
	} else {
		redirect.Method, redirect.Path = call.row.method, call.row.path
		e.servers[call.row.server].AddFault(redirect)
	}
	var msg string
	switch call.op {
	case "verify":
		base := e.connection().BaseURL
		msg = e.failure(e.request(logical.UpdateOperation, "config/"+fmConn, map[string]any{"base_url": base}))
	case "issue":
		_, msg = e.issue()
	case "revoke":
		msg = e.revoke(lease)
	case "rotate":
		msg = e.failure(e.request(logical.UpdateOperation, "rotate-root/"+fmConn, nil))
		e.noteRootSecrets()
	}
	e.clearFaults()

	if got := rec.take(); len(got) > 0 {
		var carried []string
		for _, secret := range e.secrets {
			shown := fmt.Sprintf("%.6s…", secret)
			if !slices.Contains(carried, shown) && slices.ContainsFunc(got, func(req string) bool { return strings.Contains(req, secret) }) {
				carried = append(carried, shown)
			}
		}
		t.Errorf("the redirect was followed: %s got %d requests, carrying %d secrets %v; first:\n%s", rec.url, len(got), len(carried), carried, got[0])
	}
	location := strings.TrimSuffix(redirect.Location, redirectQuery)
	switch {
	case msg == "":
		t.Errorf("the call succeeded although its upstream answered every attempt with a redirect")
	case !strings.Contains(msg, fmt.Sprintf("HTTP %d", redirect.Status)) || !strings.Contains(msg, location):
		t.Errorf("the error does not name the status %d and the target %s: %s", redirect.Status, location, msg)
	case strings.Contains(msg, "redirect-query-secret"):
		t.Errorf("the error quotes the target's query: %s", msg)
	case !strings.Contains(strings.ToLower(msg), e.p.name):
		t.Errorf("the error does not name the provider: %s", msg)
	}
	switch call.op {
	case "revoke":
		e.mustRevoke(lease)
	case "rotate":
		if err := e.b.periodic(context.Background(), &logical.Request{Storage: e.storage}); err != nil {
			t.Errorf("the periodic check after the rotation failed: %v", err)
		}
		if e.connection().PendingRoot != nil {
			t.Errorf("a staged root is left after the periodic check")
		}
	}
}
