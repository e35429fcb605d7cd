package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// Issue "Reliability", item 5: a mass revoke through real Vault while the
// upstream throttles.
const (
	mrLeases  = 1000
	mrWorkers = 16
	// mrDeleteRoute is what the faults aim at: Storyden's key revocation.
	mrDeleteRoute = "/api/auth/access-keys/"
	// mrWave is the opening run of 429s, without Retry-After. Vault revokes
	// with at most 200 workers at once, and the plugin tries each upstream
	// delete 4 times, backing off for 125 ms to 1 s, so the first revokes
	// use up all four attempts inside the wave and fail back to Vault, which
	// retries them on its own schedule (about 20 s later).
	mrWave = 800
	// mrBurstSkip and mrBurst place a second run of 429s, with Retry-After: 1,
	// after the wave: the plugin's rate gate holds every revoke back until
	// then, and a wait at the gate spends no attempt.
	mrBurstSkip = 1000
	mrBurst     = 300
	// mrEvery and mrPatternSpan: besides the runs, one delete in mrEvery
	// gets a single 429 over the first mrPatternSpan deletes (more than the
	// run needs, so in effect for all of it), alternately with and without
	// Retry-After: 1. The plugin's own retry absorbs these.
	mrEvery       = 7
	mrPatternSpan = 4000
	// mrDeadline bounds the wait for the revokes to land.
	mrDeadline = 5 * time.Minute
)

// TestMassRevoke_ThousandStorydenLeasesUnderUpstream429s issues 1,000
// Storyden leases through Vault's HTTP API, makes Storyden answer many of the
// revocations with 429 (with and without Retry-After), runs
// `vault lease revoke -prefix`, which only queues the revocations, and waits
// until Storyden holds no live key and Vault no lease: every 429 was waited
// out, by the plugin's retries or by Vault's, and nothing was orphaned or
// given up on.
func TestMassRevoke_ThousandStorydenLeasesUnderUpstream429s(t *testing.T) {
	t.Parallel()
	srv, err := sandbox.Start(storydenemu.New(storydenemu.Options{
		Accounts: []storydenemu.Account{{Handle: sdAdmin, Password: sdPassword, Admin: true}},
		// Only the injected 429s throttle: the run makes about 2,000 calls
		// within the hour, under the default 5,000 but not by much.
		RateLimit: 1_000_000,
	}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	registerSecret("the storyden root password", sdPassword)
	f := &storydenFixture{t: t, mount: newMount(t, "massrevoke"), upstream: srv}
	prefix := f.mount + "/creds/app"
	t.Cleanup(func() {
		if t.Failed() {
			// Leave nothing for the expiration manager to retry against a
			// closed emulator while the other tests run.
			_ = cli(t, "", "lease", "revoke", "-force", "-prefix", prefix)
		}
	})
	mustCLI(t, sdPassword, "write", f.mount+"/config/main", "provider=storyden",
		"base_url="+srv.URL(), "allow_http=true", "username="+sdAdmin, "password=-")
	// Long leases: only the revoke ends them during the test.
	mustCLI(t, "", "write", f.mount+"/roles/app", "connection=main", "ttl=1h", "max_ttl=2h")

	// 1,000 creds reads through the HTTP API, by a pool of workers.
	issueStart := time.Now()
	work := make(chan struct{}, mrLeases)
	for range mrLeases {
		work <- struct{}{}
	}
	close(work)
	var (
		mu     sync.Mutex
		errs   []error
		issued int
		wg     sync.WaitGroup
	)
	for range mrWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				secret, err := vault.client.Logical().Read(prefix)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case secret == nil || secret.LeaseID == "":
					errs = append(errs, errNoLease)
				default:
					issued++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	issueTime := time.Since(issueStart)
	if len(errs) > 0 {
		t.Fatalf("%d of %d creds reads failed, e.g. %v", len(errs), mrLeases, errs[0])
	}
	if live := f.liveKeys(); issued != mrLeases || live != mrLeases {
		t.Fatalf("%d leases issued and %d live keys upstream, want %d of each", issued, live, mrLeases)
	}
	if n := len(mrListLeases(t, prefix)); n != mrLeases {
		t.Fatalf("Vault lists %d leases under %s, want %d", n, prefix, mrLeases)
	}
	t.Logf("issued %d leases through the HTTP API with %d workers in %s", mrLeases, mrWorkers, issueTime.Round(time.Millisecond))

	// The faults, in the order the sandbox tries them: each counts every
	// DELETE on the route, and the first one whose window a request falls in
	// answers it.
	srv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: mrDeleteRoute, Status: http.StatusTooManyRequests, Times: mrWave})
	srv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: mrDeleteRoute, Status: http.StatusTooManyRequests, RetryAfter: "1", Skip: mrBurstSkip, Times: mrBurst})
	for k := 0; k*mrEvery < mrPatternSpan; k++ {
		retryAfter := ""
		if k%2 == 0 {
			retryAfter = "1"
		}
		srv.AddFault(sandbox.Fault{Method: http.MethodDelete, Path: mrDeleteRoute, Status: http.StatusTooManyRequests, RetryAfter: retryAfter, Skip: k*mrEvery + mrEvery/2, Times: 1})
	}
	srv.ResetCalls()

	revokeStart := time.Now()
	mustCLI(t, "", "lease", "revoke", "-prefix", prefix)
	queued := time.Since(revokeStart)
	deadline := revokeStart.Add(mrDeadline)
	var live, leases int
	for {
		live, leases = f.liveKeys(), len(mrListLeases(t, prefix))
		if live == 0 && leases == 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	wall := time.Since(revokeStart)

	applied := mrFaultsApplied(t, srv)
	wave, burst, withRA, withoutRA := applied[0], applied[1], 0, 0
	for k, n := range applied[2:] {
		if k%2 == 0 {
			withRA += n
		} else {
			withoutRA += n
		}
	}
	served := wave + burst + withRA + withoutRA
	deletes := srv.Calls()["DELETE /api/auth/access-keys/{id}"]
	vaultLog := vault.Log()
	failed := mrLogLines(vaultLog, "failed to revoke lease", "lease_id="+prefix+"/")
	irrevocable := mrLogLines(vaultLog, "marking lease as irrevocable", "lease_id="+prefix+"/")
	t.Logf("vault lease revoke -prefix %s (%d leases): queued in %s; %d live keys upstream and %d leases in Vault after %s",
		prefix, mrLeases, queued.Round(time.Millisecond), live, leases, wall.Round(time.Millisecond))
	t.Logf("upstream: %d DELETE requests, %d answered 429: %d in the opening wave (no Retry-After), %d in the second run (Retry-After: 1), "+
		"%d single ones of the 1-in-%d pattern (%d with Retry-After: 1, %d without); %d successful",
		deletes, served, wave, burst, withRA+withoutRA, mrEvery, withRA, withoutRA, deletes-served)
	t.Logf("Vault: %d revoke attempts failed back to its expiration manager, which retried them; %d leases marked irrevocable", failed, irrevocable)

	if live != 0 || leases != 0 {
		t.Fatalf("after %s: %d keys still live upstream and %d leases still listed by Vault (%d revoke failures and %d irrevocable leases in Vault's log)",
			mrDeadline, live, leases, failed, irrevocable)
	}
	if irrevocable != 0 {
		t.Errorf("%d leases were marked irrevocable", irrevocable)
	}
	if served == 0 {
		t.Errorf("no 429 was served: the faults missed the revoke route")
	}
	if failed == 0 {
		t.Errorf("no revoke failed back to Vault: the opening wave of %d 429s should outlast the plugin's retries of the first revokes", mrWave)
	}
	switch ok := deletes - served; {
	case ok < mrLeases:
		t.Errorf("only %d DELETEs got through to Storyden for %d keys", ok, mrLeases)
	case ok > mrLeases:
		// Harmless (a repeat answers 404, which counts as revoked), but
		// worth knowing.
		t.Logf("%d keys were deleted more than once", ok-mrLeases)
	}

	// The CLI agrees: nothing to list under the prefix, which `vault list`
	// says with exit code 2 (and "{}" in JSON format).
	r := cli(t, "", "list", "sys/leases/lookup/"+prefix)
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() != 2 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("vault list sys/leases/lookup/%s should find nothing: %v\n%s%s", prefix, r.err, r.stdout, r.stderr)
	}
	srv.ClearFaults()
}

var errNoLease = errors.New("creds read returned no lease")

// mrListLeases lists the lease ids under prefix through the HTTP API.
func mrListLeases(t *testing.T, prefix string) []any {
	t.Helper()
	secret, err := vault.client.Logical().List("sys/leases/lookup/" + prefix + "/")
	if err != nil {
		t.Fatalf("list sys/leases/lookup/%s: %v", prefix, err)
	}
	if secret == nil || secret.Data == nil {
		return nil
	}
	keys, _ := secret.Data["keys"].([]any)
	return keys
}

// mrFaultsApplied lists how many requests each armed fault answered, in the
// order the faults were added.
func mrFaultsApplied(t *testing.T, srv *sandbox.Server) []int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.URL() + "/_sandbox/faults")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Faults []struct {
			Matched int `json:"matched"`
			Applied int `json:"applied"`
		} `json:"faults"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	applied := make([]int, 0, len(body.Faults))
	for _, f := range body.Faults {
		applied = append(applied, f.Applied)
	}
	if len(applied) < 2 {
		t.Fatalf("the sandbox lists %d faults", len(applied))
	}
	return applied
}

// mrLogLines counts the lines of log that contain every one of parts.
func mrLogLines(log string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}
