package storx

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
)

// apiKeyVersion leads every serialized API key of this emulator.
const apiKeyVersion = 0x01

// projectView is one entry of GET /api/v0/projects; id is the public ID.
type projectView struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	OwnerID       string    `json:"ownerId"`
	Description   string    `json:"description"`
	MemberCount   int       `json:"memberCount"`
	CreatedAt     time.Time `json:"createdAt"`
	StorageUsed   int64     `json:"storageUsed"`
	BandwidthUsed int64     `json:"bandwidthUsed"`
	Versioning    int       `json:"versioning"`
}

// apiKeyInfoView is console.APIKeyInfo as the postman-era satellite sends it.
type apiKeyInfoView struct {
	ID              string    `json:"id"`
	ProjectID       string    `json:"projectId"`
	ProjectPublicID string    `json:"projectPublicId"`
	CreatedBy       string    `json:"createdBy"`
	UserAgent       *string   `json:"userAgent"`
	Name            string    `json:"name"`
	CreatedAt       time.Time `json:"createdAt"`
	Version         int       `json:"version"`
}

func (s *Satellite) listProjects(w http.ResponseWriter, c *call) {
	views := []projectView{}
	for _, p := range s.state.projectsOwnedBy(c.user.id) {
		views = append(views, projectView{ID: p.publicID, Name: p.name, OwnerID: p.ownerID, MemberCount: 1, CreatedAt: p.createdAt})
	}
	writeJSON(w, "application/json", views)
}

// memberProject resolves a project ID (private or public) the caller must
// be a member of; it answers the error itself when there is none.
func (s *Satellite) memberProject(w http.ResponseWriter, c *call, id string, nonMember int) (*project, bool) {
	if !isUUID(id) {
		serveError(w, http.StatusBadRequest, "uuid: invalid string")
		return nil, false
	}
	p := s.state.project(id)
	if p == nil || p.ownerID != c.user.id {
		serveError(w, nonMember, msgNoMembership)
		return nil, false
	}
	return p, true
}

// createAPIKey takes the raw request body as the key's name. A name in use
// in the project is a validation error, which the handler does not map, so
// it comes back as a 500.
func (s *Satellite) createAPIKey(w http.ResponseWriter, c *call) {
	p, ok := s.memberProject(w, c, c.r.PathValue("projectID"), http.StatusUnauthorized)
	if !ok {
		return
	}
	name := string(c.body)
	if s.state.liveKey(p.id, name) != nil {
		serveError(w, http.StatusInternalServerError, msgDuplicateKey)
		return
	}
	head := sandbox.RandomBytes(16)
	k := &apiKey{id: sandbox.NewUUID(), name: name, projectID: p.id, createdBy: c.user.id, head: hex.EncodeToString(head), createdAt: c.now}
	s.state.keys = append(s.state.keys, k)
	serialized := base58Encode(append(append([]byte{apiKeyVersion}, head...), sandbox.RandomBytes(32)...))
	writeJSON(w, "", map[string]any{"key": serialized, "keyInfo": k.infoView(p)})
}

func (k *apiKey) infoView(p *project) apiKeyInfoView {
	return apiKeyInfoView{ID: k.id, ProjectID: p.id, ProjectPublicID: p.publicID, CreatedBy: k.createdBy, Name: k.name, CreatedAt: k.createdAt, Version: 1}
}

// parseAPIKey returns the head of a serialized key, as macaroon.ParseAPIKey
// checks only the format.
func parseAPIKey(serialized string) (string, error) {
	raw, err := base58Decode(serialized)
	if err != nil || len(raw) != 1+16+32 || raw[0] != apiKeyVersion {
		return "", errors.New("invalid api key format")
	}
	return hex.EncodeToString(raw[1:17]), nil
}

// listAPIKeys is list-paged: every parameter but search is mandatory.
func (s *Satellite) listAPIKeys(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	if q.Get("projectID") == "" {
		serveError(w, http.StatusBadRequest, "parameter 'projectID' can't be empty")
		return
	}
	p, ok := s.memberProject(w, c, q.Get("projectID"), http.StatusUnauthorized)
	if !ok {
		return
	}
	nums := map[string]uint64{}
	for _, name := range []string{"limit", "page", "order", "orderDirection"} {
		raw := q.Get(name)
		if raw == "" {
			serveError(w, http.StatusBadRequest, "parameter '"+name+"' can't be empty")
			return
		}
		n, err := strconv.ParseUint(raw, 10, 32)
		if err != nil {
			serveError(w, http.StatusBadRequest, err.Error())
			return
		}
		nums[name] = n
	}
	if nums["limit"] == 0 || nums["page"] == 0 {
		serveError(w, http.StatusInternalServerError, "api keys db error: limit and page must be at least 1")
		return
	}
	keys := s.projectKeys(p, q.Get("search"), nums["order"], nums["orderDirection"])
	writeJSON(w, "", pageOf(keys, p, q.Get("search"), nums))
}

func (s *Satellite) projectKeys(p *project, search string, order, direction uint64) []*apiKey {
	var keys []*apiKey
	for _, k := range s.state.keys {
		if k.projectID == p.id && k.deletedAt == nil && strings.Contains(strings.ToLower(k.name), strings.ToLower(search)) {
			keys = append(keys, k)
		}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		less := keys[i].name < keys[j].name
		if order == 2 {
			less = keys[i].createdAt.Before(keys[j].createdAt)
		}
		if direction == 2 {
			return !less
		}
		return less
	})
	return keys
}

func pageOf(keys []*apiKey, p *project, search string, nums map[string]uint64) map[string]any {
	limit, page := int(nums["limit"]), int(nums["page"])
	offset := min((page-1)*limit, len(keys))
	end := min(offset+limit, len(keys))
	views := []apiKeyInfoView{}
	for _, k := range keys[offset:end] {
		views = append(views, k.infoView(p))
	}
	return map[string]any{
		"apiKeys": views, "search": search, "limit": limit, "order": nums["order"], "orderDirection": nums["orderDirection"],
		"offset": offset, "pageCount": (len(keys) + limit - 1) / limit, "currentPage": page, "totalCount": len(keys),
	}
}

func (s *Satellite) apiKeyNames(w http.ResponseWriter, c *call) {
	id := c.r.URL.Query().Get("projectID")
	if id == "" {
		serveError(w, http.StatusBadRequest, msgMissingProject)
		return
	}
	p, ok := s.memberProject(w, c, id, http.StatusUnauthorized)
	if !ok {
		return
	}
	names := []string{}
	for _, k := range s.projectKeys(p, "", 1, 1) {
		names = append(names, k.name)
	}
	writeJSON(w, "", names)
}

// accessGrant builds a grant from an API key and a passphrase. Restrictions
// apply only when bucket is present; the grant comes back JSON-encoded as a
// string, quotes and trailing newline included.
func (s *Satellite) accessGrant(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	serialized := q.Get("api-key")
	if serialized == "" {
		serveError(w, http.StatusBadRequest, msgMissingAPIKey)
		return
	}
	g := Grant{SatelliteAddress: s.opts.SatelliteAddress}
	if bucket := q.Get("bucket"); bucket != "" {
		g.Prefixes = sharePrefixes(bucket, q.Get("prefix"))
		g.Permission = permissionFrom(q, c.now)
		if g.Permission == nil {
			serveError(w, http.StatusBadRequest, msgMissingPerm)
			return
		}
	}
	p, ok := s.memberProject(w, c, c.r.PathValue("project_id"), http.StatusInternalServerError)
	if !ok {
		return
	}
	head, err := parseAPIKey(serialized)
	if err != nil {
		serveError(w, http.StatusBadRequest, err.Error())
		return
	}
	g.ProjectID, g.APIKeyHead, g.EncryptionKey = p.id, head, p.encryptionKey(q.Get("passphrase"))
	if k := s.state.keyByHead(head); k != nil {
		g.APIKeyID = k.id
	}
	writeJSON(w, "", g.encode())
}

// sharePrefixes reads bucket=all, bucket=b1,b2 or bucket=b&prefix=p; a
// prefix counts only with a single bucket.
func sharePrefixes(bucket, prefix string) []SharePrefix {
	switch {
	case strings.Contains(bucket, ","):
		var out []SharePrefix
		for _, b := range strings.Split(bucket, ",") {
			out = append(out, SharePrefix{Bucket: b})
		}
		return out
	case bucket == "all":
		return []SharePrefix{{}}
	}
	return []SharePrefix{{Bucket: bucket, Prefix: prefix}}
}

// permissionFrom reads the allow_* flags (presence only) and expiry
// (time.DateTime, UTC). No flag and no expiry, or an unreadable expiry, is
// no permission at all.
func permissionFrom(q url.Values, now time.Time) *Permission {
	perm := &Permission{
		Download: q.Has("allow_download"), Upload: q.Has("allow_upload"),
		List: q.Has("allow_list"), Delete: q.Has("allow_delete"), NotBefore: &now,
	}
	expiry := q.Get("expiry")
	if !perm.Download && !perm.Upload && !perm.List && !perm.Delete && expiry == "" {
		return nil
	}
	if expiry != "" {
		notAfter, err := time.Parse(time.DateTime, expiry)
		if err != nil {
			return nil
		}
		perm.NotAfter = &notAfter
	}
	return perm
}

// deleteByName deletes a key by name and project. A name that does not
// exist still gets 200 with an empty body (the handler serves 204 through a
// helper that never writes it). Without a name the real handler calls
// Error() on a nil error: the request panics and the connection drops.
func (s *Satellite) deleteByName(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	name := q.Get("name")
	if name == "" {
		s.state.namelessDeletes++
		panic(http.ErrAbortHandler)
	}
	id := q.Get("projectID")
	if id == "" {
		id = q.Get("publicID")
	}
	if id == "" {
		serveError(w, http.StatusBadRequest, msgMissingProject)
		return
	}
	p, ok := s.memberProject(w, c, id, http.StatusUnauthorized)
	if !ok {
		return
	}
	if k := s.state.liveKey(p.id, name); k != nil {
		k.deletedAt = &c.now
	}
}

// deleteByIDs deletes keys by id. Unlike delete-by-name a missing id is an
// unmapped error, so it is not idempotent.
func (s *Satellite) deleteByIDs(w http.ResponseWriter, c *call) {
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(bytes.NewReader(c.body)).Decode(&req); err != nil {
		serveError(w, http.StatusBadRequest, err.Error())
		return
	}
	var doomed []*apiKey
	for _, id := range req.IDs {
		if !isUUID(id) {
			serveError(w, http.StatusBadRequest, "uuid: invalid string")
			return
		}
		k := s.liveKeyByID(id)
		if k == nil {
			serveError(w, http.StatusInternalServerError, "console service: api key not found")
			return
		}
		if p := s.state.project(k.projectID); p == nil || p.ownerID != c.user.id {
			serveError(w, http.StatusUnauthorized, msgNoMembership)
			return
		}
		doomed = append(doomed, k)
	}
	for _, k := range doomed {
		k.deletedAt = &c.now
	}
}

func (s *Satellite) liveKeyByID(id string) *apiKey {
	for _, k := range s.state.keys {
		if k.id == id && k.deletedAt == nil {
			return k
		}
	}
	return nil
}
