package storx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// StorX reads sessions from these cookies only, never from an Authorization
// header, and its cookies are SameSite=Strict: the client sends the Cookie
// header itself.
const (
	developerCookie = "_developer_tokenKey"
	userCookie      = "_tokenKey"
	csrfCookie      = "csrf_token"
	csrfHeader      = "X-CSRF-Token"
	// developerSessionKey is the developer's entry in the session cache;
	// users' entries start with "user:".
	developerSessionKey = "developer"
)

// Satellite paths.
const (
	pathDeveloperToken = "/api/v0/developer/auth/token"
	pathCreateUser     = "/api/v0/developer/auth/create-user"
	pathUserToken      = "/api/v0/developer/auth/user-token"
	pathProjects       = "/api/v0/projects"
	pathDeleteByName   = "/api/v0/api-keys/delete-by-name"
)

// internalErrorPrefix starts the satellite's unmapped errors, glued to the
// Go error without a space.
const internalErrorPrefix = "There was an error processing your request"

// errNoSuchUser marks a user-token call for an email StorX does not know.
var errNoSuchUser = errors.New("StorX has no user with this email")

// connection is one StorX developer account with its cached sessions and
// the project of each user it issued keys for.
type connection struct {
	name string
	// console is the satellite API, retried per provider.Client's rules.
	console provider.Client
	// devAuth sends the rate-limited developer auth calls exactly once: the
	// limit refills one call per five minutes, so a quick retry of a 429
	// only fails again.
	devAuth provider.Client
	// auth is the auth service (auth_url).
	auth provider.Client
	log  hclog.Logger

	email      string
	password   string
	passphrase string
	// csrfToken is sent as both cookie and header, which satisfies StorX's
	// double-submit CSRF check where it is turned on.
	csrfToken string

	sessions sessionCache
	projects projectCache
	unsent   unsentNames
}

func newConnection(cfg provider.ConnectionConfig, authURL string, csrfToken string) *connection {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &connection{
		name:       cfg.Name,
		console:    provider.Client{Provider: Name, BaseURL: cfg.BaseURL, HTTP: cfg.HTTPClient, Logger: logger, Gate: &provider.RateGate{}, Observer: cfg.Observer},
		devAuth:    provider.Client{Provider: Name, BaseURL: cfg.BaseURL, HTTP: cfg.HTTPClient, Logger: logger, MaxAttempts: 1, Observer: cfg.Observer},
		auth:       provider.Client{Provider: Name, BaseURL: authURL, HTTP: cfg.HTTPClient, Logger: logger, Gate: &provider.RateGate{}, Observer: cfg.Observer},
		log:        logger,
		email:      cfg.Values.String(fieldEmail),
		password:   cfg.Values.String(fieldPassword),
		passphrase: cfg.Values.String(fieldPassphrase),
		csrfToken:  csrfToken,
		sessions:   sessionCache{logins: provider.SharedCalls{Provider: Name}},
		projects:   projectCache{lookups: provider.SharedCalls{Provider: Name}},
	}
}

// Close implements provider.Connection. Sessions are only forgotten: a
// logout would cost a call on every config change.
func (c *connection) Close() {
	c.sessions.clear()
	c.projects.clear()
}

// developerSession returns the cached developer session, logging in first
// when there is none.
func (c *connection) developerSession(ctx context.Context) (string, error) {
	return c.sessions.get(ctx, developerSessionKey, "log in as developer "+c.email, c.developerLogin)
}

// developerLogin signs in with rememberForOneWeek, StorX's longest session.
func (c *connection) developerLogin(ctx context.Context) (session, error) {
	req, err := provider.JSONRequest("log in as developer "+c.email, http.MethodPost, pathDeveloperToken,
		map[string]any{"email": c.email, "password": c.password, "rememberForOneWeek": true})
	if err != nil {
		return session{}, err
	}
	resp, err := c.devAuth.Do(ctx, req)
	if err != nil {
		return session{}, err
	}
	switch resp.Status {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		ue := c.upstreamError(req.Op, resp)
		ue.Err = provider.ErrRootRejected
		return session{}, ue
	default:
		return session{}, explainAuthFailure(c.upstreamError(req.Op, resp))
	}
	s, refusal, err := c.readToken(req.Op, resp, developerCookie)
	if refusal != nil {
		refusal.Err = provider.ErrRootRejected
		return session{}, fmt.Errorf("%w; StorX wants an MFA code for this developer account, which its API flow cannot supply: turn MFA off for the account (or use one without MFA), then write config/%s", refusal, c.name)
	}
	return s, err
}

// userSession returns the cached session of one StorX user.
func (c *connection) userSession(ctx context.Context, email string) (string, error) {
	return c.sessions.get(ctx, "user:"+normalizeEmail(email), "get a session for StorX user "+email, func(ctx context.Context) (session, error) {
		return c.userLogin(ctx, email)
	})
}

// userLogin asks for a user session with the developer's session. StorX
// answers an unknown email with an unmapped 500 ("…no rows…").
func (c *connection) userLogin(ctx context.Context, email string) (session, error) {
	req, err := provider.JSONRequest("get a session for StorX user "+email, http.MethodPost, pathUserToken, map[string]string{"email": email})
	if err != nil {
		return session{}, err
	}
	resp, err := c.asDeveloper(ctx, req)
	if err != nil {
		return session{}, err
	}
	switch {
	case resp.Status == http.StatusOK:
	case resp.Status == http.StatusInternalServerError && strings.Contains(strings.ToLower(messageOf(resp.Body)), "no rows"):
		ue := c.upstreamError(req.Op, resp)
		ue.Err = errNoSuchUser
		return session{}, ue
	case resp.Status == http.StatusUnauthorized && aboutTheUser(resp):
		return session{}, fmt.Errorf("%w; the StorX user %s is locked: unlock it in the StorX console or give the role another user_email", c.upstreamError(req.Op, resp), email)
	default:
		return session{}, explainAuthFailure(c.upstreamError(req.Op, resp))
	}
	s, refusal, err := c.readToken(req.Op, resp, userCookie)
	if refusal != nil {
		return session{}, refusal
	}
	return s, err
}

// asDeveloper sends req with the developer session. A 401 that is not about
// the user in the request means the session ended (expired, or logged out
// elsewhere): the request was refused, so it goes once more after a login.
func (c *connection) asDeveloper(ctx context.Context, req provider.Request) (*provider.Response, error) {
	for attempt := 0; ; attempt++ {
		token, err := c.developerSession(ctx)
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{"Cookie": {developerCookie + "=" + token}}
		resp, err := c.devAuth.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		if attempt > 0 || resp.Status != http.StatusUnauthorized || aboutTheUser(resp) {
			return resp, nil
		}
		c.log.Debug("storx developer session refused; logging in again")
		c.sessions.drop(developerSessionKey, token)
	}
}

// aboutTheUser recognises the 401s create-user and user-token give for the
// user in the request rather than for the developer's session.
func aboutTheUser(resp *provider.Response) bool {
	msg := strings.ToLower(messageOf(resp.Body))
	for _, s := range []string{"already verified", "activation code", "credentials are incorrect"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// asUser sends req with the user's session (and the CSRF pair). Any 401
// gets one retry with a fresh session: it also means "not a member", but a
// session that expired early is the likelier cause and the retry is cheap.
func (c *connection) asUser(ctx context.Context, email string, req provider.Request) (*provider.Response, error) {
	for attempt := 0; ; attempt++ {
		token, err := c.userSession(ctx, email)
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{
			"Cookie":   {userCookie + "=" + token + "; " + csrfCookie + "=" + c.csrfToken},
			csrfHeader: {c.csrfToken},
		}
		resp, err := c.console.Do(ctx, req)
		if err != nil {
			return nil, err
		}
		if attempt > 0 || resp.Status != http.StatusUnauthorized {
			return resp, nil
		}
		c.log.Debug("storx user session refused; getting a new one", "user", email)
		c.sessions.drop("user:"+normalizeEmail(email), token)
	}
}

// tokenBody is the answer of both logins. An MFA-required login answers
// 200 with only "error" set.
type tokenBody struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expiresAt"`
	Error     string `json:"error"`
}

// readToken reads a login answer: the token from the body, else from the
// cookie. A 200 whose body is an error comes back as refusal.
func (c *connection) readToken(op string, resp *provider.Response, cookie string) (session, *provider.UpstreamError, error) {
	var body tokenBody
	if err := provider.DecodeJSON(Name, op, resp, &body); err != nil {
		return session{}, nil, err
	}
	if body.Error != "" {
		return session{}, &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: c.mask(body.Error)}, nil
	}
	token := body.Token
	if token == "" {
		token = provider.CookieValue(resp.Header, cookie)
	}
	switch {
	case token == "":
		return session{}, nil, &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: "the response carries no session token"}
	case !isCookieValue(token):
		// Sent back by hand in a Cookie header, such a token would break
		// the header (or add another) on every call until it expired.
		return session{}, nil, &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: "the response carries a session token that is not a valid cookie value"}
	}
	expiresAt, _ := time.Parse(time.RFC3339Nano, body.ExpiresAt)
	return newSession(token, expiresAt, timeNow()), nil, nil
}

// isCookieValue reports whether s is made only of RFC 6265 cookie-octets.
func isCookieValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f || b == '"' || b == ',' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// upstreamError reads an error body, the satellite's {"error":…} or the
// auth service's plain text, with every secret of the connection masked.
func (c *connection) upstreamError(op string, resp *provider.Response, secrets ...string) *provider.UpstreamError {
	ue := &provider.UpstreamError{Provider: Name, Op: op, Status: resp.Status, Message: c.mask(messageOf(resp.Body), secrets...)}
	if resp.Status == http.StatusTooManyRequests {
		ue.RetryAfter = provider.RetryAfter(resp.Header, timeNow())
	}
	return ue
}

// messageOf extracts the user-facing text of an error body: the satellite's
// {"error":…} (with its space-less "…your request<cause>" split up), or
// the auth service's plain text. HTML pages say nothing useful.
func messageOf(body []byte) string {
	var parsed struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &parsed); err == nil && parsed.Error != "" {
		if cause, ok := strings.CutPrefix(parsed.Error, internalErrorPrefix); ok && cause != "" && !strings.HasPrefix(cause, " ") {
			return internalErrorPrefix + ": " + cause
		}
		return parsed.Error
	}
	text := strings.TrimSpace(string(body))
	if strings.HasPrefix(text, "<") || strings.HasPrefix(text, "{") {
		return ""
	}
	return text
}

// minRedactedLen keeps very short secrets from being masked inside
// ordinary words ("x" in "exceeded"), which would garble the message and
// protect nothing.
const minRedactedLen = 6

// mask cleans upstream text for an error message with every secret masked,
// before and after its whitespace is collapsed: "grant  passphrase" hides
// the password "rant p" only until its two spaces become one.
func (c *connection) mask(text string, secrets ...string) string {
	text = strings.Join(strings.Fields(c.redact(text, secrets...)), " ")
	return provider.CleanMessage(c.redact(text, secrets...))
}

// redact masks the connection's password and passphrase, and the other
// secrets given, wherever an upstream echoes them in an error message.
func (c *connection) redact(msg string, secrets ...string) string {
	secrets = append(secrets, c.password, c.passphrase)
	// Longest first: a secret that contains another must go whole, or the
	// part outside the shorter one would show.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) >= minRedactedLen {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// explainAuthFailure adds what the operator needs to know to the answers
// of the developer auth endpoints that are no fault of the credentials.
func explainAuthFailure(err error) error {
	switch provider.StatusOf(err) {
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w; StorX allows 5 developer logins, user creations and user sessions per client IP, then 1 every 5 minutes. Vault caches these sessions, so this clears once the limit refills: retry in a few minutes", err)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("%w; this StorX server does not offer the developer API (create-user, user-token) the plugin needs: check base_url, and ask StorX whether the developer flow is still served", err)
	}
	return err
}

func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// unsentNames remembers key names whose Issue failed before the create-key
// request went out, so that the rollback that follows needs no upstream
// call at all (it would cost a rate-limited user session, and fail the same
// way if that was what stopped the Issue).
type unsentNames struct {
	mu    sync.Mutex
	names map[string]bool
}

func (u *unsentNames) add(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names == nil {
		u.names = map[string]bool{}
	}
	u.names[name] = true
}

func (u *unsentNames) remove(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.names, name)
}

// take reports whether name was never sent, and forgets it.
func (u *unsentNames) take(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	unsent := u.names[name]
	delete(u.names, name)
	return unsent
}
