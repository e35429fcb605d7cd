package storx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

const (
	pathListKeys = "/api/v0/api-keys/list-paged"
	listPageSize = 100
	// maxListPages bounds a listing at 10,000 keys per project.
	maxListPages = 100
)

// listedKey is one API key of GET list-paged.
type listedKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// ListObjects implements provider.Lister. StorX lists API keys per project,
// and the developer API cannot list its users, so the projects listed are
// those of the roles' users.
func (c *connection) ListObjects(ctx context.Context, roles []provider.Values) ([]provider.UpstreamObject, error) {
	seen := map[string]bool{}
	var out []provider.UpstreamObject
	for _, role := range roles {
		email := role.String(fieldUserEmail)
		if email == "" || seen[normalizeEmail(email)] {
			continue
		}
		seen[normalizeEmail(email)] = true
		projectID, err := c.userProject(ctx, email, "", false)
		if errors.Is(err, errNoSuchUser) {
			continue
		}
		if err != nil {
			return nil, err
		}
		keys, err := c.listProjectKeys(ctx, email, projectID)
		if err != nil {
			return nil, err
		}
		for _, key := range keys {
			out = append(out, provider.UpstreamObject{
				Name: key.Name, ID: key.ID, CreatedAt: key.CreatedAt,
				Ref: provider.Ref{refUserEmail: email, refProjectID: projectID, refKeyName: key.Name, refKeyID: key.ID},
			})
		}
	}
	return out, nil
}

func (c *connection) listProjectKeys(ctx context.Context, email, projectID string) ([]listedKey, error) {
	var all []listedKey
	for page := 1; page <= maxListPages; page++ {
		query := url.Values{
			"projectID": {projectID}, "search": {""}, "limit": {strconv.Itoa(listPageSize)},
			"page": {strconv.Itoa(page)}, "order": {"2"}, "orderDirection": {"1"},
		}
		req := provider.Request{Op: "list API keys of " + email, Method: http.MethodGet, Path: pathListKeys, Query: query, Idempotent: true}
		resp, err := c.asUser(ctx, email, req)
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK {
			return nil, c.upstreamError(req.Op, resp)
		}
		var body struct {
			Keys      []listedKey `json:"apiKeys"`
			PageCount int         `json:"pageCount"`
		}
		if err := provider.DecodeJSON(Name, req.Op, resp, &body); err != nil {
			return nil, err
		}
		all = append(all, body.Keys...)
		if page >= body.PageCount || len(body.Keys) == 0 {
			return all, nil
		}
	}
	return nil, fmt.Errorf("storx: the project of %s has more than %d API keys; delete unused ones", email, maxListPages*listPageSize)
}
