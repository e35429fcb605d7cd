package s3gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	amzDateFormat  = "20060102T150405Z"
	scopeDateFmt   = "20060102"
	scopeTerminal  = "aws4_request"
	service        = "s3"
	// maxSignedHeaders bounds the SignedHeaders list a request may carry.
	maxSignedHeaders = 64

	payloadUnsigned         = "UNSIGNED-PAYLOAD"
	payloadStreamingTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

var (
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hexSig      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	regionLabel = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	headerName  = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`)
)

// authorization is a parsed "Authorization: AWS4-HMAC-SHA256 …" header.
type authorization struct {
	accessKeyID   string
	date, region  string // of the credential scope
	signedHeaders []string
	signature     string
}

// authResult is what a request proved about itself.
type authResult struct {
	accessKeyID string
	// payloadHash is the x-amz-content-sha256 the signature covers.
	payloadHash string
}

// authenticate checks the request's SigV4 header signature. It verifies,
// in order: the header's shape, X-Amz-Date, the credential scope, that the
// access key id is live (Resolver), that host, x-amz-date,
// x-amz-content-sha256 and every other x-amz-* header present are signed,
// the signature, and only then the clock skew. The payload is checked by
// readPayload against the hash the signature covers.
func (g *Gateway) authenticate(r *http.Request) (*authResult, *s3Error) {
	q := r.URL.Query()
	if q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature") || q.Has("Signature") {
		return nil, errNotImplemented("query-string (presigned URL) authentication is not supported by this sandbox gateway")
	}
	header := r.Header.Get("Authorization")
	if header == "" {
		return nil, errAccessDenied("Anonymous access is forbidden for this operation.")
	}
	auth, err := parseAuthorization(header)
	if err != nil {
		return nil, err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return nil, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	signedAt, perr := time.Parse(amzDateFormat, amzDate)
	if perr != nil {
		return nil, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	if auth.date != signedAt.Format(scopeDateFmt) {
		return nil, errMalformedAuth("Invalid credential date. Date is not the same as X-Amz-Date.")
	}
	secret, lookupErr := g.resolve(auth.accessKeyID)
	switch {
	case errors.Is(lookupErr, ErrUnknownKey):
		return nil, &s3Error{status: http.StatusForbidden, code: "InvalidAccessKeyId",
			message: "The AWS Access Key Id you provided does not exist in our records.", accessKeyID: auth.accessKeyID}
	case lookupErr != nil && !errors.Is(lookupErr, ErrAccessDenied):
		return nil, errInternal()
	}
	if err := checkSignedHeaders(r, auth.signedHeaders); err != nil {
		return nil, err
	}
	if r.Header.Get("X-Amz-Security-Token") != "" {
		return nil, &s3Error{status: http.StatusBadRequest, code: "InvalidToken",
			message: "The provided token is malformed or otherwise invalid: this sandbox gateway knows no session tokens."}
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	canonical := canonicalRequest(r, auth.signedHeaders, payloadHash)
	scope := auth.date + "/" + auth.region + "/" + service + "/" + scopeTerminal
	toSign := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hexSum([]byte(canonical))
	want := hex.EncodeToString(hmacSHA256(signingKey(secret, auth.date, auth.region), toSign))
	if !hmac.Equal([]byte(want), []byte(auth.signature)) {
		return nil, &s3Error{status: http.StatusForbidden, code: "SignatureDoesNotMatch",
			message:     "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
			accessKeyID: auth.accessKeyID}
	}
	if now := g.now(); signedAt.Sub(now).Abs() > MaxClockSkew {
		return nil, &s3Error{status: http.StatusForbidden, code: "RequestTimeTooSkewed",
			message: "The difference between the request time and the current time is too large.",
			extra: [][2]string{{"RequestTime", amzDate}, {"ServerTime", now.UTC().Format(time.RFC3339)},
				{"MaxAllowedSkewMilliseconds", "900000"}}}
	}
	if lookupErr != nil {
		// ErrAccessDenied: the request is well signed, and refused where
		// the access is enforced.
		return nil, errAccessDenied("Access Denied.")
	}
	return &authResult{accessKeyID: auth.accessKeyID, payloadHash: payloadHash}, nil
}

// parseAuthorization reads
// "AWS4-HMAC-SHA256 Credential=AKID/20260301/region/s3/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(header string) (*authorization, *s3Error) {
	algorithm, rest, _ := strings.Cut(header, " ")
	if algorithm != sigV4Algorithm {
		return nil, errInvalidArgument("Unsupported Authorization Type: only " + sigV4Algorithm + " is accepted")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || fields[name] != "" {
			return nil, errMalformedAuth("expected Credential=…, SignedHeaders=…, Signature=… once each")
		}
		fields[name] = value
	}
	if len(fields) != 3 || fields["Credential"] == "" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return nil, errMalformedAuth("expected Credential=…, SignedHeaders=…, Signature=… once each")
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] == "" {
		return nil, errMalformedAuth("the Credential must be <access key id>/<date>/<region>/s3/aws4_request")
	}
	a := &authorization{accessKeyID: scope[0], date: scope[1], region: scope[2], signature: fields["Signature"]}
	if _, err := time.Parse(scopeDateFmt, a.date); err != nil {
		return nil, errMalformedAuth("the Credential's date must be YYYYMMDD")
	}
	if !regionLabel.MatchString(a.region) {
		return nil, errMalformedAuth("the Credential's region is not a region name")
	}
	if scope[3] != service {
		return nil, errMalformedAuth("Credential should be scoped to correct service: 's3'.")
	}
	if scope[4] != scopeTerminal {
		return nil, errMalformedAuth("Credential should be scoped with a valid terminator: 'aws4_request'.")
	}
	if !hexSig.MatchString(a.signature) {
		return nil, errMalformedAuth("the Signature must be 64 lower-case hex digits")
	}
	a.signedHeaders = strings.Split(fields["SignedHeaders"], ";")
	if len(a.signedHeaders) > maxSignedHeaders {
		return nil, errMalformedAuth("too many SignedHeaders")
	}
	for _, h := range a.signedHeaders {
		if !headerName.MatchString(h) {
			return nil, errMalformedAuth("SignedHeaders must be lower-case header names separated by ';'")
		}
	}
	return a, nil
}

// checkSignedHeaders refuses requests whose signature leaves out host,
// x-amz-date or x-amz-content-sha256, or any other x-amz-* header sent.
func checkSignedHeaders(r *http.Request, signed []string) *s3Error {
	for _, required := range []string{"host", "x-amz-date", "x-amz-content-sha256"} {
		if !slices.Contains(signed, required) {
			if required == "x-amz-content-sha256" && r.Header.Get(required) == "" {
				return errInvalidRequest("Missing required header for this request: x-amz-content-sha256")
			}
			return errAccessDenied("The request signature must cover the " + required + " header.")
		}
	}
	var unsigned []string
	for name := range r.Header {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-amz-") && !slices.Contains(signed, lower) {
			unsigned = append(unsigned, lower)
		}
	}
	if len(unsigned) > 0 {
		slices.Sort(unsigned)
		e := errAccessDenied("There were headers present in the request which were not signed")
		e.extra = [][2]string{{"HeadersNotSigned", strings.Join(unsigned, ", ")}}
		return e
	}
	return nil
}

// canonicalRequest builds SigV4's canonical request the way S3 does: the
// path exactly as sent (S3 does not normalise or re-encode it), the query
// parameters decoded, re-encoded and sorted, and the signed headers.
func canonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(rawPath(r))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(canonicalHeaderValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// rawPath is the request's path exactly as it came on the wire.
func rawPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		path, _, _ := strings.Cut(r.RequestURI, "?")
		return path
	}
	if p := r.URL.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

func canonicalQuery(raw string) string {
	type param struct{ key, value string }
	var params []param
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		// An undecodable component is signed as sent; the signature then
		// decides.
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		params = append(params, param{uriEncode(k), uriEncode(v)})
	}
	slices.SortFunc(params, func(a, b param) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// uriEncode is SigV4's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ as %XX.
func uriEncode(s string) string {
	const upperHex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// canonicalHeaderValue is the header's values, each trimmed with runs of
// spaces folded, joined by commas. Host and Content-Length come from where
// net/http keeps them.
func canonicalHeaderValue(r *http.Request, name string) string {
	var values []string
	switch {
	case name == "host":
		values = []string{r.Host}
	case name == "content-length" && r.Header.Get("Content-Length") == "" && r.ContentLength >= 0:
		values = []string{strconv.FormatInt(r.ContentLength, 10)}
	default:
		values = slices.Clone(r.Header.Values(name))
	}
	for i, v := range values {
		values[i] = foldSpaces(v)
	}
	return strings.Join(values, ",")
}

// foldSpaces trims leading and trailing spaces and turns every run of
// spaces inside into one, as SigV4 asks of header values.
func foldSpaces(v string) string {
	var b strings.Builder
	space := false
	for _, c := range []byte(strings.Trim(v, " ")) {
		if c == ' ' {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

func signingKey(secret, date, region string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, scopeTerminal)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func hexSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
