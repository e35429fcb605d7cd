package provider

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Fuzz targets for the parsing and validation helpers every provider uses.
// `go test` runs only the seeds below and those under testdata/fuzz; run one
// target for longer with
//
//	go test -run '^$' -fuzz '^FuzzCleanMessage$' -fuzztime 60s ./backend/provider/

// maxCleanLen is the longest text CleanMessage may return: the cap plus the
// ellipsis that marks a cut.
const maxCleanLen = maxMessageLen + len("…")

// FuzzCleanMessage: the text is bounded, on one line, free of repeated or
// surrounding whitespace, stable when cleaned again, and valid UTF-8 when
// the upstream's text was.
func FuzzCleanMessage(f *testing.F) {
	for _, s := range []string{
		"",
		"Too Many Requests\n",
		"The provided password did not match the account.",
		"There was an error processing your request: unauthorized: user already verified",
		"  expiration cannot be shorter than a minute\r\n",
		"a\tb\n\nc  d",
		strings.Repeat("a ", 500),
		strings.Repeat("é", 200),
		strings.Repeat("日本", 60),
		"\u00a0non-breaking\u2003spaces\u0085",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := CleanMessage(in)
		if len(out) > maxCleanLen {
			t.Fatalf("CleanMessage returned %d bytes, more than %d", len(out), maxCleanLen)
		}
		if out != strings.TrimSpace(out) || strings.Contains(out, "  ") {
			t.Fatalf("CleanMessage left surrounding or repeated spaces: %q", out)
		}
		if strings.ContainsFunc(out, func(r rune) bool { return r != ' ' && unicode.IsSpace(r) }) {
			t.Fatalf("CleanMessage left a line break or other whitespace: %q", out)
		}
		joined := strings.Join(strings.Fields(in), " ")
		if len(joined) <= maxMessageLen {
			if out != joined || CleanMessage(out) != out {
				t.Fatalf("a short message changed beyond its whitespace: %q from %q", out, in)
			}
		} else if !strings.HasSuffix(out, "…") || !strings.HasPrefix(joined, strings.TrimSuffix(out, "…")) {
			t.Fatalf("a long message is not cut with an ellipsis: %q", out)
		}
		if utf8.ValidString(in) && !utf8.ValidString(out) {
			t.Fatalf("CleanMessage cut inside a multi-byte character and returned invalid UTF-8: %q", out[max(0, len(out)-8):])
		}
	})
}

// FuzzRetryAfter: never negative nor past MaxRetryAfter, whole seconds read
// exactly, an HTTP-date read relative to now, and anything else ignored.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for _, s := range []string{
		"", "5", "0", "-1", "120", "soon", " 5", "+5", "1.5",
		"Thu, 01 Jan 2026 00:01:00 GMT",
		"Wed, 31 Dec 2025 00:00:00 GMT",
		"Thursday, 01-Jan-26 00:01:00 GMT",
		"Thu Jan  1 00:01:00 2026",
		"Sun, 06 Nov 1994 08:49:37 GMT",
		"9223372036",
		"99999999999999999999",
	} {
		f.Add(s, now)
	}
	f.Fuzz(func(t *testing.T, value string, nowUnix int64) {
		now := time.Unix(nowUnix%(1<<40), 0).UTC()
		h := http.Header{}
		if value != "" {
			h.Set("Retry-After", value)
		}
		got := RetryAfter(h, now)
		secs, intErr := strconv.Atoi(value)
		if got < 0 || got > MaxRetryAfter {
			t.Fatalf("Retry-After %q read as %s: outside [0, %s]", value, got, MaxRetryAfter)
		}
		capped := func(d time.Duration) time.Duration { return min(d, MaxRetryAfter) }
		switch {
		case intErr == nil && secs >= int(MaxRetryAfter/time.Second):
			if got != MaxRetryAfter {
				t.Fatalf("Retry-After %q read as %s, want the cap %s", value, got, MaxRetryAfter)
			}
		case intErr == nil && secs > 0:
			if got != time.Duration(secs)*time.Second {
				t.Fatalf("Retry-After %q read as %s", value, got)
			}
		case intErr == nil:
			if got != 0 {
				t.Fatalf("Retry-After %q (not positive) read as %s", value, got)
			}
		default:
			when, err := http.ParseTime(value)
			switch {
			case err != nil && got != 0:
				t.Fatalf("unreadable Retry-After %q read as %s", value, got)
			case err == nil && when.After(now) && got != capped(when.Sub(now)):
				t.Fatalf("Retry-After %q at %s read as %s, want %s", value, now, got, capped(when.Sub(now)))
			case err == nil && !when.After(now) && got != 0:
				t.Fatalf("past Retry-After %q at %s read as %s", value, now, got)
			}
		}
	})
}

// FuzzFieldNormalize: every error wraps ErrInvalidInput, every value comes
// out in the field's type and form, and Normalize is idempotent, also on its
// own output after a JSON round trip through Vault's storage.
func FuzzFieldNormalize(f *testing.F) {
	// kind: 0 string, 1 float64, 2 int, 3 bool, 4 []any of strings,
	// 5 []any with a number, 6 []string, 7 nil, 8 json.Number (how Vault
	// hands a plugin every number of a JSON request).
	f.Add(uint8(TypeString), "", uint8(0), "  x ", 0.0, 0, false)
	f.Add(uint8(TypeString), "a,b", uint8(0), "b", 0.0, 0, false)
	f.Add(uint8(TypeString), "a", uint8(0), "c", 0.0, 0, false)
	f.Add(uint8(TypeString), "", uint8(2), "", 0.0, 5, false)
	f.Add(uint8(TypeBool), "", uint8(0), "true", 0.0, 0, false)
	f.Add(uint8(TypeBool), "", uint8(0), "yes please", 0.0, 0, false)
	f.Add(uint8(TypeBool), "", uint8(3), "", 0.0, 0, true)
	f.Add(uint8(TypeInt), "", uint8(1), "", 3.0, 0, false)
	f.Add(uint8(TypeInt), "", uint8(1), "", 2.5, 0, false)
	f.Add(uint8(TypeInt), "", uint8(0), "42", 0.0, 0, false)
	f.Add(uint8(TypeInt), "", uint8(1), "", 9.3e18, 0, false)
	f.Add(uint8(TypeStringList), "read,write", uint8(0), "write, read,read", 0.0, 0, false)
	f.Add(uint8(TypeStringList), "read,write", uint8(4), "read\x00admin", 0.0, 0, false)
	f.Add(uint8(TypeStringList), "", uint8(5), "read", 0.0, 0, false)
	f.Add(uint8(TypeStringList), "download,upload,list,delete", uint8(6), "list\x00 upload \x00\x00list", 0.0, 0, false)
	f.Add(uint8(TypeStringList), "", uint8(7), "", 0.0, 0, false)
	f.Fuzz(func(t *testing.T, typ uint8, allowed string, kind uint8, s string, fl float64, n int, b bool) {
		// Request values reach a plugin through JSON, which has replaced any
		// invalid UTF-8 by then.
		s, allowed = strings.ToValidUTF8(s, "\uFFFD"), strings.ToValidUTF8(allowed, "\uFFFD")
		field := Field{Name: "field", Type: FieldType(typ % 4)}
		if allowed != "" {
			field.Allowed = strings.Split(allowed, ",")
		}
		var raw any
		switch kind % 9 {
		case 0:
			raw = s
		case 1:
			raw = fl
		case 2:
			raw = n
		case 3:
			raw = b
		case 4:
			var l []any
			for _, item := range strings.Split(s, "\x00") {
				l = append(l, item)
			}
			raw = l
		case 5:
			raw = []any{s, fl}
		case 6:
			raw = strings.Split(s, "\x00")
		case 8:
			raw = json.Number(s)
		}
		out, err := field.Normalize(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("Normalize(%#v) failed without ErrInvalidInput: %v", raw, err)
			}
			if num, ok := raw.(json.Number); ok && field.Type == TypeInt {
				if _, convErr := num.Int64(); convErr == nil {
					t.Fatalf("Normalize refuses json.Number %q, the form Vault gives a plugin for every JSON number", num)
				}
			}
			return
		}
		checkNormalForm(t, field, out)
		again, err := field.Normalize(out)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("Normalize is not idempotent: %#v gave %#v, then %#v, %v", raw, out, again, err)
		}
		// Vault stores values as JSON and reads them back with UseNumber:
		// numbers as json.Number, lists as []any. They must normalize to
		// the same value.
		encoded, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(encoded)))
		dec.UseNumber()
		var decoded any
		if err := dec.Decode(&decoded); err != nil {
			t.Fatal(err)
		}
		stored, err := field.Normalize(decoded)
		if err != nil || !reflect.DeepEqual(stored, out) {
			t.Fatalf("the stored form %s normalizes to %#v, %v; want %#v", encoded, stored, err, out)
		}
	})
}

func checkNormalForm(t *testing.T, field Field, out any) {
	t.Helper()
	switch field.Type {
	case TypeString:
		s, ok := out.(string)
		if !ok || s != strings.TrimSpace(s) {
			t.Fatalf("string field gave %#v", out)
		}
		if s != "" && len(field.Allowed) > 0 && !slices.Contains(field.Allowed, s) {
			t.Fatalf("string field gave %q, not in %q", s, field.Allowed)
		}
	case TypeBool:
		if _, ok := out.(bool); !ok {
			t.Fatalf("bool field gave %#v", out)
		}
	case TypeInt:
		if _, ok := out.(int); !ok {
			t.Fatalf("int field gave %#v", out)
		}
	case TypeStringList:
		l, ok := out.([]string)
		if !ok || !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			t.Fatalf("list field gave %#v: want a sorted list without duplicates", out)
		}
		for _, item := range l {
			if item == "" || item != strings.TrimSpace(item) || (len(field.Allowed) > 0 && !slices.Contains(field.Allowed, item)) {
				t.Fatalf("list field gave item %q (allowed %q)", item, field.Allowed)
			}
		}
	}
}

// FuzzDecodeJSON: a body decodes exactly when it is JSON of the expected
// shape; a failure is an UpstreamError carrying the status and never the
// body, which may hold a secret.
func FuzzDecodeJSON(f *testing.F) {
	for _, body := range []string{
		`{"id":"cc5lnd2s1s4652adtu50","createdAt":"2026-01-01T00:00:00Z","enabled":false,"name":"vault-app-x","expires_at":"2026-01-02T00:00:00Z","secret":"sdpak_abcdefghijklABCDEFGHIJKLMNOPQRSTUVWXYZ012345"}`,
		`{"keys":[{"id":"a","name":"n","enabled":true}]}`,
		`{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE2MzI3OTI0Mzd9.c2ln","token_type":"bearer"}`,
		`{"access_key_id":"jwaaaaaaaaaaaaaaaaaaaaaaaaaa","secret_key":"jxbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","endpoint":"https://gateway.storx.io"}`,
		`{"object_storage_access_key":{"id":"objkey_0123456789abcdef","name":"n","created_at":1754923966,"state":"pending","server_url":null}}`,
		`"1BxQuotedGrant"` + "\n",
		`<html>Bad Gateway</html>`,
		``,
		`{"id":`,
		`{"secret":"hunter2hunter2"`,
		`[1,2,3]`,
	} {
		f.Add(body, 200)
	}
	f.Fuzz(func(t *testing.T, body string, status int) {
		var target struct {
			ID      string         `json:"id"`
			Secret  string         `json:"secret"`
			Created *time.Time     `json:"createdAt"`
			Keys    []any          `json:"keys"`
			Extra   map[string]any `json:"object_storage_access_key"`
		}
		err := DecodeJSON("p", "op", &Response{Status: status, Body: []byte(body)}, &target)
		var want struct {
			ID      string         `json:"id"`
			Secret  string         `json:"secret"`
			Created *time.Time     `json:"createdAt"`
			Keys    []any          `json:"keys"`
			Extra   map[string]any `json:"object_storage_access_key"`
		}
		wantErr := json.Unmarshal([]byte(body), &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("DecodeJSON err %v, json.Unmarshal err %v", err, wantErr)
		}
		if err == nil {
			return
		}
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Status != status || !errors.Is(err, errMalformed) {
			t.Fatalf("DecodeJSON error is not an UpstreamError with the status: %#v", err)
		}
		if len(body) >= 8 && strings.Contains(err.Error(), body) {
			t.Fatalf("the error echoes the body: %v", err)
		}
		if len(err.Error()) > 200 {
			t.Fatalf("the error is %d bytes long", len(err.Error()))
		}
	})
}

// FuzzNormalizeURL: an accepted URL (base_url, StorX's auth_url) is an absolute http(s) URL
// with a host, without credentials, query, fragment or trailing slash; it
// normalizes to itself; and appending an API path to it, as
// provider.Client does, gives a URL on the same host whose path ends with
// the API path and that has no query or fragment.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{
		"https://forum.example.com",
		"https://forum.example.com/",
		"https://forum.example.com/api",
		"https://storx.io",
		"https://api.katapult.io/core/v1",
		"https://api.dstor.cloud/v1",
		"https://api.storable.io",
		"http://127.0.0.1:8200/sandbox/storyden//",
		" HTTPS://Forum.Example.com ",
		"ftp://example.com",
		"https://user:pass@example.com",
		"https://example.com?x=1",
		"https://example.com#frag",
		"example.com",
		"https://",
		"http://[::1]:80/a%20b",
		"https://auth.storx.io?",
		"https://auth.storx.io/#",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizeURL("base_url", "https://api.example.com", raw)
		if err != nil {
			if got != "" || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("NormalizeURL(%q) returned %q, %v", raw, got, err)
			}
			return
		}
		u, perr := url.Parse(got)
		if perr != nil {
			t.Fatalf("accepted %q as %q, which does not parse: %v", raw, got, perr)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("accepted %q as %q: scheme %q host %q user %v opaque %q", raw, got, u.Scheme, u.Host, u.User, u.Opaque)
		}
		if strings.HasSuffix(got, "/") || got != strings.TrimSpace(got) {
			t.Fatalf("accepted %q as %q, with a trailing slash or space", raw, got)
		}
		again, err := NormalizeURL("base_url", "https://api.example.com", got)
		if err != nil || again != got {
			t.Fatalf("NormalizeURL is not idempotent: %q gave %q, then %q, %v", raw, got, again, err)
		}
		const apiPath = "/api/auth/access-keys"
		full, perr := url.Parse(got + apiPath)
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || perr != nil || full.RawQuery != "" || full.ForceQuery || full.Fragment != "" ||
			full.Host != u.Host || !strings.HasSuffix(full.EscapedPath(), apiPath) {
			var q, h any = "?", "#"
			if perr == nil {
				q, h = full.RawQuery, full.Fragment
			}
			t.Fatalf("NormalizeURL accepts %q as %q, but requests to %q go to host %q, path %q, query %v, fragment %v",
				raw, got, got+apiPath, full.Host, full.EscapedPath(), q, h)
		}
	})
}
