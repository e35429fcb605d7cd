//go:build long

package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// TestCrash_WALRollbackDeletesKeyCreatedBeforeTheLeaseWasStored kills Vault
// (SIGKILL) after Storyden created an access key but before the plugin heard
// back, so before any lease existed: only the plugin's WAL entry knows of the
// key. After a restart on the same storage, Vault's rollback manager (a tick
// a minute) must hand the entry to the plugin's WALRollback, which deletes
// the key upstream.
func TestCrash_WALRollbackDeletesKeyCreatedBeforeTheLeaseWasStored(t *testing.T) {
	const mount = "storyden"
	dir := t.TempDir()
	upstream := startStorydenUpstream(t)
	v := newFileVault(t, dir)
	plugin, err := buildPlugin(filepath.Join(dir, "plugins"))
	if err != nil {
		t.Fatal(err)
	}

	v.start()
	v.initialize()
	v.unseal()
	// The rollback's minimum age goes from 10 minutes to 5 seconds, through
	// the plugin's environment as registered in the catalog.
	v.must("", "plugin", "register", "-sha256="+sha256File(t, plugin), "-version="+pluginVersion,
		"-command="+pluginName, "-env="+walMinAgeEnv+"=5s", "secret", pluginName)
	v.must("", "secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName)
	configureStoryden(t, v.addr, v.token, mount, upstream)

	// Storyden creates the key at once but holds its answer far past the
	// crash, so that the kill never races the answer.
	upstream.AddFault(sandbox.Fault{Method: http.MethodPost, Path: "/api/auth/access-keys", LatencyAfterMS: 120_000, Times: 1})
	read := make(chan cliResult, 1)
	go func() {
		// No retries: a retry could land on the restarted server and issue a second key.
		read <- runVault(v.addr, v.token, "", time.Minute, []string{"VAULT_MAX_RETRIES=0"}, "read", mount+"/creds/app")
	}()
	var orphan sandbox.Object
	eventually(t, 30*time.Second, "the access key appearing upstream", func() bool {
		live := liveKeyObjects(upstream)
		if len(live) == 1 {
			orphan = live[0]
		}
		return len(live) == 1
	})
	v.crash()
	select {
	case r := <-read:
		if r.err == nil {
			t.Fatalf("the creds read succeeded although Vault was killed mid-request: %s", r.stdout)
		}
		t.Logf("the creds read failed as Vault died: %s", firstLine(r.stderr))
	case <-time.After(30 * time.Second):
		t.Fatal("the creds read did not return 30s after Vault was killed")
	}
	if !strings.HasPrefix(orphan.Name, "vault-app-") {
		t.Fatalf("the key upstream is not the plugin's: %+v", orphan)
	}

	v.start()
	v.unseal()
	restarted := time.Now()
	if !isLive(upstream, orphan.ID) {
		t.Fatal("the key was gone before the rollback could have run: the test proves nothing")
	}
	// Rollback ticks once a minute; allow three.
	eventually(t, 3*time.Minute, "WALRollback deleting the orphaned key "+orphan.Name, func() bool {
		return !isLive(upstream, orphan.ID)
	})
	t.Logf("the orphaned key %s was deleted %s after the restart", orphan.Name, time.Since(restarted).Round(time.Second))

	// It was the WAL rollback: the plugin says so, and it deleted exactly once.
	if !strings.Contains(v.log(), "removed what an interrupted issue left upstream") {
		t.Fatal("the plugin did not log the rollback")
	}
	if n := upstream.Calls()["DELETE /api/auth/access-keys/{id}"]; n != 1 {
		t.Fatalf("%d deletes upstream, want the rollback's one", n)
	}
	if n := len(upstream.Objects()); n != 1 {
		t.Fatalf("%d keys upstream, want the one the interrupted read created", n)
	}
	// No lease was ever stored for it, and the WAL entry is gone with it.
	if leases := leasesUnder(t, v.client(), mount+"/creds/app/"); len(leases) != 0 {
		t.Fatalf("leases exist after the crash: %v", leases)
	}
	if r := v.cli("", "list", mount+"/inventory/main"); r.err == nil && strings.Contains(r.stdout, orphan.Name) {
		t.Fatalf("the inventory still lists %s: %s", orphan.Name, r.stdout)
	}
	// The engine works after the restart.
	secret := v.must("", "read", mount+"/creds/app")
	if !strings.Contains(secret, `"lease_id": "`+mount+`/creds/app/`) {
		t.Fatalf("creds after the restart: %s", secret)
	}
	v.must("", "lease", "revoke", "-prefix", "-sync", mount+"/creds/app")
	if live := liveKeyObjects(upstream); len(live) != 0 {
		t.Fatalf("live keys after revoking every lease: %+v", live)
	}
	assertNoSecretsInLogs(t, v.logPath)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
