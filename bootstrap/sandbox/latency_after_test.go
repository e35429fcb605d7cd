package sandbox

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// sent is the outcome of a request sent in the background.
type sent struct {
	reply reply
	err   error
	at    time.Time
}

func sendAsync(t *testing.T, client *http.Client, method, url, body string) <-chan sent {
	t.Helper()
	done := make(chan sent, 1)
	go func() {
		r, err := send(t, client, method, url, body)
		done <- sent{reply: r, err: err, at: time.Now()}
	}()
	return done
}

// waitObjects polls until the emulator holds n objects, for at most limit.
func waitObjects(t *testing.T, srv *Server, n int, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for len(srv.Objects()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("objects = %d after %v, want %d", len(srv.Objects()), limit, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

func TestLatencyAfterFaultHandlesFirstAnswersLater(t *testing.T) {
	srv, _ := startItems(t)
	const after = 400 * time.Millisecond
	srv.AddFault(Fault{Method: "POST", Path: "/items", LatencyAfterMS: int(after.Milliseconds()), Times: 1})
	start := time.Now()
	done := sendAsync(t, http.DefaultClient, "POST", srv.URL()+"/items", `{"name":"early"}`)

	// The item exists upstream while the client still waits for the answer.
	created := waitObjects(t, srv, 1, 2*time.Second)
	if created.Sub(start) > after/2 {
		t.Fatalf("the handler ran only after %v: it should run before the wait", created.Sub(start))
	}
	select {
	case s := <-done:
		t.Fatalf("answered %v after the handler ran, before the %v wait was over: %v %d", s.at.Sub(created), after, s.err, s.reply.status)
	default:
	}

	var s sent
	select {
	case s = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer 5s after the handler ran")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	if elapsed := s.at.Sub(start); elapsed < after {
		t.Fatalf("answered after %v, want at least %v", elapsed, after)
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
	// Times: 1, so the next request is answered at once.
	start = time.Now()
	if r := mustSend(t, "POST", srv.URL()+"/items", `{}`); r.status != http.StatusCreated || time.Since(start) > after/2 {
		t.Fatalf("after the fault: %d in %v", r.status, time.Since(start))
	}
}

func TestLatencyAfterFaultClientGivesUpChangesStay(t *testing.T) {
	srv, _ := startItems(t)
	srv.AddFault(Fault{Method: "POST", LatencyAfterMS: 3000})
	client := &http.Client{Timeout: 150 * time.Millisecond}
	start := time.Now()
	if r, err := send(t, client, "POST", srv.URL()+"/items", `{"name":"orphan"}`); err == nil {
		t.Fatalf("the client got an answer despite its timeout: %d %q", r.status, r.body)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("the client waited %v", elapsed)
	}
	// The client never heard of it, but the item was created.
	if objects := srv.Objects(); len(objects) != 1 || objects[0].Name != "orphan" {
		t.Fatalf("objects = %+v, want the item the client gave up on", objects)
	}
}

func TestLatencyAfterFaultCombines(t *testing.T) {
	t.Run("malformed", func(t *testing.T) {
		srv, _ := startItems(t)
		srv.AddFault(Fault{Method: "POST", LatencyAfterMS: 200, Malformed: true})
		start := time.Now()
		r := mustSend(t, "POST", srv.URL()+"/items", `{"name":"kept"}`)
		if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
			t.Fatalf("answered after %v, want at least 200ms", elapsed)
		}
		var v map[string]any
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &v) == nil {
			t.Fatalf("got %d %q, want 201 with a truncated body", r.status, r.body)
		}
		if n := len(srv.Objects()); n != 1 {
			t.Fatalf("objects = %d, want 1", n)
		}
	})
	t.Run("latency before and after", func(t *testing.T) {
		srv, _ := startItems(t)
		srv.AddFault(Fault{Method: "POST", LatencyMS: 300, LatencyAfterMS: 300})
		start := time.Now()
		done := sendAsync(t, http.DefaultClient, "POST", srv.URL()+"/items", `{}`)
		time.Sleep(150 * time.Millisecond)
		if n := len(srv.Objects()); n != 0 {
			t.Fatalf("the handler ran during latency_ms: %d objects", n)
		}
		created := waitObjects(t, srv, 1, 2*time.Second)
		s := <-done
		if s.err != nil || s.reply.status != http.StatusCreated {
			t.Fatalf("got %v %d", s.err, s.reply.status)
		}
		if created.Sub(start) < 300*time.Millisecond || s.at.Sub(start) < 600*time.Millisecond {
			t.Fatalf("created after %v and answered after %v, want at least 300ms and 600ms", created.Sub(start), s.at.Sub(start))
		}
	})
}

func TestCloseEndsRequestsWaitingInLatencyAfter(t *testing.T) {
	emu := newItemsEmulator()
	srv, err := Start(emu, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.AddFault(Fault{LatencyAfterMS: 60000})
	done := sendAsync(t, http.DefaultClient, "POST", srv.URL()+"/items", `{}`)
	waitObjects(t, srv, 1, 2*time.Second)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-done:
		if s.err == nil {
			t.Fatalf("request answered %d after Close", s.reply.status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still pending 5s after Close")
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
