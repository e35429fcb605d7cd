package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// The bucket-acl phase: Katapult issues whose role grants one bucket, so
// that every credential changes that bucket's ACL (a GET and a PATCH of the
// whole key list), at a latency where waiting on one another would show.
const (
	aclLatencyMS = 20
	aclBucket    = "shared"
	// Routes of the ACL read-modify-write, as the emulator counts them.
	aclGetRoute   = "GET /core/v1/object_storage/object_storage_cluster/buckets/bucket"
	aclPatchRoute = "PATCH /core/v1/object_storage/object_storage_cluster/buckets/bucket"
)

// Targets of the bucket-acl phase: throughput against one client, and ACL
// calls per credential at 32 clients.
const (
	targetACLScale8  = 6.0
	targetACLScale32 = 15.0
	targetACLCalls32 = 2.0
)

// aclClients are the concurrencies the phase measures.
var aclClients = []int{1, 8, 32}

// aclResult is the phase at one concurrency.
type aclResult struct {
	clients  int
	creds    int
	errs     int
	firstErr error
	elapsed  time.Duration
	gets     int
	patches  int
}

func (r aclResult) rate() float64 { return float64(r.creds) / r.elapsed.Seconds() }

// aclCallsPerCred counts the failed reads too: their calls were made.
func (r aclResult) aclCallsPerCred() float64 {
	if r.creds+r.errs == 0 {
		return 0
	}
	return float64(r.gets+r.patches) / float64(r.creds+r.errs)
}

// newKatapultBucket starts a Katapult emulator with one bucket and
// configures mount with a role that grants it read access.
func newKatapultBucket(c *api.Client, emus *emulators, mount string) (*target, error) {
	srv, err := emus.start(katapult.New(katapult.Options{
		Organizations:     []katapult.Organization{{SubDomain: "bench", Buckets: []string{aclBucket}}},
		Tokens:            []katapult.Token{{Secret: kpToken, Organization: "bench", User: "ops"}},
		ProvisioningDelay: -1,
		RateLimit:         noLimit,
	}))
	if err != nil {
		return nil, err
	}
	err = configure(c, mount, map[string]any{
		"provider": "katapult", "base_url": srv.URL() + "/core/v1", "allow_http": true, "organization": "bench", "api_token": kpToken,
	}, map[string]any{"read_buckets": aclBucket})
	return &target{name: "katapult (one bucket)", path: mount + "/creds/app", servers: []*sandbox.Server{srv}}, err
}

// measureBucketACL reads creds with 1, 8 and 32 clients, rounds slices of
// slice each, with aclLatencyMS on every Katapult call.
func measureBucketACL(ctx context.Context, c *api.Client, t *target, warm, rounds int, slice time.Duration) ([]aclResult, error) {
	t.addFault(sandbox.Fault{LatencyMS: aclLatencyMS})
	defer t.clearFaults()
	if err := issueMany(ctx, c, t.path, warm, 1); err != nil {
		return nil, err
	}
	var out []aclResult
	for _, clients := range aclClients {
		logf("bucket-acl: %d clients, %d slices of %s at %d ms upstream latency", clients, rounds, slice, aclLatencyMS)
		t.resetCalls()
		r := aclResult{clients: clients}
		for range rounds {
			ops, errs, elapsed, first := burst(ctx, c, t.path, clients, slice, 1<<20)
			r.creds, r.errs, r.elapsed = r.creds+ops, r.errs+errs, r.elapsed+elapsed
			if r.firstErr == nil {
				r.firstErr = first
			}
		}
		calls := t.calls()
		r.gets, r.patches = calls[aclGetRoute], calls[aclPatchRoute]
		out = append(out, r)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// bucketACLMarkdown is the phase's section of the report.
func bucketACLMarkdown(rs []aclResult, o options) string {
	if len(rs) == 0 {
		return ""
	}
	base := rs[0].rate()
	s := fmt.Sprintf("\n### 6. Katapult: concurrent issues that share one bucket\n\n"+
		"A Katapult role with one bucket in `read_buckets`, so every credential adds its key to that bucket's ACL (a `GET` of the bucket and a `PATCH` of its whole key list), with %d ms on every Katapult call; %d slices of %s of creds reads per concurrency. The plugin group-commits a bucket's ACL changes: one update in flight per bucket, whose PATCH carries every change that arrived before its GET answered (later ones ride on the next update), so the ACL calls per credential fall below 2 (one GET and one PATCH each) as clients overlap, and one client's rate is the floor the others scale from.\n\n",
		aclLatencyMS, o.rounds, o.aclSlice)
	s += "| clients | creds/s | **× one client** | ACL GETs | ACL PATCHes | **ACL calls per credential** | errors |\n|---:|---:|---:|---:|---:|---:|---|\n"
	for _, r := range rs {
		errs := "0"
		if r.errs > 0 {
			errs = fmt.Sprintf("%d: %v", r.errs, r.firstErr)
		}
		s += fmt.Sprintf("| %d | %.1f | **%.2f** | %d | %d | **%.2f** | %s |\n", r.clients, r.rate(), r.rate()/base, r.gets, r.patches, r.aclCallsPerCred(), oneLine(errs))
	}
	return s
}

// bucketACLTargets are the phase's lines of the Targets list.
func bucketACLTargets(rs []aclResult) []string {
	if len(rs) == 0 {
		return nil
	}
	var out []string
	base := rs[0].rate()
	for _, r := range rs {
		switch r.clients {
		case 8:
			out = append(out, fmt.Sprintf("katapult one-bucket creds at 8 clients: %.2f× one client (target ≥ %.0f×): %s", r.rate()/base, targetACLScale8, verdict(r.rate()/base >= targetACLScale8)))
		case 32:
			out = append(out, fmt.Sprintf("katapult one-bucket creds at 32 clients: %.2f× one client (target ≥ %.0f×): %s", r.rate()/base, targetACLScale32, verdict(r.rate()/base >= targetACLScale32)),
				fmt.Sprintf("katapult ACL calls per credential at 32 clients: %.2f (target < %.0f): %s", r.aclCallsPerCred(), targetACLCalls32, verdict(r.aclCallsPerCred() < targetACLCalls32)))
		}
	}
	return out
}
