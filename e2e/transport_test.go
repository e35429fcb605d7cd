package e2e

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Storyden served over HTTPS by a throwaway CA and requiring a client
// certificate, through the real Vault and CLI: the connection is refused,
// with a 400 naming the setting that fixes it, until it trusts the CA and
// presents the certificate; then it issues and revokes. The read shows the
// certificates and never the client key.
func TestTransport_StorydenOverMutualTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	serverTLS := ca.ServerConfig(t, "127.0.0.1")
	serverTLS.ClientAuth, serverTLS.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	srv := testutil.StartTLSEmulator(t, storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{
		{Handle: sdAdmin, Password: sdPassword, Admin: true},
	}}), serverTLS)
	registerSecret("the storyden root password", sdPassword)
	cert, key := ca.ClientCert(t, "vault")
	registerSecret("the client key", strings.Split(key, "\n")[1])
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return "@" + path
	}
	caFile, certFile, keyFile := file("ca.pem", ca.CertPEM), file("client.pem", cert), file("client-key.pem", key)

	mount := newMount(t, "storyden-tls")
	write := func(extra ...string) cliResult {
		args := append([]string{"write", mount + "/config/main", "provider=storyden", "base_url=" + srv.URL(),
			"username=" + sdAdmin, "password=-"}, extra...)
		return cli(t, sdPassword, args...)
	}
	wantCLIError(t, write(), "400", "x509: certificate signed by unknown authority")
	wantCLIError(t, write(), "400", "set ca_cert to the PEM of the CA that issued it")
	wantCLIError(t, write("ca_cert="+caFile), "400", "set client_cert and client_key")
	wantCLIError(t, write("ca_cert="+caFile, "client_cert="+certFile), "400", "client_cert needs client_key")
	if r := cli(t, "", "read", mount+"/config/main"); r.err == nil && strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("a refused write stored the connection: %s", r.stdout)
	}

	if r := write("ca_cert="+caFile, "client_cert="+certFile, "client_key="+keyFile); r.err != nil {
		t.Fatalf("config write with the CA and the client certificate: %v\n%s", r.err, r.stderr)
	}
	raw := mustCLI(t, "", "read", mount+"/config/main")
	var read api.Secret
	if err := json.Unmarshal([]byte(raw), &read); err != nil {
		t.Fatal(err)
	}
	if read.Data["ca_cert"] != strings.TrimSpace(ca.CertPEM) || read.Data["client_cert"] != strings.TrimSpace(cert) || read.Data["allow_http"] != false {
		t.Fatalf("config read does not show the transport settings: %v", read.Data)
	}
	if _, ok := read.Data["client_key"]; ok || strings.Contains(raw, strings.Split(key, "\n")[1]) {
		t.Fatalf("config read shows the client key: %s", raw)
	}

	mustCLI(t, "", "write", mount+"/roles/app", "connection=main", "ttl=5m", "max_ttl=1h")
	secret := cliJSON(t, "read", mount+"/creds/app")
	if secret.LeaseID == "" || liveObjects(srv, "access_key") != 1 {
		t.Fatalf("creds over mutual TLS: lease %q, %d live keys", secret.LeaseID, liveObjects(srv, "access_key"))
	}
	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	if n := liveObjects(srv, "access_key"); n != 0 {
		t.Fatalf("%d live keys upstream after the revoke over mutual TLS", n)
	}
}
