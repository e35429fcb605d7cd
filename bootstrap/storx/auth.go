package storx

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// Session cookies, as consolewebauth names them.
const (
	developerCookie = "_developer_tokenKey"
	userCookie      = "_tokenKey"
	csrfCookie      = "csrf_token"
	csrfHeader      = "X-CSRF-Token"
)

// authenticate finds the session a route needs. Like the satellite it reads
// only the cookie, never an Authorization header; a missing or dead session
// gets a 401 that also clears the cookie.
func (s *Satellite) authenticate(w http.ResponseWriter, c *call, g guard) bool {
	switch {
	case g&asDeveloper != 0:
		sess, ok := s.cookieSession(w, c, developerCookie, true)
		if ok {
			c.developer = s.developerByID(sess.subjectID)
		}
		return ok
	case g&asUser != 0:
		sess, ok := s.cookieSession(w, c, userCookie, false)
		if ok {
			c.user = s.state.userByID(sess.subjectID)
		}
		return ok
	}
	return true
}

func (s *Satellite) cookieSession(w http.ResponseWriter, c *call, name string, developer bool) (session, bool) {
	cookie, err := c.r.Cookie(name)
	if err != nil {
		clearCookie(w, name, c.now)
		serveError(w, http.StatusUnauthorized, msgNoSession)
		return session{}, false
	}
	sess, ok := s.state.sessionFor(cookie.Value, developer, c.now)
	if !ok {
		clearCookie(w, name, c.now)
		serveError(w, http.StatusUnauthorized, msgInvalidSession)
		return session{}, false
	}
	return sess, true
}

func (s *Satellite) developerByID(id string) *developer {
	for _, d := range s.state.developers {
		if d.id == id {
			return d
		}
	}
	return nil
}

// setTokenCookie sends a session cookie as CookieAuth.SetTokenCookie does:
// Path=/, Expires, SameSite=Strict, neither HttpOnly nor Secure.
func setTokenCookie(w http.ResponseWriter, name, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: token, Path: "/", Expires: expires, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string, now time.Time) {
	http.SetCookie(w, &http.Cookie{Name: name, Path: "/", Expires: now.Add(-time.Hour), MaxAge: -1, SameSite: http.SameSiteStrictMode})
}

// csrfMatches is the double-submit check: a csrf_token cookie equal to the
// X-CSRF-Token header.
func csrfMatches(r *http.Request) bool {
	cookie, err := r.Cookie(csrfCookie)
	header := r.Header.Get(csrfHeader)
	return err == nil && header != "" && subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(header)) == 1
}

// validEmail is the loose check utils.ValidateEmail makes.
func validEmail(email string) bool {
	local, domain, ok := strings.Cut(email, "@")
	return ok && local != "" && strings.Contains(domain, ".") && !strings.ContainsAny(email, " \t\r\n")
}
