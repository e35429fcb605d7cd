package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxBufferedBody bounds the request body a latency fault reads ahead.
const maxBufferedBody = 1 << 20

// maxLatency bounds injected latency so a forgotten fault cannot hold a
// connection open for longer than any sensible client timeout.
const maxLatency = 5 * time.Minute

// Fault describes a misbehaviour to inject into matching upstream requests.
//
// Exactly one of Status, Drop and Malformed may be set; LatencyMS combines
// with any of them (the sleep comes first) or stands alone. LatencyAfterMS
// needs the real handler to run, so it stands alone or combines with
// LatencyMS and Malformed, never with Status or Drop.
type Fault struct {
	// Method limits the fault to one HTTP method; empty matches any.
	Method string `json:"method,omitempty"`
	// Path limits the fault to URL paths with this prefix; empty matches any.
	Path string `json:"path,omitempty"`
	// Skip lets this many matching requests through before the fault hits.
	Skip int `json:"skip,omitempty"`
	// Times is how many matching requests the fault hits after the skip;
	// 0 means every one until the fault is cleared.
	Times int `json:"times,omitempty"`
	// LatencyMS delays the request this long; the delay ends early, and the
	// request is abandoned unhandled, if the client goes away.
	LatencyMS int `json:"latency_ms,omitempty"`
	// LatencyAfterMS lets the real handler run (state changes happen),
	// buffers its response, then waits this long before sending it: the
	// upstream acted but the client hears nothing yet. If the client goes
	// away during the wait, the response is abandoned; the changes stay.
	LatencyAfterMS int `json:"latency_after_ms,omitempty"`
	// Status answers with this status and the emulator's FaultBody instead of
	// handling the request.
	Status int `json:"status,omitempty"`
	// RetryAfter is sent as the Retry-After header of a Status answer, e.g.
	// "2" or an HTTP-date; it is only sent when set.
	RetryAfter string `json:"retry_after,omitempty"`
	// Location makes the Status answer a redirect there: with Status 301,
	// 302, 303, 307 or 308 and an absolute http(s) URL, it stands for an
	// upstream (or a hijacked one) sending the client to another address.
	Location string `json:"location,omitempty"`
	// Drop closes the TCP connection without any response, unhandled.
	Drop bool `json:"drop,omitempty"`
	// Malformed handles the request for real (state changes happen) but
	// sends only the first half of the response body.
	Malformed bool `json:"malformed,omitempty"`
}

// Validate reports why the fault cannot be injected, or nil.
func (f Fault) Validate() error {
	var problems []string
	if f.Skip < 0 || f.Times < 0 || f.LatencyMS < 0 || f.LatencyAfterMS < 0 {
		problems = append(problems, "skip, times, latency_ms and latency_after_ms must not be negative")
	}
	if time.Duration(f.LatencyMS)*time.Millisecond > maxLatency {
		problems = append(problems, fmt.Sprintf("latency_ms must be at most %d", maxLatency.Milliseconds()))
	}
	if time.Duration(f.LatencyAfterMS)*time.Millisecond > maxLatency {
		problems = append(problems, fmt.Sprintf("latency_after_ms must be at most %d", maxLatency.Milliseconds()))
	}
	if f.LatencyAfterMS > 0 && (f.Status != 0 || f.Drop) {
		problems = append(problems, "latency_after_ms delays the handler's own response: it cannot combine with status or drop")
	}
	if f.Location != "" {
		problems = append(problems, f.redirectProblems()...)
	} else if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
		problems = append(problems, "status must be between 400 and 599, or a redirect status with location")
	}
	if f.outcomes() > 1 {
		problems = append(problems, "set at most one of status, drop and malformed")
	}
	if f.outcomes() == 0 && f.LatencyMS == 0 && f.LatencyAfterMS == 0 {
		problems = append(problems, "set latency_ms, latency_after_ms, status, drop or malformed")
	}
	if f.RetryAfter != "" && f.Status == 0 {
		problems = append(problems, "retry_after needs status")
	}
	if strings.ContainsFunc(f.RetryAfter, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		problems = append(problems, "retry_after must not contain control characters")
	}
	if len(problems) > 0 {
		return errors.New("invalid fault: " + strings.Join(problems, "; "))
	}
	return nil
}

// redirectStatuses are the statuses a client may follow to a Location.
var redirectStatuses = []int{
	http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
	http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
}

func (f Fault) redirectProblems() []string {
	var problems []string
	if !slices.Contains(redirectStatuses, f.Status) {
		problems = append(problems, "location needs status 301, 302, 303, 307 or 308")
	}
	if u, err := url.Parse(f.Location); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "location must be an absolute http:// or https:// URL")
	}
	if strings.ContainsFunc(f.Location, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		problems = append(problems, "location must not contain control characters")
	}
	return problems
}

func (f Fault) outcomes() int {
	n := 0
	for _, set := range []bool{f.Status != 0, f.Drop, f.Malformed} {
		if set {
			n++
		}
	}
	return n
}

func (f Fault) matches(method, path string) bool {
	return (f.Method == "" || strings.EqualFold(f.Method, method)) && strings.HasPrefix(path, f.Path)
}

// armedFault is a Fault with its id and how often it matched and hit, which
// GET /_sandbox/faults shows so a test can see what its faults did.
type armedFault struct {
	ID int `json:"id"`
	Fault
	Matched int `json:"matched"`
	Applied int `json:"applied"`
}

// due reports whether the request just counted in Matched is inside the
// fault's skip/times window.
func (a *armedFault) due() bool {
	return a.Matched > a.Skip && (a.Times == 0 || a.Matched <= a.Skip+a.Times)
}

// faultSet holds the injected faults in the order they were added.
type faultSet struct {
	mu     sync.Mutex
	lastID int
	armed  []*armedFault
}

func (s *faultSet) add(f Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastID++
	s.armed = append(s.armed, &armedFault{ID: s.lastID, Fault: f})
	return s.lastID
}

func (s *faultSet) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = nil
}

func (s *faultSet) list() []armedFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]armedFault, 0, len(s.armed))
	for _, a := range s.armed {
		out = append(out, *a)
	}
	return out
}

// pick counts the request against every fault it matches, so each fault's
// skip and times refer to all matching requests since it was added, and
// returns the first fault (in the order added) whose window it falls in.
func (s *faultSet) pick(method, path string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var chosen *armedFault
	for _, a := range s.armed {
		if !a.matches(method, path) {
			continue
		}
		a.Matched++
		if chosen == nil && a.due() {
			chosen = a
		}
	}
	if chosen == nil {
		return Fault{}, false
	}
	chosen.Applied++
	return chosen.Fault, true
}

// inject serves r through upstream with fault f applied; wait spends the
// fault's latency (see sleep).
func inject(f Fault, emu Emulator, upstream http.Handler, wait waitFunc, w http.ResponseWriter, r *http.Request) {
	if f.LatencyMS > 0 {
		bufferBody(r)
		if !wait(r.Context(), time.Duration(f.LatencyMS)*time.Millisecond) {
			// The client left or the server is closing: answer nothing.
			panic(http.ErrAbortHandler)
		}
	}
	if f.LatencyAfterMS > 0 {
		serveDelayed(f, wait, w, r, upstream)
		return
	}
	switch {
	case f.Drop:
		dropConnection(w)
	case f.Status != 0:
		writeStatus(w, emu, f)
	case f.Malformed:
		serveMalformed(w, r, upstream)
	default:
		upstream.ServeHTTP(w, r)
	}
}

// bufferBody reads a small request body up front. net/http only notices a
// client hanging up (and cancels the request's context) once the body has
// been read to the end, so without this a latency fault on a POST would
// sleep on after the client gave up.
func bufferBody(r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
	rest := r.Body
	if err == nil && len(body) <= maxBufferedBody {
		rest = http.NoBody
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), rest))
}

// waitFunc waits for d and reports false if ctx ended first.
type waitFunc func(ctx context.Context, d time.Duration) bool

// sleep is the waitFunc of every Server but the sandbox's own tests, which
// control the latency faults' waits instead of spending them.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): aborting the handler resets the stream,
		// which the client also sees as a broken response.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func writeStatus(w http.ResponseWriter, emu Emulator, f Fault) {
	contentType, body := emu.FaultBody(f.Status)
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Location != "" {
		w.Header().Set("Location", f.Location)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write(body)
}

// serveMalformed runs the real handler into a buffer, then sends its status
// and headers with only the first half of its body.
func serveMalformed(w http.ResponseWriter, r *http.Request, upstream http.Handler) {
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	upstream.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.status)
	if bodyAllowed(rec.status) {
		_, _ = w.Write(truncate(rec.body.Bytes()))
	}
}

// serveDelayed runs the real handler (corrupting its body if f.Malformed)
// into a buffer, waits f.LatencyAfterMS, then sends what it buffered. If the
// client goes away or the server closes during the wait, nothing is sent,
// but whatever the handler changed stays changed.
func serveDelayed(f Fault, wait waitFunc, w http.ResponseWriter, r *http.Request, upstream http.Handler) {
	// As for LatencyMS: with the body read, net/http notices a client
	// hanging up during the wait and cancels the request's context.
	bufferBody(r)
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	if f.Malformed {
		serveMalformed(rec, r, upstream)
	} else {
		upstream.ServeHTTP(rec, r)
	}
	if !wait(r.Context(), time.Duration(f.LatencyAfterMS)*time.Millisecond) {
		panic(http.ErrAbortHandler)
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	if bodyAllowed(rec.status) {
		_, _ = w.Write(rec.body.Bytes())
	}
}

// truncate cuts a body in half; a body too short to halve becomes a lone
// "{" so that it still fails to decode.
func truncate(body []byte) []byte {
	if len(body) < 2 {
		return []byte("{")
	}
	return body[:len(body)/2]
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// bufferedResponse is an http.ResponseWriter that keeps everything in memory.
type bufferedResponse struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if !b.wroteHeader {
		b.status, b.wroteHeader = status, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wroteHeader = true
	return b.body.Write(p)
}
