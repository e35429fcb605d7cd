package provider

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors the engine maps to responses.
var (
	// ErrInvalidInput marks a bad field value: the engine answers 400.
	ErrInvalidInput = errors.New("invalid input")
	// ErrRotationUnsupported marks a provider whose API cannot rotate its root.
	ErrRotationUnsupported = errors.New("root rotation is not supported")
	// ErrRootRejected marks an upstream refusing the root credential itself.
	ErrRootRejected = errors.New("the upstream rejected the root credential")
	// ErrRedirect marks an upstream answer that redirected the call; the
	// client never follows one (see Client).
	ErrRedirect = errors.New("redirects are not followed")
)

// UpstreamError is a failed upstream call. Its text names the operation, the
// status and the upstream's own user-facing message; it never carries a
// secret, a query string or a request body.
type UpstreamError struct {
	Provider string
	// Op says what was attempted, e.g. "create access key".
	Op string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Code is the upstream's machine-readable error code, when it has one.
	Code string
	// Message is the upstream's user-facing message, when it has one.
	Message string
	// RetryAfter is the wait the upstream asked for, when it did.
	RetryAfter time.Duration
	// Err is the transport or decoding failure, when there was one.
	Err error
}

// Error implements error.
func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Provider, e.Op)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, " failed with HTTP %d", e.Status)
		if text := http.StatusText(e.Status); text != "" {
			fmt.Fprintf(&b, " %s", text)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, " failed: %v", e.Err)
	default:
		b.WriteString(" failed")
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Status != 0 && e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Status == http.StatusTooManyRequests {
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, "; the upstream asks to retry after %s", e.RetryAfter.Round(time.Second))
		} else {
			b.WriteString("; the upstream rate limit is exhausted, retry later")
		}
	}
	return b.String()
}

// Unwrap exposes the transport error and ErrRootRejected for errors.Is.
func (e *UpstreamError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// StatusOf returns the HTTP status of an upstream error, 0 if there was none.
func StatusOf(err error) int {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Status
	}
	return 0
}

// maxMessageLen bounds how much upstream text reaches an error message.
const maxMessageLen = 300

// CleanMessage trims upstream text for use in an error message.
func CleanMessage(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessageLen {
		cut := maxMessageLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
