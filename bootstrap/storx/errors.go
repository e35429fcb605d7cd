package storx

import (
	"encoding/json"
	"net/http"
)

// Satellite error messages, as the real handlers word them.
const (
	msgRateLimited     = "You've exceeded your request limit. Please try again later."
	msgBadCredentials  = "Your login credentials are incorrect, please try again"
	msgMFARequired     = "A MFA passcode or recovery code is required"
	msgActivationCode  = "The activation code is invalid"
	msgDuplicateKey    = "validation: An API Key with this name already exists in this project, please use a different name"
	msgMissingAPIKey   = "missing api-key query param"
	msgMissingPerm     = "missing permission query param"
	msgMissingProject  = "Project ID was not provided."
	msgNoMembership    = "console service: unauthorized: you are not a member of this project"
	msgNoSession       = "unauthorized: http: named cookie not present"
	msgInvalidSession  = "unauthorized: invalid or expired session"
	msgNoRows          = "sql: no rows in result set"
	msgAlreadyVerified = "unauthorized: user already verified"
	// msgInternalPrefix is the prefix of the developer controller's
	// unmapped errors. It ends without a space: the satellite concatenates
	// the Go error right after it.
	msgInternalPrefix = "There was an error processing your request"
)

// serveError answers like web.ServeCustomJSONError: {"error":msg} with no
// Content-Type of its own, so Go sniffs it as text/plain.
func serveError(w http.ResponseWriter, status int, msg string) {
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(msg))
}

func errorBody(msg string) []byte {
	body, _ := json.Marshal(map[string]string{"error": msg})
	return append(body, '\n')
}
