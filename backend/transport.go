package backend

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Transport field names, common to every provider; the TLS ones are those
// of Vault's Consul and Nomad secrets engines.
const (
	fieldCACert        = "ca_cert"
	fieldClientCert    = "client_cert"
	fieldClientKey     = "client_key"
	fieldTLSServerName = "tls_server_name"
	fieldProxyURL      = "proxy_url"
	fieldAllowHTTP     = "allow_http"
)

// transportFields are the string transport fields, in the order they are
// applied.
var transportFields = []string{fieldCACert, fieldClientCert, fieldClientKey, fieldTLSServerName, fieldProxyURL}

// transportSettings say how a connection reaches its upstream. The zero
// value, which every connection stored before they existed has, is the
// system's CA roots, no client certificate and the environment's proxy.
type transportSettings struct {
	// CACert is a PEM bundle that replaces the system's roots.
	CACert string `json:"ca_cert,omitempty"`
	// ClientCert and ClientKey are the PEM client certificate and key for
	// mutual TLS; ClientKey is a secret, never returned by reads.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	// TLSServerName is the name the upstream's certificate is checked
	// against (and sent as SNI) instead of base_url's host.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// ProxyURL is the proxy every upstream call goes through; empty uses
	// HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
	ProxyURL string `json:"proxy_url,omitempty"`
	// AllowHTTP admits http:// upstream addresses.
	AllowHTTP bool `json:"allow_http,omitempty"`
}

// field returns the string setting named name.
func (t *transportSettings) field(name string) *string {
	switch name {
	case fieldCACert:
		return &t.CACert
	case fieldClientCert:
		return &t.ClientCert
	case fieldClientKey:
		return &t.ClientKey
	case fieldTLSServerName:
		return &t.TLSServerName
	case fieldProxyURL:
		return &t.ProxyURL
	}
	panic("no transport field " + name)
}

// addTransportFields declares the transport fields of config/NAME.
func addTransportFields(fields map[string]*framework.FieldSchema) {
	str := func(name, description string, sensitive bool) {
		fields[name] = &framework.FieldSchema{Type: framework.TypeString, Description: description,
			DisplayAttrs: &framework.DisplayAttributes{Name: name, Sensitive: sensitive}}
	}
	str(fieldCACert, "PEM bundle of the CA certificates that sign the upstream's TLS certificate; it replaces the system's roots. Empty: the system's roots.", false)
	str(fieldClientCert, "PEM client certificate for upstreams that require mutual TLS; needs client_key.", false)
	str(fieldClientKey, "PEM private key of client_cert (unencrypted). Write-only: reads never return it.", true)
	str(fieldTLSServerName, "Name to check the upstream's certificate against (and send as SNI) instead of the host in base_url.", false)
	str(fieldProxyURL, "Proxy for every upstream call (http, https, socks5 or socks5h URL; credentials in it are never shown by reads). Empty: the HTTPS_PROXY, HTTP_PROXY and NO_PROXY environment of the Vault server.", false)
	fields[fieldAllowHTTP] = &framework.FieldSchema{Type: framework.TypeBool, Default: false,
		Description: "Accept http:// upstream addresses (base_url, StorX's auth_url). Credentials then cross the network in clear: for a test sandbox only."}
}

// applyTransport sets the transport fields present in the request on e and
// checks the result. The scheme rule (https unless allow_http) applies to
// the addresses this write sets, or all of them when it creates the
// connection or sets allow_http: a connection stored with an http:// address
// before the rule existed keeps working, and so do its updates that leave
// the address alone.
func applyTransport(e *connectionEntry, p provider.Provider, data map[string]any, d *framework.FieldData, creating bool) error {
	for _, name := range transportFields {
		if raw, ok := d.GetOk(name); ok {
			*e.Transport.field(name) = strings.TrimSpace(raw.(string))
		}
	}
	_, allowGiven := data[fieldAllowHTTP]
	if allowGiven {
		e.Transport.AllowHTTP = d.Get(fieldAllowHTTP).(bool)
	}
	if _, err := e.Transport.tlsConfig(); err != nil {
		return err
	}
	if _, err := e.Transport.proxy(); err != nil {
		return err
	}
	if e.Transport.AllowHTTP {
		return nil
	}
	_, baseGiven := data[fieldBaseURL]
	if creating || allowGiven || baseGiven {
		if err := requireHTTPS(fieldBaseURL, e.BaseURL); err != nil {
			return err
		}
	}
	for _, f := range p.ConnectionFields() {
		if _, given := data[f.Name]; f.URL && (creating || allowGiven || given) {
			if err := requireHTTPS(f.Name, e.Values.String(f.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// requireHTTPS refuses an http:// address.
func requireHTTPS(field, address string) error {
	if u, err := url.Parse(address); err == nil && strings.EqualFold(u.Scheme, "http") {
		return fmt.Errorf("%s %s uses http://, so the root credential and every issued credential would cross the network in clear: use the https:// address, or set allow_http=true if this is a test sandbox on a network you trust", field, u.Redacted())
	}
	return nil
}

// httpWarning warns about a connection stored with an http:// address
// before allow_http existed: it keeps working, but in clear.
func httpWarning(e *connectionEntry, p provider.Provider) string {
	if e.Transport.AllowHTTP {
		return ""
	}
	var clear []string
	if requireHTTPS(fieldBaseURL, e.BaseURL) != nil {
		clear = append(clear, fieldBaseURL)
	}
	for _, f := range p.ConnectionFields() {
		if f.URL && requireHTTPS(f.Name, e.Values.String(f.Name)) != nil {
			clear = append(clear, f.Name)
		}
	}
	if len(clear) == 0 {
		return ""
	}
	return fmt.Sprintf("%s uses http://, so credentials cross the network in clear; this connection predates allow_http and keeps working, but write an https:// address, or allow_http=true if it is a test sandbox", strings.Join(clear, " and "))
}

// tlsConfig builds the TLS client configuration; its errors say which field
// to fix and never quote client_key.
func (t transportSettings) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CACert != "" {
		pool, err := parseCABundle(t.CACert)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.ClientCert != "" && t.ClientKey == "":
		return nil, errors.New("client_cert needs client_key, its private key: set both for mutual TLS, or neither")
	case t.ClientKey != "" && t.ClientCert == "":
		return nil, errors.New("client_key needs client_cert, its certificate: set both for mutual TLS, or neither")
	case t.ClientCert != "":
		// crypto/tls's messages name PEM block types and what does not
		// match, never key material.
		pair, err := tls.X509KeyPair([]byte(t.ClientCert), []byte(t.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("client_cert and client_key are not a usable pair (%v): give the PEM certificate and its unencrypted PEM private key", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if name := t.TLSServerName; name != "" {
		if strings.ContainsAny(name, "/ \t\r\n") || (strings.Contains(name, ":") && net.ParseIP(name) == nil) {
			return nil, fmt.Errorf("tls_server_name %q is not a host name: give the name the upstream's certificate is issued for, such as api.example.com, without scheme, port or path", name)
		}
		cfg.ServerName = name
	}
	return cfg, nil
}

// parseCABundle reads every certificate of a PEM bundle; text around the
// blocks (a bundle's comments) is ignored.
func parseCABundle(bundle string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(bundle)
	for n := 1; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			if n == 1 {
				return nil, errors.New("ca_cert holds no PEM block: give the CA certificates as -----BEGIN CERTIFICATE----- blocks")
			}
			return pool, nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca_cert block %d is a %q, not a CERTIFICATE: give only the CA certificates", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_cert certificate %d does not parse (%v): give the CA certificates in PEM", n, err)
		}
		pool.AddCert(cert)
	}
}

// proxySchemes are the proxy schemes net/http speaks.
var proxySchemes = []string{"http", "https", "socks5", "socks5h"}

// proxy is how requests find their proxy.
func (t transportSettings) proxy() (func(*http.Request) (*url.URL, error), error) {
	if t.ProxyURL == "" {
		return http.ProxyFromEnvironment, nil
	}
	// Neither url.Parse's error nor the value is quoted: it may hold the
	// proxy's password.
	u, err := url.Parse(t.ProxyURL)
	if err != nil || !slices.Contains(proxySchemes, u.Scheme) || u.Host == "" {
		return nil, errors.New("proxy_url is not valid: give the proxy's address such as http://proxy.internal:3128 (scheme http, https, socks5 or socks5h)")
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("proxy_url %s must be only scheme, credentials, host and port: drop the path, query or fragment", redactedProxy(t.ProxyURL))
	}
	return http.ProxyURL(u), nil
}

// redactedProxy is proxy_url as reads show it: any password is replaced.
func redactedProxy(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Redacted()
}

// httpClient builds a connection's client from template (its timeout; a
// test's transport when it sets one) and the settings.
func (t transportSettings) httpClient(template *http.Client) (*http.Client, error) {
	client := *template
	if template.Transport != nil {
		return &client, nil
	}
	tlsConfig, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	proxy, err := t.proxy()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// One client talks to one upstream: keep a connection per concurrent
	// issue instead of the default 2, which made every issue beyond the
	// second under load open (and TLS-handshake) a connection of its own.
	transport.MaxIdleConnsPerHost = maxIdleConnsPerUpstream
	transport.TLSClientConfig = tlsConfig
	transport.Proxy = proxy
	client.Transport = transport
	return &client, nil
}

// maxIdleConnsPerUpstream is how many idle connections to its upstream a
// connection's client keeps, about the concurrency Vault's expiration
// workers and busy clients reach.
const maxIdleConnsPerUpstream = 64

// publicTransport is what config reads show: everything but client_key,
// and proxy_url without its password.
func publicTransport(t transportSettings) map[string]any {
	return map[string]any{
		fieldCACert:        t.CACert,
		fieldClientCert:    t.ClientCert,
		fieldTLSServerName: t.TLSServerName,
		fieldProxyURL:      redactedProxy(t.ProxyURL),
		fieldAllowHTTP:     t.AllowHTTP,
	}
}

// transportHint says which transport setting fixes a TLS failure, "" when
// err is not one.
func transportHint(err error) string {
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hostErr):
		return "the upstream's certificate is not issued for the host in base_url: set tls_server_name to the name it is issued for"
	case errors.As(err, &verifyErr):
		return "the upstream's TLS certificate is not trusted: set ca_cert to the PEM of the CA that issued it"
	// crypto/tls reports the server's alerts with an unexported type:
	// only their text tells them apart.
	case strings.Contains(err.Error(), "tls: certificate required"), strings.Contains(err.Error(), "tls: bad certificate"),
		strings.Contains(err.Error(), "tls: unknown certificate authority"):
		return "the upstream refused the TLS handshake without an acceptable client certificate: set client_cert and client_key"
	}
	return ""
}
