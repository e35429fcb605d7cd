package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// errS3Refused means the S3 gateway refused the credentials: the -s3 form
// exits non-zero, so a script can tell a live credential from a dead one.
var errS3Refused = errors.New("the S3 gateway refused the credentials")

// s3Timeout bounds each S3 request of the -s3 form.
const s3Timeout = 30 * time.Second

// s3Check puts one small object into the bucket of a running gateway of
// the state file with the given credentials, then lists the bucket,
// printing one line per request. A refusal is printed with S3's status and
// code, and returned as errS3Refused.
func s3Check(out io.Writer, stateFile, name, keyID, secret string) error {
	if keyID == "" || secret == "" {
		return errors.New("-s3 needs the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	state, err := readState(stateFile)
	if err != nil {
		return err
	}
	url, bucket := state[name]["url"], state[name]["bucket"]
	if url == "" || bucket == "" {
		return fmt.Errorf("%s has no S3 gateway named %q (one with a url and a bucket)", stateFile, name)
	}
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials:      credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:       &http.Client{Timeout: s3Timeout},
		RetryMaxAttempts: 1, // a refusal shows at once
	})
	ctx := context.Background()
	key := "demo/" + keyID + ".txt"
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key,
		Body: strings.NewReader("written with credentials from Vault\n")})
	if err := report(out, fmt.Sprintf("PUT  s3://%s/%s", bucket, key), "", err); err != nil {
		return err
	}
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	count := ""
	if err == nil {
		count = fmt.Sprintf(", %d object(s)", len(list.Contents))
	}
	return report(out, fmt.Sprintf("LIST s3://%s", bucket), count, err)
}

// report prints one request's outcome. An S3 error answer becomes
// errS3Refused; any other failure (no answer at all) is returned as is.
func report(out io.Writer, what, detail string, err error) error {
	if err == nil {
		fmt.Fprintf(out, "  %s: 200 OK%s\n", what, detail)
		return nil
	}
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	if errors.As(err, &apiErr) && errors.As(err, &respErr) {
		fmt.Fprintf(out, "  %s: refused, %d %s (%s)\n", what, respErr.HTTPStatusCode(), apiErr.ErrorCode(), apiErr.ErrorMessage())
		return errS3Refused
	}
	return fmt.Errorf("%s: %w", what, err)
}
