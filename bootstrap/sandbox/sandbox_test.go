package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// itemsEmulator is a minimal upstream: POST /items creates an item, GET and
// DELETE /items/{id} read and remove it.
type itemsEmulator struct {
	mu    sync.Mutex
	next  int
	items map[string]string
	mux   *http.ServeMux
}

func newItemsEmulator() *itemsEmulator {
	e := &itemsEmulator{items: map[string]string{}}
	e.mux = http.NewServeMux()
	e.mux.HandleFunc("POST /items", e.create)
	e.mux.HandleFunc("GET /items/{id}", e.get)
	e.mux.HandleFunc("DELETE /items/{id}", e.remove)
	return e
}

func (e *itemsEmulator) Name() string          { return "items" }
func (e *itemsEmulator) Handler() http.Handler { return e.mux }

func (e *itemsEmulator) Objects() []Object {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Object
	for id, name := range e.items {
		out = append(out, Object{Kind: "item", ID: id, Name: name, Live: true, State: "live"})
	}
	return out
}

func (e *itemsEmulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.items = map[string]string{}
}

func (e *itemsEmulator) FaultBody(status int) (string, []byte) {
	return "application/vnd.items+json", []byte(fmt.Sprintf(`{"fault":%d}`, status))
}

func (e *itemsEmulator) create(w http.ResponseWriter, r *http.Request) {
	var body struct{ Name string }
	_ = json.NewDecoder(r.Body).Decode(&body)
	e.mu.Lock()
	e.next++
	id := strconv.Itoa(e.next)
	e.items[id] = body.Name
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "name": body.Name, "padding": strings.Repeat("x", 40)})
}

func (e *itemsEmulator) get(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	name, ok := e.items[r.PathValue("id")]
	e.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"name": name})
}

func (e *itemsEmulator) remove(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	delete(e.items, r.PathValue("id"))
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func startItems(t *testing.T) (*Server, *itemsEmulator) {
	t.Helper()
	emu := newItemsEmulator()
	srv, err := Start(emu, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, emu
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func send(t *testing.T, client *http.Client, method, url, body string) (reply, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

func mustSend(t *testing.T, method, url, body string) reply {
	t.Helper()
	r, err := send(t, http.DefaultClient, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func TestStartRefusesNonLoopbackAddresses(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"localhost:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"192.0.2.1:0", false},
		{"example.com:0", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			srv, err := Start(newItemsEmulator(), tt.addr)
			if srv != nil {
				_ = srv.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("Start(%q) error = %v, want ok=%v", tt.addr, err, tt.ok)
			}
		})
	}
}

func TestCallsAreKeyedByRouteTemplate(t *testing.T) {
	srv, _ := startItems(t)
	mustSend(t, "POST", srv.URL()+"/items", `{"name":"a"}`)
	mustSend(t, "GET", srv.URL()+"/items/1", "")
	mustSend(t, "GET", srv.URL()+"/items/2", "")
	mustSend(t, "GET", srv.URL()+"/nowhere", "")
	mustSend(t, "GET", srv.URL()+"/_sandbox/objects", "")

	want := map[string]int{"POST /items": 1, "GET /items/{id}": 2, "GET /nowhere": 1}
	if got := srv.Calls(); !maps.Equal(got, want) {
		t.Fatalf("Calls() = %v, want %v", got, want)
	}
	var viaHTTP struct{ Calls map[string]int }
	if err := json.Unmarshal(mustSend(t, "GET", srv.URL()+"/_sandbox/calls", "").body, &viaHTTP); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(viaHTTP.Calls, want) {
		t.Fatalf("GET /_sandbox/calls = %v, want %v", viaHTTP.Calls, want)
	}
	if r := mustSend(t, "DELETE", srv.URL()+"/_sandbox/calls", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE /_sandbox/calls = %d", r.status)
	}
	if got := srv.Calls(); len(got) != 0 {
		t.Fatalf("Calls() after reset = %v", got)
	}
}

func TestStatusFaultAnswersWithEmulatorBody(t *testing.T) {
	date := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	tests := []struct {
		name       string
		status     int
		retryAfter string
	}{
		{"503 with seconds", http.StatusServiceUnavailable, "2"},
		{"429 with date", http.StatusTooManyRequests, date},
		{"429 without retry-after", http.StatusTooManyRequests, ""},
		{"500", http.StatusInternalServerError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, emu := startItems(t)
			srv.AddFault(Fault{Method: "POST", Path: "/items", Status: tt.status, RetryAfter: tt.retryAfter})
			r := mustSend(t, "POST", srv.URL()+"/items", `{"name":"a"}`)
			wantType, wantBody := emu.FaultBody(tt.status)
			if r.status != tt.status || !bytes.Equal(r.body, wantBody) || r.header.Get("Content-Type") != wantType {
				t.Fatalf("got %d %q %q, want %d %q %q", r.status, r.header.Get("Content-Type"), r.body, tt.status, wantType, wantBody)
			}
			if got, present := r.header["Retry-After"]; (tt.retryAfter == "") == present || (present && got[0] != tt.retryAfter) {
				t.Fatalf("Retry-After = %v, want %q", got, tt.retryAfter)
			}
			if n := len(srv.Objects()); n != 0 {
				t.Fatalf("handler ran: %d objects", n)
			}
		})
	}
}

func TestRedirectFaultSendsLocation(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Method: "POST", Path: "/items", Status: http.StatusPermanentRedirect, Location: "http://127.0.0.1:9/else"})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := send(t, noFollow, "POST", srv.URL()+"/items", `{"name":"a"}`)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusPermanentRedirect || r.header.Get("Location") != "http://127.0.0.1:9/else" {
		t.Fatalf("got %d Location %q", r.status, r.header.Get("Location"))
	}
	if n := len(srv.Objects()); n != 0 {
		t.Fatalf("handler ran: %d objects", n)
	}
}

func TestFaultSkipAndTimes(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Path: "/items", Skip: 1, Times: 2, Status: http.StatusBadGateway})
	var got []int
	for range 4 {
		got = append(got, mustSend(t, "POST", srv.URL()+"/items", `{}`).status)
	}
	want := []int{201, 502, 502, 201}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if n := len(srv.Objects()); n != 2 {
		t.Fatalf("objects = %d, want 2", n)
	}
}

func TestFirstMatchingFaultApplies(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Method: "DELETE", Status: http.StatusConflict})
	srv.AddFault(Fault{Path: "/items/", Status: http.StatusBadGateway})
	srv.AddFault(Fault{Status: http.StatusServiceUnavailable})
	tests := []struct {
		method, path string
		want         int
	}{
		{"DELETE", "/items/1", http.StatusConflict},
		{"GET", "/items/1", http.StatusBadGateway},
		{"POST", "/items", http.StatusServiceUnavailable},
		{"get", "/other", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		if got := mustSend(t, tt.method, srv.URL()+tt.path, "").status; got != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestLatencyFault(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		want  int
	}{
		{"alone", Fault{LatencyMS: 200}, http.StatusCreated},
		{"then status", Fault{LatencyMS: 200, Status: http.StatusInternalServerError}, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, lat := startWithLatency(t)
			srv.AddFault(tt.fault)
			done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{}`)
			if d := receive(t, lat.asked, "latency wait"); d != 200*time.Millisecond {
				t.Fatalf("the fault waits %v, want 200ms", d)
			}
			if n := len(srv.Objects()); n != 0 {
				t.Fatalf("the handler ran during the latency: %d objects", n)
			}
			notAnsweredYet(t, done, "during the latency")
			lat.letGo(t)
			if s := receive(t, done, "answer"); s.err != nil || s.reply.status != tt.want {
				t.Fatalf("got %v %d, want %d", s.err, s.reply.status, tt.want)
			}
		})
	}
}

func TestLatencyFaultStopsWhenClientGivesUp(t *testing.T) {
	srv, lat := startWithLatency(t)
	srv.AddFault(Fault{LatencyMS: 1000})
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	done := sendAsync(t, ctx, "POST", srv.URL()+"/items", `{}`)
	receive(t, lat.asked, "latency wait")
	giveUp()
	if s := receive(t, done, "client error"); s.err == nil {
		t.Fatal("request succeeded although the client gave up")
	}
	// The server stops waiting when the client leaves, and abandons the
	// request: once the handler is done, nothing was created.
	if letGo := receive(t, lat.ended, "end of the latency wait"); letGo {
		t.Fatal("the wait outlasted the client")
	}
	idleCtx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := srv.WaitIdle(idleCtx); err != nil {
		t.Fatalf("the abandoned request is still being handled: %v", err)
	}
	if n := len(srv.Objects()); n != 0 {
		t.Fatalf("abandoned request was handled: %d objects", n)
	}
}

func TestCloseEndsRequestsSleepingInLatency(t *testing.T) {
	srv, lat := startWithLatency(t)
	srv.AddFault(Fault{LatencyMS: 60000})
	done := sendAsync(t, context.Background(), "GET", srv.URL()+"/items/1", "")
	receive(t, lat.asked, "latency wait")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if s := receive(t, done, "end of the request after Close"); s.err == nil {
		t.Fatalf("request answered %d after Close", s.reply.status)
	}
	if letGo := receive(t, lat.ended, "end of the latency wait"); letGo {
		t.Fatal("the wait outlasted Close")
	}
}

// WaitIdle returns only once every request being handled is done.
func TestWaitIdleWaitsForRequestsBeingHandled(t *testing.T) {
	srv, lat := startWithLatency(t)
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatalf("a server that handled nothing is not idle: %v", err)
	}
	srv.AddFault(Fault{Path: "/items", LatencyMS: 100})
	done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{}`)
	receive(t, lat.asked, "latency wait")
	busy, stop := context.WithCancel(context.Background())
	stop()
	if err := srv.WaitIdle(busy); err == nil {
		t.Fatal("WaitIdle returned while a request was being handled")
	}
	lat.letGo(t)
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Objects()); n != 1 {
		t.Fatalf("objects = %d once idle, want the item", n)
	}
	receive(t, done, "answer")
}

func TestDropFault(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Path: "/items", Drop: true})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if r, err := send(t, client, "POST", srv.URL()+"/items", `{}`); err == nil {
		t.Fatalf("dropped request got a response: %d %q", r.status, r.body)
	}
	if n := len(srv.Objects()); n != 0 {
		t.Fatalf("dropped request was handled: %d objects", n)
	}
	srv.ClearFaults()
	if r, err := send(t, client, "POST", srv.URL()+"/items", `{}`); err != nil || r.status != http.StatusCreated {
		t.Fatalf("after ClearFaults: %v %v", r.status, err)
	}
}

func TestMalformedFaultRunsHandlerButCorruptsBody(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Method: "POST", Malformed: true, Times: 1})
	r := mustSend(t, "POST", srv.URL()+"/items", `{"name":"kept"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201", r.status)
	}
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err == nil {
		t.Fatalf("malformed body decoded: %q", r.body)
	}
	objects := srv.Objects()
	if len(objects) != 1 || objects[0].Name != "kept" {
		t.Fatalf("state change missing: %+v", objects)
	}
	if r := mustSend(t, "DELETE", srv.URL()+"/items/1", ""); r.status != http.StatusNoContent {
		t.Fatalf("fault outlived its times: %d", r.status)
	}
}

func TestFaultValidate(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		ok    bool
	}{
		{"latency only", Fault{LatencyMS: 10}, true},
		{"status with retry", Fault{Status: 429, RetryAfter: "1"}, true},
		{"nothing to do", Fault{Path: "/x"}, false},
		{"two outcomes", Fault{Status: 500, Drop: true}, false},
		{"status out of range", Fault{Status: 200}, false},
		{"negative skip", Fault{Status: 500, Skip: -1}, false},
		{"retry without status", Fault{Drop: true, RetryAfter: "1"}, false},
		{"header injection", Fault{Status: 503, RetryAfter: "1\r\nX-Evil: 1"}, false},
		{"latency too long", Fault{LatencyMS: int(maxLatency.Milliseconds()) + 1}, false},
		{"redirect", Fault{Status: 307, Location: "https://127.0.0.1:1/x?y=1"}, true},
		{"redirect status without location", Fault{Status: 302}, false},
		{"location with an error status", Fault{Status: 500, Location: "http://127.0.0.1:1/"}, false},
		{"location without status", Fault{Location: "http://127.0.0.1:1/"}, false},
		{"relative location", Fault{Status: 301, Location: "/elsewhere"}, false},
		{"location header injection", Fault{Status: 308, Location: "http://127.0.0.1:1/\r\nX-Evil: 1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fault.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestAddFaultPanicsOnInvalidFault(t *testing.T) {
	srv, _ := startItems(t)
	defer func() {
		if recover() == nil {
			t.Fatal("AddFault accepted an invalid fault")
		}
	}()
	srv.AddFault(Fault{})
}

func TestControlEndpoints(t *testing.T) {
	srv, _ := startItems(t)
	base := srv.URL() + "/_sandbox"

	for _, body := range []string{`{`, `{"latency":5}`, `{"status":200}`} {
		if r := mustSend(t, "POST", base+"/faults", body); r.status != http.StatusBadRequest {
			t.Errorf("POST faults %s = %d, want 400", body, r.status)
		}
	}
	r := mustSend(t, "POST", base+"/faults", `{"path":"/items","status":500,"times":1}`)
	var added struct{ ID int }
	if err := json.Unmarshal(r.body, &added); err != nil || r.status != http.StatusOK || added.ID == 0 {
		t.Fatalf("POST faults = %d %q", r.status, r.body)
	}
	// A catch-all fault must not touch the control endpoints.
	srv.AddFault(Fault{Status: http.StatusServiceUnavailable, Skip: 1})

	mustSend(t, "POST", srv.URL()+"/items", `{}`) // hit by the first fault
	mustSend(t, "POST", srv.URL()+"/items", `{}`) // hit by the second
	r = mustSend(t, "GET", base+"/faults", "")
	var listed struct {
		Faults []struct {
			ID, Status, Matched, Applied int
		}
	}
	if err := json.Unmarshal(r.body, &listed); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET faults = %d %q", r.status, r.body)
	}
	if got := fmt.Sprint(listed.Faults); got != fmt.Sprintf("[{%d 500 2 1} {%d 503 2 1}]", added.ID, added.ID+1) {
		t.Fatalf("faults = %s", got)
	}

	srv.ClearFaults()
	mustSend(t, "POST", srv.URL()+"/items", `{"name":"x"}`)
	var objects struct{ Objects []Object }
	if err := json.Unmarshal(mustSend(t, "GET", base+"/objects", "").body, &objects); err != nil || len(objects.Objects) != 1 {
		t.Fatalf("GET objects = %+v %v", objects, err)
	}

	srv.AddFault(Fault{Status: 500})
	if r := mustSend(t, "POST", base+"/reset", ""); r.status != http.StatusNoContent {
		t.Fatalf("POST reset = %d", r.status)
	}
	if len(srv.Objects()) != 0 || len(srv.Calls()) != 0 {
		t.Fatalf("reset left objects %v or calls %v", srv.Objects(), srv.Calls())
	}
	if r := mustSend(t, "POST", srv.URL()+"/items", `{}`); r.status != http.StatusCreated {
		t.Fatalf("reset left a fault: %d", r.status)
	}
	if r := mustSend(t, "DELETE", base+"/faults", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE faults = %d", r.status)
	}
	srv.AddFault(Fault{Status: http.StatusServiceUnavailable})
	if r := mustSend(t, "GET", base+"/nothing", ""); r.status != http.StatusNotFound {
		t.Fatalf("unknown control endpoint = %d", r.status)
	}
	for key := range srv.Calls() {
		if strings.Contains(key, "_sandbox") {
			t.Fatalf("control endpoint counted as an upstream call: %v", srv.Calls())
		}
	}
}

func TestConcurrentRequestsFaultsAndCounters(t *testing.T) {
	srv, _ := startItems(t)
	const workers, perWorker = 16, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if _, err := send(t, http.DefaultClient, "GET", srv.URL()+"/items/1", ""); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			srv.AddFault(Fault{Path: "/items", Status: 500, Times: 1, Skip: i % 3})
			_ = srv.Calls()
			if i%10 == 0 {
				srv.ClearFaults()
			}
		}
	})
	wg.Wait()
	if got := srv.Calls()["GET /items/{id}"]; got != workers*perWorker {
		t.Fatalf("counted %d calls, want %d", got, workers*perWorker)
	}
}
