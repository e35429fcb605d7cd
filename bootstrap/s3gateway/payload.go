package s3gateway

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	// maxTrailers bounds the trailer lines of an aws-chunked body.
	maxTrailers = 8
	// maxChunkHeader bounds an aws-chunked size line: 16 hex digits.
	maxChunkHeader = 16
	// crc64NVME is the reflected CRC-64/NVME polynomial, as crc64.MakeTable
	// wants it.
	crc64NVME = 0x9a6c_9329_ac4b_c9b5
)

var crlf = []byte("\r\n")

// checksumAlgorithms are the x-amz-checksum-* headers the gateway verifies.
var checksumAlgorithms = map[string]func() hash.Hash{
	"x-amz-checksum-crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"x-amz-checksum-crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"x-amz-checksum-crc64nvme": func() hash.Hash { return crc64.New(crc64.MakeTable(crc64NVME)) },
	"x-amz-checksum-sha1":      sha1.New,
	"x-amz-checksum-sha256":    sha256.New,
	"x-amz-checksum-sha512":    sha512.New,
}

// x-amz-checksum-* headers that are not checksums.
var checksumOptions = []string{"x-amz-checksum-mode", "x-amz-checksum-type", "x-amz-checksum-algorithm"}

// readPayload reads the body and checks it against what the signature
// covers: the hex SHA-256 in x-amz-content-sha256, nothing for
// UNSIGNED-PAYLOAD, or for STREAMING-UNSIGNED-PAYLOAD-TRAILER the
// aws-chunked framing, x-amz-decoded-content-length and the trailer. Every
// x-amz-checksum-* value (header or trailer) and Content-MD5 is then
// checked against the payload.
func (g *Gateway) readPayload(w http.ResponseWriter, r *http.Request, auth *authResult, req *request) *s3Error {
	encodings := splitList(r.Header.Get("Content-Encoding"))
	chunked := slices.Contains(encodings, "aws-chunked")
	req.contentEncoding = strings.Join(slices.DeleteFunc(encodings, func(e string) bool { return e == "aws-chunked" }), ",")
	if r.Method == http.MethodPut && r.ContentLength < 0 {
		return &s3Error{status: http.StatusLengthRequired, code: "MissingContentLength", message: "You must provide the Content-Length HTTP header."}
	}
	checksums, err := checksumHeaders(r.Header)
	if err != nil {
		return err
	}
	switch h := auth.payloadHash; {
	case h == payloadStreamingTrailer:
		if !chunked {
			return errInvalidRequest(payloadStreamingTrailer + " needs Content-Encoding: aws-chunked")
		}
		payload, trailers, err := g.readChunked(w, r)
		if err != nil {
			return err
		}
		if err := addTrailers(checksums, trailers, r.Header.Get("X-Amz-Trailer")); err != nil {
			return err
		}
		req.payload = payload
	case strings.HasPrefix(h, "STREAMING-"):
		return errNotImplemented("signed aws-chunked payloads (" + h + ") are not supported by this sandbox gateway; send a hex SHA-256, UNSIGNED-PAYLOAD or " + payloadStreamingTrailer)
	case chunked:
		return errInvalidRequest("Content-Encoding: aws-chunked needs x-amz-content-sha256: " + payloadStreamingTrailer)
	case h == payloadUnsigned:
		payload, err := g.readBody(w, r, g.maxSize)
		if err != nil {
			return err
		}
		req.payload = payload
	case hexSHA256.MatchString(h):
		payload, err := g.readBody(w, r, g.maxSize)
		if err != nil {
			return err
		}
		if got := hexSum(payload); got != h {
			return &s3Error{status: http.StatusBadRequest, code: "XAmzContentSHA256Mismatch",
				message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
				extra:   [][2]string{{"ClientComputedContentSHA256", h}, {"S3ComputedContentSHA256", got}}}
		}
		req.payload = payload
	default:
		return errInvalidArgument("x-amz-content-sha256 must be the payload's hex SHA-256, " + payloadUnsigned + " or " + payloadStreamingTrailer)
	}
	if len(checksums) > 1 {
		return errInvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
	}
	for name, value := range checksums {
		if err := verifyChecksum(name, value, req.payload); err != nil {
			return err
		}
	}
	if err := verifyContentMD5(r.Header, req.payload); err != nil {
		return err
	}
	req.checksums = checksums
	return nil
}

// readBody reads at most limit bytes of body.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *s3Error) {
	if r.ContentLength > limit {
		return nil, errEntityTooLarge(g.maxSize)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errEntityTooLarge(g.maxSize)
	case err != nil:
		return nil, errIncompleteBody("You did not provide the number of bytes specified by the Content-Length HTTP header.")
	}
	return body, nil
}

// readChunked reads an unsigned aws-chunked body:
//
//	<hex size>\r\n<data>\r\n … 0\r\n<name>:<value>\r\n … \r\n
func (g *Gateway) readChunked(w http.ResponseWriter, r *http.Request) ([]byte, [][2]string, *s3Error) {
	decoded, perr := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
	if perr != nil || decoded < 0 {
		return nil, nil, &s3Error{status: http.StatusLengthRequired, code: "MissingContentLength",
			message: "You must provide the x-amz-decoded-content-length header with an aws-chunked body."}
	}
	if decoded > g.maxSize {
		return nil, nil, errEntityTooLarge(g.maxSize)
	}
	// The framing of chunks of 64 bytes or more, and a short trailer.
	raw, err := g.readBody(w, r, decoded+decoded/8+4096)
	if err != nil {
		return nil, nil, err
	}
	return decodeChunked(raw, decoded)
}

// decodeChunked undoes aws-chunked framing. Every pass of either loop
// consumes at least two bytes of raw, so both end.
func decodeChunked(raw []byte, want int64) ([]byte, [][2]string, *s3Error) {
	payload := make([]byte, 0, want)
	rest := raw
	for {
		line, after, ok := bytes.Cut(rest, crlf)
		if !ok || len(line) == 0 || len(line) > maxChunkHeader {
			return nil, nil, errIncompleteBody("The aws-chunked body has a malformed chunk header (only unsigned chunks are supported).")
		}
		size, err := strconv.ParseUint(string(line), 16, 63)
		if err != nil {
			return nil, nil, errIncompleteBody("The aws-chunked body has a malformed chunk header (only unsigned chunks are supported).")
		}
		rest = after
		if size == 0 {
			break
		}
		if size > uint64(want)-uint64(len(payload)) {
			return nil, nil, errIncompleteBody("The aws-chunked body holds more than x-amz-decoded-content-length bytes.")
		}
		if uint64(len(rest)) < size+2 || !bytes.Equal(rest[size:size+2], crlf) {
			return nil, nil, errIncompleteBody("An aws-chunked chunk is shorter than its header says.")
		}
		payload = append(payload, rest[:size]...)
		rest = rest[size+2:]
	}
	var trailers [][2]string
	for {
		line, after, ok := bytes.Cut(rest, crlf)
		if !ok {
			return nil, nil, errIncompleteBody("The aws-chunked trailer must end with an empty line.")
		}
		rest = after
		if len(line) == 0 {
			break
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || len(trailers) == maxTrailers {
			return nil, nil, errIncompleteBody("The aws-chunked trailer is malformed.")
		}
		trailers = append(trailers, [2]string{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	if len(rest) != 0 {
		return nil, nil, errIncompleteBody("There is data after the aws-chunked trailer.")
	}
	if int64(len(payload)) != want {
		return nil, nil, errIncompleteBody("The aws-chunked body holds fewer than x-amz-decoded-content-length bytes.")
	}
	return payload, trailers, nil
}

// addTrailers checks that the trailers are exactly those x-amz-trailer
// announced, all checksums, and adds them to checksums.
func addTrailers(checksums map[string]string, trailers [][2]string, announced string) *s3Error {
	declared := splitList(strings.ToLower(announced))
	var sent []string
	for _, t := range trailers {
		name, value := t[0], t[1]
		if !slices.Contains(declared, name) {
			return errInvalidRequest("The aws-chunked trailer " + name + " was not announced in x-amz-trailer.")
		}
		if checksumAlgorithms[name] == nil {
			return errInvalidRequest("The aws-chunked trailer " + name + " is not a supported checksum.")
		}
		if _, dup := checksums[name]; dup {
			return errInvalidRequest("The checksum " + name + " was sent twice.")
		}
		checksums[name] = value
		sent = append(sent, name)
	}
	for _, name := range declared {
		if !slices.Contains(sent, name) {
			return errInvalidRequest("x-amz-trailer announced " + name + ", but the body's trailer did not carry it.")
		}
	}
	return nil
}

// checksumHeaders collects the x-amz-checksum-<algorithm> headers.
func checksumHeaders(h http.Header) (map[string]string, *s3Error) {
	out := map[string]string{}
	for name, values := range h {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "x-amz-checksum-") || slices.Contains(checksumOptions, lower) {
			continue
		}
		if checksumAlgorithms[lower] == nil {
			return nil, errInvalidRequest("The checksum " + lower + " is not supported by this sandbox gateway.")
		}
		if len(values) != 1 {
			return nil, errInvalidRequest("The checksum " + lower + " was sent twice.")
		}
		out[lower] = values[0]
	}
	return out, nil
}

func verifyChecksum(name, value string, payload []byte) *s3Error {
	newHash := checksumAlgorithms[name]
	algorithm := strings.ToUpper(strings.TrimPrefix(name, "x-amz-checksum-"))
	want, err := base64.StdEncoding.DecodeString(value)
	h := newHash()
	if err != nil || len(want) != h.Size() {
		return errInvalidRequest("Value for " + name + " header is invalid.")
	}
	h.Write(payload)
	if !bytes.Equal(h.Sum(nil), want) {
		return &s3Error{status: http.StatusBadRequest, code: "BadDigest",
			message: "The " + algorithm + " you specified did not match the calculated checksum."}
	}
	return nil
}

func verifyContentMD5(h http.Header, payload []byte) *s3Error {
	value := h.Get("Content-MD5")
	if value == "" {
		return nil
	}
	want, err := base64.StdEncoding.DecodeString(value)
	if err != nil || len(want) != md5.Size {
		return &s3Error{status: http.StatusBadRequest, code: "InvalidDigest", message: "The Content-MD5 you specified was invalid."}
	}
	if got := md5.Sum(payload); !bytes.Equal(got[:], want) {
		return &s3Error{status: http.StatusBadRequest, code: "BadDigest", message: "The Content-MD5 you specified did not match what we received."}
	}
	return nil
}

// splitList splits a comma-separated header value into trimmed, non-empty
// items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
