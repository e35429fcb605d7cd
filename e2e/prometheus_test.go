package e2e

// Issue 18: a real Prometheus server scrapes the mount's metrics through
// Vault with a token that may read nothing else.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const prometheusBin = "/usr/bin/prometheus"

// needPrometheus returns Debian's prometheus binary, installing the package
// when it is missing and the test runs as root, or skips the test saying
// why it cannot.
func needPrometheus(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(prometheusBin); err == nil {
		return prometheusBin
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is missing and the test is not root, so it cannot install it: run apt-get install -y prometheus", prometheusBin)
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "prometheus"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("Debian's prometheus package cannot be installed (apt-get %s: %v); the end-to-end scrape is not tested:\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := os.Stat(prometheusBin); err != nil {
		t.Skipf("apt-get installed prometheus but %s is missing: %v", prometheusBin, err)
	}
	return prometheusBin
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs bin on 127.0.0.1 scraping the mount's metrics every
// second with the token in a file, and returns its base URL once it is
// ready.
func startPrometheus(t *testing.T, bin, mount, token string) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultURL, err := url.Parse(vault.Addr)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: apikeys
    metrics_path: /v1/%s/metrics
    params:
      format: [prometheus]
    authorization:
      credentials_file: %s
    static_configs:
      - targets: [%q]
`, mount, tokenFile, vaultURL.Host)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", out)
		}
	})
	base := "http://" + addr
	eventually(t, 60*time.Second, "prometheus ready on "+addr, func() bool {
		select {
		case <-exited:
			out, _ := os.ReadFile(logFile.Name())
			t.Fatalf("prometheus exited:\n%s", out)
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// promQuery runs an instant query and returns the value of its only
// series, "" while there is none.
func promQuery(t *testing.T, base, query string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", query, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return ""
	}
	v, _ := body.Data.Result[0].Value[1].(string)
	return v
}

func TestPrometheus_ScrapesTheMount(t *testing.T) {
	bin := needPrometheus(t)
	f := newStoryden(t)
	f.configure()

	policy := "metrics-" + f.mount
	mustCLI(t, fmt.Sprintf(`path "%s/metrics" { capabilities = ["read"] }`, f.mount), "policy", "write", policy, "-")
	token := cliJSON(t, "token", "create", "-policy="+policy, "-no-default-policy").Auth.ClientToken

	// The scrape Prometheus makes, by hand: raw text with the token alone.
	req, _ := http.NewRequest(http.MethodGet, vault.Addr+"/v1/"+f.mount+"/metrics?format=prometheus", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") ||
		!strings.Contains(string(text), "# TYPE vault_apikeys_issues_total counter") {
		t.Fatalf("scrape: HTTP %d, %s:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), text)
	}
	// Without the parameter: JSON.
	if families, _ := cliJSON(t, "read", f.mount+"/metrics").Data["metrics"].([]any); len(families) == 0 {
		t.Fatalf("read %s/metrics returned no metric families", f.mount)
	}
	// The token reads the metrics and nothing else.
	req, _ = http.NewRequest(http.MethodGet, vault.Addr+"/v1/"+f.mount+"/creds/app", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("creds with the metrics token: %v %v, want 403", resp, err)
	}

	base := startPrometheus(t, bin, f.mount, token)
	for range 3 {
		f.issue()
	}
	issued := `vault_apikeys_issues_total{job="apikeys",connection="main",provider="storyden",role="app",outcome="success"}`
	eventually(t, 60*time.Second, "prometheus sees 3 issues", func() bool { return promQuery(t, base, issued) == "3" })
	created := `sum(vault_apikeys_upstream_request_duration_seconds_bucket{job="apikeys",provider="storyden",op="create",le="+Inf"})`
	eventually(t, 60*time.Second, "prometheus sees the upstream latency histogram", func() bool { return promQuery(t, base, created) == "3" })
	live := `vault_apikeys_live_credentials{job="apikeys",connection="main",provider="storyden",role="app"}`
	eventually(t, 60*time.Second, "prometheus sees 3 live credentials", func() bool { return promQuery(t, base, live) == "3" })
	quantile := `histogram_quantile(0.5, sum by (le) (vault_apikeys_upstream_request_duration_seconds_bucket{job="apikeys",op="create"}))`
	if v := promQuery(t, base, quantile); v == "" || v == "NaN" {
		t.Fatalf("median create latency is %q", v)
	}
	if up := promQuery(t, base, `up{job="apikeys"}`); up != "1" {
		t.Fatalf("up = %q", up)
	}
}
