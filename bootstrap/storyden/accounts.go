package storyden

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// Storyden's built-in roles, ids included, from role/default.go.
var (
	memberRole = roleView{
		ID:     "000000000000000000m0",
		Name:   "Member",
		Colour: "green",
		Permissions: []string{
			"CREATE_POST", "READ_PUBLISHED_THREADS", "CREATE_REACTION",
			"READ_PUBLISHED_LIBRARY", "SUBMIT_LIBRARY_NODE", "UPLOAD_ASSET",
			"LIST_PROFILES", "READ_PROFILE", "CREATE_COLLECTION",
			"LIST_COLLECTIONS", "READ_COLLECTION", "COLLECTION_SUBMIT",
		},
		Default: true,
	}
	adminRole = roleView{
		ID:          "00000000000000000a00",
		Name:        "Admin",
		Colour:      "red",
		Permissions: []string{PermissionAdministrator},
		Default:     true,
	}
)

// accountView is Storyden's Account schema, as GET /api/accounts sends it.
type accountView struct {
	ID             string         `json:"id"`
	CreatedAt      time.Time      `json:"createdAt"`
	UpdatedAt      time.Time      `json:"updatedAt"`
	Joined         time.Time      `json:"joined"`
	Handle         string         `json:"handle"`
	Name           string         `json:"name"`
	Bio            string         `json:"bio"`
	Links          []any          `json:"links"`
	Meta           map[string]any `json:"meta"`
	VerifiedStatus string         `json:"verified_status"`
	Kind           string         `json:"kind"`
	EmailAddresses []any          `json:"email_addresses"`
	AuthServices   []string       `json:"auth_services"`
	Admin          bool           `json:"admin"`
	Roles          []roleView     `json:"roles"`
}

type roleView struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Colour      string   `json:"colour"`
	Permissions []string `json:"permissions"`
	Default     bool     `json:"default"`
}

// authSuccess is the body of sign-in, sign-up and password change.
type authSuccess struct {
	ID string `json:"id"`
}

func (a *account) view() accountView {
	return accountView{
		ID:             a.id,
		CreatedAt:      a.createdAt,
		UpdatedAt:      a.updatedAt,
		Joined:         a.createdAt,
		Handle:         a.handle,
		Name:           a.handle,
		Links:          []any{},
		Meta:           map[string]any{},
		VerifiedStatus: "none",
		Kind:           "human",
		EmailAddresses: []any{},
		AuthServices:   []string{"password"},
		Admin:          a.admin,
		Roles:          a.roles(),
	}
}

func (a *account) roles() []roleView {
	roles := []roleView{memberRole}
	if len(a.permissions) > 0 {
		roles = append(roles, roleView{ID: a.customRoleID, Name: "sandbox-" + a.handle, Colour: "blue", Permissions: a.permissions})
	}
	if a.admin {
		roles = append(roles, adminRole)
	}
	return roles
}

func (e *Emulator) signIn(w http.ResponseWriter, c *call) {
	handle, password, err := parseCredentials(c.body)
	if err != nil {
		e.fail(w, errSchema(err))
		return
	}
	if len(password) < 8 {
		e.fail(w, errPasswordTooShort())
		return
	}
	acc := e.state.accountByHandle(handle)
	if acc == nil {
		e.fail(w, errNoSuchHandle())
		return
	}
	if !acc.passwordMatches(password) {
		e.fail(w, errPasswordMismatch())
		return
	}
	e.setSessionCookie(w, acc, c.now)
	writeJSON(w, http.StatusOK, authSuccess{ID: acc.id})
}

// signUp registers a handle; the very first account of an instance becomes
// its admin, as Storyden's registrar does.
func (e *Emulator) signUp(w http.ResponseWriter, c *call) {
	handle, password, err := parseCredentials(c.body)
	if err == nil && handle == "" {
		err = errors.New(`property "identifier" must not be empty`)
	}
	if err != nil {
		e.fail(w, errSchema(err))
		return
	}
	if len(password) < 8 {
		e.fail(w, errPasswordTooShort())
		return
	}
	if e.state.accountByHandle(handle) != nil {
		e.fail(w, errHandleTaken())
		return
	}
	firstAccount := len(e.state.accounts) == 0
	acc := e.state.addAccount(handle, password, firstAccount, nil, c.now)
	e.setSessionCookie(w, acc, c.now)
	writeJSON(w, http.StatusOK, authSuccess{ID: acc.id})
}

// changePassword is the plugin's root rotation. Existing sessions stay
// valid; the answer carries a new session cookie.
func (e *Emulator) changePassword(w http.ResponseWriter, c *call) {
	if !e.requireBrowser(w, c) {
		return
	}
	var body struct {
		Old *string `json:"old"`
		New *string `json:"new"`
	}
	err := json.Unmarshal(c.body, &body)
	if err == nil && (body.Old == nil || body.New == nil) {
		err = errors.New(`properties "old" and "new" are required`)
	}
	if err != nil {
		e.fail(w, errSchema(err))
		return
	}
	if len(*body.New) < 8 {
		e.fail(w, errPasswordTooShort())
		return
	}
	if !c.caller.passwordMatches(*body.Old) {
		e.fail(w, errPasswordMismatch())
		return
	}
	c.caller.setPassword(*body.New)
	c.caller.updatedAt = c.now
	e.setSessionCookie(w, c.caller, c.now)
	writeJSON(w, http.StatusOK, authSuccess{ID: c.caller.id})
}

// logout revokes the session server-side and redirects to the web address,
// with the path and query of ?redirect= when one is given.
func (e *Emulator) logout(w http.ResponseWriter, c *call) {
	if !e.requireBrowser(w, c) {
		return
	}
	e.state.endSession(c.sessionKey)
	clearSessionCookie(w, c.now)
	h := w.Header()
	h.Set("Clear-Site-Data", `"cache", "cookies", "storage", "executionContexts"`)
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Location", e.redirectTarget(c.r))
	w.WriteHeader(http.StatusFound)
}

// redirectTarget is the web address with only the path, query and fragment
// of ?redirect=, as Storyden builds it to avoid open redirects.
func (e *Emulator) redirectTarget(r *http.Request) string {
	target := *e.webAddress
	if redirect := r.URL.Query().Get("redirect"); redirect != "" {
		if parsed, err := url.Parse(redirect); err == nil {
			target.Path, target.RawQuery, target.Fragment = parsed.Path, parsed.RawQuery, parsed.Fragment
		}
	}
	return target.String()
}

func (e *Emulator) getAccount(w http.ResponseWriter, c *call) {
	if !e.requireCaller(w, c) {
		return
	}
	writeJSON(w, http.StatusOK, c.caller.view())
}

func parseCredentials(body []byte) (identifier, token string, err error) {
	var creds struct {
		Identifier *string `json:"identifier"`
		Token      *string `json:"token"`
	}
	if err := json.Unmarshal(body, &creds); err != nil {
		return "", "", err
	}
	if creds.Identifier == nil || creds.Token == nil {
		return "", "", errors.New(`properties "identifier" and "token" are required`)
	}
	return *creds.Identifier, *creds.Token, nil
}
