package sandbox

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxControlBody bounds what the control endpoints read from a request.
const maxControlBody = 64 << 10

// Server is one emulator listening on loopback, wrapped by the call counter,
// the fault injector and the /_sandbox/ control endpoints.
type Server struct {
	emu      Emulator
	upstream http.Handler
	listener net.Listener
	// scheme is "https" when the server speaks TLS.
	scheme string
	http   *http.Server
	stop   context.CancelFunc
	faults faultSet
	calls  callCounter
	// wait spends the latency faults' delays.
	wait waitFunc

	// busy counts the upstream requests being handled; idle is closed
	// while it is 0.
	mu   sync.Mutex
	busy int
	idle chan struct{}
}

// Start listens on addr, which must name a loopback host (e.g.
// "127.0.0.1:0"), and serves emu there until Close.
func Start(emu Emulator, addr string) (*Server, error) {
	return start(emu, addr, sleep, nil)
}

// StartTLS is Start serving HTTPS with cfg (its certificates, and client
// certificates when it asks for them), for tests of the plugin's TLS
// settings; the control endpoints are then HTTPS too.
func StartTLS(emu Emulator, addr string, cfg *tls.Config) (*Server, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s emulator: StartTLS needs a TLS configuration", emu.Name())
	}
	return start(emu, addr, sleep, cfg)
}

// start is Start with the wait behind the latency faults, which the
// sandbox's tests control, and TLS when tlsConfig is set.
func start(emu Emulator, addr string, wait waitFunc, tlsConfig *tls.Config) (*Server, error) {
	if err := requireLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s emulator: %w", emu.Name(), err)
	}
	scheme := "http"
	if tlsConfig != nil {
		ln, scheme = tls.NewListener(ln, tlsConfig), "https"
	}
	// Cancelled on Close, so requests sleeping in a latency fault end too.
	base, stop := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	s := &Server{emu: emu, upstream: emu.Handler(), listener: ln, scheme: scheme, stop: stop, wait: wait, idle: idle}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// requireLoopback refuses any address that could be reached from another
// machine: the emulators hand out working credentials to whoever asks.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to listen on %q: only loopback hosts (127.0.0.1, ::1, localhost) are allowed", addr)
}

// URL is the base URL the emulator answers on, e.g. "http://127.0.0.1:18105"
// ("https://…" when started with StartTLS).
func (s *Server) URL() string { return s.scheme + "://" + s.listener.Addr().String() }

// Close stops listening and ends every open connection and pending request.
func (s *Server) Close() error {
	s.stop()
	return s.http.Close()
}

// AddFault arms f and returns its id. It panics if f.Validate fails, since a
// test that builds an impossible fault is a bug in the test.
func (s *Server) AddFault(f Fault) int {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	return s.faults.add(f)
}

// WaitIdle returns once no upstream request is being handled, or with ctx's
// error. A test calls it after a client gave up on a request, so that
// whatever the abandoned request still does upstream is done before the
// test looks; a request that has not reached the server yet is not waited
// for.
func (s *Server) WaitIdle(ctx context.Context) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	default:
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy == 0 {
		s.idle = make(chan struct{})
	}
	s.busy++
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy--
	if s.busy == 0 {
		close(s.idle)
	}
}

// ClearFaults disarms every fault.
func (s *Server) ClearFaults() { s.faults.clear() }

// Calls returns how many upstream requests arrived per "METHOD route", where
// route is the emulator's route template (see Emulator).
func (s *Server) Calls() map[string]int { return s.calls.snapshot() }

// TotalCalls is the sum of Calls: every request served since the last reset.
func (s *Server) TotalCalls() int {
	n := 0
	for _, calls := range s.Calls() {
		n += calls
	}
	return n
}

// ResetCalls sets every call count back to zero.
func (s *Server) ResetCalls() { s.calls.reset() }

// Objects lists every object the emulator holds.
func (s *Server) Objects() []Object { return s.emu.Objects() }

// Reset puts the emulator back to its seeded state and clears faults and
// call counts.
func (s *Server) Reset() {
	s.emu.Reset()
	s.ClearFaults()
	s.ResetCalls()
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sandbox/objects", s.serveObjects)
	mux.HandleFunc("GET /_sandbox/calls", s.serveCalls)
	mux.HandleFunc("DELETE /_sandbox/calls", s.serveResetCalls)
	mux.HandleFunc("GET /_sandbox/faults", s.serveFaults)
	mux.HandleFunc("POST /_sandbox/faults", s.serveAddFault)
	mux.HandleFunc("DELETE /_sandbox/faults", s.serveClearFaults)
	mux.HandleFunc("POST /_sandbox/reset", s.serveReset)
	mux.HandleFunc("/_sandbox/", serveUnknownControl)
	mux.HandleFunc("/", s.serveUpstream)
	return mux
}

func (s *Server) serveUpstream(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.leave()
	s.calls.add(routeKey(s.upstream, r))
	if f, ok := s.faults.pick(r.Method, r.URL.Path); ok {
		inject(f, s.emu, s.upstream, s.wait, w, r)
		return
	}
	s.upstream.ServeHTTP(w, r)
}

func (s *Server) serveObjects(w http.ResponseWriter, _ *http.Request) {
	objects := s.emu.Objects()
	if objects == nil {
		objects = []Object{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"objects": objects})
}

func (s *Server) serveCalls(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"calls": s.calls.snapshot()})
}

func (s *Server) serveResetCalls(w http.ResponseWriter, _ *http.Request) {
	s.calls.reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"faults": s.faults.list()})
}

func (s *Server) serveAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	// Unknown fields are refused so that a typo ("latency") is not silently
	// a fault that does nothing.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fault body: " + err.Error()})
		return
	}
	if err := f.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"id": s.faults.add(f)})
}

func (s *Server) serveClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.faults.clear()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func serveUnknownControl(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no sandbox endpoint " + r.Method + " " + r.URL.Path})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// callCounter counts upstream requests per route key.
type callCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *callCounter) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[key]++
}

func (c *callCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = nil
}

func (c *callCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// router is what *http.ServeMux offers to look a route up without serving.
type router interface {
	Handler(r *http.Request) (h http.Handler, pattern string)
}

// routeKey names the route r will take, e.g. "DELETE /api/x/{id}", so that
// calls to one route count together whatever the ids in the path. Without a
// router, or for a request no route takes, it falls back to the literal path.
func routeKey(upstream http.Handler, r *http.Request) string {
	if rt, ok := upstream.(router); ok {
		if _, pattern := rt.Handler(r); pattern != "" {
			if method, _, hasMethod := strings.Cut(pattern, " "); hasMethod && method != "" {
				return pattern
			}
			return r.Method + " " + pattern
		}
	}
	return r.Method + " " + r.URL.Path
}
