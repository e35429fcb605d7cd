// Package s3gateway is a small, stateful S3-compatible endpoint for the
// sandbox. It checks AWS Signature Version 4 on every request against the
// secret a Resolver gives for the access key id, so a test can prove that
// credentials a provider issued work with a real S3 client while they are
// live, and are refused once they were revoked.
//
// It serves path-style requests only:
//
//	PUT    /{bucket}/{key}            PutObject
//	GET    /{bucket}/{key}            GetObject (HEAD: HeadObject)
//	DELETE /{bucket}/{key}            DeleteObject
//	GET    /{bucket}?list-type=2      ListObjectsV2
//	HEAD   /{bucket}                  HeadBucket
//
// Buckets are seeded (Options.Buckets); they cannot be created or deleted
// through the API. Anything else is authenticated and then answered with
// 501 NotImplemented. Errors are S3's XML <Error> documents.
//
// The gateway logs nothing, and no answer carries a secret.
package s3gateway

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

const (
	// DefaultMaxObjectSize bounds one object's size.
	DefaultMaxObjectSize = 8 << 20
	// DefaultMaxObjects bounds how many objects the gateway holds in all.
	DefaultMaxObjects = 10000
	// MaxClockSkew is how far X-Amz-Date may be from the gateway's clock,
	// either way, as in S3.
	MaxClockSkew = 15 * time.Minute
	// maxListKeys is S3's cap on max-keys.
	maxListKeys = 1000
)

// Resolver returns the secret access key of an access key id. Its error is
// ErrUnknownKey for an id the gateway's credential store does not hold, or
// ErrAccessDenied, with the secret, for one it holds whose access is refused
// upstream; any other error is the store failing.
type Resolver func(accessKeyID string) (secret string, err error)

var (
	// ErrUnknownKey is an access key id the credential store does not
	// hold: S3 answers 403 InvalidAccessKeyId.
	ErrUnknownKey = errors.New("s3gateway: unknown access key id")
	// ErrAccessDenied is an access key id the credential store still
	// holds, whose access is refused where it is enforced: Storj's gateway
	// resolves the S3 credentials of a revoked or expired access grant (or
	// a deleted API key) at its auth service as before, checks the
	// signature, and only the satellite refuses, which it answers as
	// 403 AccessDenied.
	ErrAccessDenied = errors.New("s3gateway: access refused upstream")
)

// Known adapts a lookup that answers only for live keys: every other id
// is unknown, as for an access key deleted at S3 or Katapult.
func Known(lookup func(accessKeyID string) (string, bool)) Resolver {
	return func(accessKeyID string) (string, error) {
		if secret, ok := lookup(accessKeyID); ok {
			return secret, nil
		}
		return "", ErrUnknownKey
	}
}

// Options configures a Gateway.
type Options struct {
	// Name is the emulator's name in the sandbox; empty means "s3".
	Name string
	// Buckets exist from the start and after every Reset.
	Buckets []string
	// Now is the clock X-Amz-Date is checked against; nil means time.Now.
	Now func() time.Time
	// MaxObjectSize bounds one object; 0 means DefaultMaxObjectSize.
	MaxObjectSize int64
	// MaxObjects bounds the number of objects; 0 means DefaultMaxObjects.
	MaxObjects int
}

// Gateway is the S3 emulator. It implements sandbox.Emulator.
type Gateway struct {
	name       string
	resolve    Resolver
	now        func() time.Time
	maxSize    int64
	maxObjects int
	seed       []string
	mux        *http.ServeMux

	mu      sync.Mutex
	buckets map[string]map[string]*object
}

var _ sandbox.Emulator = (*Gateway)(nil)

// object is one stored object.
type object struct {
	data        []byte
	etag        string // quoted hex MD5, as S3 sends it
	contentType string
	// contentEncoding is what the writer sent, without aws-chunked.
	contentEncoding string
	lastModified    time.Time
	// checksums maps an algorithm's header name (x-amz-checksum-crc32…) to
	// the base64 value the writer sent and the gateway verified.
	checksums map[string]string
	// owner is the access key id that wrote the object.
	owner string
}

// New returns a gateway that checks signatures with the secrets resolve
// returns. It panics if resolve is nil.
func New(resolve Resolver, opts Options) *Gateway {
	if resolve == nil {
		panic("s3gateway: nil Resolver")
	}
	g := &Gateway{name: opts.Name, resolve: resolve, now: opts.Now, maxSize: opts.MaxObjectSize,
		maxObjects: opts.MaxObjects, seed: slices.Clone(opts.Buckets)}
	if g.name == "" {
		g.name = "s3"
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.maxSize <= 0 {
		g.maxSize = DefaultMaxObjectSize
	}
	if g.maxObjects <= 0 {
		g.maxObjects = DefaultMaxObjects
	}
	g.Reset()
	g.mux = g.routes()
	return g
}

// Name is Options.Name, "s3" by default.
func (g *Gateway) Name() string { return g.name }

// Handler serves the S3 API. It is an *http.ServeMux so the sandbox counts
// calls by route template.
func (g *Gateway) Handler() http.Handler { return g.mux }

// Reset drops every object and brings back the seeded buckets.
func (g *Gateway) Reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.buckets = make(map[string]map[string]*object, len(g.seed))
	for _, b := range g.seed {
		g.buckets[b] = map[string]*object{}
	}
}

// Objects lists every bucket and every object. An object's Owner is the
// access key id that wrote it.
func (g *Gateway) Objects() []sandbox.Object {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []sandbox.Object
	for _, name := range slices.Sorted(maps.Keys(g.buckets)) {
		objects := g.buckets[name]
		out = append(out, sandbox.Object{Kind: "bucket", ID: name, Name: name, Live: true, State: "active",
			Extra: map[string]any{"objects": len(objects)}})
		for _, key := range slices.Sorted(maps.Keys(objects)) {
			o := objects[key]
			out = append(out, sandbox.Object{Kind: "object", ID: name + "/" + key, Name: key, Owner: o.owner,
				Live: true, State: "stored",
				Extra: map[string]any{"bucket": name, "size": len(o.data), "etag": o.etag, "last_modified": o.lastModified}})
		}
	}
	return out
}

// FaultBody shapes an injected error as S3 does: an XML <Error> document.
func (g *Gateway) FaultBody(status int) (string, []byte) {
	code, ok := faultCodes[status]
	if !ok {
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	e := &s3Error{status: status, code: code, message: "Injected by the sandbox."}
	return "application/xml", e.body("", newRequestID())
}

var faultCodes = map[int]string{
	http.StatusBadRequest:          "InvalidRequest",
	http.StatusForbidden:           "AccessDenied",
	http.StatusNotFound:            "NoSuchKey",
	http.StatusMethodNotAllowed:    "MethodNotAllowed",
	http.StatusConflict:            "OperationAborted",
	http.StatusTooManyRequests:     "SlowDown",
	http.StatusInternalServerError: "InternalError",
	http.StatusNotImplemented:      "NotImplemented",
	http.StatusServiceUnavailable:  "SlowDown",
}

func (g *Gateway) routes() *http.ServeMux {
	mux := http.NewServeMux()
	g.handle(mux, "PUT /{bucket}/{key...}", g.putObject)
	g.handle(mux, "GET /{bucket}/{key...}", g.getObject)
	g.handle(mux, "HEAD /{bucket}/{key...}", g.getObject)
	g.handle(mux, "DELETE /{bucket}/{key...}", g.deleteObject)
	g.handle(mux, "GET /{bucket}", g.listObjects)
	g.handle(mux, "HEAD /{bucket}", g.headBucket)
	g.handle(mux, "/", func(*request) (*response, *s3Error) {
		return nil, errNotImplemented("this sandbox gateway supports only PutObject, GetObject, HeadObject, DeleteObject, ListObjectsV2 and HeadBucket, path-style")
	})
	return mux
}

// request is one authenticated S3 request with its verified payload.
type request struct {
	r           *http.Request
	accessKeyID string
	payload     []byte
	// checksums are the x-amz-checksum-* values, from headers or the
	// aws-chunked trailer, already checked against payload.
	checksums map[string]string
	// contentEncoding is Content-Encoding without aws-chunked.
	contentEncoding string
}

// response is what a handler answers when it succeeds.
type response struct {
	status int
	header http.Header
	body   []byte
}

type operation func(*request) (*response, *s3Error)

// handle registers op behind authentication and payload verification.
func (g *Gateway) handle(mux *http.ServeMux, pattern string, op operation) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		requestID := newRequestID()
		w.Header().Set("x-amz-request-id", requestID)
		w.Header().Set("x-amz-id-2", requestID)
		w.Header().Set("Date", g.now().UTC().Format(http.TimeFormat))
		w.Header().Set("Server", "s3gateway-sandbox")
		resp, err := g.serve(w, r, op)
		if err != nil {
			err.write(w, r, requestID)
			return
		}
		for k, v := range resp.header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.status)
		_, _ = w.Write(resp.body)
	})
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, op operation) (*response, *s3Error) {
	auth, err := g.authenticate(r)
	if err != nil {
		return nil, err
	}
	req := &request{r: r, accessKeyID: auth.accessKeyID}
	if err := g.readPayload(w, r, auth, req); err != nil {
		return nil, err
	}
	return op(req)
}

// bucket returns the named bucket's objects; the caller holds g.mu.
func (g *Gateway) bucket(name string) (map[string]*object, *s3Error) {
	objects, ok := g.buckets[name]
	if !ok {
		return nil, errNoSuchBucket(name)
	}
	return objects, nil
}

func (g *Gateway) putObject(req *request) (*response, *s3Error) {
	bucket, key := req.r.PathValue("bucket"), req.r.PathValue("key")
	if key == "" {
		return nil, errNotImplemented("buckets are seeded by the sandbox; CreateBucket is not supported")
	}
	if req.r.Header.Get("x-amz-copy-source") != "" {
		return nil, errNotImplemented("CopyObject is not supported")
	}
	if q := req.r.URL.Query(); q.Has("uploads") || q.Has("uploadId") || q.Has("partNumber") {
		return nil, errNotImplemented("multipart uploads are not supported")
	}
	sum := md5.Sum(req.payload)
	o := &object{
		data:            req.payload,
		etag:            `"` + hex.EncodeToString(sum[:]) + `"`,
		contentType:     req.r.Header.Get("Content-Type"),
		contentEncoding: req.contentEncoding,
		lastModified:    g.now().UTC().Truncate(time.Second),
		checksums:       req.checksums,
		owner:           req.accessKeyID,
	}
	if o.contentType == "" {
		o.contentType = "binary/octet-stream"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	objects, err := g.bucket(bucket)
	if err != nil {
		return nil, err
	}
	if _, exists := objects[key]; !exists && g.objectCount() >= g.maxObjects {
		return nil, &s3Error{status: http.StatusServiceUnavailable, code: "SlowDown",
			message: fmt.Sprintf("This sandbox gateway holds at most %d objects.", g.maxObjects)}
	}
	objects[key] = o
	h := http.Header{"Etag": {o.etag}}
	for name, value := range o.checksums {
		h.Set(name, value)
	}
	if len(o.checksums) > 0 {
		h.Set("x-amz-checksum-type", "FULL_OBJECT")
	}
	return &response{status: http.StatusOK, header: h}, nil
}

func (g *Gateway) objectCount() int {
	n := 0
	for _, objects := range g.buckets {
		n += len(objects)
	}
	return n
}

// getObject serves GET and HEAD of an object, or lists the bucket for a
// path-style "/bucket/".
func (g *Gateway) getObject(req *request) (*response, *s3Error) {
	bucket, key := req.r.PathValue("bucket"), req.r.PathValue("key")
	if key == "" {
		if req.r.Method == http.MethodHead {
			return g.headBucket(req)
		}
		return g.listObjects(req)
	}
	if req.r.Header.Get("Range") != "" || req.r.URL.Query().Has("partNumber") {
		return nil, errNotImplemented("ranged and part GETs are not supported")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	objects, err := g.bucket(bucket)
	if err != nil {
		return nil, err
	}
	o, ok := objects[key]
	if !ok {
		return nil, &s3Error{status: http.StatusNotFound, code: "NoSuchKey", message: "The specified key does not exist.", key: key}
	}
	h := http.Header{
		"Etag":           {o.etag},
		"Content-Type":   {o.contentType},
		"Content-Length": {strconv.Itoa(len(o.data))},
		"Last-Modified":  {o.lastModified.Format(http.TimeFormat)},
		"Accept-Ranges":  {"bytes"},
	}
	if o.contentEncoding != "" {
		h.Set("Content-Encoding", o.contentEncoding)
	}
	if strings.EqualFold(req.r.Header.Get("x-amz-checksum-mode"), "ENABLED") && len(o.checksums) > 0 {
		for name, value := range o.checksums {
			h.Set(name, value)
		}
		h.Set("x-amz-checksum-type", "FULL_OBJECT")
	}
	resp := &response{status: http.StatusOK, header: h}
	if req.r.Method != http.MethodHead {
		resp.body = o.data
	}
	return resp, nil
}

func (g *Gateway) deleteObject(req *request) (*response, *s3Error) {
	bucket, key := req.r.PathValue("bucket"), req.r.PathValue("key")
	if key == "" {
		return nil, errNotImplemented("buckets are seeded by the sandbox; DeleteBucket is not supported")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	objects, err := g.bucket(bucket)
	if err != nil {
		return nil, err
	}
	// S3 answers 204 whether or not the key existed.
	delete(objects, key)
	return &response{status: http.StatusNoContent}, nil
}

func (g *Gateway) headBucket(req *request) (*response, *s3Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.bucket(req.r.PathValue("bucket")); err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK}, nil
}

func newRequestID() string {
	return strings.ToUpper(hex.EncodeToString(sandbox.RandomBytes(8)))
}
