package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
)

// rendering is one distinct content of a rendered file: its key=value lines,
// and when the agent wrote it (the file's modification time), so that how
// promptly the test polls does not count.
type rendering struct {
	seen   time.Time
	values map[string]string
}

// renderWatch polls a file the agent renders and records every distinct
// content it holds.
type renderWatch struct {
	path string
	mu   sync.Mutex
	seen []rendering
	last string
}

func watchRendered(ctx context.Context, path string) *renderWatch {
	w := &renderWatch{path: path}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			w.poll()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *renderWatch) poll() {
	// Stat and read one open file, so that the time and the content
	// belong together even if the agent replaces the file meanwhile.
	f, err := os.Open(w.path)
	if err != nil {
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return
	}
	data, err := io.ReadAll(f)
	if err != nil || len(data) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if string(data) == w.last {
		return
	}
	w.last = string(data)
	values := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			values[k] = v
		}
	}
	w.seen = append(w.seen, rendering{seen: info.ModTime(), values: values})
}

// version returns the n-th distinct rendering (0-based), if it was seen.
func (w *renderWatch) version(n int) (rendering, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n >= len(w.seen) {
		return rendering{}, false
	}
	return w.seen[n], true
}

func (w *renderWatch) latest() rendering {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[len(w.seen)-1]
}

// vaultAgent is a `vault agent` process run from the server's binary.
type vaultAgent struct {
	logPath string
	done    chan struct{}
	err     error
}

func (a *vaultAgent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func (a *vaultAgent) log() string {
	data, _ := os.ReadFile(a.logPath)
	return string(data)
}

// startAgent runs `vault agent -config=<dir>/agent.hcl`, bounded by a timeout,
// and kills it when the test ends (printing its log if the test failed).
func startAgent(t *testing.T, dir, config string) *vaultAgent {
	t.Helper()
	configPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &vaultAgent{logPath: filepath.Join(dir, "agent.log"), done: make(chan struct{})}
	logFile, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, vault.Bin, "agent", "-config="+configPath)
	// Only the config points the agent at Vault: no VAULT_* from this process.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		cancel() // kills the agent
		<-a.done
		logFile.Close()
		if t.Failed() {
			t.Logf("--- vault agent log (%v) ---\n%s", a.err, a.log())
		}
	})
	return a
}

// agentProvider is one template the agent renders, and how to check its
// credential upstream.
type agentProvider struct {
	name    string
	mount   string
	ttl     time.Duration                 // the role's ttl and max_ttl, short enough that the
	maxTTL  time.Duration                 // agent renews to the max and fetches anew within the test
	fields  []string                      // the creds fields the template renders
	secrets []string                      // which of them are secret
	works   func(map[string]string) bool  // the credential authenticates upstream
	revoked func(map[string]string) error // nil once deleted upstream (not merely expired)
	watch   *renderWatch
}

func (p *agentProvider) template() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{{ with secret %q }}lease_id={{ .LeaseID }}\n", p.mount+"/creds/app")
	for _, f := range p.fields {
		fmt.Fprintf(&b, "%s={{ .Data.%s }}\n", f, f)
	}
	b.WriteString("{{ end }}")
	return b.String()
}

func TestAgent_RendersLeasedCredentialsAndRerendersBeforeMaxTTL(t *testing.T) {
	t.Parallel()
	sd := newStoryden(t)
	sd.configure()
	sx := newStorx(t)

	providers := []*agentProvider{
		{
			name: "storyden", mount: sd.mount, ttl: 15 * time.Second, maxTTL: 30 * time.Second,
			fields: []string{"access_key_id", "access_key"}, secrets: []string{"access_key"},
			works: func(v map[string]string) bool {
				status, err := storydenemu.ProbeKey(sd.upstream.URL(), v["access_key"])
				return err == nil && status == http.StatusOK
			},
			revoked: func(v map[string]string) error {
				for _, o := range sd.upstream.Objects() {
					if o.ID == v["access_key_id"] {
						if o.State != "revoked" {
							return fmt.Errorf("access key %s is %s", o.ID, o.State)
						}
						return nil
					}
				}
				return fmt.Errorf("access key %s is unknown upstream", v["access_key_id"])
			},
		},
		{
			// StorX refuses access grants that expire within a minute.
			name: "storx", mount: sx.mount, ttl: 15 * time.Second, maxTTL: 65 * time.Second,
			fields: []string{"access_key_id", "secret_access_key"}, secrets: []string{"secret_access_key"},
			works: func(v map[string]string) bool {
				return sx.authEmu.VerifyS3Credential(v["access_key_id"], v["secret_access_key"]) == nil
			},
			revoked: func(v map[string]string) error {
				err := sx.authEmu.VerifyS3Credential(v["access_key_id"], v["secret_access_key"])
				if err == nil || !strings.Contains(err.Error(), "api_key_deleted") {
					return fmt.Errorf("S3 credential %s: %v", v["access_key_id"], err)
				}
				return nil
			},
		},
	}

	mustCLI(t, "", "write", sd.mount+"/roles/app", "connection=main",
		fmt.Sprintf("ttl=%s", providers[0].ttl), fmt.Sprintf("max_ttl=%s", providers[0].maxTTL))
	mustCLI(t, "", "write", sx.mount+"/roles/app", "connection=main",
		fmt.Sprintf("ttl=%s", providers[1].ttl), fmt.Sprintf("max_ttl=%s", providers[1].maxTTL),
		"user_email="+sxUser, "buckets=photos", "permissions=download,list")

	// The agent's token may read both creds paths, renew their leases, and
	// look up and renew itself: nothing else (not even the default policy).
	policy := fmt.Sprintf(`path "%s/creds/app" { capabilities = ["read"] }
path "%s/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }`, sd.mount, sx.mount)
	policyName := sd.mount + "-agent"
	mustCLI(t, policy, "policy", "write", policyName, "-")
	created := cliJSON(t, "token", "create", "-policy="+policyName, "-no-default-policy", "-ttl=1h", "-display-name=agent")
	if created.Auth == nil || created.Auth.ClientToken == "" {
		t.Fatalf("token create: %+v", created)
	}
	token := created.Auth.ClientToken
	registerSecret("the vault agent's token", token)

	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`exit_after_auth = false
log_level = "trace"

vault {
  address = %q
}

auto_auth {
  method {
    type = "token_file"
    config = {
      token_file_path = %q
    }
  }
}
`, vault.Addr, tokenPath)
	watchCtx, stopWatching := context.WithCancel(context.Background())
	t.Cleanup(stopWatching)
	for _, p := range providers {
		source, dest := filepath.Join(dir, p.name+".ctmpl"), filepath.Join(dir, "out", p.name+".env")
		if err := os.WriteFile(source, []byte(p.template()), 0o600); err != nil {
			t.Fatal(err)
		}
		config += fmt.Sprintf(`
template {
  source               = %q
  destination          = %q
  perms                = "0600"
  error_on_missing_key = true
}
`, source, dest)
		p.watch = watchRendered(watchCtx, dest)
	}

	agent := startAgent(t, dir, config)
	t.Cleanup(func() {
		// Runs after the agent is killed and before the emulators close:
		// revoke what it left, so Vault's revokes still reach the upstreams.
		for _, p := range providers {
			if r := cli(t, "", "lease", "revoke", "-prefix", "-sync", p.mount+"/creds/app"); r.err != nil {
				t.Errorf("revoke the leases left under %s: %v\n%s", p.mount, r.err, r.stderr)
			}
		}
		if r := cli(t, "", "token", "revoke", token); r.err != nil {
			t.Errorf("revoke the agent's token: %v\n%s", r.err, r.stderr)
		}
	})
	rendered := func(p *agentProvider, n int) func() bool {
		return func() bool {
			if agent.exited() {
				t.Fatalf("vault agent exited: %v", agent.err)
			}
			_, ok := p.watch.version(n)
			return ok
		}
	}
	start := time.Now()

	// 1. The first credential of each provider is rendered and works upstream.
	firsts := map[string]rendering{}
	issued := map[string]time.Time{}
	for _, p := range providers {
		eventually(t, time.Minute, "the agent's first "+p.name+" rendering", rendered(p, 0))
		first, _ := p.watch.version(0)
		for _, f := range append([]string{"lease_id"}, p.fields...) {
			if first.values[f] == "" {
				t.Fatalf("the %s rendering has no %s", p.name, f)
			}
		}
		for _, f := range p.secrets {
			registerSecret("a "+p.name+" "+f+" rendered by vault agent", first.values[f])
		}
		if !p.works(first.values) {
			t.Fatalf("the first %s credential rendered by the agent does not work upstream", p.name)
		}
		lease := cliJSON(t, "lease", "lookup", first.values["lease_id"])
		issueTime, err := time.Parse(time.RFC3339Nano, fmt.Sprint(lease.Data["issue_time"]))
		if err != nil {
			t.Fatalf("lease lookup %s: %v", first.values["lease_id"], lease.Data)
		}
		firsts[p.name], issued[p.name] = first, issueTime
		t.Logf("%s: first rendering %.1fs after the agent started, lease %s issued %s, expires %v",
			p.name, first.seen.Sub(start).Seconds(), first.values["lease_id"], issueTime.Format(time.RFC3339Nano), lease.Data["expire_time"])
	}

	for _, p := range providers {
		// 2. The agent renews the lease past its ttl and, as the max_ttl
		// nears, renders a new credential, which works, before the old
		// lease ends.
		eventually(t, 2*time.Minute, "the agent's second "+p.name+" rendering", rendered(p, 1))
		first, second := firsts[p.name], func() rendering { r, _ := p.watch.version(1); return r }()
		for _, f := range p.secrets {
			registerSecret("a "+p.name+" "+f+" rendered by vault agent", second.values[f])
		}
		if second.values["lease_id"] == first.values["lease_id"] || second.values["access_key_id"] == first.values["access_key_id"] {
			t.Fatalf("the second %s rendering holds the same lease or credential: %v", p.name, second.values["lease_id"])
		}
		if !p.works(second.values) {
			t.Fatalf("the second %s credential rendered by the agent does not work upstream", p.name)
		}
		age := second.seen.Sub(issued[p.name])
		t.Logf("%s: second rendering %.1fs after the first lease was issued (ttl %s, max_ttl %s)", p.name, age.Seconds(), p.ttl, p.maxTTL)
		if age <= p.ttl {
			t.Fatalf("the %s credential was replaced %.1fs into its lease, within its ttl: the agent did not renew it", p.name, age.Seconds())
		}
		if age >= p.maxTTL {
			t.Fatalf("the %s credential was replaced %.1fs into its lease, after its max_ttl: the file held a dead credential", p.name, age.Seconds())
		}

		// 3. Once the old lease reaches its max, Vault revokes it and the
		// plugin deletes the old credential upstream: deleted, not merely
		// expired.
		var why error
		defer func() {
			if t.Failed() && why != nil {
				t.Logf("the first %s credential's last state upstream: %v", p.name, why)
			}
		}()
		eventually(t, 2*time.Minute, "the upstream revocation of the first "+p.name+" credential", func() bool {
			why = p.revoked(first.values)
			return why == nil && cli(t, "", "lease", "lookup", first.values["lease_id"]).err != nil
		})
		if p.works(first.values) {
			t.Fatalf("the first %s credential still works after its lease ended", p.name)
		}
		t.Logf("%s: first credential revoked upstream by %.1fs after its lease was issued", p.name, time.Since(issued[p.name]).Seconds())
		latest := p.watch.latest()
		for _, f := range p.secrets {
			registerSecret("a "+p.name+" "+f+" rendered by vault agent", latest.values[f])
		}
		if !p.works(latest.values) {
			t.Fatalf("the latest %s credential rendered by the agent does not work upstream", p.name)
		}
	}

	// The agent's log carries none of the credentials it rendered.
	log := agent.log()
	for _, p := range providers {
		for n := 0; ; n++ {
			r, ok := p.watch.version(n)
			if !ok {
				break
			}
			for _, f := range p.secrets {
				if strings.Contains(log, r.values[f]) {
					t.Fatalf("the agent's trace log contains a rendered %s %s", p.name, f)
				}
			}
		}
	}
	t.Logf("agent test took %.1fs", time.Since(start).Seconds())
}
