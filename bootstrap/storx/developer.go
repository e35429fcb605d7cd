package storx

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// tokenView is the body of a successful developer login or user-token call.
type tokenView struct {
	ExpiresAt time.Time `json:"expiresAt"`
	Token     string    `json:"token"`
}

// createdUserView is create-user's "data".
type createdUserView struct {
	ID        string    `json:"id"`
	FullName  string    `json:"fullName"`
	Email     string    `json:"email"`
	ProjectID string    `json:"projectId"`
	CreatedAt time.Time `json:"createdAt"`
}

// decodeBody decodes a JSON body the way the handlers do; a failure is the
// developer controller's unmapped 500 with its space-less prefix.
func decodeBody(w http.ResponseWriter, c *call, v any) bool {
	if err := json.NewDecoder(bytes.NewReader(c.body)).Decode(v); err != nil {
		serveError(w, http.StatusInternalServerError, msgInternalPrefix+err.Error())
		return false
	}
	return true
}

// developerToken is the developer login. Wrong, unknown and locked-out
// accounts all get the same 401; an account with MFA gets a 200 whose body is
// an error, as the real handler serves ErrMFAMissing.
func (s *Satellite) developerToken(w http.ResponseWriter, c *call) {
	var req struct {
		Email              string `json:"email"`
		Password           string `json:"password"`
		RememberForOneWeek bool   `json:"rememberForOneWeek"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	d := s.state.developers[strings.ToLower(strings.TrimSpace(req.Email))]
	switch {
	case d == nil || d.locked(c.now):
		serveError(w, http.StatusUnauthorized, msgBadCredentials)
		return
	case !d.passwordMatches(req.Password):
		d.recordFailedLogin(c.now)
		serveError(w, http.StatusUnauthorized, msgBadCredentials)
		return
	case d.mfa:
		serveError(w, http.StatusOK, msgMFARequired)
		return
	}
	d.failedLogins = 0
	lifetime := s.opts.SessionLifetime
	if req.RememberForOneWeek {
		lifetime = rememberedSession
	}
	s.startSession(w, developerCookie, true, d.id, c.now.Add(lifetime))
}

func (s *Satellite) startSession(w http.ResponseWriter, cookie string, developer bool, subjectID string, expires time.Time) {
	token := s.state.newSession(developer, subjectID, expires)
	setTokenCookie(w, cookie, token, expires)
	writeJSON(w, "application/json", tokenView{ExpiresAt: expires, Token: token})
}

// createUser makes an active user without a password, maps it to the
// developer and gives it a project. Any existing user is refused with the
// concatenated "already verified" 401 the plugin has to recognise.
func (s *Satellite) createUser(w http.ResponseWriter, c *call) {
	var req struct {
		Email    string `json:"email"`
		FullName string `json:"fullName"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	email := strings.TrimSpace(req.Email)
	if !validEmail(email) {
		serveError(w, http.StatusBadRequest, "validation: Invalid email.")
		return
	}
	if existing := s.state.users[strings.ToLower(email)]; existing != nil {
		if existing.locked {
			serveError(w, http.StatusUnauthorized, msgActivationCode)
			return
		}
		serveError(w, http.StatusUnauthorized, msgInternalPrefix+msgAlreadyVerified)
		return
	}
	u := s.state.addUser(email, req.FullName, c.developer.id, c.now)
	p := s.state.projectsOwnedBy(u.id)[0]
	writeJSON(w, "application/json", map[string]any{
		"message": "user created",
		"data":    createdUserView{ID: u.id, FullName: u.fullName, Email: u.email, ProjectID: p.id, CreatedAt: u.createdAt},
	})
}

// userToken starts a user session without a password. Like the real
// TokenWithoutPassword it does not check that the user belongs to the
// calling developer; an unknown email is an unmapped 500.
func (s *Satellite) userToken(w http.ResponseWriter, c *call) {
	var req struct {
		Email string `json:"email"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	u := s.state.users[strings.ToLower(strings.TrimSpace(req.Email))]
	switch {
	case u == nil:
		serveError(w, http.StatusInternalServerError, msgInternalPrefix+msgNoRows)
		return
	case u.locked:
		serveError(w, http.StatusUnauthorized, msgBadCredentials)
		return
	}
	s.startSession(w, userCookie, false, u.id, c.now.Add(s.opts.SessionLifetime))
}

// logout ends the user session that made the call.
func (s *Satellite) logout(w http.ResponseWriter, c *call) {
	if cookie, err := c.r.Cookie(userCookie); err == nil {
		delete(s.state.sessions, cookie.Value)
	}
	clearCookie(w, userCookie, c.now)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
}
