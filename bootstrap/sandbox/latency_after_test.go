package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// failsafe bounds how long a test waits for a signal it set up. Only a
// broken sandbox gets there, and the test fails then: it guards against
// hanging, never bounds how fast something ran.
const failsafe = time.Minute

// receive returns the next value from ch, failing the test, which names what
// it waited for, if none comes within failsafe.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatalf("no %s within %s", what, failsafe)
	}
	panic("unreachable")
}

// latency stands in for the latency faults' wait, so that no test races a
// real delay: every wait announces its duration on asked and lasts until
// the test lets it go or the request's context ends; ended then says which
// (true: let go).
type latency struct {
	asked   chan time.Duration
	proceed chan struct{}
	ended   chan bool
}

func (l *latency) wait(ctx context.Context, d time.Duration) bool {
	l.asked <- d
	select {
	case <-l.proceed:
		l.ended <- true
		return true
	case <-ctx.Done():
		l.ended <- false
		return false
	}
}

// letGo ends the wait under way.
func (l *latency) letGo(t *testing.T) {
	t.Helper()
	select {
	case l.proceed <- struct{}{}:
	case <-time.After(failsafe):
		t.Fatalf("no latency wait to let go within %s", failsafe)
	}
	if !receive(t, l.ended, "end of the latency wait") {
		t.Fatal("the wait ended with the request's context, not when let go")
	}
}

// startWithLatency is startItems with the latency faults' waits in the
// test's hands.
func startWithLatency(t *testing.T) (*Server, *latency) {
	t.Helper()
	l := &latency{asked: make(chan time.Duration, 16), proceed: make(chan struct{}), ended: make(chan bool, 16)}
	srv, err := start(newItemsEmulator(), "127.0.0.1:0", l.wait, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, l
}

// sent is the outcome of a request sent in the background.
type sent struct {
	reply reply
	err   error
}

// sendAsync sends a request in the background; cancelling ctx makes the
// client give up.
func sendAsync(t *testing.T, ctx context.Context, method, url, body string) <-chan sent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan sent, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- sent{err: err}
			return
		}
		defer resp.Body.Close()
		var r reply
		r.status, r.header = resp.StatusCode, resp.Header
		r.body, err = io.ReadAll(resp.Body)
		done <- sent{reply: r, err: err}
	}()
	return done
}

// notAnsweredYet fails the test if done already holds an answer.
func notAnsweredYet(t *testing.T, done <-chan sent, when string) {
	t.Helper()
	select {
	case s := <-done:
		t.Fatalf("answered %s: %v %d", when, s.err, s.reply.status)
	default:
	}
}

func TestLatencyAfterFaultHandlesFirstAnswersLater(t *testing.T) {
	srv, lat := startWithLatency(t)
	const after = 400 * time.Millisecond
	srv.AddFault(Fault{Method: "POST", Path: "/items", LatencyAfterMS: int(after.Milliseconds()), Times: 1})
	done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{"name":"early"}`)

	// The item exists upstream while the client still waits for the answer.
	if d := receive(t, lat.asked, "latency_after wait"); d != after {
		t.Fatalf("the fault waits %v, want %v", d, after)
	}
	if n := len(srv.Objects()); n != 1 {
		t.Fatalf("objects = %d during the wait: the handler should run before it", n)
	}
	notAnsweredYet(t, done, "before the wait was over")
	lat.letGo(t)

	s := receive(t, done, "answer after the wait")
	if s.err != nil {
		t.Fatal(s.err)
	}
	// The answer is the handler's own, untouched.
	var body struct{ ID, Name string }
	if s.reply.status != http.StatusCreated || s.reply.header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(s.reply.body, &body) != nil || body.ID != "1" || body.Name != "early" {
		t.Fatalf("got %d %q %q, want the handler's 201 with item 1", s.reply.status, s.reply.header.Get("Content-Type"), s.reply.body)
	}
	if objects := srv.Objects(); len(objects) != 1 || objects[0].Name != "early" {
		t.Fatalf("objects = %+v, want the one item", objects)
	}
	// Times: 1, so the next request is answered without a wait.
	done = sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{}`)
	if s := receive(t, done, "answer once the fault is spent"); s.err != nil || s.reply.status != http.StatusCreated || len(lat.asked) != 0 {
		t.Fatalf("after the fault: %v %d after %d more waits", s.err, s.reply.status, len(lat.asked))
	}
}

func TestLatencyAfterFaultClientGivesUpChangesStay(t *testing.T) {
	srv, lat := startWithLatency(t)
	srv.AddFault(Fault{Method: "POST", LatencyAfterMS: 3000})
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	done := sendAsync(t, ctx, "POST", srv.URL()+"/items", `{"name":"orphan"}`)
	receive(t, lat.asked, "latency_after wait")
	giveUp()
	if s := receive(t, done, "client error"); s.err == nil {
		t.Fatalf("the client got an answer despite giving up: %d %q", s.reply.status, s.reply.body)
	}
	// The server stops waiting when the client leaves, not when the
	// latency is over.
	if letGo := receive(t, lat.ended, "end of the latency wait"); letGo {
		t.Fatal("the wait outlasted the client")
	}
	// The client never heard of it, but the item was created.
	if objects := srv.Objects(); len(objects) != 1 || objects[0].Name != "orphan" {
		t.Fatalf("objects = %+v, want the item the client gave up on", objects)
	}
}

func TestLatencyAfterFaultCombines(t *testing.T) {
	t.Run("malformed", func(t *testing.T) {
		srv, lat := startWithLatency(t)
		srv.AddFault(Fault{Method: "POST", LatencyAfterMS: 200, Malformed: true})
		done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{"name":"kept"}`)
		if d := receive(t, lat.asked, "latency_after wait"); d != 200*time.Millisecond {
			t.Fatalf("the fault waits %v, want 200ms", d)
		}
		notAnsweredYet(t, done, "before the wait was over")
		lat.letGo(t)
		r := receive(t, done, "answer")
		var v map[string]any
		if r.err != nil || r.reply.status != http.StatusCreated || json.Unmarshal(r.reply.body, &v) == nil {
			t.Fatalf("got %v %d %q, want 201 with a truncated body", r.err, r.reply.status, r.reply.body)
		}
		if n := len(srv.Objects()); n != 1 {
			t.Fatalf("objects = %d, want 1", n)
		}
	})
	t.Run("latency before and after", func(t *testing.T) {
		srv, lat := startWithLatency(t)
		srv.AddFault(Fault{Method: "POST", LatencyMS: 300, LatencyAfterMS: 400})
		done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{}`)
		if d := receive(t, lat.asked, "latency_ms wait"); d != 300*time.Millisecond {
			t.Fatalf("the first wait is %v, want latency_ms 300ms", d)
		}
		if n := len(srv.Objects()); n != 0 {
			t.Fatalf("the handler ran during latency_ms: %d objects", n)
		}
		lat.letGo(t)
		if d := receive(t, lat.asked, "latency_after wait"); d != 400*time.Millisecond {
			t.Fatalf("the second wait is %v, want latency_after_ms 400ms", d)
		}
		if n := len(srv.Objects()); n != 1 {
			t.Fatalf("objects = %d during latency_after_ms, want the handler to have run", n)
		}
		notAnsweredYet(t, done, "during latency_after_ms")
		lat.letGo(t)
		if s := receive(t, done, "answer"); s.err != nil || s.reply.status != http.StatusCreated {
			t.Fatalf("got %v %d", s.err, s.reply.status)
		}
	})
}

func TestCloseEndsRequestsWaitingInLatencyAfter(t *testing.T) {
	srv, lat := startWithLatency(t)
	srv.AddFault(Fault{LatencyAfterMS: 60000})
	done := sendAsync(t, context.Background(), "POST", srv.URL()+"/items", `{}`)
	receive(t, lat.asked, "latency_after wait")
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

func TestLatencyAfterFaultValidate(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		ok    bool
	}{
		{"alone", Fault{LatencyAfterMS: 10}, true},
		{"with latency", Fault{LatencyMS: 10, LatencyAfterMS: 10}, true},
		{"with malformed", Fault{LatencyAfterMS: 10, Malformed: true}, true},
		{"with status", Fault{LatencyAfterMS: 10, Status: 500}, false},
		{"with drop", Fault{LatencyAfterMS: 10, Drop: true}, false},
		{"negative", Fault{LatencyAfterMS: -1, Malformed: true}, false},
		{"too long", Fault{LatencyAfterMS: int(maxLatency.Milliseconds()) + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fault.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}

	srv, _ := startItems(t)
	for body, want := range map[string]int{
		`{"path":"/items","latency_after_ms":100}`: http.StatusOK,
		`{"latency_after_ms":100,"status":500}`:    http.StatusBadRequest,
	} {
		if r := mustSend(t, "POST", srv.URL()+"/_sandbox/faults", body); r.status != want {
			t.Errorf("POST /_sandbox/faults %s = %d %q, want %d", body, r.status, r.body, want)
		}
	}
	var listed struct{ Faults []Fault }
	if err := json.Unmarshal(mustSend(t, "GET", srv.URL()+"/_sandbox/faults", "").body, &listed); err != nil ||
		len(listed.Faults) != 1 || listed.Faults[0].LatencyAfterMS != 100 {
		t.Fatalf("GET /_sandbox/faults = %+v %v", listed, err)
	}
}
