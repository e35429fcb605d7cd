package provider

import (
	"fmt"
	"net/url"
	"strings"
)

// NormalizeURL checks an upstream address that request paths are appended
// to: an absolute http(s) URL with a host and no credentials, query or
// fragment (a bare "?" counts: it would swallow every path appended). It
// drops trailing slashes. field names the setting in errors and example shows
// a valid value; errors wrap ErrInvalidInput.
func NormalizeURL(field, example, raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("%w: %s is not valid: give an absolute http:// or https:// URL such as %s", ErrInvalidInput, field, example)
	case u.User != nil:
		return "", fmt.Errorf("%w: %s must not carry credentials; put them in the provider's own fields", ErrInvalidInput, field)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%w: %s %q must not have a query or fragment", ErrInvalidInput, field, u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}
