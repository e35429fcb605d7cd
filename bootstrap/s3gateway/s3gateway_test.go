package s3gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

var ctx = context.Background()

func put(t *testing.T, c *s3.Client, key, body string) *s3.PutObjectOutput {
	t.Helper()
	out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatalf("PutObject %s: %v", key, err)
	}
	return out
}

func get(t *testing.T, c *s3.Client, key string) string {
	t.Helper()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body) // the SDK checks the CRC32 while reading
	if err != nil {
		t.Fatalf("GetObject %s body: %v", key, err)
	}
	return string(b)
}

func listKeys(t *testing.T, c *s3.Client, in *s3.ListObjectsV2Input) (keys, prefixes []string) {
	t.Helper()
	in.Bucket = aws.String(bucket)
	p := s3.NewListObjectsV2Paginator(c, in)
	for pages := 0; p.HasMorePages(); pages++ {
		if pages > 20 {
			t.Fatal("the listing does not end")
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListObjectsV2: %v", err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		for _, cp := range out.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(cp.Prefix))
		}
	}
	return keys, prefixes
}

func TestSDKRoundTrip(t *testing.T) {
	h := start(t, s3gateway.Options{})
	c := h.client(liveID, liveSecret)
	odd := "dir/with space+plus&amp=é~!*'()"
	out := put(t, c, odd, "hello")
	if aws.ToString(out.ETag) != `"5d41402abc4b2a76b9719d911017c592"` || aws.ToString(out.ChecksumCRC32) == "" {
		t.Errorf("PutObject = ETag %v, CRC32 %v", aws.ToString(out.ETag), aws.ToString(out.ChecksumCRC32))
	}
	put(t, c, "a.txt", "a")
	put(t, c, "dir/b.txt", strings.Repeat("b", 200<<10))
	if got := get(t, c, odd); got != "hello" {
		t.Errorf("GetObject = %q", got)
	}
	if got := get(t, c, "dir/b.txt"); len(got) != 200<<10 {
		t.Errorf("GetObject of 200 KiB = %d bytes", len(got))
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.txt")})
	if err != nil || aws.ToInt64(head.ContentLength) != 1 {
		t.Fatalf("HeadObject = %+v, %v", head, err)
	}
	if keys, _ := listKeys(t, c, &s3.ListObjectsV2Input{}); strings.Join(keys, ",") != "a.txt,dir/b.txt,"+odd {
		t.Errorf("ListObjectsV2 = %q", keys)
	}
	if keys, prefixes := listKeys(t, c, &s3.ListObjectsV2Input{Delimiter: aws.String("/")}); strings.Join(keys, ",") != "a.txt" || strings.Join(prefixes, ",") != "dir/" {
		t.Errorf("ListObjectsV2 with / = %q %q", keys, prefixes)
	}
	if keys, _ := listKeys(t, c, &s3.ListObjectsV2Input{Prefix: aws.String("dir/w")}); strings.Join(keys, ",") != odd {
		t.Errorf("ListObjectsV2 prefix dir/w = %q", keys)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.txt")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.txt")})
	var noKey *types.NoSuchKey
	if code, status := apiError(t, err); code != "NoSuchKey" || status != 404 || !errors.As(err, &noKey) {
		t.Errorf("GetObject of a deleted key = %s %d", code, status)
	}
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("nope")})
	if code, status := apiError(t, err); code != "NoSuchBucket" || status != 404 {
		t.Errorf("ListObjectsV2 of a missing bucket = %s %d", code, status)
	}
	calls := h.srv.Calls()
	if calls["PUT /{bucket}/{key...}"] != 3 || calls["GET /{bucket}"] < 4 || calls["HEAD /{bucket}/{key...}"] != 1 {
		t.Errorf("calls = %v", calls)
	}
	var objects []string
	for _, o := range h.srv.Objects() {
		if o.Kind == "object" {
			objects = append(objects, o.ID+" by "+o.Owner)
		}
	}
	if strings.Join(objects, ",") != "photos/dir/b.txt by "+liveID+",photos/"+odd+" by "+liveID {
		t.Errorf("objects = %q", objects)
	}
}

func TestSDKRefusesRevokedAndWrongCredentials(t *testing.T) {
	h := start(t, s3gateway.Options{})
	c := h.client(liveID, liveSecret)
	put(t, c, "k", "v")
	_, err := h.client(liveID, "not-the-secret").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if code, status := apiError(t, err); code != "SignatureDoesNotMatch" || status != 403 {
		t.Errorf("wrong secret = %s %d", code, status)
	}
	h.keys.revoke(liveID)
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if code, status := apiError(t, err); code != "InvalidAccessKeyId" || status != 403 {
		t.Errorf("revoked key = %s %d", code, status)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k2"), Body: strings.NewReader("v")})
	if code, status := apiError(t, err); code != "InvalidAccessKeyId" || status != 403 {
		t.Errorf("revoked key PutObject = %s %d", code, status)
	}
}

// A key the store still holds whose access is refused upstream (Storj: a
// revoked access grant) is checked as any other, and then denied.
func TestRefusedAccessIsDeniedAfterTheSignature(t *testing.T) {
	h := start(t, s3gateway.Options{})
	c := h.client(liveID, liveSecret)
	put(t, c, "k", "v")
	h.keys.refuse(liveID)
	_, err := h.client(liveID, "not-the-secret").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if code, status := apiError(t, err); code != "SignatureDoesNotMatch" || status != 403 {
		t.Errorf("refused key, wrong secret = %s %d", code, status)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k2"), Body: strings.NewReader("v")})
	if code, status := apiError(t, err); code != "AccessDenied" || status != 403 {
		t.Errorf("refused key PutObject = %s %d", code, status)
	}
	for _, o := range h.srv.Objects() {
		if o.ID == bucket+"/k2" {
			t.Error("a refused key stored an object")
		}
	}
	h.keys.fail()
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if code, status := apiError(t, err); code != "InternalError" || status != 500 {
		t.Errorf("failing credential store = %s %d", code, status)
	}
}

// recorder keeps the request headers a handler saw.
type recorder struct {
	mu      sync.Mutex
	headers []http.Header
	next    http.Handler
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.headers = append(rec.headers, r.Header.Clone())
	rec.mu.Unlock()
	rec.next.ServeHTTP(w, r)
}

func (rec *recorder) first() http.Header {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.headers[0]
}

// Over plain HTTP the SDK signs the payload's SHA-256 and sends its CRC32 in
// a header; over TLS it streams aws-chunked with an unsigned payload and the
// CRC32 in a trailer. Both must work, and the object must read back.
func TestSDKPayloadModes(t *testing.T) {
	tests := []struct {
		name        string
		tls         bool
		checksums   aws.RequestChecksumCalculation
		wantPayload string
		wantHeaders map[string]string
	}{
		{"http, checksums", false, aws.RequestChecksumCalculationWhenSupported, "hex",
			map[string]string{"X-Amz-Checksum-Crc32": "*"}},
		{"http, no checksums", false, aws.RequestChecksumCalculationWhenRequired, "hex", nil},
		{"tls, checksums", true, aws.RequestChecksumCalculationWhenSupported, "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
			map[string]string{"Content-Encoding": "aws-chunked", "X-Amz-Trailer": "x-amz-checksum-crc32", "X-Amz-Decoded-Content-Length": "70000"}},
		{"tls, no checksums", true, aws.RequestChecksumCalculationWhenRequired, "UNSIGNED-PAYLOAD", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := s3gateway.New(newKeys().resolve, s3gateway.Options{Buckets: []string{bucket}})
			rec := &recorder{next: gw.Handler()}
			var srv *httptest.Server
			if tt.tls {
				srv = httptest.NewTLSServer(rec)
			} else {
				srv = httptest.NewServer(rec)
			}
			t.Cleanup(srv.Close)
			c := s3.New(s3.Options{Region: "uk-lon-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
				Credentials: credentials.NewStaticCredentialsProvider(liveID, liveSecret, ""), HTTPClient: srv.Client(),
				RequestChecksumCalculation: tt.checksums})
			body := strings.Repeat("0123456789", 7000)
			put(t, c, "big", body)
			h := rec.first()
			payload := h.Get("X-Amz-Content-Sha256")
			if tt.wantPayload == "hex" {
				if len(payload) != 64 {
					t.Errorf("x-amz-content-sha256 = %q, want a hex SHA-256", payload)
				}
			} else if payload != tt.wantPayload {
				t.Errorf("x-amz-content-sha256 = %q, want %q", payload, tt.wantPayload)
			}
			for k, v := range tt.wantHeaders {
				if got := h.Get(k); got == "" || (v != "*" && got != v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := get(t, c, "big"); got != body {
				t.Errorf("read back %d bytes", len(got))
			}
		})
	}
}

func TestSignatureVerification(t *testing.T) {
	h := start(t, s3gateway.Options{})
	now := h.clk.Now()
	list := "/" + bucket + "?list-type=2&prefix=a%20b"
	tests := []struct {
		name   string
		req    signed
		status int
		code   string
	}{
		{name: "correct", req: signed{path: list}, status: 200},
		{name: "correct PUT", req: signed{method: "PUT", path: "/photos/x", body: "data"}, status: 200},
		{name: "unsigned payload", req: signed{method: "PUT", path: "/photos/x", body: "data", payloadHash: "UNSIGNED-PAYLOAD"}, status: 200},
		{name: "region auto", req: signed{path: list, region: "auto"}, status: 200},
		{name: "region us-east-1", req: signed{path: list, region: "us-east-1"}, status: 200},
		{name: "14 minutes old", req: signed{path: list, at: now.Add(-14 * time.Minute)}, status: 200},
		{name: "tampered signature", status: 403, code: "SignatureDoesNotMatch", req: signed{path: list, tamper: func(r *http.Request) {
			a := r.Header.Get("Authorization")
			last := "0"
			if strings.HasSuffix(a, "0") {
				last = "1"
			}
			r.Header.Set("Authorization", a[:len(a)-1]+last)
		}}},
		{name: "wrong secret", req: signed{path: list, id: liveID, secret: "guess"}, status: 403, code: "SignatureDoesNotMatch"},
		{name: "another key's secret", req: signed{path: list, id: liveID, secret: "other-secret"}, status: 403, code: "SignatureDoesNotMatch"},
		{name: "unknown key", req: signed{path: list, id: "AKIDUNKNOWN", secret: liveSecret}, status: 403, code: "InvalidAccessKeyId"},
		{name: "16 minutes old", req: signed{path: list, at: now.Add(-16 * time.Minute)}, status: 403, code: "RequestTimeTooSkewed"},
		{name: "16 minutes ahead", req: signed{path: list, at: now.Add(16 * time.Minute)}, status: 403, code: "RequestTimeTooSkewed"},
		{name: "path changed", req: signed{path: "/photos/x", tamper: func(r *http.Request) { r.URL.Path = "/photos/y" }}, status: 403, code: "SignatureDoesNotMatch"},
		{name: "query changed", req: signed{path: list, tamper: func(r *http.Request) { r.URL.RawQuery += "&max-keys=1" }}, status: 403, code: "SignatureDoesNotMatch"},
		{name: "signed header changed", status: 403, code: "SignatureDoesNotMatch", req: signed{method: "PUT", path: "/photos/x", body: "data",
			header: map[string]string{"Content-Type": "text/plain"}, tamper: func(r *http.Request) { r.Header.Set("Content-Type", "text/html") }}},
		{name: "x-amz-date changed", req: signed{path: list, tamper: func(r *http.Request) {
			r.Header.Set("X-Amz-Date", now.Add(time.Second).UTC().Format("20060102T150405Z"))
		}}, status: 403, code: "SignatureDoesNotMatch"},
		{name: "body changed", status: 400, code: "XAmzContentSHA256Mismatch", req: signed{method: "PUT", path: "/photos/x", body: "data", tamper: func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader("evil"))
		}}},
		{name: "unsigned x-amz header", req: signed{path: list, tamper: func(r *http.Request) { r.Header.Set("X-Amz-Meta-Evil", "1") }}, status: 403, code: "AccessDenied"},
		{name: "anonymous", req: signed{path: list, tamper: func(r *http.Request) { r.Header.Del("Authorization") }}, status: 403, code: "AccessDenied"},
		{name: "no x-amz-date", req: signed{path: list, tamper: func(r *http.Request) { r.Header.Del("X-Amz-Date") }}, status: 403, code: "AccessDenied"},
		{name: "no x-amz-content-sha256", req: signed{path: list, tamper: func(r *http.Request) {
			r.Header.Del("X-Amz-Content-Sha256")
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";x-amz-content-sha256", "", 1))
		}}, status: 400, code: "InvalidRequest"},
		{name: "scoped to another service", req: signed{path: list, tamper: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/s3/", "/ec2/", 1))
		}}, status: 400, code: "AuthorizationHeaderMalformed"},
		{name: "scope date is not x-amz-date's", req: signed{path: list, tamper: func(r *http.Request) {
			r.Header.Set("X-Amz-Date", now.Add(48*time.Hour).UTC().Format("20060102T150405Z"))
		}}, status: 400, code: "AuthorizationHeaderMalformed"},
		{name: "signature v2", req: signed{path: list, tamper: func(r *http.Request) { r.Header.Set("Authorization", "AWS "+liveID+":c2lnbmF0dXJl") }}, status: 400, code: "InvalidArgument"},
		{name: "presigned URL", req: signed{path: list + "&X-Amz-Algorithm=AWS4-HMAC-SHA256"}, status: 501, code: "NotImplemented"},
		{name: "signed streaming payload", req: signed{method: "PUT", path: "/photos/x", body: "data", payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}, status: 501, code: "NotImplemented"},
		{name: "payload hash not hex", req: signed{method: "PUT", path: "/photos/x", body: "data", payloadHash: "abc"}, status: 400, code: "InvalidArgument"},
		{name: "session token", req: signed{path: list, header: map[string]string{"X-Amz-Security-Token": "t"}}, status: 400, code: "InvalidToken"},
		{name: "no such bucket", req: signed{path: "/nope?list-type=2"}, status: 404, code: "NoSuchBucket"},
		{name: "no such key", req: signed{path: "/photos/missing"}, status: 404, code: "NoSuchKey"},
		{name: "CRC32 mismatch", status: 400, code: "BadDigest", req: signed{method: "PUT", path: "/photos/x", body: "data",
			header: map[string]string{"X-Amz-Checksum-Crc32": crc32Of("other")}}},
		{name: "Content-MD5 mismatch", status: 400, code: "BadDigest", req: signed{method: "PUT", path: "/photos/x", body: "data",
			header: map[string]string{"Content-MD5": "XUFAKrxLKna5cZ2REBfFkg=="}}},
		{name: "unsupported operation", req: signed{path: "/"}, status: 501, code: "NotImplemented"},
		{name: "ListObjects v1", req: signed{path: "/photos"}, status: 501, code: "NotImplemented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.send(tt.req)
			if tt.code == "" {
				if r.status != tt.status {
					t.Fatalf("status = %d %s, want %d", r.status, r.body, tt.status)
				}
				return
			}
			e := expectError(t, r, tt.status, tt.code)
			if strings.Contains(string(r.body), liveSecret) || strings.Contains(string(r.body), "other-secret") {
				t.Errorf("the error shows a secret: %s", r.body)
			}
			switch tt.code {
			case "InvalidAccessKeyId":
				if e.AWSAccessKeyID != "AKIDUNKNOWN" {
					t.Errorf("AWSAccessKeyId = %q", e.AWSAccessKeyID)
				}
			case "RequestTimeTooSkewed":
				if e.MaxAllowedSkewMS != "900000" {
					t.Errorf("MaxAllowedSkewMilliseconds = %q", e.MaxAllowedSkewMS)
				}
			case "XAmzContentSHA256Mismatch":
				if e.S3ComputedSHA256 == "" || e.ClientComputedSHA == e.S3ComputedSHA256 {
					t.Errorf("hashes = %q / %q", e.ClientComputedSHA, e.S3ComputedSHA256)
				}
			}
			if tt.name == "unsigned x-amz header" && e.HeadersNotSigned != "x-amz-meta-evil" {
				t.Errorf("HeadersNotSigned = %q", e.HeadersNotSigned)
			}
		})
	}
}

func crc32Of(s string) string {
	sum := crc32.ChecksumIEEE([]byte(s))
	return base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
}

// chunked frames body as unsigned aws-chunked with the given chunk size
// and trailer lines.
func chunked(body string, size int, trailer ...string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n")
	for _, t := range trailer {
		b.WriteString(t + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestAWSChunkedPayload(t *testing.T) {
	h := start(t, s3gateway.Options{})
	body := strings.Repeat("chunk data ", 100)
	good := chunked(body, 256, "x-amz-checksum-crc32:"+crc32Of(body))
	streaming := func(encoded string, header map[string]string) signed {
		hdr := map[string]string{"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": fmt.Sprint(len(body)),
			"X-Amz-Trailer": "x-amz-checksum-crc32"}
		for k, v := range header {
			hdr[k] = v
		}
		return signed{method: "PUT", path: "/photos/chunked", body: encoded, payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER", header: hdr}
	}
	if r := h.send(streaming(good, nil)); r.status != 200 || r.header.Get("X-Amz-Checksum-Crc32") != crc32Of(body) {
		t.Fatalf("good aws-chunked PUT = %d %s %v", r.status, r.body, r.header)
	}
	if got := get(t, h.client(liveID, liveSecret), "chunked"); got != body {
		t.Fatalf("stored %q", got)
	}
	tests := []struct {
		name    string
		encoded string
		header  map[string]string
		status  int
		code    string
	}{
		{"wrong CRC32 in the trailer", chunked(body, 256, "x-amz-checksum-crc32:"+crc32Of("x")), nil, 400, "BadDigest"},
		{"trailer missing", chunked(body, 256), nil, 400, "InvalidRequest"},
		{"trailer not announced", good, map[string]string{"X-Amz-Trailer": ""}, 400, "InvalidRequest"},
		{"shorter than announced", good, map[string]string{"X-Amz-Decoded-Content-Length": fmt.Sprint(len(body) + 1)}, 400, "IncompleteBody"},
		{"longer than announced", good, map[string]string{"X-Amz-Decoded-Content-Length": fmt.Sprint(len(body) - 1)}, 400, "IncompleteBody"},
		{"no decoded length", good, map[string]string{"X-Amz-Decoded-Content-Length": ""}, 411, "MissingContentLength"},
		{"chunk signature extension", strings.Replace(good, "100\r\n", "100;chunk-signature=abc\r\n", 1), nil, 400, "IncompleteBody"},
		{"chunk cut short", strings.Replace(good, "\r\n0\r\n", "0\r\n", 1), nil, 400, "IncompleteBody"},
		{"no final empty line", strings.TrimSuffix(good, "\r\n"), nil, 400, "IncompleteBody"},
		{"data after the trailer", good + "x", nil, 400, "IncompleteBody"},
		{"not aws-chunked encoded", good, map[string]string{"Content-Encoding": "gzip"}, 400, "InvalidRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectError(t, h.send(streaming(tt.encoded, tt.header)), tt.status, tt.code)
		})
	}
	// aws-chunked content with a signed hex payload hash is refused.
	expectError(t, h.send(signed{method: "PUT", path: "/photos/x", body: good, header: map[string]string{"Content-Encoding": "aws-chunked"}}), 400, "InvalidRequest")
}

func TestListObjectsV2Pagination(t *testing.T) {
	h := start(t, s3gateway.Options{})
	c := h.client(liveID, liveSecret)
	for _, k := range []string{"a/1", "a/2", "b", "c/1", "c/2", "c/3", "d"} {
		put(t, c, k, k)
	}
	for _, maxKeys := range []int32{1, 2, 3, 1000} {
		keys, prefixes := listKeys(t, c, &s3.ListObjectsV2Input{MaxKeys: aws.Int32(maxKeys), Delimiter: aws.String("/")})
		if strings.Join(keys, ",") != "b,d" || strings.Join(prefixes, ",") != "a/,c/" {
			t.Errorf("max-keys %d with delimiter: %q %q", maxKeys, keys, prefixes)
		}
		keys, _ = listKeys(t, c, &s3.ListObjectsV2Input{MaxKeys: aws.Int32(maxKeys)})
		if strings.Join(keys, ",") != "a/1,a/2,b,c/1,c/2,c/3,d" {
			t.Errorf("max-keys %d: %q", maxKeys, keys)
		}
	}
	if keys, _ := listKeys(t, c, &s3.ListObjectsV2Input{StartAfter: aws.String("c/1"), MaxKeys: aws.Int32(2)}); strings.Join(keys, ",") != "c/2,c/3,d" {
		t.Errorf("start-after c/1: %q", keys)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(2)})
	if err != nil || !aws.ToBool(out.IsTruncated) || aws.ToInt32(out.KeyCount) != 2 || aws.ToString(out.NextContinuationToken) == "" {
		t.Fatalf("first page = %+v, %v", out, err)
	}
	expectError(t, h.send(signed{path: "/photos?list-type=2&continuation-token=%21%21"}), 400, "InvalidArgument")
	expectError(t, h.send(signed{path: "/photos?list-type=2&max-keys=-1"}), 400, "InvalidArgument")
	r := h.send(signed{path: "/photos?list-type=2&encoding-type=url&prefix=a%2F"})
	if r.status != 200 || !bytes.Contains(r.body, []byte("<Key>a%2F1</Key>")) || !bytes.Contains(r.body, []byte(`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)) {
		t.Errorf("encoding-type=url listing = %s", r.body)
	}
}

func TestLimits(t *testing.T) {
	h := start(t, s3gateway.Options{MaxObjectSize: 10, MaxObjects: 2})
	expectError(t, h.send(signed{method: "PUT", path: "/photos/big", body: "01234567890"}), 400, "EntityTooLarge")
	expectError(t, h.send(signed{method: "PUT", path: "/photos/big", body: "01234567890", payloadHash: "UNSIGNED-PAYLOAD"}), 400, "EntityTooLarge")
	for _, k := range []string{"one", "two"} {
		if r := h.send(signed{method: "PUT", path: "/photos/" + k, body: k}); r.status != 200 {
			t.Fatalf("PUT %s = %d %s", k, r.status, r.body)
		}
	}
	expectError(t, h.send(signed{method: "PUT", path: "/photos/three", body: "3"}), 503, "SlowDown")
	if r := h.send(signed{method: "PUT", path: "/photos/one", body: "1"}); r.status != 200 {
		t.Errorf("overwriting at the limit = %d %s", r.status, r.body)
	}
}

func TestSandboxIntegration(t *testing.T) {
	h := start(t, s3gateway.Options{Name: "s3-storx"})
	if h.gw.Name() != "s3-storx" || s3gateway.New(newKeys().resolve, s3gateway.Options{}).Name() != "s3" {
		t.Error("names")
	}
	c := h.client(liveID, liveSecret)
	put(t, c, "k", "v")
	h.srv.AddFault(sandbox.Fault{Path: "/photos", Status: http.StatusServiceUnavailable, Times: 1})
	r := h.send(signed{path: "/photos/k"})
	expectError(t, r, 503, "SlowDown")
	h.srv.AddFault(sandbox.Fault{Path: "/photos", Status: http.StatusForbidden, Times: 1})
	_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	if code, status := apiError(t, err); code != "AccessDenied" || status != 403 {
		t.Errorf("injected 403 = %s %d", code, status)
	}
	h.srv.Reset()
	objects := h.srv.Objects()
	if len(objects) != 2 || objects[0].Kind != "bucket" || objects[0].ID != "logs" || objects[1].ID != "photos" {
		t.Errorf("after Reset = %+v", objects)
	}
}

func TestConcurrentClients(t *testing.T) {
	h := start(t, s3gateway.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, secret := liveID, liveSecret
			if i%2 == 1 {
				id, secret = otherID, "other-secret"
			}
			c := h.client(id, secret)
			for j := range 5 {
				key := fmt.Sprintf("w%d/%d", i, j)
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(key)}); err != nil {
					t.Errorf("PutObject %s: %v", key, err)
					return
				}
				if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("w")}); err != nil {
					t.Errorf("ListObjectsV2: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if keys, _ := listKeys(t, h.client(liveID, liveSecret), &s3.ListObjectsV2Input{}); len(keys) != 40 {
		t.Errorf("%d keys", len(keys))
	}
	owners := map[string]int{}
	for _, o := range h.srv.Objects() {
		if o.Kind == "object" {
			owners[o.Owner]++
		}
	}
	if owners[liveID] != 20 || owners[otherID] != 20 {
		t.Errorf("owners = %v", owners)
	}
}

func TestNewPanicsWithoutResolver(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	s3gateway.New(nil, s3gateway.Options{})
}
