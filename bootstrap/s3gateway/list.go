package s3gateway

import (
	"encoding/base64"
	"encoding/xml"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// listBucketResult is ListObjectsV2's answer.
type listBucketResult struct {
	XMLName               xml.Name       `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	KeyCount              int            `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	Contents              []listEntry    `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

type listEntry struct {
	Key          string     `xml:"Key"`
	LastModified string     `xml:"LastModified"`
	ETag         string     `xml:"ETag"`
	Size         int        `xml:"Size"`
	StorageClass string     `xml:"StorageClass"`
	Owner        *listOwner `xml:"Owner,omitempty"`
}

type listOwner struct {
	ID string `xml:"ID"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// listMarker is where a listing resumes: after a key, or after every key
// under a common prefix. Continuation tokens encode it.
type listMarker struct {
	after     string
	skipUnder string
}

func (m listMarker) skips(key string) bool {
	return key <= m.after || (m.skipUnder != "" && strings.HasPrefix(key, m.skipUnder))
}

func (m listMarker) token() string {
	if m.skipUnder != "" {
		return base64.RawURLEncoding.EncodeToString([]byte("p" + m.skipUnder))
	}
	return base64.RawURLEncoding.EncodeToString([]byte("k" + m.after))
}

func parseToken(token string) (listMarker, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 2 {
		return listMarker{}, false
	}
	switch raw[0] {
	case 'k':
		return listMarker{after: string(raw[1:])}, true
	case 'p':
		return listMarker{after: string(raw[1:]), skipUnder: string(raw[1:])}, true
	}
	return listMarker{}, false
}

// listObjects is GET /{bucket}?list-type=2 with prefix, delimiter,
// max-keys, continuation-token, start-after, encoding-type=url and
// fetch-owner. The pass over the bucket's keys is bounded by MaxObjects.
func (g *Gateway) listObjects(req *request) (*response, *s3Error) {
	q := req.r.URL.Query()
	if q.Get("list-type") != "2" {
		return nil, errNotImplemented("only ListObjectsV2 (list-type=2) is supported on a bucket")
	}
	maxKeys := maxListKeys
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, errInvalidArgument("Provided max-keys not an integer or within integer range")
		}
		maxKeys = min(n, maxListKeys)
	}
	encodingType := q.Get("encoding-type")
	if encodingType != "" && encodingType != "url" {
		return nil, errInvalidArgument("Invalid Encoding Method specified in Request")
	}
	prefix, delimiter := q.Get("prefix"), q.Get("delimiter")
	marker := listMarker{after: q.Get("start-after")}
	token := q.Get("continuation-token")
	if q.Has("continuation-token") {
		m, ok := parseToken(token)
		if !ok {
			return nil, errInvalidArgument("The continuation token provided is incorrect")
		}
		// The token wins over start-after, as in S3.
		marker = m
	}
	bucket := req.r.PathValue("bucket")
	g.mu.Lock()
	objects, err := g.bucket(bucket)
	if err != nil {
		g.mu.Unlock()
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(objects))
	result := listBucketResult{Name: bucket, Prefix: prefix, Delimiter: delimiter, MaxKeys: maxKeys,
		EncodingType: encodingType, ContinuationToken: token, StartAfter: q.Get("start-after")}
	encode := func(s string) string { return s }
	if encodingType == "url" {
		encode = url.QueryEscape
		result.Prefix, result.Delimiter, result.StartAfter = encode(prefix), encode(delimiter), encode(result.StartAfter)
	}
	var last listMarker
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) || marker.skips(key) || last.skipUnder != "" && strings.HasPrefix(key, last.skipUnder) {
			continue
		}
		common := ""
		if delimiter != "" {
			if i := strings.Index(key[len(prefix):], delimiter); i >= 0 {
				common = key[:len(prefix)+i+len(delimiter)]
			}
		}
		if result.KeyCount == maxKeys {
			result.IsTruncated = maxKeys > 0
			break
		}
		result.KeyCount++
		if common != "" {
			result.CommonPrefixes = append(result.CommonPrefixes, commonPrefix{Prefix: encode(common)})
			last = listMarker{after: common, skipUnder: common}
			continue
		}
		o := objects[key]
		entry := listEntry{Key: encode(key), LastModified: o.lastModified.UTC().Format("2006-01-02T15:04:05.000Z"),
			ETag: o.etag, Size: len(o.data), StorageClass: "STANDARD"}
		if q.Get("fetch-owner") == "true" {
			entry.Owner = &listOwner{ID: o.owner}
		}
		result.Contents = append(result.Contents, entry)
		last = listMarker{after: key}
	}
	g.mu.Unlock()
	if result.IsTruncated {
		result.NextContinuationToken = last.token()
	}
	body, merr := xml.Marshal(result)
	if merr != nil {
		panic(merr) // plain strings always marshal
	}
	return &response{status: http.StatusOK, header: http.Header{"Content-Type": {"application/xml"}},
		body: append([]byte(xml.Header), body...)}, nil
}
