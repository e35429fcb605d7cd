package storyden

import (
	"net/http"
	"strings"
	"time"
)

const sessionCookieName = "storyden-session"

// scheme is the OpenAPI security scheme a request authenticated with.
type scheme int

const (
	schemeGuest scheme = iota
	schemeBrowser
	schemeAccessKey
)

// authenticate follows Storyden's session middleware: the session cookie
// first, then an "Authorization: Bearer sdpak_…" access key. Anything
// invalid, unknown, expired or revoked is ignored and the call proceeds as a
// guest, so protected operations answer 401 rather than 403.
func (e *Emulator) authenticate(r *http.Request, now time.Time) *call {
	c := &call{r: r, now: now}
	if cookie, err := r.Cookie(sessionCookieName); err == nil {
		if acc, key, ok := e.state.sessionAccount(cookie.Value, now); ok {
			c.caller, c.scheme, c.sessionKey = acc, schemeBrowser, key
			return c
		}
	}
	if token, ok := bearerToken(r); ok {
		if acc, ok := e.state.accessKeyAccount(token, now); ok {
			c.caller, c.scheme = acc, schemeAccessKey
		}
	}
	return c
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return token, ok && strings.EqualFold(scheme, "Bearer")
}

// requireCaller answers 401 for guests and reports whether the call may go on.
func (e *Emulator) requireCaller(w http.ResponseWriter, c *call) bool {
	if c.caller == nil {
		e.fail(w, errGuest())
		return false
	}
	return true
}

// requireBrowser also refuses access keys, for operations whose only
// security scheme is the session cookie.
func (e *Emulator) requireBrowser(w http.ResponseWriter, c *call) bool {
	if !e.requireCaller(w, c) {
		return false
	}
	if c.scheme != schemeBrowser {
		e.fail(w, errWrongScheme())
		return false
	}
	return true
}

// requirePermission answers 401 for guests and 403 without the permission.
func (e *Emulator) requirePermission(w http.ResponseWriter, c *call, permission string) bool {
	if !e.requireCaller(w, c) {
		return false
	}
	if !c.caller.can(permission) {
		e.fail(w, errMissingPermission(permission))
		return false
	}
	return true
}

// setSessionCookie starts a session for acc and sends its cookie. The cookie
// is Secure like Storyden's, so a cookie jar will not replay it over plain
// http: clients must send it themselves.
func (e *Emulator) setSessionCookie(w http.ResponseWriter, acc *account, now time.Time) {
	token := e.state.newSession(acc.id, now)
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookieName,
		Value:    token,
		Path:     "/",
		Expires:  now.Add(sessionLifetime),
		MaxAge:   int(sessionLifetime / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, now time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookieName,
		Path:     "/",
		Expires:  now,
		MaxAge:   -1,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}
