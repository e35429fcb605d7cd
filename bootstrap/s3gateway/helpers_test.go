package s3gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	liveID     = "AKIDLIVE0000000000000001"
	liveSecret = "live-secret/with+odd=chars"
	otherID    = "AKIDLIVE0000000000000002"
	bucket     = "photos"
)

// keys is a Resolver whose keys a test can revoke (forget), refuse (keep
// with their access refused upstream) or make the store fail for.
type keys struct {
	mu      sync.Mutex
	secrets map[string]string
	refused map[string]bool
	failing bool
}

func newKeys() *keys {
	return &keys{secrets: map[string]string{liveID: liveSecret, otherID: "other-secret"}, refused: map[string]bool{}}
}

func (k *keys) resolve(id string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.secrets[id]
	switch {
	case k.failing:
		return "", errors.New("the credential store is down")
	case !ok:
		return "", s3gateway.ErrUnknownKey
	case k.refused[id]:
		return s, s3gateway.ErrAccessDenied
	}
	return s, nil
}

func (k *keys) revoke(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.secrets, id)
}

func (k *keys) refuse(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refused[id] = true
}

func (k *keys) fail() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failing = true
}

type harness struct {
	t    *testing.T
	keys *keys
	clk  *testutil.Clock
	gw   *s3gateway.Gateway
	srv  *sandbox.Server
}

// start serves a gateway with the bucket "photos" through the sandbox. Its
// clock is the real one unless the test moves h.clk.
func start(t *testing.T, opts s3gateway.Options) *harness {
	t.Helper()
	h := &harness{t: t, keys: newKeys(), clk: testutil.NewClock(time.Now().UTC())}
	if opts.Buckets == nil {
		opts.Buckets = []string{bucket, "logs"}
	}
	if opts.Now == nil {
		opts.Now = h.clk.Now
	}
	h.gw = s3gateway.New(h.keys.resolve, opts)
	h.srv = testutil.StartEmulator(t, h.gw)
	return h
}

// client is an aws-sdk-go-v2 S3 client as config.LoadDefaultConfig would
// set it up (checksums "when supported"), path-style against base.
func client(base, id, secret, region string, httpClient *http.Client) *s3.Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	return s3.New(s3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(base),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(id, secret, ""),
		HTTPClient:                 httpClient,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
}

func (h *harness) client(id, secret string) *s3.Client {
	return client(h.srv.URL(), id, secret, "auto", nil)
}

// signed is one hand-made request, signed by the SDK's own SigV4 signer.
type signed struct {
	method, path string
	body         string
	// payloadHash is x-amz-content-sha256; empty means the body's hex SHA-256.
	payloadHash string
	id, secret  string
	region      string
	at          time.Time
	header      map[string]string
	// tamper changes the request after it was signed.
	tamper func(*http.Request)
}

func (h *harness) send(s signed) response {
	h.t.Helper()
	req := h.build(s)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", s.method, s.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (h *harness) build(s signed) *http.Request {
	h.t.Helper()
	if s.method == "" {
		s.method = http.MethodGet
	}
	if s.id == "" {
		s.id, s.secret = liveID, liveSecret
	}
	if s.region == "" {
		s.region = "uk-lon-1"
	}
	if s.at.IsZero() {
		s.at = h.clk.Now()
	}
	if s.payloadHash == "" {
		sum := sha256.Sum256([]byte(s.body))
		s.payloadHash = hex.EncodeToString(sum[:])
	}
	req, err := http.NewRequest(s.method, h.srv.URL()+s.path, strings.NewReader(s.body))
	if err != nil {
		h.t.Fatal(err)
	}
	if s.body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req.Header.Set("X-Amz-Content-Sha256", s.payloadHash)
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	creds := aws.Credentials{AccessKeyID: s.id, SecretAccessKey: s.secret}
	if err := signer.SignHTTP(context.Background(), creds, req, s.payloadHash, "s3", s.region, s.at); err != nil {
		h.t.Fatal(err)
	}
	if s.tamper != nil {
		s.tamper(req)
	}
	return req
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// s3Error is the <Error> document.
type s3Error struct {
	Code              string
	Message           string
	BucketName        string
	Key               string
	AWSAccessKeyID    string `xml:"AWSAccessKeyId"`
	HeadersNotSigned  string
	RequestID         string `xml:"RequestId"`
	MaxAllowedSkewMS  string `xml:"MaxAllowedSkewMilliseconds"`
	S3ComputedSHA256  string `xml:"S3ComputedContentSHA256"`
	ClientComputedSHA string `xml:"ClientComputedContentSHA256"`
}

func (r response) err(t *testing.T) s3Error {
	t.Helper()
	var e s3Error
	if err := xml.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/xml" {
		t.Errorf("error Content-Type = %q", ct)
	}
	return e
}

// expectError fails unless r is an S3 error with this status and code.
func expectError(t *testing.T, r response, status int, code string) s3Error {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d %s, want %d %s", r.status, r.body, status, code)
	}
	e := r.err(t)
	if e.Code != code {
		t.Fatalf("code = %q (%s), want %q", e.Code, e.Message, code)
	}
	// An error the sandbox injects has no x-amz-request-id header.
	if id := r.header.Get("x-amz-request-id"); e.RequestID == "" || (id != "" && id != e.RequestID) {
		t.Errorf("request id %q, header %q", e.RequestID, r.header.Get("x-amz-request-id"))
	}
	return e
}

// apiError unwraps an SDK error into S3's code and HTTP status.
func apiError(t *testing.T, err error) (string, int) {
	t.Helper()
	var api smithy.APIError
	if !errors.As(err, &api) {
		t.Fatalf("not an S3 API error: %v", err)
	}
	status := 0
	var resp interface{ HTTPStatusCode() int }
	if errors.As(err, &resp) {
		status = resp.HTTPStatusCode()
	}
	return api.ErrorCode(), status
}
