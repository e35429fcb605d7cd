package katapult

import "net/http"

// GET /users/current: a user token learns its user and its own id; an
// organization token has no user.
func (e *Emulator) currentUser(w http.ResponseWriter, c *call) {
	t := c.token
	if t.user == "" {
		fail(w, errNoUser())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user":          map[string]any{"id": "user_" + t.user, "first_name": t.user, "last_name": "", "avatar_url": ""},
		"organizations": []map[string]any{{"id": t.org.id, "name": t.org.name, "sub_domain": t.org.subDomain}},
		"api_token_id":  t.id,
	})
}

// POST /api_tokens/api_token/regenerate_secret replaces a token's secret of
// the caller's organization. The old secret dies at once, as the docs say.
func (e *Emulator) regenerateSecret(w http.ResponseWriter, c *call) {
	var req struct {
		APIToken lookup `json:"api_token"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	t := e.state.tokenByID(req.APIToken.ID)
	if t == nil || t.org != c.token.org {
		fail(w, errAPITokenNotFound())
		return
	}
	t.secret = newSecret(tokenSecretLength)
	writeJSON(w, http.StatusOK, map[string]any{"api_token": map[string]any{
		"id": t.id, "name": t.name, "organization_id": t.org.id, "authorized_ip_addresses": []string{},
		"expires_at": nil, "rate_limit": e.limiter.limit, "scopes": t.scopes, "secret": t.secret,
	}})
}
