package storyden

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// accessKeyView is Storyden's AccessKey schema. UpdatedAt is always the zero
// time: Storyden's serialisers never set it.
type accessKeyView struct {
	ID        string     `json:"id"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
	Enabled   bool       `json:"enabled"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// issuedAccessKeyView is the create answer, the only one with the secret.
type issuedAccessKeyView struct {
	accessKeyView
	Secret string `json:"secret"`
}

// ownedAccessKeyView is the admin list's entry, which names the owner.
type ownedAccessKeyView struct {
	accessKeyView
	CreatedBy profileReference `json:"created_by"`
}

type profileReference struct {
	ID     string    `json:"id"`
	Handle string    `json:"handle"`
	Name   string    `json:"name"`
	Joined time.Time `json:"joined"`
}

type accessKeyList[T any] struct {
	Keys []T `json:"keys"`
}

func (k *accessKey) view() accessKeyView {
	return accessKeyView{ID: k.id, CreatedAt: k.createdAt, Enabled: !k.disabled, Name: k.name, ExpiresAt: k.expiresAt}
}

// createAccessKey needs a browser session: an access key cannot mint more.
// Its answer always says enabled:false (Storyden's binding leaves the field
// unset); the list tells the truth.
func (e *Emulator) createAccessKey(w http.ResponseWriter, c *call) {
	if !e.requireBrowser(w, c) || !e.requirePermission(w, c, PermissionUsePersonalAccessKeys) {
		return
	}
	name, expiresAt, err := parseNewAccessKey(c.body)
	if err != nil {
		e.fail(w, errSchema(err))
		return
	}
	key, token := e.state.newAccessKey(c.caller.id, name, expiresAt, c.now)
	issued := issuedAccessKeyView{accessKeyView: key.view(), Secret: token}
	issued.Enabled = false
	writeJSON(w, http.StatusOK, issued)
}

// parseNewAccessKey reads {"name", "expires_at"}; a null or missing
// expires_at means the key never expires, and a past one is accepted.
func parseNewAccessKey(body []byte) (string, *time.Time, error) {
	var req struct {
		Name      *string    `json:"name"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", nil, err
	}
	if req.Name == nil || *req.Name == "" {
		return "", nil, errors.New(`property "name" is required and must not be empty`)
	}
	if req.ExpiresAt != nil {
		utc := req.ExpiresAt.UTC()
		req.ExpiresAt = &utc
	}
	return *req.Name, req.ExpiresAt, nil
}

func (e *Emulator) listAccessKeys(w http.ResponseWriter, c *call) {
	if !e.requirePermission(w, c, PermissionUsePersonalAccessKeys) {
		return
	}
	list := accessKeyList[accessKeyView]{Keys: []accessKeyView{}}
	for _, k := range e.state.keysOwnedBy(c.caller.id) {
		list.Keys = append(list.Keys, k.view())
	}
	writeJSON(w, http.StatusOK, list)
}

// revokeAccessKey soft-disables one of the caller's keys. Revoking twice is
// fine; someone else's key is "not found".
func (e *Emulator) revokeAccessKey(w http.ResponseWriter, c *call) {
	if !e.requirePermission(w, c, PermissionUsePersonalAccessKeys) {
		return
	}
	e.disableKey(w, c, func(k *accessKey) bool { return k.ownerID == c.caller.id })
}

func (e *Emulator) adminListAccessKeys(w http.ResponseWriter, c *call) {
	if !e.requirePermission(w, c, PermissionAdministrator) {
		return
	}
	list := accessKeyList[ownedAccessKeyView]{Keys: []ownedAccessKeyView{}}
	for _, k := range e.state.keys {
		owner := e.state.accounts[k.ownerID]
		list.Keys = append(list.Keys, ownedAccessKeyView{
			accessKeyView: k.view(),
			CreatedBy:     profileReference{ID: owner.id, Handle: owner.handle, Name: owner.handle, Joined: owner.createdAt},
		})
	}
	writeJSON(w, http.StatusOK, list)
}

func (e *Emulator) adminRevokeAccessKey(w http.ResponseWriter, c *call) {
	if !e.requirePermission(w, c, PermissionAdministrator) {
		return
	}
	e.disableKey(w, c, func(*accessKey) bool { return true })
}

// disableKey revokes the key named in the path if visible says the caller
// may see it, and answers 404 for any miss. A malformed id is a miss too:
// Storyden parses it into the zero xid, which names no key.
func (e *Emulator) disableKey(w http.ResponseWriter, c *call, visible func(*accessKey) bool) {
	k := e.state.keysByID[c.r.PathValue("id")]
	if k == nil || !visible(k) {
		e.fail(w, errAccessKeyNotFound())
		return
	}
	k.disabled = true
	w.WriteHeader(http.StatusNoContent)
}
