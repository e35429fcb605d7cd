package katapult_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/katapultschema"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	userToken = "user-token-secret"
	orgToken  = "org-token-secret"
	readToken = "read-token-secret"
	otherTok  = "other-token-secret"
	orgID     = "org_ACME000000000001"
	v1        = "/core/v1"
	keyPath   = v1 + "/object_storage/access_keys/access_key"
	bktPath   = v1 + "/object_storage/object_storage_cluster/buckets/bucket"
	acctPath  = v1 + "/organizations/organization/object_storage/object_storage_cluster"
)

var (
	uuidPattern   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	objkeyPattern = regexp.MustCompile(`^objkey_[A-Za-z0-9]{16}$`)
	s3IDPattern   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

type harness struct {
	t   *testing.T
	srv *sandbox.Server
	emu *katapult.Emulator
	clk *testutil.Clock
}

func start(t *testing.T, opts katapult.Options) *harness {
	t.Helper()
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC))
	if opts.Organizations == nil {
		opts.Organizations = []katapult.Organization{
			{ID: orgID, SubDomain: "acme", Name: "Acme", Buckets: []string{"assets", "logs"}},
			{SubDomain: "bare", Name: "Bare", NoObjectStorage: true},
			{SubDomain: "other", Name: "Other", Buckets: []string{"theirs"}},
		}
	}
	if opts.Tokens == nil {
		opts.Tokens = []katapult.Token{
			{ID: "apitoken_USER", Secret: userToken, Organization: "acme", User: "alice"},
			{ID: "apitoken_ORG", Secret: orgToken, Organization: "acme"},
			{ID: "apitoken_READ", Secret: readToken, Organization: "acme", User: "bob", Scopes: []string{katapult.ScopeObjectStorageRead}},
			{ID: "apitoken_OTHER", Secret: otherTok, Organization: "other", User: "carol"},
		}
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	emu := katapult.New(opts)
	srv := testutil.StartEmulator(t, emu)
	return &harness{t: t, srv: srv, emu: emu, clk: clk}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// errorCode checks the wrapped error form and returns its code.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var body struct {
		Error struct {
			Code        string         `json:"code"`
			Description string         `json:"description"`
			Detail      map[string]any `json:"detail"`
		} `json:"error"`
	}
	r.decode(t, &body)
	if body.Error.Description == "" || body.Error.Detail == nil || r.header.Get("X-Api-Schema") != "json-error" || r.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("error answer %s with headers %v", r.body, r.header)
	}
	return body.Error.Code
}

func (h *harness) do(token, method, path, body string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL()+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (h *harness) expect(want int, token, method, path, body string) response {
	h.t.Helper()
	r := h.do(token, method, path, body)
	if r.status != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

type key struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	State          string   `json:"state"`
	Region         string   `json:"region"`
	AllBucketsRead bool     `json:"all_buckets_read"`
	ReadBuckets    []string `json:"read_buckets"`
	WriteBuckets   []string `json:"write_buckets"`
	ServerURL      *string  `json:"server_url"`
	S3ID           *string  `json:"s3_access_key_id"`
	S3Secret       *string  `json:"s3_secret_access_key"`
}

func (h *harness) keyFrom(r response) key {
	h.t.Helper()
	var env struct {
		Key key `json:"object_storage_access_key"`
	}
	r.decode(h.t, &env)
	return env.Key
}

func (h *harness) createKey(name string) key {
	h.t.Helper()
	body := `{"organization":{"sub_domain":"acme"},"object_storage_cluster":{"region":"uk-lon-1"},"properties":{"name":"` + name + `","all_buckets_read":true}}`
	return h.keyFrom(h.expect(201, userToken, "POST", v1+"/organizations/organization/object_storage/object_storage_cluster/access_keys", body))
}

func idBody(kind, id string) string { return `{"` + kind + `":{"id":"` + id + `"}}` }

func (h *harness) generate(id string) key {
	h.t.Helper()
	return h.keyFrom(h.expect(200, userToken, "POST", keyPath+"/generate_credentials", idBody("access_key", id)))
}

func TestEveryAnswerCarriesRequestIDDateAndRateHeaders(t *testing.T) {
	h := start(t, katapult.Options{})
	for _, r := range []response{
		h.do(userToken, "GET", acctPath+"?organization[sub_domain]=acme&object_storage_cluster[region]=uk-lon-1", ""),
		h.do("", "GET", acctPath, ""),
		h.do(userToken, "GET", v1+"/nowhere", ""),
	} {
		if !uuidPattern.MatchString(r.header.Get("X-Request-Id")) {
			t.Errorf("X-Request-Id = %q", r.header.Get("X-Request-Id"))
		}
		if r.header.Get("Date") != "Sun, 01 Mar 2026 12:00:10 GMT" {
			t.Errorf("Date = %q, want the emulator's clock", r.header.Get("Date"))
		}
		if r.header.Get("X-Ratelimit-Permitted") != "1000" || r.header.Get("X-Ratelimit-Remaining") == "" {
			t.Errorf("rate headers = %v", r.header)
		}
	}
}

func TestAuthenticationErrors(t *testing.T) {
	h := start(t, katapult.Options{})
	path := acctPath + "?organization[sub_domain]=acme&object_storage_cluster[region]=uk-lon-1"
	tests := []struct {
		name, token, method, path, body string
		status                          int
		code                            string
	}{
		{"no token", "", "GET", path, "", 400, "missing_api_token"},
		{"unknown token", "nope", "GET", path, "", 403, "invalid_api_token"},
		{"read scope cannot create", readToken, "POST", v1 + "/organizations/organization/object_storage/object_storage_cluster/access_keys", `{}`, 403, "scope_not_granted"},
		{"read scope cannot rotate", readToken, "POST", v1 + "/api_tokens/api_token/regenerate_secret", idBody("api_token", "apitoken_READ"), 403, "scope_not_granted"},
		{"another organization", otherTok, "GET", path, "", 403, "permission_denied"},
		{"unknown organization", userToken, "GET", acctPath + "?organization[sub_domain]=ghost&object_storage_cluster[region]=uk-lon-1", "", 404, "organization_not_found"},
		{"unknown route", userToken, "GET", v1 + "/nowhere", "", 404, "route_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := h.expect(tt.status, tt.token, tt.method, tt.path, tt.body).errorCode(t); code != tt.code {
				t.Errorf("code = %q, want %q", code, tt.code)
			}
		})
	}
	h.expect(200, readToken, "GET", path, "")
}

func TestObjectStorageAccount(t *testing.T) {
	h := start(t, katapult.Options{})
	tests := []struct {
		name, query string
		status      int
		code        string
	}{
		{"by sub-domain", "organization[sub_domain]=acme&object_storage_cluster[region]=uk-lon-1", 200, ""},
		{"by id", "organization[id]=" + orgID + "&object_storage_cluster[region]=uk-lon-1", 200, ""},
		{"unknown region", "organization[id]=" + orgID + "&object_storage_cluster[region]=us-nyc-1", 404, "object_storage_cluster_not_found"},
		{"no region", "organization[id]=" + orgID, 400, "invalid_argument"},
		{"no organization", "object_storage_cluster[region]=uk-lon-1", 400, "invalid_argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.expect(tt.status, userToken, "GET", acctPath+"?"+tt.query, "")
			if tt.code != "" {
				if code := r.errorCode(t); code != tt.code {
					t.Errorf("code = %q", code)
				}
				return
			}
			var body struct {
				Account struct {
					ProvisioningState string `json:"provisioning_state"`
					BucketCount       int    `json:"bucket_count"`
				} `json:"object_storage_account"`
			}
			r.decode(t, &body)
			if body.Account.ProvisioningState != "provisioned" || body.Account.BucketCount != 2 {
				t.Errorf("account = %+v", body.Account)
			}
		})
	}
	bare := start(t, katapult.Options{Tokens: []katapult.Token{{Secret: "bare-token", Organization: "bare"}}})
	r := bare.expect(404, "bare-token", "GET", acctPath+"?organization[sub_domain]=bare&object_storage_cluster[region]=uk-lon-1", "")
	if code := r.errorCode(t); code != "object_storage_account_not_found" {
		t.Errorf("code = %q", code)
	}
}

func TestAccessKeyProvisioningAndCredentials(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: 30 * time.Second})
	k := h.createKey("vault-app-1")
	if !objkeyPattern.MatchString(k.ID) || k.State != "pending" || k.ServerURL != nil || k.S3ID != nil || k.S3Secret != nil || !k.AllBucketsRead || k.Region != "uk-lon-1" {
		t.Fatalf("created key = %+v", k)
	}
	if len(k.ReadBuckets) != 0 || k.ReadBuckets == nil {
		t.Errorf("read_buckets = %#v, want []", k.ReadBuckets)
	}
	r := h.expect(422, userToken, "POST", keyPath+"/generate_credentials", idBody("access_key", k.ID))
	if code := r.errorCode(t); code != "object_storage_provisioning_error" {
		t.Errorf("code = %q", code)
	}
	h.clk.Advance(30 * time.Second)
	first := h.generate(k.ID)
	if first.State != "pending" || *first.ServerURL != "uk-lon-1.katapultobjects.com:443" || !s3IDPattern.MatchString(*first.S3ID) || len(*first.S3Secret) != 40 {
		t.Fatalf("generated = %+v", first)
	}
	if !h.emu.S3CredentialsLive(*first.S3ID, *first.S3Secret) {
		t.Error("generated pair is not live")
	}
	second := h.generate(k.ID)
	if h.emu.S3CredentialsLive(*first.S3ID, *first.S3Secret) || !h.emu.S3CredentialsLive(*second.S3ID, *second.S3Secret) {
		t.Error("regenerating did not replace the pair")
	}
	h.clk.Advance(31 * time.Second)
	got := h.keyFrom(h.expect(200, userToken, "GET", keyPath+"?access_key[id]="+k.ID, ""))
	if got.State != "configured" || got.S3Secret != nil || *got.S3ID != *second.S3ID {
		t.Errorf("read key = %+v, want configured, no secret", got)
	}
}

func TestAccessKeyValidationAndUpdates(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	create := v1 + "/organizations/organization/object_storage/object_storage_cluster/access_keys"
	for _, body := range []string{
		`{"organization":{"sub_domain":"acme"},"object_storage_cluster":{"region":"uk-lon-1"},"properties":{}}`,
		`{"organization":{"sub_domain":"acme"},"object_storage_cluster":{"region":"uk-lon-1"},"properties":{"name":"  "}}`,
	} {
		if code := h.expect(422, userToken, "POST", create, body).errorCode(t); code != "validation_error" {
			t.Errorf("code = %q", code)
		}
	}
	h.expect(400, userToken, "POST", create, `{`)
	k := h.createKey("before")
	r := h.expect(200, userToken, "PATCH", keyPath, `{"access_key":{"id":"`+k.ID+`"},"properties":{"name":"after","all_objects_read":true}}`)
	var env struct {
		Key map[string]any `json:"object_storage_access_key"`
	}
	r.decode(t, &env)
	if env.Key["name"] != "after" || env.Key["all_objects_read"] != true || env.Key["all_buckets_read"] != true {
		t.Errorf("updated key = %v", env.Key)
	}
	h.expect(422, userToken, "PATCH", keyPath, `{"access_key":{"id":"`+k.ID+`"},"properties":{"all_objects_read":false}}`)
	h.expect(404, otherTok, "GET", keyPath+"?access_key[id]="+k.ID, "")
}

func TestDeleteDropsKeyFromACLs(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	k := h.createKey("vault-app-1")
	creds := h.generate(k.ID)
	acl := `{"object_storage_cluster":{"region":"uk-lon-1"},"bucket":{"name":"assets"},"properties":{"access_control_list":{"read_key_ids":["` + k.ID + `"],"write_key_ids":["` + k.ID + `"]}}}`
	h.expect(200, userToken, "PATCH", bktPath, acl)
	if got := h.keyFrom(h.expect(200, userToken, "GET", keyPath+"?access_key[id]="+k.ID, "")); strings.Join(got.ReadBuckets, ",") != "assets" || strings.Join(got.WriteBuckets, ",") != "assets" {
		t.Errorf("derived buckets = %v / %v", got.ReadBuckets, got.WriteBuckets)
	}
	r := h.expect(200, userToken, "DELETE", keyPath, idBody("access_key", k.ID))
	if string(r.body) != `{"success":true}` {
		t.Errorf("delete answered %s", r.body)
	}
	if code := h.expect(404, userToken, "DELETE", keyPath, idBody("access_key", k.ID)).errorCode(t); code != "object_storage_access_key_not_found" {
		t.Errorf("second delete code = %q", code)
	}
	if h.emu.S3CredentialsLive(*creds.S3ID, *creds.S3Secret) {
		t.Error("deleted key's S3 pair still works")
	}
	if n := aclEntries(h); n != 0 {
		t.Errorf("%d ACL entries left", n)
	}
	for _, o := range h.srv.Objects() {
		if o.Kind == "access_key" && (o.Live || o.State != "deleted") {
			t.Errorf("key object = %+v", o)
		}
	}
}

func TestDeletedKeysCanStayInACLs(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1, DeletedKeysStayInACLs: true})
	gone, kept := h.createKey("gone"), h.createKey("kept")
	acl := `{"object_storage_cluster":{"region":"uk-lon-1"},"bucket":{"name":"assets"},"properties":{"access_control_list":{"read_key_ids":["` + gone.ID + `"]}}}`
	h.expect(200, userToken, "PATCH", bktPath, acl)
	h.expect(200, userToken, "DELETE", keyPath, idBody("access_key", gone.ID))
	if n := aclEntries(h); n != 1 {
		t.Fatalf("%d ACL entries, want the deleted key's", n)
	}
	// Writing the lingering id back is accepted, as a client that read it would.
	acl = `{"object_storage_cluster":{"region":"uk-lon-1"},"bucket":{"name":"assets"},"properties":{"access_control_list":{"read_key_ids":["` + gone.ID + `","` + kept.ID + `"]}}}`
	h.expect(200, userToken, "PATCH", bktPath, acl)
}

func aclEntries(h *harness) int {
	n := 0
	for _, o := range h.srv.Objects() {
		if o.Kind == "bucket" {
			n += len(o.Extra["read_key_ids"].([]string)) + len(o.Extra["write_key_ids"].([]string))
		}
	}
	return n
}

func TestBucketACLReplacesLists(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	a, b := h.createKey("a"), h.createKey("b")
	patch := func(want int, properties string) response {
		return h.expect(want, userToken, "PATCH", bktPath, `{"object_storage_cluster":{"region":"uk-lon-1"},"bucket":{"name":"assets"},"properties":`+properties+`}`)
	}
	patch(200, `{"access_control_list":{"read_key_ids":["`+a.ID+`","`+a.ID+`"],"write_key_ids":["`+b.ID+`"],"public_read":true}}`)
	// A list sent replaces the old one; what is left out stays.
	r := patch(200, `{"access_control_list":{"read_key_ids":["`+b.ID+`"]}}`)
	var env struct {
		Bucket struct {
			Name      string         `json:"name"`
			PublicURL string         `json:"public_url"`
			ACL       map[string]any `json:"access_control_list"`
		} `json:"object_storage_bucket"`
	}
	r.decode(t, &env)
	acl := env.Bucket.ACL
	if acl["public_read"] != true || len(acl["read_key_ids"].([]any)) != 1 || acl["read_key_ids"].([]any)[0] != b.ID || acl["write_key_ids"].([]any)[0] != b.ID {
		t.Errorf("acl = %v", acl)
	}
	if env.Bucket.PublicURL != "https://assets.uk-lon-1.katapultobjects.com/" {
		t.Errorf("public_url = %q", env.Bucket.PublicURL)
	}
	if code := patch(422, `{"access_control_list":{"read_key_ids":["objkey_UNKNOWN000000000"]}}`).errorCode(t); code != "validation_error" {
		t.Errorf("unknown key id code = %q", code)
	}
	got := h.expect(200, userToken, "GET", bktPath+"?object_storage_cluster[region]=uk-lon-1&bucket[name]=assets", "")
	if !strings.Contains(string(got.body), `"read_key_ids":["`+b.ID+`"]`) {
		t.Errorf("GET bucket = %s", got.body)
	}
	for _, miss := range []string{"bucket[name]=nope", "bucket[name]=theirs"} {
		if code := h.expect(404, userToken, "GET", bktPath+"?object_storage_cluster[region]=uk-lon-1&"+miss, "").errorCode(t); code != "object_storage_bucket_not_found" {
			t.Errorf("%s: code = %q", miss, code)
		}
	}
}

func TestListAccessKeysPaginates(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	for i := range 5 {
		h.createKey("key-" + strconv.Itoa(i))
	}
	gone := h.createKey("deleted")
	h.expect(200, userToken, "DELETE", keyPath, idBody("access_key", gone.ID))
	var names []string
	for page := 1; page <= 3; page++ {
		r := h.expect(200, userToken, "GET", v1+"/organizations/organization/object_storage/access_keys?organization[id]="+orgID+"&per_page=2&page="+strconv.Itoa(page), "")
		var body struct {
			Pagination struct {
				CurrentPage int `json:"current_page"`
				TotalPages  int `json:"total_pages"`
				Total       int `json:"total"`
				PerPage     int `json:"per_page"`
			} `json:"pagination"`
			Keys []key `json:"object_storage_access_keys"`
		}
		r.decode(t, &body)
		if p := body.Pagination; p.CurrentPage != page || p.TotalPages != 3 || p.Total != 5 || p.PerPage != 2 {
			t.Errorf("pagination = %+v", p)
		}
		for _, k := range body.Keys {
			names = append(names, k.Name)
		}
	}
	if strings.Join(names, ",") != "key-0,key-1,key-2,key-3,key-4" {
		t.Errorf("listed %v", names)
	}
}

func TestCurrentUser(t *testing.T) {
	h := start(t, katapult.Options{})
	var body struct {
		APITokenID string `json:"api_token_id"`
		User       struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	h.expect(200, userToken, "GET", v1+"/users/current", "").decode(t, &body)
	if body.APITokenID != "apitoken_USER" || body.User.ID == "" {
		t.Errorf("current user = %+v", body)
	}
	if code := h.expect(404, orgToken, "GET", v1+"/users/current", "").errorCode(t); code != "no_user_associated_with_identity" {
		t.Errorf("org token code = %q", code)
	}
}

func TestRegenerateSecretRetiresTheOldOne(t *testing.T) {
	h := start(t, katapult.Options{})
	path := v1 + "/api_tokens/api_token/regenerate_secret"
	var body struct {
		Token struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		} `json:"api_token"`
	}
	h.expect(200, userToken, "POST", path, idBody("api_token", "apitoken_ORG")).decode(t, &body)
	if body.Token.ID != "apitoken_ORG" || len(body.Token.Secret) != 48 {
		t.Fatalf("answer = %+v", body)
	}
	h.expect(403, orgToken, "GET", v1+"/users/current", "")
	h.expect(404, body.Token.Secret, "GET", v1+"/users/current", "") // an org token, now valid
	if code := h.expect(404, userToken, "POST", path, idBody("api_token", "apitoken_OTHER")).errorCode(t); code != "api_token_not_found" {
		t.Errorf("another organization's token: %q", code)
	}
	h.srv.Reset()
	h.expect(404, orgToken, "GET", v1+"/users/current", "")
}

func TestRateLimitPerTokenPerMinute(t *testing.T) {
	h := start(t, katapult.Options{RateLimit: 3})
	path := v1 + "/users/current"
	for want := 2; want >= 0; want-- {
		r := h.expect(200, userToken, "GET", path, "")
		if got := r.header.Get("X-Ratelimit-Remaining"); got != strconv.Itoa(want) || r.header.Get("X-Ratelimit-Permitted") != "3" {
			t.Fatalf("remaining %q of %q, want %d of 3", got, r.header.Get("X-Ratelimit-Permitted"), want)
		}
	}
	r := h.expect(429, userToken, "GET", path, "")
	var body struct {
		Error struct {
			Code   string         `json:"code"`
			Detail map[string]any `json:"detail"`
		} `json:"error"`
	}
	r.decode(t, &body)
	if body.Error.Code != "rate_limit_reached" || body.Error.Detail["total_permitted"] != float64(3) || r.header.Get("Retry-After") != "" {
		t.Errorf("429 = %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
	}
	h.expect(404, orgToken, "GET", path, "") // another token has its own budget
	h.clk.Advance(50 * time.Second)          // 12:01:00: a new window
	h.expect(200, userToken, "GET", path, "")
}

func TestFaultBodyIsWrapped(t *testing.T) {
	emu := katapult.New(katapult.Options{RateLimit: 7})
	tests := []struct {
		status int
		code   string
	}{
		{429, "rate_limit_reached"}, {503, "service_unavailable"}, {504, "network_error"}, {403, "permission_denied"}, {500, "sandbox_injected_fault"},
	}
	for _, tt := range tests {
		ct, body := emu.FaultBody(tt.status)
		var parsed struct {
			Error struct {
				Code        string         `json:"code"`
				Description string         `json:"description"`
				Detail      map[string]any `json:"detail"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &parsed); err != nil || ct != "application/json" || parsed.Error.Code != tt.code || parsed.Error.Description == "" || parsed.Error.Detail == nil {
			t.Errorf("FaultBody(%d) = %s %s", tt.status, ct, body)
		}
		if tt.status == 429 && parsed.Error.Detail["total_permitted"] != float64(7) {
			t.Errorf("429 detail = %v", parsed.Error.Detail)
		}
	}
}

func TestObjectsHoldNoSecretsAndResetForgets(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	k := h.createKey("vault-app-1")
	creds := h.generate(k.ID)
	dump, _ := json.Marshal(h.srv.Objects())
	for _, secret := range []string{*creds.S3Secret, userToken, orgToken} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("objects leak %q", secret)
		}
	}
	if n := len(h.srv.Objects()); n != 4 { // the key and three seeded buckets
		t.Errorf("%d objects, want 4", n)
	}
	h.srv.Reset()
	if n := len(h.srv.Objects()); n != 3 {
		t.Errorf("%d objects after reset, want the 3 buckets", n)
	}
	if h.emu.S3CredentialsLive(*creds.S3ID, *creds.S3Secret) {
		t.Error("S3 pair survived the reset")
	}
}

func TestCallsCountByRoute(t *testing.T) {
	h := start(t, katapult.Options{ProvisioningDelay: -1})
	for range 2 {
		h.generate(h.createKey("k").ID)
	}
	if n := h.srv.Calls()["POST "+keyPath+"/generate_credentials"]; n != 2 {
		t.Errorf("calls = %v", h.srv.Calls())
	}
}

// TestDocumentedFaultBodiesMatchTheSchema judges the injected answers whose
// status Katapult documents by its Core API schema, on every route: the
// sandbox writes them outside the emulator's handler, where the provider's
// schema-checked tests cannot see them. (500 and 504 come from in front of
// Katapult and are not in its document.)
func TestDocumentedFaultBodiesMatchTheSchema(t *testing.T) {
	emu := katapult.New(katapult.Options{})
	routes := []struct{ method, path string }{
		{"GET", acctPath + "?organization[sub_domain]=acme&object_storage_cluster[region]=uk-lon-1"},
		{"POST", acctPath + "/access_keys"},
		{"GET", v1 + "/organizations/organization/object_storage/access_keys?organization[sub_domain]=acme"},
		{"POST", keyPath + "/generate_credentials"},
		{"GET", keyPath + "?access_key[id]=objkey_A"},
		{"PATCH", keyPath},
		{"DELETE", keyPath},
		{"GET", bktPath + "?object_storage_cluster[region]=uk-lon-1&bucket[name]=assets"},
		{"PATCH", bktPath},
		{"GET", v1 + "/users/current"},
		{"POST", v1 + "/api_tokens/api_token/regenerate_secret"},
	}
	for _, status := range []int{http.StatusForbidden, http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		rec := &katapultschema.Recorder{}
		h := rec.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			ct, body := emu.FaultBody(status)
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}))
		for _, r := range routes {
			req := httptest.NewRequest(r.method, "http://127.0.0.1"+r.path, nil)
			req.Header.Set("Authorization", "Bearer "+userToken)
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		for _, m := range rec.Mismatches() {
			// The requests carry no bodies; only the answers are judged here.
			// FaultBody cannot see the route, and its 403 is permission_denied,
			// the one 403 that blames neither the token nor its scopes; Katapult
			// documents it on every route here but GET /users/current.
			if strings.Contains(m.Schema, "/responses/") && m.Schema != "#/paths/~1users~1current/get/responses/403" {
				t.Errorf("FaultBody(%d): %s", status, m)
			}
		}
	}
}
