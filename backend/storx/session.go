package storx

import (
	"context"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// timeNow is the clock for session expiry; tests replace it.
var timeNow = time.Now

// Session lifetimes. StorX says when a session ends (expiresAt); it is
// renewed a little before, so that a request never starts with a session
// about to die. A session with no readable expiresAt is trusted for less
// than StorX's default 30-minute inactivity timeout.
const (
	sessionMargin           = 2 * time.Minute
	fallbackSessionLifetime = 25 * time.Minute
)

// session is one StorX login: the cookie value and when to log in again.
type session struct {
	token     string
	refreshAt time.Time
}

// newSession schedules the next login a margin before expiresAt, and at
// most halfway through a short session so that it is still used at all.
func newSession(token string, expiresAt, now time.Time) session {
	if expiresAt.IsZero() || !expiresAt.After(now) {
		return session{token: token, refreshAt: now.Add(fallbackSessionLifetime)}
	}
	margin := min(sessionMargin, expiresAt.Sub(now)/2)
	return session{token: token, refreshAt: expiresAt.Add(-margin)}
}

// sessionCache holds sessions by key (the developer, or one user's email)
// and lets only one login per key run at a time: the developer auth
// endpoints allow a burst of five calls per IP, then one per five minutes.
type sessionCache struct {
	mu       sync.Mutex
	sessions map[string]session
	logins   provider.SharedCalls
}

// get returns the cached session for key, logging in when there is none or
// it is near its end. Concurrent callers share one login, which no single
// caller's cancellation stops; op names it in a waiting caller's error.
func (c *sessionCache) get(ctx context.Context, key, op string, login func(context.Context) (session, error)) (string, error) {
	if token, ok := c.cached(key); ok {
		return token, nil
	}
	v, err := c.logins.Do(ctx, key, op, func(ctx context.Context) (any, error) {
		if token, ok := c.cached(key); ok {
			return token, nil
		}
		fresh, err := login(ctx)
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		if c.sessions == nil {
			c.sessions = map[string]session{}
		}
		c.sessions[key] = fresh
		c.mu.Unlock()
		return fresh.token, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (c *sessionCache) cached(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[key]
	if !ok || !timeNow().Before(s.refreshAt) {
		return "", false
	}
	return s.token, true
}

// drop forgets token if it is still the cached session for key, so that a
// 401 seen by many requests at once leads to a single new login.
func (c *sessionCache) drop(key, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[key].token == token {
		delete(c.sessions, key)
	}
}

func (c *sessionCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions = nil
}
