package katapult

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// Paths faults match on (prefixes of the URL path).
const (
	pathCreateFault   = "/core/v1/organizations/organization/object_storage/object_storage_cluster/access_keys"
	pathGenerateFault = "/core/v1/object_storage/access_keys/access_key/generate_credentials"
	pathKeyFault      = "/core/v1/object_storage/access_keys/access_key"
	pathBucketFault   = "/core/v1/object_storage/object_storage_cluster/buckets/bucket"
)

func sandboxLatency(method, path string, ms int) sandbox.Fault {
	return sandbox.Fault{Method: method, Path: path, LatencyMS: ms}
}

// The client timeout in tests is 1 s; this latency outlasts it so far that
// the client always gives up first, whatever the load (the sandbox then
// abandons the request), instead of racing it by 300 ms.
const pastTimeoutMS = 60_000

var grantingRole = provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"logs"}}

func TestIssueUnderFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault sandbox.Fault
		// status is the failed issue's upstream status; -1 means the issue
		// succeeds, 0 means it fails without an answer.
		status int
		// calls is how often the faulted route is called, 0 to not check.
		route string
		calls int
	}{
		{"create 500", sandbox.Fault{Method: "POST", Path: pathCreateFault, Status: 500}, 500, routeCreate, 1},
		{"create 503 is not retried: the key may exist", sandbox.Fault{Method: "POST", Path: pathCreateFault, Status: 503}, 503, routeCreate, 1},
		{"create dropped", sandbox.Fault{Method: "POST", Path: pathCreateFault, Drop: true}, 0, routeCreate, 1},
		{"create answer malformed after the create", sandbox.Fault{Method: "POST", Path: pathCreateFault, Malformed: true}, 201, routeCreate, 1},
		{"create past the client timeout", sandbox.Fault{Method: "POST", Path: pathCreateFault, LatencyMS: pastTimeoutMS}, 0, routeCreate, 1},
		{"generate 500", sandbox.Fault{Method: "POST", Path: pathGenerateFault, Status: 500}, 500, routeGenerate, 1},
		{"generate 503 twice is retried", sandbox.Fault{Method: "POST", Path: pathGenerateFault, Status: 503, Times: 2}, -1, routeGenerate, 3},
		{"generate 503 for good", sandbox.Fault{Method: "POST", Path: pathGenerateFault, Status: 503}, 503, "", 0},
		{"generate dropped once is retried", sandbox.Fault{Method: "POST", Path: pathGenerateFault, Drop: true, Times: 1}, -1, routeGenerate, 2},
		{"generate past the timeout once is retried", sandbox.Fault{Method: "POST", Path: pathGenerateFault, LatencyMS: pastTimeoutMS, Times: 1}, -1, routeGenerate, 2},
		{"generate answer malformed", sandbox.Fault{Method: "POST", Path: pathGenerateFault, Malformed: true}, 200, routeGenerate, 1},
		{"ACL read 503 once is retried", sandbox.Fault{Method: "GET", Path: pathBucketFault, Status: 503, Times: 1}, -1, routeGetBucket, 3},
		{"ACL read malformed", sandbox.Fault{Method: "GET", Path: pathBucketFault, Malformed: true}, 200, routeGetBucket, 1},
		{"ACL write dropped", sandbox.Fault{Method: "PATCH", Path: pathBucketFault, Drop: true}, 0, routePatchBkt, 1},
		{"ACL write answer malformed after the write", sandbox.Fault{Method: "PATCH", Path: pathBucketFault, Malformed: true}, 200, routePatchBkt, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.AddFault(tt.fault)
			cred, err := h.conn.Issue(context.Background(), provider.IssueRequest{Role: grantingRole, Name: "vault-app-faulty"})
			if tt.route != "" && h.srv.Calls()[tt.route] != tt.calls {
				t.Errorf("%s called %d times, want %d", tt.route, h.srv.Calls()[tt.route], tt.calls)
			}
			h.srv.ClearFaults()
			if tt.status == -1 {
				if err != nil {
					t.Fatalf("issue failed: %v", err)
				}
				if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
					t.Fatal(err)
				}
				h.assertClean()
				return
			}
			if err == nil {
				t.Fatal("issue succeeded despite the fault")
			}
			if got := provider.StatusOf(err); got != tt.status {
				t.Errorf("status %d, want %d: %v", got, tt.status, err)
			}
			// What the engine does next: roll back by name.
			if err := h.conn.Rollback(context.Background(), provider.RollbackRequest{Name: "vault-app-faulty", Role: grantingRole}); err != nil {
				t.Fatal(err)
			}
			h.assertClean()
		})
	}
}

func TestIssueWaitsOutA429(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		// minWait and maxWait bound the recorded wait before the retry.
		minWait, maxWait time.Duration
	}{
		{"with Retry-After", "3", 2 * time.Second, 3 * time.Second},
		{"without Retry-After: until the next minute", "", time.Nanosecond, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			waits := recordSleeps(t, nil)
			h.srv.AddFault(sandbox.Fault{Method: "POST", Path: pathCreateFault, Status: 429, RetryAfter: tt.retryAfter, Times: 1})
			cred := h.issue("vault-app-limited", grantingRole)
			if n := h.srv.Calls()[routeCreate]; n != 2 {
				t.Errorf("create called %d times, want the 429 and one retry", n)
			}
			if len(*waits) == 0 || (*waits)[0] < tt.minWait || (*waits)[0] > tt.maxWait {
				t.Fatalf("waits = %v, want a first one in [%s, %s]", *waits, tt.minWait, tt.maxWait)
			}
			if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPersistent429IsReportedAfterBoundedRetries(t *testing.T) {
	h := newHarness(t)
	waits := recordSleeps(t, nil)
	h.srv.AddFault(sandbox.Fault{Method: "POST", Path: pathCreateFault, Status: 429})
	_, err := h.conn.Issue(context.Background(), provider.IssueRequest{Role: provider.Values{}, Name: "vault-app-limited"})
	ue, ok := asUpstream(err)
	if !ok || ue.Status != 429 || ue.Code != "rate_limit_reached" || ue.RetryAfter <= 0 || !strings.Contains(err.Error(), "retry after") {
		t.Fatalf("err = %v", err)
	}
	if n := h.srv.Calls()[routeCreate]; n != maxRateLimitRetries+1 {
		t.Errorf("create called %d times, want %d", n, maxRateLimitRetries+1)
	}
	if len(*waits) != maxRateLimitRetries {
		t.Errorf("waits = %v, want one per retry", *waits)
	}
}

func TestRevokeUnderFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault sandbox.Fault
		ok    bool
		route string
		calls int
		// retryFor, when set, replaces deleteRetryTimeout.
		retryFor time.Duration
	}{
		{"delete 500", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Status: 500}, false, routeDelete, 1, 0},
		{"delete 503 twice is retried", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Status: 503, Times: 2}, true, routeDelete, 3, 0},
		{"delete 504 for good", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Status: 504}, false, "", 0, 100 * time.Millisecond},
		{"delete dropped once is retried", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Drop: true, Times: 1}, true, routeDelete, 2, 0},
		{"delete past the timeout once is retried", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, LatencyMS: pastTimeoutMS, Times: 1}, true, routeDelete, 2, 0},
		{"delete malformed answer after the delete", sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Malformed: true, Times: 1}, true, routeDelete, 1, 0},
		{"ACL write 500 stops before the delete", sandbox.Fault{Method: "PATCH", Path: pathBucketFault, Status: 500}, false, routeDelete, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			cred := h.issue("vault-app-revoked", grantingRole)
			h.srv.ResetCalls()
			h.srv.AddFault(tt.fault)
			if tt.retryFor > 0 {
				deleteRetryTimeout = tt.retryFor
			}
			err := h.conn.Revoke(context.Background(), cred.Ref)
			if (err == nil) != tt.ok {
				t.Fatalf("revoke: %v, want ok=%v", err, tt.ok)
			}
			if tt.route != "" && h.srv.Calls()[tt.route] != tt.calls {
				t.Errorf("%s called %d times, want %d", tt.route, h.srv.Calls()[tt.route], tt.calls)
			}
			h.srv.ClearFaults()
			if !tt.ok {
				if o, _ := h.object("access_key", "vault-app-revoked"); !o.Live {
					t.Error("the key is gone although revoke reported failure")
				}
				// Vault's expiration manager retries the revoke later.
				if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
					t.Fatal(err)
				}
			}
			h.assertClean()
		})
	}
}

func TestRevokeWaitsOutA429(t *testing.T) {
	h := newHarness(t)
	cred := h.issue("vault-app-revoked", provider.Values{})
	waits := recordSleeps(t, nil)
	h.srv.AddFault(sandbox.Fault{Method: "DELETE", Path: pathKeyFault, Status: http.StatusTooManyRequests, Times: 1})
	if err := h.conn.Revoke(context.Background(), cred.Ref); err != nil {
		t.Fatal(err)
	}
	if len(*waits) != 1 {
		t.Errorf("waits = %v", *waits)
	}
	h.assertClean()
}
