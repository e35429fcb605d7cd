package katapult

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
)

func TestParseError(t *testing.T) {
	tests := []struct {
		name, body        string
		code, description string
	}{
		{"wrapped (production)", `{"error":{"code":"object_storage_access_key_not_found","description":"No object storage access key was found.","detail":{}}}`,
			"object_storage_access_key_not_found", "No object storage access key was found."},
		{"top level (OpenAPI document)", `{"code":"missing_api_token","description":"No API token was provided","detail":{}}`,
			"missing_api_token", "No API token was provided"},
		{"wrapped wins over top level", `{"code":"top","error":{"code":"wrapped","description":"w"}}`, "wrapped", "w"},
		{"error is a string", `{"error":"boom","code":"top_level","description":"t"}`, "top_level", "t"},
		{"wrapped without code falls back", `{"error":{"description":"no code"},"code":"c","description":"d"}`, "c", "d"},
		{"not JSON", `<html>Bad Gateway</html>`, "", ""},
		{"empty", ``, "", ""},
		{"no code anywhere", `{"message":"x"}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseError([]byte(tt.body))
			if e.Code != tt.code || e.Description != tt.description {
				t.Errorf("parseError = %q %q, want %q %q", e.Code, e.Description, tt.code, tt.description)
			}
		})
	}
}

func TestUpstreamErrorFromEveryDocumentedShape(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		header       http.Header
		body         string
		code         string
		message      string
		rootRejected bool
		retryAfter   time.Duration
	}{
		{"provisioning", 422, nil, `{"error":{"code":"object_storage_provisioning_error","description":"Provisioning is in progress. Please try again later.","detail":{}}}`,
			"object_storage_provisioning_error", "Provisioning is in progress. Please try again later.", false, 0},
		{"validation errors listed", 422, nil, `{"error":{"code":"validation_error","description":"A validation error occurred","detail":{"errors":["Label can't be blank","Name is too long"]}}}`,
			"validation_error", "A validation error occurred: Label can't be blank: Name is too long", false, 0},
		{"task queue details", 406, nil, `{"code":"task_queueing_error","description":"A background task could not be queued","detail":{"details":"queue full"}}`,
			"task_queueing_error", "A background task could not be queued: queue full", false, 0},
		{"invalid token", 403, nil, `{"error":{"code":"invalid_api_token","description":"The API token provided was not valid (it may not exist or have expired)","detail":{}}}`,
			"invalid_api_token", "The API token provided was not valid (it may not exist or have expired)", true, 0},
		{"missing token, top level", 400, nil, `{"code":"missing_api_token","description":"No API token was provided in the Authorization header.","detail":{}}`,
			"missing_api_token", "No API token was provided in the Authorization header.", true, 0},
		{"scope not granted", 403, nil, `{"error":{"code":"scope_not_granted","description":"The scope required for this endpoint has not been granted","detail":{"scopes":["object_storage"]}}}`,
			"scope_not_granted", "The scope required for this endpoint has not been granted", true, 0},
		{"permission denied is not the root", 403, nil, `{"error":{"code":"permission_denied","description":"Not permitted","detail":{}}}`,
			"permission_denied", "Not permitted", false, 0},
		{"rate limit", 429, http.Header{"Retry-After": {"42"}}, `{"error":{"code":"rate_limit_reached","description":"You have reached the rate limit for this type of request","detail":{"total_permitted":1000}}}`,
			"rate_limit_reached", "You have reached the rate limit for this type of request", false, 42 * time.Second},
		{"gateway timeout", 504, nil, `{"error":{"code":"network_error","description":"A network error occurred","detail":{}}}`,
			"network_error", "A network error occurred", false, 0},
		{"unparsable body keeps the status", 502, nil, `<html>bad gateway</html>`, "", "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == nil {
				header = http.Header{}
			}
			ue := upstreamError("do a thing", &provider.Response{Status: tt.status, Header: header, Body: []byte(tt.body)})
			if ue.Status != tt.status || ue.Code != tt.code || ue.Message != tt.message || ue.RetryAfter != tt.retryAfter || ue.Provider != Name {
				t.Errorf("error = %+v", ue)
			}
			if errors.Is(ue, provider.ErrRootRejected) != tt.rootRejected {
				t.Errorf("root rejected = %v, want %v", !tt.rootRejected, tt.rootRejected)
			}
			if tt.code != "" && !strings.Contains(ue.Error(), tt.code) {
				t.Errorf("%q does not name the code", ue.Error())
			}
		})
	}
}

func TestEmulatorErrorsParse(t *testing.T) {
	h := newHarness(t)
	_, err := h.conn.generateCredentials(t.Context(), "objkey_NOSUCHKEY0000000")
	ue, ok := asUpstream(err)
	if !ok || ue.Status != 404 || ue.Code != codeKeyNotFound || !strings.HasPrefix(ue.Message, "No object storage access key was found") {
		t.Fatalf("err = %#v", err)
	}
	_, body := katapult.New(katapult.Options{}).FaultBody(503)
	if e := parseError(body); e.Code != "service_unavailable" || e.Description == "" {
		t.Errorf("fault body parses as %+v", e)
	}
}
