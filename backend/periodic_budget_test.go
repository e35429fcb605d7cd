package backend

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// hangingUpstream accepts connections and never answers, until the test ends.
func hangingUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestPeriodicHungUpstreamLeavesRollbackItsTime: a connection whose upstream
// hangs while it has a pending root must not use up the operation Vault runs
// the periodic function and the WAL rollback in; another connection's orphan
// is still rolled back within two ticks, and the hung connection keeps its
// staged root for later.
func TestPeriodicHungUpstreamLeavesRollbackItsTime(t *testing.T) {
	e := newFMEnv(t, fmProviders()[0], fmColumn{name: "hung"})
	// Only the tick's deadline can end a hung call, as with the provider's
	// retries in production (4 tries of up to 30 s each).
	e.b.httpClient = &http.Client{}
	e.b.periodicBudget, e.b.itemBudget = 400*time.Millisecond, 200*time.Millisecond
	ctx := context.Background()

	e.must(logical.CreateOperation, "config/hung", map[string]any{
		"provider": "storyden", "base_url": hangingUpstream(t), "allow_http": true, "username": adminHandle, "password": adminPassword, "verify_connection": false,
	})
	hung, err := getConnection(ctx, e.storage, "hung")
	if err != nil {
		t.Fatal(err)
	}
	hung.PendingRoot = map[string]any{"password": "staged-password-for-the-hung-upstream"}
	if err := putConnection(ctx, e.storage, "hung", hung); err != nil {
		t.Fatal(err)
	}

	orphan := "vault-app-orphanbyacrash"
	if _, err := putLegacyWAL(ctx, e.storage, walIssue{Connection: fmConn, Provider: "storyden", Role: fmRole, Name: orphan, CreatedAt: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	e.upstreamObject(orphan)

	var tickErrs []string
	for tick := 1; tick <= 2 && e.walCount() > 0; tick++ {
		// Vault's 90 s bound on the operation, scaled like the budgets.
		tickCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := e.b.HandleRequest(tickCtx, &logical.Request{Operation: logical.RollbackOperation, Storage: e.storage, Data: map[string]any{"immediate": true}})
		cancel()
		if err != nil {
			tickErrs = append(tickErrs, err.Error())
		}
		if resp != nil && resp.IsError() {
			tickErrs = append(tickErrs, resp.Error().Error())
		}
	}
	if n := e.walCount(); n != 0 {
		t.Fatalf("the orphan's WAL entry survived two ticks: %v", tickErrs)
	}
	e.checkOrphans("after two ticks")
	if len(tickErrs) == 0 || !strings.Contains(tickErrs[0], "trying again in 1m0s") {
		t.Errorf("the hung connection's failure is not reported with its backoff: %v", tickErrs)
	}
	if entry, err := getConnection(ctx, e.storage, "hung"); err != nil || entry.PendingRoot == nil {
		t.Fatalf("the hung connection lost its staged root: %+v %v", entry, err)
	}
}
