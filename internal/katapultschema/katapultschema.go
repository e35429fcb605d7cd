// Package katapultschema judges the Katapult emulator and the plugin by
// Katapult's published Core API schema: it wraps the emulator's handler so
// that every request it receives and every answer it gives is validated
// against the OpenAPI document that github.com/krystal/go-katapult v0.2.13
// ships (testdata/README.md), and records each mismatch with the operation
// id and the place in the document it breaks.
package katapultschema

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

//go:embed testdata/katapult-core-openapi.json
var document []byte

// serverURL is the document's only server; requests are matched as if sent
// to it, since the emulator listens on a loopback address under the same
// /core/v1 base path.
const serverURL = "https://api.katapult.io/core/v1"

// load parses and checks the document once per test binary: it is 850 KB.
var load = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("load the Katapult schema: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the Katapult schema is not valid OpenAPI: %w", err)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != serverURL {
		return nil, fmt.Errorf("the Katapult schema's servers changed: want only %s", serverURL)
	}
	closeObjects(doc)
	return gorillamux.NewRouter(doc)
})

// closeObjects makes every object schema that lists its properties refuse
// others. The document never says additionalProperties, so as written it
// would let any invented field through; but it is generated from Katapult's
// own API definitions, which answer with exactly the fields they declare and
// name every argument they read. No schema in it mixes properties with
// allOf, oneOf or anyOf, where closing would be wrong.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, list := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, r := range list {
				walk(r)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, p := range op.Parameters {
				walk(p.Value.Schema)
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema)
				}
			}
			for _, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// Mismatch is one request or answer the document does not allow.
type Mismatch struct {
	// Operation is the document's operationId, or the method and path when
	// no operation matches.
	Operation string
	// Schema is where in the document the rule broken lives, a JSON pointer
	// such as #/paths/~1users~1current/get/responses/200.
	Schema string
	// Problem says what broke, naming the part of the value by JSON pointer;
	// it never carries the value, which may be a secret.
	Problem string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: %s: %s", m.Operation, m.Schema, m.Problem)
}

// Recorder collects the mismatches seen by the handlers it wraps.
type Recorder struct {
	mu         sync.Mutex
	mismatches []Mismatch
}

// Mismatches returns what was recorded so far.
func (r *Recorder) Mismatches() []Mismatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.mismatches)
}

func (r *Recorder) add(ms ...Mismatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mismatches = append(r.mismatches, ms...)
}

// Emulator is a sandbox.Emulator whose handler is validated against the
// document into Recorder.
type Emulator struct {
	sandbox.Emulator
	Recorder *Recorder
}

// Handler implements sandbox.Emulator.
func (e Emulator) Handler() http.Handler {
	return e.Recorder.Wrap(e.Emulator.Handler())
}

// Checked wraps emu so that every request and answer is validated, and fails
// t at its end with every mismatch seen.
func Checked(t testing.TB, emu sandbox.Emulator) Emulator {
	t.Helper()
	if _, err := load(); err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	t.Cleanup(func() {
		for _, m := range rec.Mismatches() {
			t.Errorf("Katapult schema mismatch: %s", m)
		}
	})
	return Emulator{Emulator: emu, Recorder: rec}
}

// Wrap returns next validated into r.
func (r *Recorder) Wrap(next http.Handler) http.Handler {
	return validated{next: next, rec: r}
}

type validated struct {
	next http.Handler
	rec  *Recorder
}

func (v validated) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	tee := &teeWriter{ResponseWriter: w}
	v.next.ServeHTTP(tee, req)
	v.rec.add(check(req, body, tee)...)
}

// Handler looks routes up in the emulator's own mux, so that the sandbox
// still names calls by route template.
func (v validated) Handler(r *http.Request) (http.Handler, string) {
	if rt, ok := v.next.(interface {
		Handler(*http.Request) (http.Handler, string)
	}); ok {
		return rt.Handler(r)
	}
	return v.next, ""
}

// teeWriter passes an answer through and keeps a copy of it.
type teeWriter struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (t *teeWriter) WriteHeader(status int) {
	if t.status == 0 {
		t.status = status
		t.header = t.ResponseWriter.Header().Clone()
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *teeWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.WriteHeader(http.StatusOK)
	}
	t.body.Write(b)
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// check validates one exchange.
func check(req *http.Request, body []byte, answer *teeWriter) []Mismatch {
	router, err := load()
	if err != nil {
		return []Mismatch{{Operation: req.Method + " " + req.URL.Path, Schema: "#", Problem: err.Error()}}
	}
	// Match as if sent to the document's server.
	asSent := req.Clone(context.Background())
	asSent.URL.Scheme, asSent.URL.Host, asSent.Host = "https", "api.katapult.io", "api.katapult.io"
	asSent.Body = io.NopCloser(bytes.NewReader(body))
	route, pathParams, err := router.FindRoute(asSent)
	if err != nil {
		return []Mismatch{{Operation: req.Method + " " + req.URL.Path, Schema: "#/paths", Problem: "no operation in the document: " + err.Error()}}
	}
	opts := &openapi3filter.Options{
		MultiError:            true,
		IncludeResponseStatus: true,
		AuthenticationFunc:    authenticate,
	}
	in := &openapi3filter.RequestValidationInput{Request: asSent, PathParams: pathParams, Route: route, Options: opts}
	op := route.Operation.OperationID
	where := "#/paths/" + pointerEscape(route.Path) + "/" + strings.ToLower(route.Method)
	var out []Mismatch
	for _, name := range undeclaredQuery(route, asSent) {
		out = append(out, Mismatch{Operation: op, Schema: where + "/parameters",
			Problem: fmt.Sprintf("query parameter %q is not declared", name)})
	}
	// Each top-level error names the part of the request; its leaves say
	// what broke there.
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	top, isMulti := reqErr.(openapi3.MultiError)
	if !isMulti && reqErr != nil {
		top = openapi3.MultiError{reqErr}
	}
	for _, e := range top {
		for _, leaf := range leaves(e) {
			out = append(out, Mismatch{Operation: op, Schema: where + requestPlace(e), Problem: describe(leaf)})
		}
	}
	if answer.status == 0 {
		return out // the handler aborted; there is no answer to judge
	}
	status := strconv.Itoa(answer.status)
	answerBody := answer.body.Bytes()
	if answer.status >= http.StatusBadRequest {
		inner, ok := unwrapError(answerBody)
		if !ok {
			return append(out, Mismatch{Operation: op, Schema: where + "/responses/" + status,
				Problem: `error body is not {"error":{…}}, the envelope Katapult sends`})
		}
		answerBody = inner
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 answer.status,
		Header:                 answer.header,
		Body:                   io.NopCloser(bytes.NewReader(answerBody)),
		Options:                opts,
	})
	for _, e := range leaves(err) {
		out = append(out, Mismatch{Operation: op, Schema: where + "/responses/" + status, Problem: describe(e)})
	}
	return out
}

// undeclaredQuery lists the query parameters of r that the operation does
// not declare, which kin-openapi lets through: Katapult would not read them,
// so a client sending one expects an effect it will not get.
func undeclaredQuery(route *routers.Route, r *http.Request) []string {
	declared := map[string]bool{}
	for _, params := range []openapi3.Parameters{route.PathItem.Parameters, route.Operation.Parameters} {
		for _, p := range params {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				declared[p.Value.Name] = true
			}
		}
	}
	var out []string
	for name := range r.URL.Query() {
		if !declared[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// unwrapError returns the object inside Katapult's error envelope
// {"error":{"code","description","detail"}}. The document describes error
// bodies as that inner object at the top level, but Katapult and its own
// clients (go-katapult's errors.go and its fixtures) use the envelope, as
// does the emulator; so errors are judged by what is inside it.
func unwrapError(body []byte) ([]byte, bool) {
	var envelope map[string]json.RawMessage
	if json.Unmarshal(body, &envelope) != nil || len(envelope) != 1 {
		return nil, false
	}
	inner, ok := envelope["error"]
	if !ok || !bytes.HasPrefix(bytes.TrimSpace(inner), []byte("{")) {
		return nil, false
	}
	return inner, true
}

// authenticate accepts what Katapult's Authenticator scheme (HTTP bearer)
// asks for: a non-empty bearer token. OAuth2 is not used by the plugin.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecuritySchemeName != "Authenticator" {
		return errors.New("not used by the plugin")
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return errors.New("no Authorization: Bearer token")
	}
	return nil
}

// leaves flattens kin-openapi's multi-errors.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	var multi openapi3.MultiError
	if errors.As(err, &multi) && len(multi) > 0 {
		var out []error
		for _, e := range multi {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// requestPlace names the part of the operation a request error is about.
func requestPlace(err error) string {
	var reqErr *openapi3filter.RequestError
	switch {
	case errors.As(err, &reqErr) && reqErr.Parameter != nil:
		return "/parameters[" + reqErr.Parameter.In + ":" + reqErr.Parameter.Name + "]"
	case errors.As(err, &reqErr) && reqErr.RequestBody != nil:
		return "/requestBody"
	default:
		var secErr *openapi3filter.SecurityRequirementsError
		if errors.As(err, &secErr) {
			return "/security"
		}
		return ""
	}
}

// describe says what broke without quoting the value.
func describe(err error) string {
	var schemaErr *openapi3.SchemaError
	if errors.As(err, &schemaErr) {
		field := schemaErr.SchemaField
		if field == "" {
			field = "schema"
		}
		return fmt.Sprintf("value at /%s breaks %q: %s", strings.Join(schemaErr.JSONPointer(), "/"), field, schemaErr.Reason)
	}
	var respErr *openapi3filter.ResponseError
	if errors.As(err, &respErr) {
		if respErr.Err != nil {
			return respErr.Reason + ": " + respErr.Err.Error()
		}
		return respErr.Reason
	}
	var reqErr *openapi3filter.RequestError
	if errors.As(err, &reqErr) {
		if reqErr.Err != nil {
			return reqErr.Reason + ": " + reqErr.Err.Error()
		}
		return reqErr.Reason
	}
	return err.Error()
}

// pointerEscape escapes s as one JSON pointer token.
func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
