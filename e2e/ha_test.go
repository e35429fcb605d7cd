//go:build long

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/devvault"
)

// haWarmReads is how many creds reads through the surviving standby must
// succeed before the active node is killed.
const haWarmReads = 10

// raftCluster is the 3-node cluster scripts/raft-cluster.sh started.
type raftCluster struct {
	t      *testing.T
	runDir string
	token  string
	leader string   // the active node's address at start
	nodes  []string // every node's API address, node1 first
}

// startRaftCluster runs scripts/raft-cluster.sh start on six free loopback
// ports, with the plugin built into dir, and stops the cluster in t.Cleanup.
func startRaftCluster(t *testing.T, dir string) *raftCluster {
	t.Helper()
	plugin, err := buildPlugin(filepath.Join(dir, "build"))
	if err != nil {
		t.Fatal(err)
	}
	c := &raftCluster{t: t, runDir: filepath.Join(dir, "cluster")}
	var logs []string
	for n := 1; n <= 3; n++ {
		logs = append(logs, filepath.Join(c.runDir, fmt.Sprintf("node%d", n), "vault.log"))
	}
	t.Cleanup(c.stop)
	dumpLogsOnFailure(t, logs...)

	ports := map[int]bool{}
	var list []string
	for len(list) < 6 {
		port, err := devvault.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if !ports[port] {
			ports[port] = true
			list = append(list, strconv.Itoa(port))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/raft-cluster.sh", "start")
	cmd.Env = append(os.Environ(), "VAULT_BIN="+vault.Bin, "RUN_DIR="+c.runDir, "PLUGIN_BINARY="+plugin,
		"PLUGIN_VERSION="+pluginVersion, "PLUGIN_ENV="+walMinAgeEnv+"=5s",
		"RAFT_PORTS="+strings.Join(list, " "), "VAULT_LOG_LEVEL=debug")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("raft-cluster.sh start: %v\n%s", err, stderr.String())
	}
	t.Logf("raft-cluster.sh: %s", strings.TrimSpace(stderr.String()))
	if m := regexp.MustCompile(`export VAULT_ADDR=(\S+) VAULT_TOKEN=(\S+)`).FindStringSubmatch(string(out)); m != nil {
		c.leader, c.token = m[1], m[2]
	}
	if m := regexp.MustCompile(`export VAULT_CLUSTER_NODES="([^"]+)"`).FindStringSubmatch(string(out)); m != nil {
		c.nodes = strings.Fields(m[1])
	}
	if c.leader == "" || c.token == "" || len(c.nodes) != 3 {
		t.Fatalf("raft-cluster.sh start printed no leader, token and three nodes:\n%s", out)
	}
	return c
}

// stop runs raft-cluster.sh stop, then SIGKILLs any node group it left.
func (c *raftCluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/raft-cluster.sh", "stop")
	cmd.Env = append(os.Environ(), "RUN_DIR="+c.runDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Logf("raft-cluster.sh stop: %v\n%s", err, out)
	}
	for n := 1; n <= 3; n++ {
		if pid := c.pid(n); pid > 0 {
			killGroup(pid)
		}
	}
}

// pid is node n's process (and process group) id, or 0 once it is stopped.
func (c *raftCluster) pid(n int) int {
	data, err := os.ReadFile(filepath.Join(c.runDir, fmt.Sprintf("node%d", n), "vault.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func (c *raftCluster) nodeIndex(addr string) int {
	for i, a := range c.nodes {
		if a == addr {
			return i + 1
		}
	}
	c.t.Fatalf("%s is none of the nodes %v", addr, c.nodes)
	return 0
}

// health is what sys/health says at addr; ok is false if nothing answers.
func (c *raftCluster) health(addr string) (*api.HealthResponse, bool) {
	h, err := apiClient(c.t, addr, "").Sys().Health()
	return h, err == nil
}

// active waits (bounded) until one of nodes is the active node and every
// other node that answers names it as the leader, and returns it.
func (c *raftCluster) active(nodes []string, limit time.Duration) string {
	c.t.Helper()
	var found string
	eventually(c.t, limit, "an active node the others agree on", func() bool {
		found = ""
		for _, addr := range nodes {
			if h, ok := c.health(addr); ok && !h.Sealed && !h.Standby {
				found = addr
			}
		}
		if found == "" {
			return false
		}
		for _, addr := range nodes {
			if addr == found {
				continue
			}
			leader, err := apiClient(c.t, addr, "").Sys().Leader()
			if err != nil || leader.LeaderAddress != found {
				return false
			}
		}
		return true
	})
	return found
}

// leadershipTrouble tells errors of a cluster between leaders (no active
// node, or one the asked node cannot reach yet) from every other error.
func leadershipTrouble(msg string) bool {
	for _, s := range []string{"Code: 307", "local node not active", "not the leader", "active cluster node not found",
		"leadership lost", "connection refused"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// mustOnActive runs the CLI on the active node among nodes. Errors of a
// cluster between leaders are retried on the then active node for up to a
// minute; any other error fails the test. It returns the node that answered.
// mountStoryden enables the plugin at mount through the active node and
// writes connection "main" on upstream.
func (c *raftCluster) mountStoryden(t *testing.T, mount string, upstream *sandbox.Server) {
	t.Helper()
	c.mustOnActive(t, c.nodes, "", "secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName)
	c.mustOnActive(t, c.nodes, sdPassword, "write", mount+"/config/main", "provider=storyden",
		"base_url="+upstream.URL(), "allow_http=true", "username="+sdAdmin, "password=-")
}

func (c *raftCluster) mustOnActive(t *testing.T, nodes []string, stdin string, args ...string) (string, string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		addr := c.active(nodes, time.Minute)
		r := runVault(addr, c.token, stdin, 2*time.Minute, nil, args...)
		if r.err == nil {
			return addr, r.stdout
		}
		if !leadershipTrouble(r.stderr) || time.Now().After(deadline) {
			t.Fatalf("vault %s (at %s): %v\n%s", strings.Join(args, " "), addr, r.err, r.stderr)
		}
		t.Logf("vault %s at %s, retried on the active node: %s", strings.Join(args, " "), addr, shortError(fmt.Errorf("%s", r.stderr)))
		time.Sleep(time.Second)
	}
}

// readThrough reads path through the node at addr, retrying (for up to a
// minute) only errors of a cluster between leaders.
func (c *raftCluster) readThrough(t *testing.T, addr, path string) *api.Secret {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := runVault(addr, c.token, "", 2*time.Minute, nil, "read", path)
		if r.err == nil {
			var secret api.Secret
			if err := json.Unmarshal([]byte(r.stdout), &secret); err != nil {
				t.Fatalf("vault read %s printed no JSON secret: %v", path, err)
			}
			return &secret
		}
		if !leadershipTrouble(r.stderr) || time.Now().After(deadline) {
			t.Fatalf("vault read %s (at %s): %v\n%s", path, addr, r.err, r.stderr)
		}
		t.Logf("vault read %s at %s, retried: %s", path, addr, shortError(fmt.Errorf("%s", r.stderr)))
		time.Sleep(time.Second)
	}
}

func without(nodes []string, addr string) []string {
	var out []string
	for _, a := range nodes {
		if a != addr {
			out = append(out, a)
		}
	}
	return out
}

// attempt is one creds read of the load loop.
type attempt struct {
	start, end time.Time
	leaseID    string
	keyID      string
	err        error
}

// TestHA_StandbyForwardsAndFailoverOrphansNothing runs the plugin on a
// 3-node Raft cluster: creds issued through a standby (Vault forwards the
// request to the active node), the active node SIGKILLed while a loop keeps
// issuing through a surviving node, then every lease revoked through the new
// leader. Nothing may stay live upstream, and no lease may remain.
func TestHA_StandbyForwardsAndFailoverOrphansNothing(t *testing.T) {
	const mount = "storyden"
	c := startRaftCluster(t, t.TempDir())
	upstream := startStorydenUpstream(t)
	c.mountStoryden(t, mount, upstream)
	c.mustOnActive(t, c.nodes, "", "write", mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")

	active := c.active(c.nodes, time.Minute)
	standbys := without(c.nodes, active)

	// Through a standby: the request is forwarded to the active node (the CLI
	// follows no redirect, so a success is the standby's forwarded answer).
	viaStandby := c.readThrough(t, standbys[0], mount+"/creds/app")
	first := attempt{leaseID: viaStandby.LeaseID}
	first.keyID, _ = viaStandby.Data["access_key_id"].(string)
	key, _ := viaStandby.Data["access_key"].(string)
	if !strings.HasPrefix(first.leaseID, mount+"/creds/app/") || first.keyID == "" {
		t.Fatalf("creds through the standby %s: lease %q, key id %q", standbys[0], first.leaseID, first.keyID)
	}
	if status, err := storydenemu.ProbeKey(upstream.URL(), key); err != nil || status != http.StatusOK {
		t.Fatalf("the key issued through the standby does not authenticate: %d %v", status, err)
	}
	if h, ok := c.health(standbys[0]); !ok || !h.Standby {
		t.Fatalf("%s is not a standby", standbys[0])
	}
	t.Logf("creds issued through standby %s, forwarded to the active node %s", standbys[0], active)

	// The load: creds through the surviving standby, one at a time, across
	// the failover. Bounded: at most 3000 reads, 90 s after the kill.
	survivor := apiClient(t, standbys[0], c.token)
	killed := make(chan time.Time, 1)
	results := make(chan []attempt, 1)
	abandon := make(chan struct{}) // the test ended early
	defer close(abandon)
	// warm is closed once haWarmReads reads succeeded before the kill: the
	// kill waits for it, so the load is under way whatever the machine's
	// speed.
	warm := make(chan struct{})
	go func() {
		var out []attempt
		var killAt time.Time
		okBefore := 0
		for i := 0; i < 3000; i++ {
			select {
			case killAt = <-killed:
			case <-abandon:
				return
			default:
			}
			// Past the kill: go on for at least 8 s, and for 2 s of service
			// after the first success, but never more than 90 s.
			if !killAt.IsZero() {
				var firstOK time.Time
				for _, a := range out {
					if a.err == nil && a.start.After(killAt) {
						firstOK = a.end
						break
					}
				}
				since := time.Since(killAt)
				if since > 90*time.Second || (since > 8*time.Second && !firstOK.IsZero() && time.Since(firstOK) > 2*time.Second) {
					break
				}
			}
			a := attempt{start: time.Now()}
			a.leaseID, a.keyID, a.err = readCreds(survivor, mount+"/creds/app")
			a.end = time.Now()
			out = append(out, a)
			if a.err == nil && killAt.IsZero() {
				if okBefore++; okBefore == haWarmReads {
					close(warm)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		results <- out
	}()

	select {
	case <-warm:
	case <-time.After(3 * time.Minute):
		t.Fatalf("fewer than %d creds reads through %s succeeded within 3 minutes, before any kill", haWarmReads, standbys[0])
	}
	if h, ok := c.health(active); !ok || h.Standby {
		t.Fatalf("%s stopped being the active node before the kill: the cluster changed leaders on its own", active)
	}
	activeNode := c.nodeIndex(active)
	pid := c.pid(activeNode)
	if pid == 0 {
		t.Fatal("no pid for the active node")
	}
	killGroup(pid)
	killAt := time.Now()
	killed <- killAt
	t.Logf("SIGKILLed the active node %s (node%d, pid %d) mid-load", active, activeNode, pid)

	var load []attempt
	select {
	case load = <-results:
	case <-time.After(3 * time.Minute):
		t.Fatal("the load loop did not end within 3 minutes")
	}

	// A new leader among the survivors, which the other survivor follows.
	newLeader := c.active(standbys, time.Minute)
	other := without(standbys, newLeader)[0]
	t.Logf("new active node: %s (confirmed %s after the kill, once the load ended)", newLeader, time.Since(killAt).Round(time.Second))

	report := summarize(load, killAt)
	t.Log(report.text)
	if report.okBefore == 0 || report.okAfter == 0 {
		t.Fatalf("the load needs successes before and after the kill: %d before, %d after", report.okBefore, report.okAfter)
	}

	// Through the standby of the new leader, forwarding works again.
	again := c.readThrough(t, other, mount+"/creds/app")
	second := attempt{leaseID: again.LeaseID}
	second.keyID, _ = again.Data["access_key_id"].(string)
	if second.leaseID == "" || second.keyID == "" {
		t.Fatalf("creds through %s after the failover: lease %q, key id %q", other, second.leaseID, second.keyID)
	}
	obtained := []attempt{first, second}
	for _, a := range load {
		if a.err == nil {
			obtained = append(obtained, a)
		}
	}
	keyOfLease := map[string]bool{}
	known := map[string]bool{}
	for _, a := range obtained {
		keyOfLease[a.keyID] = true
		known[a.leaseID] = true
	}

	// Leases Vault holds that no client heard of: a response lost in the kill.
	var unknown []string
	for _, id := range leasesUnder(t, apiClient(t, c.active(standbys, time.Minute), c.token), mount+"/creds/app/") {
		if !known[id] {
			unknown = append(unknown, id)
		}
	}
	// Keys live upstream that no obtained lease holds: created by a request
	// the kill interrupted, which only the WAL knows of (or a lost response).
	var orphans []string
	for _, o := range liveKeyObjects(upstream) {
		if !keyOfLease[o.ID] {
			orphans = append(orphans, o.Name)
		}
	}
	t.Logf("%d leases obtained; Vault holds %d more no client heard of; %d keys live upstream now belong to no obtained lease: %v",
		len(obtained), len(unknown), len(orphans), orphans)

	// Revoke every lease obtained through the new leader, then anything left
	// under the role's prefix.
	revokeStart := time.Now()
	answered := map[string]int{}
	for _, a := range obtained {
		addr, _ := c.mustOnActive(t, standbys, "", "lease", "revoke", "-sync", a.leaseID)
		answered[addr]++
	}
	addr, _ := c.mustOnActive(t, standbys, "", "lease", "revoke", "-prefix", "-sync", mount+"/creds/app")
	answered[addr]++
	t.Logf("revoked %d leases one by one and the rest by prefix in %s, through %v",
		len(obtained), time.Since(revokeStart).Round(time.Millisecond), answered)

	leader := apiClient(t, c.active(standbys, time.Minute), c.token)
	if leases := leasesUnder(t, leader, mount+"/creds/app/"); len(leases) != 0 {
		t.Fatalf("leases left after revoking everything: %v", leases)
	}
	for _, a := range obtained {
		if _, err := leader.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": a.leaseID}); err == nil || !strings.Contains(err.Error(), "invalid lease") {
			t.Fatalf("lease %s after its revoke: want invalid lease, got %v", a.leaseID, err)
		}
	}
	// Keys only a WAL entry knows of go with Vault's rollback (a tick a
	// minute, entries older than 5 s here).
	waitStart := time.Now()
	for live := liveKeyObjects(upstream); len(live) > 0; live = liveKeyObjects(upstream) {
		if time.Since(waitStart) > 3*time.Minute {
			var names []string
			for _, o := range live {
				names = append(names, o.Name)
			}
			inventory := runVault(c.active(standbys, time.Minute), c.token, "", time.Minute, nil, "list", mount+"/inventory/main")
			t.Fatalf("%d keys still live upstream 3m after every lease was revoked: %v\nthe plugin's inventory: %s%s",
				len(live), names, inventory.stdout, inventory.stderr)
		}
		time.Sleep(time.Second)
	}
	if len(orphans) > 0 {
		t.Logf("the %d orphaned keys were deleted %s after the revokes", len(orphans), time.Since(waitStart).Round(time.Second))
	}
	created := len(upstream.Objects())
	t.Logf("upstream: %d keys created in all, 0 live", created)
	if created < len(obtained) {
		t.Fatalf("%d keys upstream for %d leases", created, len(obtained))
	}
	var logs []string
	for n := 1; n <= 3; n++ {
		logs = append(logs, filepath.Join(c.runDir, fmt.Sprintf("node%d", n), "vault.log"))
	}
	assertNoSecretsInLogs(t, logs...)
}

// readCreds issues one credential. A standby that cannot forward answers
// 307 to the active node it knows of; the client does not follow it.
func readCreds(client *api.Client, path string) (leaseID, keyID string, err error) {
	resp, err := client.Logical().ReadRaw(path)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("Code: %d, redirect to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	secret, err := api.ParseSecret(resp.Body)
	if err != nil || secret == nil || secret.LeaseID == "" {
		return "", "", fmt.Errorf("no lease in the answer: %v", err)
	}
	keyID, _ = secret.Data["access_key_id"].(string)
	return secret.LeaseID, keyID, nil
}

type loadReport struct {
	okBefore, okAfter, failed int
	text                      string
}

// summarize describes the load around the kill: what succeeded before, how
// long reads failed, and when the first one succeeded again.
func summarize(load []attempt, killAt time.Time) loadReport {
	var r loadReport
	var firstFail, lastFail, firstOKAfter time.Time
	errs := map[string]int{}
	for _, a := range load {
		switch {
		case a.err != nil:
			r.failed++
			if firstFail.IsZero() {
				firstFail = a.start
			}
			lastFail = a.end
			errs[shortError(a.err)]++
		case a.start.After(killAt):
			r.okAfter++
			if firstOKAfter.IsZero() {
				firstOKAfter = a.end
			}
		default:
			r.okBefore++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "load through the surviving node: %d reads, %d ok before the kill (or in flight across it), %d ok after, %d failed",
		len(load), r.okBefore, r.okAfter, r.failed)
	if r.failed > 0 {
		fmt.Fprintf(&b, "; failures from %+.2fs to %+.2fs relative to the kill", firstFail.Sub(killAt).Seconds(), lastFail.Sub(killAt).Seconds())
	}
	if !firstOKAfter.IsZero() {
		fmt.Fprintf(&b, "; first success after the kill at %+.2fs", firstOKAfter.Sub(killAt).Seconds())
	}
	for msg, n := range errs {
		fmt.Fprintf(&b, "\n  %d× %s", n, msg)
	}
	r.text = b.String()
	return r
}

// shortError keeps the part of a Vault API error that says what failed.
func shortError(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if i := strings.Index(msg, "Code: "); i >= 0 {
		msg = msg[i:]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// TestHA_RoleChangesOnTheActiveReachCredsThroughAStandby: the plugin caches
// roles and connections; writes on the active node must be seen by the next
// creds read through a standby (forwarded to the active node, whose cache
// the write dropped). The role is read twice before each change, so the
// change meets a warm cache.
func TestHA_RoleChangesOnTheActiveReachCredsThroughAStandby(t *testing.T) {
	const mount = "storyden"
	c := startRaftCluster(t, t.TempDir())
	upstream := startStorydenUpstream(t)
	c.mountStoryden(t, mount, upstream)

	standby := without(c.nodes, c.active(c.nodes, time.Minute))[0]
	for _, ttl := range []time.Duration{5 * time.Minute, 7 * time.Minute, 3 * time.Minute} {
		c.mustOnActive(t, c.nodes, "", "write", mount+"/roles/app", "connection=main", "ttl="+ttl.String(), "max_ttl=1h")
		for range 2 {
			secret := c.readThrough(t, standby, mount+"/creds/app")
			if got := time.Duration(secret.LeaseDuration) * time.Second; got != ttl {
				t.Fatalf("creds through standby %s after the role's ttl became %s: lease of %s", standby, ttl, got)
			}
		}
	}
	// A deleted role is gone for the standby's next read too.
	c.mustOnActive(t, c.nodes, "", "delete", mount+"/roles/app")
	if r := runVault(standby, c.token, "", 2*time.Minute, nil, "read", mount+"/creds/app"); r.err == nil || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("creds of a deleted role through standby %s: %v %s %s", standby, r.err, r.stdout, r.stderr)
	}
	c.mustOnActive(t, c.nodes, "", "lease", "revoke", "-prefix", "-sync", mount+"/creds/app")
	if live := liveKeyObjects(upstream); len(live) != 0 {
		t.Fatalf("live keys after revoking every lease: %+v", live)
	}
}
