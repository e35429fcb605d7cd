package katapult

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for Katapult's response parsers (wrapped and top-level error
// bodies, rate-limit headers, every success body) and its config and role
// validation. `go test` runs only the seeds and testdata/fuzz; run one
// target for longer with
//
//	go test -run '^$' -fuzz '^FuzzParseError$' -fuzztime 60s ./backend/katapult/

// Wire shapes from shared/reference/upstream-apis.md section 3.
var fuzzErrorBodies = []string{
	`{"error":{"code":"object_storage_provisioning_error","description":"Provisioning is in progress. Please try again later.","detail":{}}}`,
	`{"error":{"code":"object_storage_access_key_not_found","description":"No object storage access key was found matching any of the criteria provided in the arguments.","detail":{}}}`,
	`{"error":{"code":"validation_error","description":"A validation error occurred with the object that was being created/updated/deleted","detail":{"errors":["Label can't be blank"]}}}`,
	`{"error":{"code":"invalid_api_token","description":"The API token provided was not valid (it may not exist or have expired)","detail":{}}}`,
	`{"error":{"code":"rate_limit_reached","description":"You have reached the rate limit for this type of request","detail":{"total_permitted":1000}}}`,
	`{"error":{"code":"task_queueing_error","description":"A background task could not be queued","detail":{"details":"queue full"}}}`,
	`{"code":"missing_api_token","description":"No API token was provided in the Authorization header.","detail":{}}`,
	`{"code":"top","error":{"code":"wrapped","description":"w"}}`,
	`{"error":"boom","code":"top_level","description":"t"}`,
	`<html>Bad Gateway</html>`,
	``,
}

// FuzzParseError: the wrapped form wins, the top-level form is the
// fallback, a code always comes with its own description, and the message
// is bounded; an error object built from any code, description and detail
// reads back the same in both forms.
func FuzzParseError(f *testing.F) {
	for _, body := range fuzzErrorBodies {
		f.Add([]byte(body), "", "", "", "")
	}
	f.Add([]byte(""), "object_storage_bucket_not_found", "No bucket.", "", "")
	f.Add([]byte(""), "validation_error", "A validation error occurred", "Label can't be blank\x00Name is too long", "")
	f.Add([]byte(""), "task_queueing_error", "queued", "", "queue full")
	f.Fuzz(func(t *testing.T, body []byte, code, description, detailErrors, details string) {
		e := parseError(body)
		if !testutil.CleanText(e.message()) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(e.message()), e.message())
		}
		if e.Code == "" && (e.Description != "" || e.Detail != nil) {
			t.Fatalf("a description or detail without a code: %#v", e)
		}
		var wrapped struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(body, &wrapped) == nil && wrapped.Error != nil && wrapped.Error.Code != "" && e.Code != wrapped.Error.Code {
			t.Fatalf("the wrapped code %q lost to %q", wrapped.Error.Code, e.Code)
		}
		if code == "" {
			return
		}
		obj := map[string]any{"code": code, "description": description, "detail": map[string]any{}}
		if detailErrors != "" || details != "" {
			obj["detail"] = map[string]any{"errors": strings.Split(detailErrors, "\x00"), "details": details}
		}
		for _, form := range []any{map[string]any{"error": obj}, obj} {
			b, err := json.Marshal(form)
			if err != nil {
				t.Fatal(err)
			}
			got := parseError(b)
			if got.Code != fuzzJSONString(code) || got.Description != fuzzJSONString(description) {
				t.Fatalf("%s read as %#v", b, got)
			}
			for _, part := range append([]string{description, details}, strings.Split(detailErrors, "\x00")...) {
				words := strings.Fields(fuzzJSONString(part))
				if len(words) > 0 && len(strings.Join(words, " ")) < 40 && len(description)+len(detailErrors)+len(details) < 200 && !strings.Contains(got.message(), strings.Join(words, " ")) {
					t.Fatalf("message %q lost %q", got.message(), part)
				}
			}
		}
	})
}

// fuzzJSONString is s as it reads back from JSON, which replaces every
// byte of invalid UTF-8.
func fuzzJSONString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// FuzzUpstreamError: the status decides, the body adds a code and a
// bounded one-line message; a refused token wraps ErrRootRejected; the wait
// is only a 429's and never negative.
func FuzzUpstreamError(f *testing.F) {
	statuses := []int{422, 404, 422, 403, 429, 406, 400, 404, 500, 502, 503}
	for i, body := range fuzzErrorBodies {
		f.Add(statuses[i], []byte(body), "")
	}
	f.Add(429, []byte(fuzzErrorBodies[4]), "60")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		timeNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
		defer func() { timeNow = time.Now }()
		ue := upstreamError("create access key vault-app-x", &provider.Response{Status: status, Header: http.Header{"Retry-After": {retryAfter}}, Body: body})
		if ue.Provider != Name || ue.Status != status || ue.Code != provider.CleanMessage(parseError(body).Code) {
			t.Fatalf("got %#v", ue)
		}
		if errors.Is(ue, provider.ErrRootRejected) != rootRejectedCodes[ue.Code] {
			t.Fatalf("code %q: root rejected %t", ue.Code, errors.Is(ue, provider.ErrRootRejected))
		}
		if !testutil.CleanText(ue.Message) {
			t.Fatalf("message of %d bytes or on several lines: %q", len(ue.Message), ue.Message)
		}
		if ue.RetryAfter != 0 && status != http.StatusTooManyRequests {
			t.Fatalf("a %d carries a wait of %s", status, ue.RetryAfter)
		}
		if ue.RetryAfter < 0 {
			t.Fatalf("a 429 with Retry-After %q reads as a negative wait %s ", retryAfter, ue.RetryAfter)
		}
		if !testutil.CleanText(ue.Code) {
			t.Fatalf("the upstream's error code is used unbounded and uncleaned (%d bytes): %.60q", len(ue.Code), ue.Code)
		}
	})
}

// FuzzRateLimitHeaders: an answer pauses the budget exactly when it is a
// 429 or shows under 5 % of the permitted calls left; the pause is the
// answer's Retry-After, else until the server's next minute (at most one
// minute), never negative; a 429 without a usable Retry-After gets one in
// whole seconds, at least 1, that provider.Client reads back.
func FuzzRateLimitHeaders(f *testing.F) {
	date := "Sun, 01 Mar 2026 12:00:45 GMT"
	f.Add(200, "1000", "999", "", date, int64(0))
	f.Add(200, "1000", "50", "", date, int64(0))
	f.Add(200, "1000", "49", "", date, int64(0))
	f.Add(200, "", "", "", date, int64(0))
	f.Add(429, "1000", "0", "", date, int64(0))
	f.Add(429, "1000", "0", "7", date, int64(0))
	f.Add(429, "", "", "Sun, 01 Mar 2026 12:01:30 GMT", date, int64(0))
	f.Add(429, "", "", "", "", int64(-20))
	f.Add(200, "1000", "-1", "", "yesterday", int64(30))
	f.Fuzz(func(t *testing.T, status int, permitted, remaining, retryAfter, date string, skew int64) {
		now := time.Date(2026, 3, 1, 12, 0, 20, 0, time.UTC).Add(time.Duration(skew%3600) * time.Second)
		timeNow = func() time.Time { return now }
		defer func() { timeNow = time.Now }()
		h := http.Header{}
		for k, v := range map[string]string{"X-Ratelimit-Permitted": permitted, "X-Ratelimit-Remaining": remaining, "Retry-After": retryAfter, "Date": date} {
			if v != "" {
				h.Set(k, v)
			}
		}
		b := &rateBudget{}
		resp := &http.Response{StatusCode: status, Header: h.Clone()}
		b.observe(resp)

		low := false
		p, okP := new(big.Int).SetString(permitted, 10)
		r, okR := new(big.Int).SetString(remaining, 10)
		_, errP := strconv.Atoi(permitted)
		_, errR := strconv.Atoi(remaining)
		if okP && okR && errP == nil && errR == nil && p.Sign() > 0 {
			low = new(big.Int).Mul(r, big.NewInt(lowBudgetDivisor)).Cmp(p) < 0
		}
		if budgetLow(h) != low {
			t.Fatalf("budgetLow(permitted %q, remaining %q) = %t, want %t", permitted, remaining, budgetLow(h), low)
		}
		limited := status == http.StatusTooManyRequests
		if !limited && !low {
			if !b.resumeAt.IsZero() || resp.Header.Get("Retry-After") != retryAfter {
				t.Fatalf("a plain answer paused the budget until %s or changed Retry-After", b.resumeAt)
			}
			return
		}
		server := now
		if d, err := http.ParseTime(date); err == nil {
			server = d
		}
		pause := b.pause()
		asked := provider.RetryAfter(h, server)
		if asked < 0 {
			t.Fatalf("Retry-After %q reads as a negative wait %s, so the budget is not paused", retryAfter, asked)
		}
		switch {
		case asked > 0 && pause != asked:
			t.Fatalf("Retry-After %q (server time %s) paused for %s", retryAfter, server, pause)
		case asked == 0 && (pause <= 0 || pause > rateWindow):
			t.Fatalf("no usable Retry-After, server time %s: paused for %s", server, pause)
		}
		if limited && asked == 0 {
			secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 60 || provider.RetryAfter(resp.Header, now) != time.Duration(secs)*time.Second {
				t.Fatalf("a 429 got Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
	})
}

var (
	fuzzOrgIDPattern     = regexp.MustCompile(`^org_[A-Za-z0-9]+$`)
	fuzzSubDomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// FuzzConnect: a connection needs an API token and an organization given as
// an org_… id or a sub-domain; refusals wrap ErrInvalidInput and do not
// depend on the token; the lookup key matches the form.
func FuzzConnect(f *testing.F) {
	f.Add("user-token-secret-0123456789", "acme", "uk-lon-1", "")
	f.Add("org-token-secret-0123456789", "org_ACME0000000000001", "", "apitoken_ORG0000000000001")
	f.Add("", "acme", "", "")
	f.Add("t", "", "", "")
	f.Add("t", "org_bad-id", "", "")
	f.Add("t", "Acme Ltd", "", "")
	f.Add("t", "-acme", "", "")
	f.Fuzz(func(t *testing.T, token, org, region, tokenID string) {
		connect := func(token string) (provider.Connection, error) {
			return Provider{}.Connect(provider.ConnectionConfig{Name: "k", BaseURL: Provider{}.DefaultBaseURL(), Values: provider.Values{
				fieldAPIToken: token, fieldOrganization: org, fieldRegion: region, fieldAPITokenID: tokenID}})
		}
		conn, err := connect(token)
		_, errRot := connect(testutil.Rot(token))
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on the token: %v / %v", err, errRot)
		}
		byID := strings.HasPrefix(org, orgIDPrefix)
		want := token != "" && ((byID && fuzzOrgIDPattern.MatchString(org)) || (!byID && fuzzSubDomainPattern.MatchString(org)))
		if (err == nil) != want {
			t.Fatalf("Connect(org %q) = %v, want ok=%v", org, err, want)
		}
		if err != nil {
			if !errors.Is(err, provider.ErrInvalidInput) {
				t.Fatalf("error without ErrInvalidInput: %v", err)
			}
			return
		}
		c := conn.(*connection)
		wantKey := "sub_domain"
		if byID {
			wantKey = "id"
		}
		if c.org.key != wantKey || c.org.value != org || c.region == "" || (region != "" && c.region != region) {
			t.Fatalf("connection org %#v region %q", c.org, c.region)
		}
	})
}

// FuzzValidateRole: every bucket of read_buckets and write_buckets follows
// S3's DNS naming rules; refusals wrap ErrInvalidInput and name the field.
func FuzzValidateRole(f *testing.F) {
	f.Add("assets,logs", "")
	f.Add("", "backups")
	f.Add("Bad_Bucket", "")
	f.Add("ab", "")
	f.Add("", "a.b-c."+strings.Repeat("x", 60))
	f.Fuzz(func(t *testing.T, read, write string) {
		role := provider.Values{}
		if read != "" {
			role[fieldReadBuckets] = strings.Split(read, ",")
		}
		if write != "" {
			role[fieldWriteBuckets] = []any{}
			for _, b := range strings.Split(write, ",") {
				role[fieldWriteBuckets] = append(role[fieldWriteBuckets].([]any), b)
			}
		}
		err := Provider{}.ValidateRole(role)
		want := true
		for _, b := range append(role.Strings(fieldReadBuckets), role.Strings(fieldWriteBuckets)...) {
			ok := len(b) >= 3 && len(b) <= 63 && strings.Trim(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") == "" &&
				strings.Trim(b[:1]+b[len(b)-1:], "abcdefghijklmnopqrstuvwxyz0123456789") == ""
			want = want && ok
		}
		if (err == nil) != want {
			t.Fatalf("ValidateRole(%#v) = %v, want ok=%v", role, err, want)
		}
		if err != nil && (!errors.Is(err, provider.ErrInvalidInput) || !strings.Contains(err.Error(), "_buckets")) {
			t.Fatalf("error %v", err)
		}
	})
}

const (
	fuzzToken     = "user-token-secret-0123456789"
	fuzzNewSecret = "regenerated-secret-0123456789"
	fuzzS3Secret  = "s3secret0123456789abcdefghijklmnopqrstuv"
	fuzzKey       = `{"id":"objkey_0123456789abcdef","name":"vault-app-x","created_at":1754923966,"region":"uk-lon-1","state":"pending","all_buckets_read":false,"all_objects_read":false,"all_objects_write":false,"read_buckets":[],"write_buckets":[],"server_url":null,"s3_access_key_id":null,"s3_secret_access_key":null}`
	fuzzKeyCreds  = `{"id":"objkey_0123456789abcdef","name":"vault-app-x","created_at":1754923966,"region":"uk-lon-1","state":"configured","read_buckets":["assets"],"write_buckets":["logs"],"server_url":"uk-lon-1.katapultobjects.com:443","s3_access_key_id":"0123456789abcdef0123456789abcdef","s3_secret_access_key":"` + fuzzS3Secret + `"}`
	fuzzBucket    = `{"object_storage_bucket":{"name":"assets","access_control_list":{"read_key_ids":["objkey_other"],"write_key_ids":[]}}}`
)

// fuzzUpstream answers like Katapult, with its rate-limit headers on every
// answer; now is the Date it sends.
type fuzzUpstream struct {
	now func() time.Time
}

func (u *fuzzUpstream) answer(req *http.Request) testutil.Answer {
	a := u.route(req)
	a.Header = http.Header{"Content-Type": {"application/json"}, "X-Ratelimit-Permitted": {"1000"}, "X-Ratelimit-Remaining": {"999"},
		"Date": {u.now().UTC().Format(http.TimeFormat)}}
	return a
}

func (u *fuzzUpstream) route(req *http.Request) testutil.Answer {
	route := req.Method + " " + strings.TrimPrefix(req.URL.Path, "/core/v1")
	switch route {
	case "GET " + pathAccount:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"object_storage_account":{"region":"uk-lon-1","created_at":1754923966,"provisioning_state":"provisioned"}}`}
	case "POST " + pathCreateKey:
		return testutil.Answer{Status: 201, Header: nil, Body: `{"object_storage_access_key":` + fuzzKey + `}`}
	case "GET " + pathBucket, "PATCH " + pathBucket:
		return testutil.Answer{Status: 200, Header: nil, Body: fuzzBucket}
	case "POST " + pathGenerate:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"object_storage_access_key":` + fuzzKeyCreds + `}`}
	case "GET " + pathKey:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"object_storage_access_key":` + fuzzKey + `}`}
	case "DELETE " + pathKey:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"success":true}`}
	case "GET " + pathListKeys:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"pagination":{"current_page":1,"total_pages":1,"total":1,"per_page":100,"large_set":false},"object_storage_access_keys":[` + fuzzKeyCreds + `]}`}
	case "GET " + pathCurrentUser:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"user":{"id":"user_x"},"organizations":[],"api_token_id":"apitoken_USER000000000001"}`}
	case "POST " + pathRegenerate:
		return testutil.Answer{Status: 200, Header: nil, Body: `{"api_token":{"id":"apitoken_USER000000000001","name":"vault","secret":"` + fuzzNewSecret + `"}}`}
	}
	return testutil.Answer{Status: 404, Header: nil, Body: `{"error":{"code":"route_not_found","description":"No route","detail":{}}}`}
}

// FuzzUpstreamResponses runs one connection operation against a Katapult
// whose fuzzAt-th answer is fuzzed (status, rate-limit headers, Retry-After,
// body). Whatever the answer: no panic; an error never carries the API
// token or a secret the fuzzed answer did not hold; issued credentials are
// complete, with an https endpoint, and a lease Ref without secrets; a
// rotated token is staged, returned and used.
func FuzzUpstreamResponses(f *testing.F) {
	// op: 0 Verify, 1 Issue, 2 ListObjects, 3 Revoke, 4 Rollback,
	// 5 RotateRoot, 6 RegenerateCredentials, 7 LookupAccessKey.
	seeds := []struct {
		op, at uint8
		status int
		body   string
	}{
		{0, 0, 200, `{"object_storage_account":{"region":"uk-lon-1"}}`},
		{0, 0, 200, `{}`},
		{0, 0, 403, fuzzErrorBodies[3]},
		{0, 0, 404, `{"error":{"code":"object_storage_account_not_found","description":"x","detail":{}}}`},
		{1, 0, 201, `{"object_storage_access_key":` + fuzzKey + `}`},
		{1, 0, 422, fuzzErrorBodies[2]},
		{1, 1, 200, `{"object_storage_bucket":{"name":"assets"}}`},
		{1, 1, 404, `{"error":{"code":"object_storage_bucket_not_found","description":"x","detail":{}}}`},
		{1, 2, 200, fuzzBucket},
		{1, 5, 422, fuzzErrorBodies[0]},
		{1, 5, 200, `{"object_storage_access_key":` + fuzzKeyCreds + `}`},
		{1, 5, 200, `{"object_storage_access_key":` + fuzzKey + `}`},
		{1, 5, 406, fuzzErrorBodies[5]},
		{2, 0, 200, `{"pagination":{"total_pages":3},"object_storage_access_keys":[` + fuzzKey + `]}`},
		{3, 4, 404, fuzzErrorBodies[1]},
		{3, 4, 404, `{"error":{"code":"route_not_found"}}`},
		{3, 4, 504, `{"error":{"code":"network_error","description":"x","detail":{}}}`},
		{4, 0, 200, `{"pagination":{"total_pages":1},"object_storage_access_keys":[` + fuzzKeyCreds + `]}`},
		{5, 0, 404, `{"error":{"code":"no_user_associated_with_identity","description":"x","detail":{}}}`},
		{5, 0, 200, `{"api_token_id":12}`},
		{5, 1, 200, `{"api_token":{"id":"apitoken_USER000000000001","secret":""}}`},
		{5, 1, 403, `{"error":{"code":"scope_not_granted","description":"x","detail":{}}}`},
		{6, 0, 404, fuzzErrorBodies[1]},
		{7, 0, 200, `{"object_storage_access_key":` + fuzzKey + `}`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.at, s.status, "1000", "999", "", []byte(s.body))
	}
	f.Add(uint8(1), uint8(0), 429, "1000", "0", "", []byte(fuzzErrorBodies[4]))
	f.Add(uint8(1), uint8(0), 201, "1000", "3", "", []byte(`{"object_storage_access_key":`+fuzzKey+`}`))
	f.Add(uint8(3), uint8(4), 429, "1000", "0", "30", []byte(fuzzErrorBodies[4]))
	f.Fuzz(func(t *testing.T, op, fuzzAt uint8, status int, permitted, remaining, retryAfter string, body []byte) {
		now := time.Date(2026, 3, 1, 12, 0, 20, 0, time.UTC)
		savedNow, savedSleep := timeNow, sleep
		timeNow = func() time.Time { return now }
		sleep = func(ctx context.Context, d time.Duration) error {
			now = now.Add(max(d, 0))
			return ctx.Err()
		}
		defer func() { timeNow, sleep = savedNow, savedSleep }()
		if status < 100 || status > 999 {
			status = 200 + (status%100+100)%100
		}
		header := http.Header{}
		for k, v := range map[string]string{"X-Ratelimit-Permitted": permitted, "X-Ratelimit-Remaining": remaining, "Retry-After": retryAfter} {
			if v != "" {
				header.Set(k, v)
			}
		}
		upstream := &testutil.FuzzTransport{Script: (&fuzzUpstream{now: func() time.Time { return now }}).answer,
			FuzzAt: int(fuzzAt % 8), Fuzzed: testutil.Answer{Status: status, Header: header, Body: string(body)}}
		pc, err := Provider{}.Connect(provider.ConnectionConfig{Name: "k", BaseURL: Provider{}.DefaultBaseURL(), HTTPClient: &http.Client{Transport: upstream},
			Values: provider.Values{fieldAPIToken: fuzzToken, fieldOrganization: "acme"}})
		if err != nil {
			t.Fatal(err)
		}
		c := pc.(*connection)
		c.client.MaxAttempts = 1 // a retry would sleep for real
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		role := provider.Values{fieldReadBuckets: []string{"assets"}, fieldWriteBuckets: []string{"logs"}}
		switch op % 8 {
		case 0:
			err = c.Verify(ctx)
		case 1:
			var cred *provider.Credential
			cred, err = c.Issue(ctx, provider.IssueRequest{RoleName: "app", Role: role, Name: "vault-app-x", TTL: time.Hour})
			if err == nil {
				checkCredentialData(t, cred.Data)
				if cred.Ref[refKeyID] == "" || cred.Ref[refKeyID] != cred.ObjectID || cred.Ref[refBuckets] != "assets,logs" {
					t.Fatalf("lease Ref %v, object %q", cred.Ref, cred.ObjectID)
				}
				for k, v := range cred.Ref {
					if strings.Contains(v, fuzzToken) || strings.Contains(v, cred.Data["secret_access_key"].(string)) {
						t.Fatalf("lease Ref %s holds a secret", k)
					}
				}
			}
		case 2:
			var objects []provider.UpstreamObject
			objects, err = c.ListObjects(ctx, nil)
			for _, o := range objects {
				if o.Ref[refKeyID] != o.ID || o.Ref[refName] != o.Name {
					t.Fatalf("object %#v", o)
				}
			}
		case 3:
			err = c.Revoke(ctx, provider.Ref{refKeyID: "objkey_0123456789abcdef", refName: "vault-app-x", refBuckets: "assets,logs"})
		case 4:
			err = c.Rollback(ctx, provider.RollbackRequest{Name: "vault-app-x", RoleName: "app", Role: role})
		case 5:
			var staged, next provider.Values
			next, err = c.RotateRoot(ctx, func(v provider.Values) error { staged = v; return nil })
			if err == nil && (next.String(fieldAPIToken) == "" || staged.String(fieldAPIToken) != next.String(fieldAPIToken) || c.currentToken() != next.String(fieldAPIToken)) {
				t.Fatalf("rotate-root returned %v, staged %v, uses %q", next, staged, c.currentToken())
			}
		case 6:
			var data map[string]any
			data, err = c.RegenerateCredentials(ctx, "objkey_0123456789abcdef")
			if err == nil {
				checkCredentialData(t, data)
			}
		case 7:
			err = c.LookupAccessKey(ctx, "objkey_0123456789abcdef")
		}
		if err == nil {
			return
		}
		msg := err.Error()
		for _, s := range []string{fuzzToken, fuzzNewSecret, fuzzS3Secret} {
			if strings.Contains(msg, s) && !strings.Contains(string(body), s) {
				t.Fatalf("the error carries a secret the answer did not: %v", err)
			}
		}
	})
}

func checkCredentialData(t *testing.T, data map[string]any) {
	t.Helper()
	for _, k := range []string{"access_key_id", "secret_access_key", "endpoint", "katapult_access_key_id"} {
		if v, _ := data[k].(string); v == "" {
			t.Fatalf("credential lacks %s: %#v", k, data)
		}
	}
	if !strings.Contains(data["endpoint"].(string), "://") {
		t.Fatalf("endpoint %q has no scheme", data["endpoint"])
	}
}
