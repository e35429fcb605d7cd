package katapult

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// Staging the new token is retried: once Katapult has answered, the new
// secret exists nowhere else and the old one no longer works.
const (
	stageAttempts  = 3
	stageRetryWait = 500 * time.Millisecond
)

// RotateRoot implements provider.Connection by regenerating the API token's
// secret. Katapult retires the old secret the moment it answers, so the new
// one cannot be staged before the switch: it is staged first thing after.
// A crash between Katapult's answer and the staging loses the new secret
// with no way back but the Katapult console.
func (c *connection) RotateRoot(ctx context.Context, stage func(provider.Values) error) (provider.Values, error) {
	tokenID, err := c.apiTokenID(ctx)
	if err != nil {
		return nil, err
	}
	secret, err := c.regenerateSecret(ctx, tokenID)
	if err != nil {
		return nil, err
	}
	next := provider.Values{fieldAPIToken: secret}
	stageErr := stageWithRetries(ctx, stage, next)
	c.mu.Lock()
	c.token = secret
	c.mu.Unlock()
	if stageErr != nil {
		return nil, fmt.Errorf("katapult: the API token's secret was regenerated, so the old one no longer works, but Vault could not store the new one (this Vault process keeps using it until it restarts): %w; regenerate the secret in the Katapult console and write config/%s api_token=<new secret> now", stageErr, c.name)
	}
	return next, nil
}

func stageWithRetries(ctx context.Context, stage func(provider.Values) error, next provider.Values) error {
	// A cancelled request must not cut the retries short: this is the
	// secret's only copy.
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 1; attempt <= stageAttempts; attempt++ {
		if err = stage(next); err == nil {
			return nil
		}
		if attempt < stageAttempts {
			_ = sleep(ctx, stageRetryWait)
		}
	}
	return err
}

// regenerateSecret is never retried after a transport failure: Katapult may
// have regenerated the secret, and a second call would do it again.
func (c *connection) regenerateSecret(ctx context.Context, tokenID string) (string, error) {
	req, err := jsonRequest("regenerate the secret of API token "+tokenID, http.MethodPost, pathRegenerate,
		map[string]any{"api_token": map[string]string{"id": tokenID}}, false)
	if err != nil {
		return "", err
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return "", c.afterLostAnswer(ctx, err)
	}
	if !succeeded(resp) {
		return "", explainRegenerateError(upstreamError(req.Op, resp))
	}
	var out struct {
		Token struct {
			Secret string `json:"secret"`
		} `json:"api_token"`
	}
	if json.Unmarshal(resp.Body, &out) != nil || out.Token.Secret == "" {
		return "", c.lostSecret(&provider.UpstreamError{Provider: Name, Op: req.Op, Status: resp.Status, Message: "the answer has no readable api_token.secret"})
	}
	return out.Token.Secret, nil
}

func explainRegenerateError(ue *provider.UpstreamError) error {
	switch ue.Code {
	case "scope_not_granted":
		return fmt.Errorf("%w; give the API token the api_tokens scope to rotate it", ue)
	case "api_token_not_found":
		return fmt.Errorf("%w; set api_token_id on the connection to the id of this API token", ue)
	}
	return ue
}

// afterLostAnswer finds out, when no answer came, whether the old secret
// still works: if it does, nothing changed; if Katapult refuses it, the
// secret was regenerated and the answer lost.
func (c *connection) afterLostAnswer(ctx context.Context, cause error) error {
	err := c.Verify(ctx)
	switch {
	case err == nil:
		return fmt.Errorf("%w; the API token was not changed and still works: try rotate-root again", cause)
	case errors.Is(err, provider.ErrRootRejected):
		return c.lostSecret(cause)
	}
	return fmt.Errorf("%w; whether Katapult regenerated the secret is unknown (checking failed: %v): if the connection fails with invalid_api_token, regenerate the secret in the Katapult console and write config/%s api_token=<new secret>", cause, err, c.name)
}

func (c *connection) lostSecret(cause error) error {
	return fmt.Errorf("%w; Katapult regenerated the API token's secret but its answer was lost, so the old secret no longer works and the new one is unknown: regenerate the secret in the Katapult console and write config/%s api_token=<new secret>", cause, c.name)
}

// apiTokenID is api_token_id when set, else the id GET /users/current gives
// a user token. An organization token has no user, so it needs api_token_id.
func (c *connection) apiTokenID(ctx context.Context) (string, error) {
	c.mu.Lock()
	id := c.tokenID
	c.mu.Unlock()
	if id != "" {
		return id, nil
	}
	req := getRequest("read the current user", pathCurrentUser, nil)
	var out struct {
		APITokenID any `json:"api_token_id"`
	}
	err := c.expect(ctx, req, &out)
	if codeOf(err) == "no_user_associated_with_identity" {
		return "", fmt.Errorf("%w: the API token is an organization token, whose id Katapult does not tell it: set api_token_id on the connection (write config/%s api_token_id=<id>; the id is shown with the token in the Katapult console)", provider.ErrInvalidInput, c.name)
	}
	if err != nil {
		return "", err
	}
	id, _ = out.APITokenID.(string)
	if id == "" {
		return "", fmt.Errorf("%w: GET /users/current names no api_token_id for this token: set api_token_id on the connection (write config/%s api_token_id=<id>)", provider.ErrInvalidInput, c.name)
	}
	c.mu.Lock()
	c.tokenID = id
	c.mu.Unlock()
	return id, nil
}
