package s3gateway

import (
	"encoding/xml"
	"net/http"
	"strconv"
)

// s3Error is an S3 error answer.
type s3Error struct {
	status        int
	code, message string
	bucket, key   string
	accessKeyID   string
	// extra are further elements S3 adds for some codes, in order.
	extra [][2]string
}

// errorDocument is S3's <Error> body.
type errorDocument struct {
	XMLName        xml.Name `xml:"Error"`
	Code           string   `xml:"Code"`
	Message        string   `xml:"Message"`
	BucketName     string   `xml:"BucketName,omitempty"`
	Key            string   `xml:"Key,omitempty"`
	AWSAccessKeyID string   `xml:"AWSAccessKeyId,omitempty"`
	Extra          []extraElement
	Resource       string `xml:"Resource,omitempty"`
	RequestID      string `xml:"RequestId"`
	HostID         string `xml:"HostId"`
}

type extraElement struct {
	XMLName xml.Name
	Value   string `xml:",chardata"`
}

func (e *s3Error) body(resource, requestID string) []byte {
	doc := errorDocument{Code: e.code, Message: e.message, BucketName: e.bucket, Key: e.key,
		AWSAccessKeyID: e.accessKeyID, Resource: resource, RequestID: requestID, HostID: requestID}
	for _, kv := range e.extra {
		doc.Extra = append(doc.Extra, extraElement{XMLName: xml.Name{Local: kv[0]}, Value: kv[1]})
	}
	out, err := xml.Marshal(doc)
	if err != nil {
		panic(err) // plain strings always marshal
	}
	return append([]byte(xml.Header), out...)
}

func (e *s3Error) write(w http.ResponseWriter, r *http.Request, requestID string) {
	body := e.body(r.URL.Path, requestID)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// errInternal is S3's answer when the gateway itself fails, here its
// credential store.
func errInternal() *s3Error {
	return &s3Error{status: http.StatusInternalServerError, code: "InternalError", message: "We encountered an internal error. Please try again."}
}

func errAccessDenied(message string) *s3Error {
	return &s3Error{status: http.StatusForbidden, code: "AccessDenied", message: message}
}

func errMalformedAuth(message string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "AuthorizationHeaderMalformed", message: "The authorization header is malformed; " + message}
}

func errInvalidArgument(message string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "InvalidArgument", message: message}
}

func errInvalidRequest(message string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "InvalidRequest", message: message}
}

func errIncompleteBody(message string) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "IncompleteBody", message: message}
}

func errNotImplemented(message string) *s3Error {
	return &s3Error{status: http.StatusNotImplemented, code: "NotImplemented", message: message}
}

func errNoSuchBucket(bucket string) *s3Error {
	return &s3Error{status: http.StatusNotFound, code: "NoSuchBucket", message: "The specified bucket does not exist", bucket: bucket}
}

func errEntityTooLarge(max int64) *s3Error {
	return &s3Error{status: http.StatusBadRequest, code: "EntityTooLarge",
		message: "Your proposed upload exceeds the maximum allowed object size.",
		extra:   [][2]string{{"MaxSizeAllowed", strconv.FormatInt(max, 10)}}}
}
