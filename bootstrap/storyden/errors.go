package storyden

import (
	"encoding/json"
	"net/http"
)

// Problem kinds, as Storyden derives them from its error tags.
const (
	kindInvalidArgument  = "invalid-argument"
	kindNotFound         = "not-found"
	kindAlreadyExists    = "already-exists"
	kindPermissionDenied = "permission-denied"
	kindUnauthenticated  = "unauthenticated"
	kindCancelled        = "cancelled"
	kindInternal         = "internal"
)

// apiError is an error answer before it is shaped into a body.
type apiError struct {
	status int
	kind   string
	// title is the user-facing text ("message" in the legacy form).
	title string
	// detail is the internal error chain ("error" in the legacy form).
	detail string
}

// problem is the RFC 7807 body Storyden sends since v1.26.10.
type problem struct {
	Type    string `json:"type,omitempty"`
	Title   string `json:"title"`
	Detail  string `json:"detail,omitempty"`
	TraceID string `json:"trace_id"`
}

// legacyError is the body Storyden sent up to v1.26.9.
type legacyError struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

func (e *Emulator) fail(w http.ResponseWriter, err apiError) {
	contentType, body := e.errorBody(err)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(err.status)
	_, _ = w.Write(body)
}

func (e *Emulator) errorBody(err apiError) (string, []byte) {
	if e.legacyErrors {
		body, _ := json.Marshal(legacyError{Error: err.detail, Message: err.title})
		return "application/json", append(body, '\n')
	}
	p := problem{Title: err.title, Detail: err.detail, TraceID: "unknown"}
	if err.kind != "" {
		p.Type = "urn:storyden:problem:" + err.kind
	}
	body, _ := json.Marshal(p)
	return "application/problem+json", body
}

// kindForStatus mirrors Storyden's errorKindFromStatus.
func kindForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return kindInvalidArgument
	case http.StatusUnauthorized:
		return kindUnauthenticated
	case http.StatusForbidden:
		return kindPermissionDenied
	case http.StatusNotFound:
		return kindNotFound
	case http.StatusConflict:
		return kindAlreadyExists
	case http.StatusBadGateway:
		return kindCancelled
	default:
		return kindInternal
	}
}

// errGuest is what the OpenAPI security validator answers when a protected
// operation is called without a usable session or access key.
func errGuest() apiError {
	return apiError{
		status: http.StatusUnauthorized,
		kind:   kindUnauthenticated,
		title:  "The request did not contain any authentication information, please check to make sure you are logged in.",
		detail: "security requirements failed: no session",
	}
}

// errWrongScheme is the answer to an access key calling a browser-only
// operation such as creating access keys.
func errWrongScheme() apiError {
	return apiError{
		status: http.StatusForbidden,
		kind:   kindPermissionDenied,
		title:  "invalid security scheme for operation",
		detail: "security requirements failed: invalid security scheme for operation",
	}
}

func errMissingPermission(permission string) apiError {
	return apiError{
		status: http.StatusForbidden,
		kind:   kindPermissionDenied,
		title:  "You don’t have access to this right now.",
		detail: "required role not held: " + permission,
	}
}

// errSchema is the answer to a body that does not match the API schema.
func errSchema(cause error) apiError {
	return apiError{
		status: http.StatusBadRequest,
		kind:   kindInvalidArgument,
		title:  "request parameters do not match schema",
		detail: "openapi schema validation failure: " + cause.Error(),
	}
}

func errPasswordTooShort() apiError {
	return apiError{
		status: http.StatusBadRequest,
		kind:   kindInvalidArgument,
		title:  "Password must be at least 8 characters.",
		detail: "too short: password too short",
	}
}

func errPasswordMismatch() apiError {
	return apiError{
		status: http.StatusUnauthorized,
		kind:   kindUnauthenticated,
		title:  "The provided password did not match the account.",
		detail: "mismatch: password mismatch",
	}
}

func errAccessKeyNotFound() apiError {
	return apiError{
		status: http.StatusNotFound,
		kind:   kindNotFound,
		title:  http.StatusText(http.StatusNotFound),
		detail: "ent: authentication not found",
	}
}

func errNoSuchHandle() apiError {
	return apiError{
		status: http.StatusNotFound,
		kind:   kindNotFound,
		title:  "No account was found with the provided handle.",
		detail: "not found: account not found",
	}
}

func errHandleTaken() apiError {
	return apiError{
		status: http.StatusConflict,
		kind:   kindAlreadyExists,
		title:  "The specified handle has already been registered.",
		detail: "exists: account already exists",
	}
}
