package storx

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// projectCache remembers the project of each StorX user by email, so that
// only the first Issue for a user pays for create-user (or the lookup).
type projectCache struct {
	mu      sync.Mutex
	ids     map[string]string
	lookups provider.SharedCalls
}

func (p *projectCache) get(email string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.ids[email]
	return id, ok
}

func (p *projectCache) set(email, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]string{}
	}
	p.ids[email] = id
}

func (p *projectCache) forget(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ids, email)
}

func (p *projectCache) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = nil
}

// userProject returns the project the user's API keys go to. With create it
// creates the user when StorX does not know it; without, an unknown user is
// an error that wraps errNoSuchUser. Concurrent callers share one lookup,
// which no single caller's cancellation stops.
func (c *connection) userProject(ctx context.Context, email, fullName string, create bool) (string, error) {
	key := normalizeEmail(email)
	if id, ok := c.projects.get(key); ok {
		return id, nil
	}
	flight := fmt.Sprintf("%t:%s", create, key)
	v, err := c.projects.lookups.Do(ctx, flight, "find the project of StorX user "+email, func(ctx context.Context) (any, error) {
		if id, ok := c.projects.get(key); ok {
			return id, nil
		}
		id, err := c.findProject(ctx, email, fullName, create)
		if err != nil {
			return "", err
		}
		c.projects.set(key, id)
		return id, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (c *connection) findProject(ctx context.Context, email, fullName string, create bool) (string, error) {
	if create {
		id, existed, err := c.createUser(ctx, email, fullName)
		if err != nil || !existed {
			return id, err
		}
	}
	return c.firstProject(ctx, email)
}

// createUser creates the user and its project. StorX refuses an existing
// user with a 401 "…already verified", which is how existed is learnt.
func (c *connection) createUser(ctx context.Context, email, fullName string) (projectID string, existed bool, err error) {
	if fullName == "" {
		fullName, _, _ = strings.Cut(email, "@")
	}
	req, err := provider.JSONRequest("create StorX user "+email, http.MethodPost, pathCreateUser,
		map[string]string{"email": email, "fullName": fullName})
	if err != nil {
		return "", false, err
	}
	resp, err := c.asDeveloper(ctx, req)
	if err != nil {
		return "", false, err
	}
	msg := strings.ToLower(messageOf(resp.Body))
	switch {
	case resp.Status == http.StatusOK:
	case resp.Status == http.StatusUnauthorized && strings.Contains(msg, "already verified"):
		return "", true, nil
	case resp.Status == http.StatusUnauthorized && strings.Contains(msg, "activation code"):
		return "", false, fmt.Errorf("%w; the StorX user %s exists but is locked: unlock it in the StorX console or give the role another user_email", c.upstreamError(req.Op, resp), email)
	default:
		return "", false, explainAuthFailure(c.upstreamError(req.Op, resp))
	}
	var body struct {
		Data struct {
			ProjectID string `json:"projectId"`
		} `json:"data"`
	}
	if err := provider.DecodeJSON(Name, req.Op, resp, &body); err != nil {
		return "", false, err
	}
	if body.Data.ProjectID == "" {
		return "", false, &provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the response names no project"}
	}
	return body.Data.ProjectID, false, nil
}

// firstProject finds an existing user's project, the first one listed.
func (c *connection) firstProject(ctx context.Context, email string) (string, error) {
	req := provider.Request{Op: "list the projects of StorX user " + email, Method: http.MethodGet, Path: pathProjects, Idempotent: true}
	resp, err := c.asUser(ctx, email, req)
	if err != nil {
		return "", err
	}
	if resp.Status != http.StatusOK {
		return "", c.upstreamError(req.Op, resp)
	}
	var projects []struct {
		ID string `json:"id"`
	}
	if err := provider.DecodeJSON(Name, req.Op, resp, &projects); err != nil {
		return "", err
	}
	if len(projects) == 0 || projects[0].ID == "" {
		return "", fmt.Errorf("%w: StorX user %s has no project; create one in the StorX console or give the role another user_email", provider.ErrInvalidInput, email)
	}
	return projects[0].ID, nil
}
