package katapult

import (
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Pagination of the access key list: Katapult's default page size is 30.
const (
	defaultPerPage = 30
	maxPerPage     = 200
)

// lookup is Katapult's nested lookup object, e.g. {"id":…} or {"sub_domain":…}.
type lookup struct {
	ID        string `json:"id"`
	SubDomain string `json:"sub_domain"`
	Name      string `json:"name"`
	Region    string `json:"region"`
}

// accessKeyView is the object_storage_access_key schema. The secret is only
// ever set in the generate_credentials answer.
type accessKeyView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	Region    string `json:"region"`
	State     string `json:"state"`
	keyFlags
	ReadBuckets       []string `json:"read_buckets"`
	WriteBuckets      []string `json:"write_buckets"`
	ServerURL         *string  `json:"server_url"`
	S3AccessKeyID     *string  `json:"s3_access_key_id"`
	S3SecretAccessKey *string  `json:"s3_secret_access_key"`
}

// bucketView is the ObjectStorageBucket schema of the Core API document,
// field for field: Katapult answers with the fields it declares and no others.
type bucketView struct {
	Name            string    `json:"name"`
	Label           *string   `json:"label"`
	CreatedAt       int64     `json:"created_at"`
	State           string    `json:"state"`
	CustomDomain    *string   `json:"custom_domain"`
	ObjectCount     int       `json:"object_count"`
	Size            int       `json:"size"`
	ServeStaticSite bool      `json:"serve_static_site"`
	StaticSiteIndex *string   `json:"static_site_index"`
	StaticSiteError *string   `json:"static_site_error"`
	PublicURL       string    `json:"public_url"`
	ACL             bucketACL `json:"access_control_list"`
}

func (s *state) keyView(k *accessKey, c *call, withSecret bool) accessKeyView {
	read, write := s.keyBuckets(k)
	v := accessKeyView{ID: k.id, Name: k.name, CreatedAt: k.created.Unix(), Region: Region, State: k.state(c.now),
		keyFlags: k.flags, ReadBuckets: read, WriteBuckets: write}
	if k.s3ID != "" {
		url, id := serverURL, k.s3ID
		v.ServerURL, v.S3AccessKeyID = &url, &id
		if withSecret {
			secret := k.s3Secret
			v.S3SecretAccessKey = &secret
		}
	}
	return v
}

func (b *bucket) view() bucketView {
	acl := b.acl
	acl.ReadKeyIDs, acl.WriteKeyIDs = slices.Clone(acl.ReadKeyIDs), slices.Clone(acl.WriteKeyIDs)
	return bucketView{Name: b.name, CreatedAt: b.created.Unix(), State: "configured",
		PublicURL: "https://" + b.name + "." + Region + ".katapultobjects.com/", ACL: acl}
}

// organizationFrom resolves an organization lookup and checks that the
// caller's token acts on it.
func (e *Emulator) organizationFrom(w http.ResponseWriter, c *call, l lookup) (*organization, bool) {
	if l.ID == "" && l.SubDomain == "" {
		fail(w, errBadArgument("The 'organization' argument requires an id or sub_domain"))
		return nil, false
	}
	org := e.state.organization(l.ID, l.SubDomain)
	switch {
	case org == nil:
		fail(w, errOrganizationNotFound())
		return nil, false
	case org != c.token.org:
		fail(w, errPermissionDenied())
		return nil, false
	}
	return org, true
}

// storageAccount resolves the organization and region of a call to an
// organization with object storage in the one cluster.
func (e *Emulator) storageAccount(w http.ResponseWriter, c *call, org lookup, region string) (*organization, bool) {
	o, ok := e.organizationFrom(w, c, org)
	if !ok {
		return nil, false
	}
	if !e.clusterExists(w, region) {
		return nil, false
	}
	if !o.objectStorage {
		fail(w, errAccountNotFound())
		return nil, false
	}
	return o, true
}

func (e *Emulator) clusterExists(w http.ResponseWriter, region string) bool {
	switch region {
	case Region:
		return true
	case "":
		fail(w, errBadArgument("The 'object_storage_cluster' argument requires a region"))
	default:
		fail(w, errClusterNotFound())
	}
	return false
}

func orgFromQuery(c *call) lookup {
	q := c.r.URL.Query()
	return lookup{ID: q.Get("organization[id]"), SubDomain: q.Get("organization[sub_domain]")}
}

// decodeBody reads a JSON request body into v, answering 400 if it is not JSON.
func decodeBody(w http.ResponseWriter, c *call, v any) bool {
	if err := json.Unmarshal(c.body, v); err != nil {
		fail(w, errBadArgument("The request body is not valid JSON"))
		return false
	}
	return true
}

// GET /organizations/organization/object_storage/object_storage_cluster
func (e *Emulator) getAccount(w http.ResponseWriter, c *call) {
	org, ok := e.storageAccount(w, c, orgFromQuery(c), c.r.URL.Query().Get("object_storage_cluster[region]"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_account": map[string]any{
		"region": Region, "created_at": org.createdAt.Unix(), "provisioning_state": "provisioned",
		"size": 0, "bucket_count": e.state.bucketCount(org),
	}})
}

// keyProperties are the settable fields of an access key.
type keyProperties struct {
	Name            *string `json:"name"`
	AllBucketsRead  *bool   `json:"all_buckets_read"`
	AllObjectsRead  *bool   `json:"all_objects_read"`
	AllObjectsWrite *bool   `json:"all_objects_write"`
}

// apply sets the flags present in p and reports a blank name.
func (p keyProperties) apply(name *string, flags *keyFlags) bool {
	if p.Name == nil || strings.TrimSpace(*p.Name) == "" {
		return false
	}
	*name = *p.Name
	for _, f := range []struct {
		from *bool
		to   *bool
	}{{p.AllBucketsRead, &flags.AllBucketsRead}, {p.AllObjectsRead, &flags.AllObjectsRead}, {p.AllObjectsWrite, &flags.AllObjectsWrite}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	return true
}

// POST /organizations/organization/object_storage/object_storage_cluster/access_keys
func (e *Emulator) createAccessKey(w http.ResponseWriter, c *call) {
	var req struct {
		Organization lookup        `json:"organization"`
		Cluster      lookup        `json:"object_storage_cluster"`
		Properties   keyProperties `json:"properties"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	org, ok := e.storageAccount(w, c, req.Organization, req.Cluster.Region)
	if !ok {
		return
	}
	var name string
	var flags keyFlags
	if !req.Properties.apply(&name, &flags) {
		fail(w, errValidation("Name can't be blank"))
		return
	}
	k := e.state.newAccessKey(org, name, flags, c.now, e.delay)
	writeJSON(w, http.StatusCreated, map[string]any{"object_storage_access_key": e.state.keyView(k, c, false)})
}

// accessKeyFrom finds the caller's live key named by id, answering 404 if
// there is none.
func (e *Emulator) accessKeyFrom(w http.ResponseWriter, c *call, id string) (*accessKey, bool) {
	if id == "" {
		fail(w, errBadArgument("The 'access_key' argument requires an id"))
		return nil, false
	}
	k := e.state.liveKey(c.token.org, id)
	if k == nil {
		fail(w, errAccessKeyNotFound())
		return nil, false
	}
	return k, true
}

// accessKeyFromBody finds the key a {"access_key":{"id":…}} body names.
func (e *Emulator) accessKeyFromBody(w http.ResponseWriter, c *call) (*accessKey, bool) {
	var req struct {
		AccessKey lookup `json:"access_key"`
	}
	if !decodeBody(w, c, &req) {
		return nil, false
	}
	return e.accessKeyFrom(w, c, req.AccessKey.ID)
}

// POST /object_storage/access_keys/access_key/generate_credentials answers
// 422 while the key provisions, then a fresh S3 pair each time.
func (e *Emulator) generateCredentials(w http.ResponseWriter, c *call) {
	k, ok := e.accessKeyFromBody(w, c)
	if !ok {
		return
	}
	if c.now.Before(k.readyAt) {
		fail(w, errProvisioning())
		return
	}
	k.generateCredentials(c.now)
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_access_key": e.state.keyView(k, c, true)})
}

// GET /object_storage/access_keys/access_key?access_key[id]=…
func (e *Emulator) getAccessKey(w http.ResponseWriter, c *call) {
	k, ok := e.accessKeyFrom(w, c, c.r.URL.Query().Get("access_key[id]"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_access_key": e.state.keyView(k, c, false)})
}

// PATCH /object_storage/access_keys/access_key; name is required, as in
// Katapult's spec, and a provisioning key cannot change.
func (e *Emulator) updateAccessKey(w http.ResponseWriter, c *call) {
	var req struct {
		AccessKey  lookup        `json:"access_key"`
		Properties keyProperties `json:"properties"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	k, ok := e.accessKeyFrom(w, c, req.AccessKey.ID)
	if !ok {
		return
	}
	if c.now.Before(k.readyAt) {
		fail(w, errProvisioning())
		return
	}
	name, flags := k.name, k.flags
	if !req.Properties.apply(&name, &flags) {
		fail(w, errValidation("Name can't be blank"))
		return
	}
	k.name, k.flags = name, flags
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_access_key": e.state.keyView(k, c, false)})
}

// DELETE /object_storage/access_keys/access_key answers {"success":true};
// a key that is gone is 404 like any other miss.
func (e *Emulator) deleteAccessKey(w http.ResponseWriter, c *call) {
	k, ok := e.accessKeyFromBody(w, c)
	if !ok {
		return
	}
	e.state.deleteKey(k, e.keepDeleted)
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// GET /organizations/organization/object_storage/access_keys?page=&per_page=
func (e *Emulator) listAccessKeys(w http.ResponseWriter, c *call) {
	org, ok := e.organizationFrom(w, c, orgFromQuery(c))
	if !ok {
		return
	}
	q := c.r.URL.Query()
	page := max(atoiOr(q.Get("page"), 1), 1)
	perPage := min(max(atoiOr(q.Get("per_page"), defaultPerPage), 1), maxPerPage)
	keys := e.state.liveKeys(org)
	views := []accessKeyView{}
	for i := (page - 1) * perPage; i < min(page*perPage, len(keys)); i++ {
		views = append(views, e.state.keyView(keys[i], c, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"pagination": map[string]any{
			"current_page": page, "total_pages": max((len(keys)+perPage-1)/perPage, 1),
			"total": len(keys), "per_page": perPage, "large_set": false,
		},
		"object_storage_access_keys": views,
	})
}

func atoiOr(s string, fallback int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return fallback
}

// bucketFrom finds the caller's bucket in the named cluster.
func (e *Emulator) bucketFrom(w http.ResponseWriter, c *call, region, name string) (*bucket, bool) {
	if !e.clusterExists(w, region) {
		return nil, false
	}
	if name == "" {
		fail(w, errBadArgument("The 'bucket' argument requires a name"))
		return nil, false
	}
	b := e.state.bucket(c.token.org, name)
	if b == nil {
		fail(w, errBucketNotFound())
		return nil, false
	}
	return b, true
}

// GET /object_storage/object_storage_cluster/buckets/bucket?object_storage_cluster[region]=…&bucket[name]=…
// is in Katapult's spec and recorded traffic, though not in the reference table.
func (e *Emulator) getBucket(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	b, ok := e.bucketFrom(w, c, q.Get("object_storage_cluster[region]"), q.Get("bucket[name]"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_bucket": b.view()})
}

// aclChange is the access_control_list of a bucket PATCH: fields left out
// keep their value; key id lists that are present replace the old ones.
type aclChange struct {
	PublicRead   *bool     `json:"public_read"`
	PublicList   *bool     `json:"public_list"`
	AllKeysRead  *bool     `json:"all_keys_read"`
	AllKeysWrite *bool     `json:"all_keys_write"`
	ReadKeyIDs   *[]string `json:"read_key_ids"`
	WriteKeyIDs  *[]string `json:"write_key_ids"`
}

// PATCH /object_storage/object_storage_cluster/buckets/bucket
func (e *Emulator) updateBucket(w http.ResponseWriter, c *call) {
	var req struct {
		Cluster    lookup `json:"object_storage_cluster"`
		Bucket     lookup `json:"bucket"`
		Properties struct {
			ACL *aclChange `json:"access_control_list"`
		} `json:"properties"`
	}
	if !decodeBody(w, c, &req) {
		return
	}
	b, ok := e.bucketFrom(w, c, req.Cluster.Region, req.Bucket.Name)
	if !ok {
		return
	}
	if change := req.Properties.ACL; change != nil {
		if problems := e.unknownKeys(c, change); len(problems) > 0 {
			fail(w, errValidation(problems...))
			return
		}
		b.acl.apply(change)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object_storage_bucket": b.view()})
}

// unknownKeys lists ACL key ids that never named a key of the caller's
// organization; ids of deleted keys pass, since they may linger in ACLs.
// Katapult's own answer to either is not recorded.
func (e *Emulator) unknownKeys(c *call, change *aclChange) []string {
	var problems []string
	for _, list := range []*[]string{change.ReadKeyIDs, change.WriteKeyIDs} {
		if list == nil {
			continue
		}
		for _, id := range *list {
			if k := e.state.keysByID[id]; k == nil || k.org != c.token.org {
				problems = append(problems, "Access key "+id+" does not exist")
			}
		}
	}
	return problems
}

func (a *bucketACL) apply(change *aclChange) {
	for _, f := range []struct {
		from *bool
		to   *bool
	}{{change.PublicRead, &a.PublicRead}, {change.PublicList, &a.PublicList}, {change.AllKeysRead, &a.AllKeysRead}, {change.AllKeysWrite, &a.AllKeysWrite}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if change.ReadKeyIDs != nil {
		a.ReadKeyIDs = unique(*change.ReadKeyIDs)
	}
	if change.WriteKeyIDs != nil {
		a.WriteKeyIDs = unique(*change.WriteKeyIDs)
	}
}

func unique(ids []string) []string {
	out := []string{}
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
