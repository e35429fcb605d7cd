package testutil

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// ConnectProxy is an HTTP CONNECT proxy on loopback that counts the tunnels
// it opens and remembers the address each one comes from at the far end, so
// that an upstream can tell a request that came through the proxy from one
// that did not.
type ConnectProxy struct {
	srv  *http.Server
	ln   net.Listener
	auth string

	mu        sync.Mutex
	connects  int
	refused   int
	tunnelsAt map[string]bool
	open      []net.Conn
}

// StartConnectProxy serves a CONNECT proxy on 127.0.0.1 until the test ends.
// With auth ("user:password") set, it refuses a CONNECT without those
// credentials in Proxy-Authorization. It tunnels only to loopback.
func StartConnectProxy(t testing.TB, auth string) *ConnectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ConnectProxy{ln: ln, auth: auth, tunnelsAt: map[string]bool{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's address, e.g. http://127.0.0.1:40123, for proxy_url.
func (p *ConnectProxy) URL() string { return "http://" + p.ln.Addr().String() }

// Connects is how many tunnels the proxy opened.
func (p *ConnectProxy) Connects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connects
}

// Refused is how many requests the proxy turned away: not a CONNECT, or
// without the credentials it asks for.
func (p *ConnectProxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// Tunneled reports whether remoteAddr, as an upstream sees a client, is the
// far end of one of the proxy's tunnels.
func (p *ConnectProxy) Tunneled(remoteAddr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tunnelsAt[remoteAddr]
}

func (p *ConnectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect || !p.authorized(r) || !loopbackTarget(r.Host) {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
		http.Error(w, "this proxy only tunnels authorized CONNECTs to loopback", http.StatusProxyAuthRequired)
		return
	}
	upstream, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	p.mu.Lock()
	p.connects++
	p.tunnelsAt[upstream.LocalAddr().String()] = true
	p.open = append(p.open, client, upstream)
	p.mu.Unlock()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
}

func (p *ConnectProxy) authorized(r *http.Request) bool {
	return p.auth == "" || r.Header.Get("Proxy-Authorization") == "Basic "+base64.StdEncoding.EncodeToString([]byte(p.auth))
}

func loopbackTarget(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// pipe copies until either side ends, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

func (p *ConnectProxy) close() {
	_ = p.srv.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		_ = c.Close()
	}
}
