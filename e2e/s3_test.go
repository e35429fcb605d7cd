package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/s3gateway"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// startS3Gateway serves an S3 endpoint on loopback that checks SigV4
// signatures against the secrets resolve returns, with one bucket.
func startS3Gateway(t *testing.T, name string, resolve s3gateway.Resolver, bucket string) *sandbox.Server {
	t.Helper()
	srv, err := sandbox.Start(s3gateway.New(resolve, s3gateway.Options{Name: name, Buckets: []string{bucket}}), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// s3Client is an aws-sdk-go-v2 client for credentials Vault issued,
// path-style against the gateway, with the checksum defaults
// config.LoadDefaultConfig gives, and without the SDK's retries so that a
// refusal shows at once.
func s3Client(gateway, region string, secret *api.Secret) *s3.Client {
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(gateway),
		UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(
			fmt.Sprint(secret.Data["access_key_id"]), fmt.Sprint(secret.Data["secret_access_key"]), ""),
		HTTPClient:                 &http.Client{Timeout: 30 * time.Second},
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
}

// s3Lifecycle puts an object with the credentials Vault issued, lists and
// reads it back, revokes the lease and checks the same client is refused
// with the S3 error code the provider's gateway answers then: AccessDenied
// where the S3 credentials outlive the access revoked behind them (StorX,
// Storj), InvalidAccessKeyId where the key itself is deleted (Katapult).
func s3Lifecycle(t *testing.T, gw *sandbox.Server, region, bucket string, secret *api.Secret, revokedCode string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := s3Client(gw.URL(), region, secret)
	key := "vault-e2e/" + strings.ReplaceAll(secret.LeaseID, "/", "_") + ".txt"
	body := "written with credentials from " + secret.LeaseID
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader(body), ContentType: aws.String("text/plain")}); err != nil {
		t.Fatalf("PutObject with issued credentials: %v", err)
	}
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("vault-e2e/")})
	if err != nil {
		t.Fatalf("ListObjectsV2 with issued credentials: %v", err)
	}
	if len(list.Contents) != 1 || aws.ToString(list.Contents[0].Key) != key || aws.ToInt64(list.Contents[0].Size) != int64(len(body)) {
		t.Fatalf("ListObjectsV2 does not show the object just written: %+v", list.Contents)
	}
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	data, err := io.ReadAll(got.Body)
	got.Body.Close()
	if err != nil || string(data) != body {
		t.Fatalf("GetObject = %q, %v", data, err)
	}

	// The access key id with another secret is refused: the gateway checks
	// signatures against the provider's live secret, not just the id.
	forged := *secret
	forged.Data = map[string]any{"access_key_id": secret.Data["access_key_id"], "secret_access_key": "not-the-secret"}
	_, err = s3Client(gw.URL(), region, &forged).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	wantS3Error(t, err, http.StatusForbidden, "SignatureDoesNotMatch")

	mustCLI(t, "", "lease", "revoke", "-sync", secret.LeaseID)
	_, err = client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	wantS3Error(t, err, http.StatusForbidden, revokedCode)
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key + ".after-revoke"),
		Body: strings.NewReader("must not be stored")})
	wantS3Error(t, err, http.StatusForbidden, revokedCode)
	for _, o := range gw.Objects() {
		if o.Kind == "object" && o.Name != key {
			t.Fatalf("an object was stored after revoke: %+v", o)
		}
	}
	if calls := gw.Calls(); calls["PUT /{bucket}/{key...}"] != 2 || calls["GET /{bucket}"] != 3 {
		t.Fatalf("gateway calls = %v", calls)
	}
}

func wantS3Error(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want S3 error %d %s, the request succeeded", status, code)
	}
	var apiErr smithy.APIError
	var httpErr interface{ HTTPStatusCode() int }
	if !errors.As(err, &apiErr) || !errors.As(err, &httpErr) {
		t.Fatalf("want S3 error %d %s, got %v", status, code, err)
	}
	if apiErr.ErrorCode() != code || httpErr.HTTPStatusCode() != status {
		t.Fatalf("want S3 error %d %s, got %d %s: %v", status, code, httpErr.HTTPStatusCode(), apiErr.ErrorCode(), err)
	}
}

func TestS3_StorxCredentialsWorkUntilRevoked(t *testing.T) {
	t.Parallel()
	f := newStorx(t)
	// The fixture's role may only download and list; this one may write.
	mustCLI(t, "", "write", f.mount+"/roles/s3", "connection=main", "ttl=5m", "max_ttl=1h",
		"user_email="+sxUser, "buckets=photos", "permissions=upload,download,list")
	secret := cliJSON(t, "read", f.mount+"/creds/s3")
	for _, k := range []string{"secret_access_key", "access_grant"} {
		registerSecret("an issued storx "+k, fmt.Sprint(secret.Data[k]))
	}
	gw := startS3Gateway(t, "s3-storx", f.authEmu.S3Secret, "photos")
	s3Lifecycle(t, gw, "auto", "photos", secret, "AccessDenied")
}

func TestS3_KatapultCredentialsWorkUntilRevoked(t *testing.T) {
	t.Parallel()
	f := newKatapult(t)
	secret := f.issue()
	gw := startS3Gateway(t, "s3-katapult", s3gateway.Known(f.emu.S3Secret), "shared")
	s3Lifecycle(t, gw, "uk-lon-1", "shared", secret, "InvalidAccessKeyId")
}
