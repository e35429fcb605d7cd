package testutil

import (
	"io"
	"net/http"
	"strings"
)

// Answer is one scripted HTTP answer.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// FuzzTransport is an http.RoundTripper for fuzzing a provider's client: it
// answers every call as Script does, an upstream behaving well, except that
// its FuzzAt-th call (from 0) gets the Fuzzed answer. Not safe for
// concurrent use, which a fuzzed call sequence does not need.
type FuzzTransport struct {
	Script func(*http.Request) Answer
	FuzzAt int
	Fuzzed Answer
	calls  int
}

// RoundTrip implements http.RoundTripper.
func (f *FuzzTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	a := f.Fuzzed
	if f.calls != f.FuzzAt {
		a = f.Script(req)
	}
	f.calls++
	if a.Header == nil {
		a.Header = http.Header{}
	}
	return &http.Response{StatusCode: a.Status, Header: a.Header, Body: io.NopCloser(strings.NewReader(a.Body)), Request: req}, nil
}
