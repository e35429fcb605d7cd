package katapult

import (
	"fmt"
	"net/http"
)

// apiError is an error answer before it is written. Katapult wraps every
// error as {"error":{"code","description","detail"}}, although its OpenAPI
// document shows the three fields at the top level.
type apiError struct {
	status      int
	code        string
	description string
	detail      map[string]any
}

func (err apiError) body() map[string]any {
	detail := err.detail
	if detail == nil {
		detail = map[string]any{}
	}
	return map[string]any{"error": map[string]any{
		"code":        err.code,
		"description": err.description,
		"detail":      detail,
	}}
}

// fail writes err with the headers Katapult puts on every error answer.
func fail(w http.ResponseWriter, err apiError) {
	w.Header().Set("X-Api-Schema", "json-error")
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, err.status, err.body())
}

// notFound is Katapult's wording for a lookup that matched nothing.
func notFound(code, what string) apiError {
	return apiError{status: http.StatusNotFound, code: code,
		description: "No " + what + " was found matching any of the criteria provided in the arguments"}
}

func errMissingToken() apiError {
	return apiError{status: http.StatusBadRequest, code: "missing_api_token",
		description: "No API token was provided in the Authorization header. Ensure a token is provided prefixed with Bearer"}
}

func errInvalidToken() apiError {
	return apiError{status: http.StatusForbidden, code: "invalid_api_token",
		description: "The API token provided was not valid (it may not exist or have expired)"}
}

func errScopeNotGranted(scope string) apiError {
	return apiError{status: http.StatusForbidden, code: "scope_not_granted",
		description: "The scope required for this endpoint has not been granted to the authenticating identity",
		detail:      map[string]any{"scopes": []string{scope}}}
}

func errPermissionDenied() apiError {
	return apiError{status: http.StatusForbidden, code: "permission_denied",
		description: "The authenticated identity is not permitted to perform this action"}
}

func errOrganizationNotFound() apiError {
	return notFound("organization_not_found", "organization")
}

func errClusterNotFound() apiError {
	return notFound("object_storage_cluster_not_found", "object storage cluster")
}

func errAccountNotFound() apiError {
	return notFound("object_storage_account_not_found", "object storage account")
}

// errAccessKeyNotFound ends with a full stop, unlike the others: recorded so.
func errAccessKeyNotFound() apiError {
	err := notFound("object_storage_access_key_not_found", "object storage access key")
	err.description += "."
	return err
}

func errBucketNotFound() apiError {
	return notFound("object_storage_bucket_not_found", "object storage bucket")
}

func errAPITokenNotFound() apiError {
	return notFound("api_token_not_found", "API token")
}

func errNoUser() apiError {
	return apiError{status: http.StatusNotFound, code: "no_user_associated_with_identity",
		description: "No user is associated with this identity"}
}

func errProvisioning() apiError {
	return apiError{status: http.StatusUnprocessableEntity, code: "object_storage_provisioning_error",
		description: "Provisioning is in progress. Please try again later."}
}

func errValidation(messages ...string) apiError {
	return apiError{status: http.StatusUnprocessableEntity, code: "validation_error",
		description: "A validation error occurred with the object that was being created/updated/deleted",
		detail:      map[string]any{"errors": messages}}
}

func errRateLimit(permitted int) apiError {
	return apiError{status: http.StatusTooManyRequests, code: "rate_limit_reached",
		description: "You have reached the rate limit for this type of request",
		detail:      map[string]any{"total_permitted": permitted}}
}

// errBadArgument answers a request that lacks a lookup or has a body that is
// not JSON. The code is a guess: no such answer was recorded.
func errBadArgument(format string, args ...any) apiError {
	return apiError{status: http.StatusBadRequest, code: "invalid_argument",
		description: fmt.Sprintf(format, args...)}
}

func errRouteNotFound(r *http.Request) apiError {
	return apiError{status: http.StatusNotFound, code: "route_not_found",
		description: fmt.Sprintf("No route matches '%s %s' for this API", r.Method, r.URL.Path)}
}

// faultError shapes an injected status like Katapult's own error of that
// status, so that a client parses it as it would the real one.
func faultError(status, ratePermitted int) apiError {
	switch status {
	case http.StatusTooManyRequests:
		return errRateLimit(ratePermitted)
	case http.StatusServiceUnavailable:
		return apiError{status: status, code: "service_unavailable",
			description: "The service is currently unavailable, please try again later"}
	case http.StatusGatewayTimeout:
		return apiError{status: status, code: "network_error",
			description: "A network error occurred while communicating with a backend service"}
	case http.StatusForbidden:
		return errPermissionDenied()
	}
	return apiError{status: status, code: "sandbox_injected_fault",
		description: "sandbox: injected " + http.StatusText(status)}
}
