package backend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// A bad transport setting is a 400 that names the field and says what to
// give instead, stores nothing, and never quotes client_key or a proxy
// password.
func TestConfig_BadTransportSettingsAre400(t *testing.T) {
	ca := testutil.NewCA(t)
	cert, key := ca.ClientCert(t, "vault")
	_, otherKey := ca.ClientCert(t, "other")
	https := map[string]any{"base_url": "https://forum.example.com", "allow_http": nil, "verify_connection": false}
	with := func(patch map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range https {
			out[k] = v
		}
		for k, v := range patch {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name  string
		patch map[string]any
		want  string
	}{
		{"http base_url", map[string]any{"allow_http": nil}, "uses http://, so the root credential and every issued credential would cross the network in clear: use the https:// address, or set allow_http=true"},
		{"http base_url, allow_http=false", map[string]any{"allow_http": false}, "set allow_http=true if this is a test sandbox"},
		{"ca_cert not PEM", with(map[string]any{"ca_cert": "not a certificate"}), "ca_cert holds no PEM block"},
		{"ca_cert holding a key", with(map[string]any{"ca_cert": key}), `ca_cert block 1 is a "PRIVATE KEY", not a CERTIFICATE`},
		{"ca_cert corrupt", with(map[string]any{"ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}), "ca_cert certificate 1 does not parse"},
		{"client_cert alone", with(map[string]any{"client_cert": cert}), "client_cert needs client_key"},
		{"client_key alone", with(map[string]any{"client_key": key}), "client_key needs client_cert"},
		{"key of another cert", with(map[string]any{"client_cert": cert, "client_key": otherKey}), "client_cert and client_key are not a usable pair"},
		{"cert and key swapped", with(map[string]any{"client_cert": key, "client_key": cert}), "client_cert and client_key are not a usable pair"},
		{"key not PEM", with(map[string]any{"client_cert": cert, "client_key": "secret-key-text"}), "client_cert and client_key are not a usable pair"},
		{"tls_server_name with scheme", with(map[string]any{"tls_server_name": "https://api.example.com"}), "tls_server_name \"https://api.example.com\" is not a host name"},
		{"tls_server_name with port", with(map[string]any{"tls_server_name": "api.example.com:443"}), "without scheme, port or path"},
		{"proxy_url ftp", with(map[string]any{"proxy_url": "ftp://u:secret-pw@proxy.example.com"}), "proxy_url is not valid: give the proxy's address such as http://proxy.internal:3128"},
		{"proxy_url unparsable", with(map[string]any{"proxy_url": "http://u:secret-pw@proxy example.com:%zz"}), "proxy_url is not valid"},
		{"proxy_url with path", with(map[string]any{"proxy_url": "http://u:secret-pw@proxy.example.com:3128/x"}), "proxy_url http://u:xxxxx@proxy.example.com:3128/x must be only scheme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			data := env.storydenConfig(nil)
			for k, v := range tc.patch {
				if v == nil {
					delete(data, k)
				} else {
					data[k] = v
				}
			}
			env.mustBadRequest(logical.CreateOperation, "config/c", data, tc.want)
			resp, _ := env.request(logical.CreateOperation, "config/c", data)
			msg := respError(resp)
			for _, secret := range []string{pemBody(key), pemBody(otherKey), "secret-key-text", "secret-pw", adminPassword} {
				if strings.Contains(msg, secret) {
					t.Fatalf("the error quotes a secret: %s", msg)
				}
			}
			if keys, _ := env.storage.List(context.Background(), "config/"); len(keys) != 0 {
				t.Fatalf("a failed write stored %v", keys)
			}
		})
	}
}

// StorX's auth_url receives the grant passphrase: it is held to base_url's
// rule.
func TestConfig_HTTPAuthURLNeedsAllowHTTP(t *testing.T) {
	env := newTestEnv(t)
	data := map[string]any{"provider": "storx", "email": "dev@example.com", "password": "developer-password", "passphrase": "grant passphrase",
		"auth_url": "http://auth.example.com", "verify_connection": false}
	env.mustBadRequest(logical.CreateOperation, "config/sx", data, "auth_url http://auth.example.com uses http://")
	data["allow_http"] = true
	env.mustOK(logical.CreateOperation, "config/sx", data)
	env.mustBadRequest(logical.UpdateOperation, "config/sx", map[string]any{"allow_http": false, "verify_connection": false}, "auth_url http://auth.example.com uses http://")
	env.mustOK(logical.UpdateOperation, "config/sx", map[string]any{"allow_http": false, "auth_url": "https://auth.example.com", "verify_connection": false})
}

// Reads show every transport setting but client_key, and proxy_url without
// its password; client_key is Sensitive.
func TestConfig_ReadShowsTransportButNeverClientKey(t *testing.T) {
	env := newTestEnv(t)
	ca := testutil.NewCA(t)
	cert, key := ca.ClientCert(t, "vault")
	env.mustOK(logical.CreateOperation, "config/main", env.storydenConfig(map[string]any{
		"verify_connection": false, "ca_cert": ca.CertPEM, "client_cert": cert, "client_key": key,
		"tls_server_name": "forum.internal", "proxy_url": "http://vault:proxy-secret@proxy.internal:3128",
	}))
	resp := env.mustOK(logical.ReadOperation, "config/main", nil)
	want := map[string]any{
		"ca_cert": ca.CertPEM, "client_cert": cert, "tls_server_name": "forum.internal",
		"proxy_url": "http://vault:xxxxx@proxy.internal:3128", "allow_http": true,
	}
	for k, v := range want {
		if s, ok := v.(string); ok {
			v = strings.TrimSpace(s)
		}
		if got := resp.Data[k]; got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if _, ok := resp.Data["client_key"]; ok {
		t.Error("config read returned client_key")
	}
	for k, v := range resp.Data {
		if s := fmt.Sprint(v); strings.Contains(s, "proxy-secret") || strings.Contains(s, pemBody(key)) {
			t.Errorf("config read field %s carries a secret", k)
		}
	}
	fields := env.b.Route("config/x").Fields
	for name, sensitive := range map[string]bool{"client_key": true, "client_cert": false, "ca_cert": false, "proxy_url": false} {
		if fields[name].DisplayAttrs == nil || fields[name].DisplayAttrs.Sensitive != sensitive {
			t.Errorf("%s Sensitive = %v, want %v", name, fields[name].DisplayAttrs, sensitive)
		}
	}
	// An update that leaves client_key out keeps it, and is checked with it.
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"verify_connection": false, "client_cert": cert})
	_, otherKey := ca.ClientCert(t, "other")
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{"verify_connection": false, "client_key": otherKey}, "not a usable pair")
	// Both emptied: no mutual TLS.
	env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"verify_connection": false, "client_cert": "", "client_key": ""})
	if entry, _ := getConnection(context.Background(), env.storage, "main"); entry.Transport.ClientKey != "" || entry.Transport.ClientCert != "" {
		t.Error("emptying client_cert and client_key kept them")
	}
}

// A connection stored with an http:// base_url before allow_http existed
// keeps issuing and revoking, and so do updates that leave base_url alone;
// writing base_url or allow_http=false applies the rule. Reads and writes
// warn.
func TestConfig_HTTPConnectionStoredBeforeAllowHTTPKeepsWorking(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	entry, err := getConnection(context.Background(), env.storage, "main")
	if err != nil {
		t.Fatal(err)
	}
	entry.Transport = transportSettings{}
	if err := writeStored(context.Background(), env.storage, configStoragePrefix+"main", "connection", entry); err != nil {
		t.Fatal(err)
	}
	raw, _ := env.storage.Get(context.Background(), configStoragePrefix+"main")
	if strings.Contains(string(raw.Value), `"transport"`) {
		t.Fatalf("an entry without transport settings still stores the key: %s", raw.Value)
	}
	env.b.Invalidate(context.Background(), configStoragePrefix+"main")

	if err := env.revoke(env.issue()); err != nil {
		t.Fatalf("revoke through the old http connection: %v", err)
	}
	resp := env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allowed_roles": "*"})
	if resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "predates allow_http and keeps working") {
		t.Errorf("an update of an old http connection does not warn: %#v", resp)
	}
	if read := env.mustOK(logical.ReadOperation, "config/main", nil); len(read.Warnings) != 1 {
		t.Errorf("a read of an old http connection does not warn: %v", read.Warnings)
	}
	if err := env.revoke(env.issue()); err != nil {
		t.Fatalf("revoke after the update: %v", err)
	}
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{"base_url": env.upstream.URL()}, "uses http://")
	env.mustBadRequest(logical.UpdateOperation, "config/main", map[string]any{"allow_http": false}, "uses http://")
	resp = env.mustOK(logical.UpdateOperation, "config/main", map[string]any{"allow_http": true})
	if resp != nil && len(resp.Warnings) != 0 {
		t.Errorf("allow_http=true still warns: %v", resp.Warnings)
	}
}

// One HTTP client per connection and transport settings: a new generation
// with the same settings keeps it; new settings, a drop or a new template
// give a new one.
func TestConnectionCache_KeepsOneClientPerSettings(t *testing.T) {
	c := newConnectionCache()
	template := &http.Client{}
	get := func(name string, s transportSettings, tmpl *http.Client) *http.Client {
		t.Helper()
		client, err := c.client(name, s, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return client
	}
	first := get("a", transportSettings{}, template)
	if get("a", transportSettings{}, template) != first {
		t.Error("the same settings built a new client")
	}
	if get("b", transportSettings{}, template) == first {
		t.Error("two connections share a client")
	}
	proxied := get("a", transportSettings{ProxyURL: "http://proxy.internal:3128"}, template)
	if proxied == first {
		t.Error("new settings kept the old client")
	}
	if get("a", transportSettings{ProxyURL: "http://proxy.internal:3128"}, &http.Client{}) == proxied {
		t.Error("a new template kept the old client")
	}
	c.drop("a")
	if _, ok := c.clients["a"]; ok {
		t.Error("drop kept the client")
	}
	if _, err := c.client("a", transportSettings{ClientKey: "k"}, template); err == nil {
		t.Error("bad settings built a client")
	}
	c.dropAll()
	if len(c.clients) != 0 {
		t.Errorf("dropAll kept %d clients", len(c.clients))
	}
}

// tlsColumns are the TLS and proxy scenarios each provider runs, in order.
var tlsColumns = []string{"no ca_cert", "ca_cert", "other name", "tls_server_name", "proxy", "mTLS, no client cert", "mTLS"}

// TestTransport_TLSAndProxyMatrix serves each provider's emulators over
// HTTPS with a throwaway CA and runs every scenario of tlsColumns through
// the backend: a refused write must be a 400 that says which setting fixes
// it and store nothing; a working one must verify, issue and revoke.
func TestTransport_TLSAndProxyMatrix(t *testing.T) {
	ca := testutil.NewCA(t)
	clientCert, clientKey := ca.ClientCert(t, "vault")
	var mu sync.Mutex
	cells := map[[2]string]string{}
	providers := fmProviders()
	t.Run("cells", func(t *testing.T) {
		for _, p := range providers {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				for _, col := range tlsColumns {
					t.Run(col, func(t *testing.T) {
						outcome := tlsCell(t, p, col, ca, clientCert, clientKey)
						if t.Failed() {
							outcome += " FAIL"
						}
						mu.Lock()
						cells[[2]string{p.name, col}] = outcome
						mu.Unlock()
					})
				}
			})
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "| provider | %s |\n", strings.Join(tlsColumns, " | "))
	for _, p := range providers {
		fmt.Fprintf(&b, "| %s |", p.name)
		for _, col := range tlsColumns {
			fmt.Fprintf(&b, " %s |", cells[[2]string{p.name, col}])
		}
		b.WriteString("\n")
	}
	t.Logf("TLS and proxy matrix (%d cells):\n%s", len(providers)*len(tlsColumns), b.String())
}

// tlsCell runs one scenario and returns the cell's value.
func tlsCell(t *testing.T, p *fmProvider, col string, ca *testutil.CA, clientCert, clientKey string) string {
	hosts := []string{"127.0.0.1"}
	if col == "other name" || col == "tls_server_name" {
		hosts = []string{"upstream.test"}
	}
	serverTLS := ca.ServerConfig(t, hosts...)
	if strings.HasPrefix(col, "mTLS") {
		serverTLS.ClientAuth, serverTLS.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	}
	// Every TLS connection the upstream accepts is recorded with the
	// address it came from.
	var mu sync.Mutex
	var handshakes []string
	serverTLS.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		handshakes = append(handshakes, hello.Conn.RemoteAddr().String())
		return nil, nil
	}
	e, config, role := startFMEnv(t, p, fmColumn{name: col}, serverTLS)
	config["ca_cert"] = ca.CertPEM
	var proxy *testutil.ConnectProxy
	switch col {
	case "no ca_cert":
		delete(config, "ca_cert")
		return e.refusedWrite(config, "x509: certificate signed by unknown authority", "set ca_cert to the PEM of the CA that issued it")
	case "other name":
		return e.refusedWrite(config, "x509: cannot validate certificate for 127.0.0.1", "set tls_server_name")
	case "tls_server_name":
		config["tls_server_name"] = "upstream.test"
	case "proxy":
		proxy = testutil.StartConnectProxy(t, "vault:proxy-password")
		config["proxy_url"] = strings.Replace(proxy.URL(), "http://", "http://vault:proxy-password@", 1)
		e.secrets = append(e.secrets, "proxy-password")
	case "mTLS, no client cert":
		return e.refusedWrite(config, "tls: certificate required", "set client_cert and client_key")
	case "mTLS":
		config["client_cert"], config["client_key"] = clientCert, clientKey
		e.secrets = append(e.secrets, pemBody(clientKey))
	}
	e.configure(config, role)
	e.mustRevoke(e.mustIssue())
	e.checkOrphans("after the revoke")
	calls := 0
	for _, srv := range e.servers {
		calls += srv.TotalCalls()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handshakes) == 0 || calls == 0 {
		t.Fatalf("%d TLS handshakes and %d calls upstream: the cell reached no upstream", len(handshakes), calls)
	}
	if proxy == nil {
		return fmt.Sprintf("ok (%d calls)", calls)
	}
	for _, from := range handshakes {
		if !proxy.Tunneled(from) {
			t.Errorf("a TLS connection from %s reached the upstream without going through the proxy", from)
		}
	}
	if proxy.Connects() != len(handshakes) || proxy.Refused() != 0 {
		t.Errorf("the proxy opened %d tunnels and refused %d requests; the upstream saw %d TLS connections", proxy.Connects(), proxy.Refused(), len(handshakes))
	}
	return fmt.Sprintf("ok (%d calls, %d CONNECTs)", calls, proxy.Connects())
}

// pemBody is the first line of a PEM block's base64 body: any quote of the
// block has it.
func pemBody(block string) string {
	return strings.Split(block, "\n")[1]
}

// refusedWrite requires the connection write to be a 400 holding every
// part of want, with nothing stored, and returns the cell's value.
func (e *fmEnv) refusedWrite(config map[string]any, want ...string) string {
	e.t.Helper()
	e.noteSecrets(config)
	req := &logical.Request{Operation: logical.CreateOperation, Path: "config/" + fmConn}
	resp, err := e.request(req.Operation, req.Path, config)
	msg := e.failure(resp, err)
	if code, _ := logical.RespondErrorCommon(req, resp, err); code != http.StatusBadRequest {
		e.t.Errorf("the write answered %d %q, want 400", code, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			e.t.Errorf("the error does not say %q: %s", w, msg)
		}
	}
	if keys, _ := e.storage.List(context.Background(), configStoragePrefix); len(keys) != 0 {
		e.t.Errorf("a refused write stored %v", keys)
	}
	e.t.Log(msg)
	return "400"
}
