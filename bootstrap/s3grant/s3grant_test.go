package s3grant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"storj.io/uplink"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3grant"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/authservice"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/storjtest"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const bucket = "photos"

var (
	// auth is the real authservice; it allows grants of satellite only and
	// hands out gatewayURL as the S3 endpoint.
	auth       *authservice.Server
	satellite  = storjtest.NodeURL("127.0.0.1:7778")
	gatewayURL string
	// checker stands in for the satellite: tests revoke grants on it.
	checker = &revocations{revoked: map[string]bool{}}
	// resolver is set once the authservice runs, before any test.
	resolver s3grant.Pending
)

// revocations is a GrantChecker that refuses the grants a test revoked,
// and counts the checks so a test can see that nothing is cached.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	checked map[string]int
}

var errRevoked = errors.New("the API key was revoked")

func (r *revocations) CheckGrant(_ context.Context, grant string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checked == nil {
		r.checked = map[string]int{}
	}
	r.checked[grant]++
	if r.revoked[grant] {
		return errRevoked
	}
	return nil
}

func (r *revocations) revoke(grant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[grant] = true
}

func (r *revocations) checks(grant string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checked[grant]
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3grant:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// run starts the gateway first, so that the authservice can hand out its
// URL, and the authservice second, so that the resolver can ask it.
func run(m *testing.M) (int, error) {
	bin, err := authservice.Binary("../..")
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "s3grant-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	gw := s3gateway.New(resolver.Resolve,
		s3gateway.Options{Buckets: []string{bucket}})
	gwServer := httptest.NewServer(gw.Handler())
	defer gwServer.Close()
	gatewayURL = gwServer.URL
	auth, err = authservice.Start(context.Background(), authservice.Options{
		Bin: bin, Dir: dir, AllowedSatellites: []string{satellite}, Endpoint: gatewayURL,
	})
	if err != nil {
		return 0, err
	}
	defer auth.Close()
	r, err := s3grant.New(s3grant.Options{AuthURL: auth.URL(), AuthToken: auth.AuthToken(), Checker: checker})
	if err != nil {
		return 0, err
	}
	resolver.Store(r)
	return m.Run(), nil
}

// lease is what the storj provider does on issue: derive a child grant,
// valid for an hour on the bucket, and register it for S3 credentials.
func lease(t *testing.T) (grant string, creds registered) {
	t.Helper()
	child, err := storjtest.RootGrant(t, satellite).Share(
		uplink.Permission{AllowDownload: true, AllowUpload: true, AllowList: true, AllowDelete: true,
			NotAfter: time.Now().Add(time.Hour)},
		uplink.SharePrefix{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	if grant, err = child.Serialize(); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"access_grant": grant, "public": false})
	resp, err := http.Post(auth.URL()+"/v1/access", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/access: %d %s", resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, &creds); err != nil {
		t.Fatal(err)
	}
	return grant, creds
}

type registered struct {
	AccessKeyID string `json:"access_key_id"`
	SecretKey   string `json:"secret_key"`
	Endpoint    string `json:"endpoint"`
}

func s3Client(c registered) *s3.Client {
	return s3.New(s3.Options{
		Region:       "auto",
		BaseEndpoint: aws.String(c.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretKey, ""),
		HTTPClient:   &http.Client{Timeout: 30 * time.Second},
	})
}

func put(ctx context.Context, c *s3.Client, key, body string) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	return err
}

func get(ctx context.Context, c *s3.Client, key string) (string, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	return string(data), err
}

// TestS3WorksUntilTheGrantIsRevoked: credentials from the real authservice
// sign requests the gateway accepts, with the endpoint authservice
// returned; once the satellite stand-in says the grant is revoked, the
// very next request is refused.
func TestS3WorksUntilTheGrantIsRevoked(t *testing.T) {
	ctx := context.Background()
	grant, creds := lease(t)
	if creds.Endpoint != gatewayURL {
		t.Fatalf("endpoint = %q, want the gateway %q", creds.Endpoint, gatewayURL)
	}
	c := s3Client(creds)
	if err := put(ctx, c, "a.txt", "hello"); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if got, err := get(ctx, c, "a.txt"); err != nil || got != "hello" {
		t.Fatalf("GetObject = %q, %v", got, err)
	}
	if n := checker.checks(grant); n != 2 {
		t.Errorf("the grant was checked %d times for 2 requests, want once per request", n)
	}

	checker.revoke(grant)
	_, err := get(ctx, c, "a.txt")
	var api smithy.APIError
	// Storj's gateway still resolves the credentials at the auth service
	// and checks the signature; the satellite refuses the revoked key, and
	// the gateway answers that as AccessDenied.
	if !errors.As(err, &api) || api.ErrorCode() != "AccessDenied" {
		t.Fatalf("GetObject after revocation: %v, want AccessDenied", err)
	}
	if _, err := resolver.Load().Lookup(ctx, creds.AccessKeyID); !errors.Is(err, s3grant.ErrRefused) || !errors.Is(err, errRevoked) {
		t.Errorf("Lookup after revocation: %v, want ErrRefused wrapping the checker's reason", err)
	}
	if secret, err := resolver.Load().Resolve(creds.AccessKeyID); !errors.Is(err, s3gateway.ErrAccessDenied) || secret != creds.SecretKey {
		t.Errorf("Resolve after revocation: %v, want ErrAccessDenied with the secret to check signatures by", err)
	}
}

// TestRevokingOneLeaveOthers: revocation is per grant, as each lease has
// its own child.
func TestRevokingOneLeavesOthers(t *testing.T) {
	ctx := context.Background()
	grantA, credsA := lease(t)
	_, credsB := lease(t)
	checker.revoke(grantA)
	if err := put(ctx, s3Client(credsA), "b.txt", "x"); err == nil {
		t.Error("PutObject with the revoked lease succeeded")
	}
	if err := put(ctx, s3Client(credsB), "b.txt", "y"); err != nil {
		t.Errorf("PutObject with the live lease: %v", err)
	}
}

// TestLookupSaysWhy: each reason a lookup fails is its own error, and no
// error carries the secret.
func TestLookupSaysWhy(t *testing.T) {
	_, creds := lease(t)
	badGrant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"access_grant":"not-a-grant","secret_key":"s"}`))
	}))
	defer badGrant.Close()
	noFields := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{}`))
	}))
	defer noFields.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for _, tc := range []struct {
		name, url, token, id string
		want                 error
	}{
		{"unknown id", auth.URL(), auth.AuthToken(), otherID(creds.AccessKeyID), s3grant.ErrUnknownKey},
		{"malformed id", auth.URL(), auth.AuthToken(), strings.Repeat("a", 28), s3grant.ErrUnknownKey},
		{"an AWS key id", auth.URL(), auth.AuthToken(), "AKIAIOSFODNN7EXAMPLE", s3grant.ErrUnknownKey},
		{"wrong token", auth.URL(), "wrong", creds.AccessKeyID, s3grant.ErrUnknownKey},
		{"unparsable grant", badGrant.URL, "t", creds.AccessKeyID, s3grant.ErrBadGrant},
		{"answer without fields", noFields.URL, "t", creds.AccessKeyID, s3grant.ErrAuthService},
		{"auth service down", down.URL, "t", creds.AccessKeyID, s3grant.ErrAuthService},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s3grant.New(s3grant.Options{AuthURL: tc.url, AuthToken: tc.token, Checker: checker})
			if err != nil {
				t.Fatal(err)
			}
			secret, err := r.Lookup(context.Background(), tc.id)
			if !errors.Is(err, tc.want) || secret != "" {
				t.Fatalf("Lookup: %q, %v; want %v", secret, err, tc.want)
			}
			if strings.Contains(err.Error(), creds.SecretKey) || !testutil.CleanText(err.Error()) {
				t.Errorf("error %q carries the secret or is not one bounded line", err)
			}
			_, err = r.Resolve(tc.id)
			if err == nil || errors.Is(err, s3gateway.ErrUnknownKey) != errors.Is(tc.want, s3grant.ErrUnknownKey) {
				t.Errorf("Resolve = %v for what Lookup refused as %v", err, tc.want)
			}
		})
	}
}

// otherID is a well-formed access key id that was never issued.
func otherID(id string) string {
	c := byte('a')
	if id[10] == c {
		c = 'b'
	}
	return id[:10] + string(c) + id[11:]
}

func TestNewNeedsOptions(t *testing.T) {
	if _, err := s3grant.New(s3grant.Options{AuthURL: "http://127.0.0.1:1", AuthToken: "t"}); err == nil {
		t.Fatal("New without a checker succeeded")
	}
}
