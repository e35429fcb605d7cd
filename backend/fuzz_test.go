package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/common/storj"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

// Fuzz targets for the engine's own field checks: names, base_url, field
// names and values, and whole config and role writes. `go test` runs only
// the seeds and testdata/fuzz; run one target for longer with
//
//	go test -run '^$' -fuzz '^FuzzNormalizeBaseURL$' -fuzztime 60s ./backend/

// isWordByte is \w in Go's regexp: ASCII letters, digits and '_'.
func isWordByte(c byte) bool {
	return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// FuzzValidateName: a name is valid exactly when it is made of letters,
// digits, '_', '-' and '.', and starts and ends with a letter, digit or
// '_' (framework.GenericNameRegex); the error names the kind and the name.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"forum", "app", "a", "_", "-", ".", "a-b.c_d", "a.", "-a", "a b", "", "a\n", "ü", "a/b", "..", "a..b", "vault-app-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := name != ""
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !isWordByte(c) && ((c != '-' && c != '.') || i == 0 || i == len(name)-1) {
				want = false
			}
		}
		err := validateName("role", name)
		if (err == nil) != want {
			t.Fatalf("validateName(%q) = %v, want valid=%v", name, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("role name %q", name)) {
			t.Fatalf("the error does not name the name: %v", err)
		}
	})
}

// fuzzProviderNames are the shipped providers, in registry order.
var fuzzProviderNames = defaultRegistry().names

// fuzzFieldKeys turns a comma-separated list into request keys.
func fuzzFieldKeys(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// FuzzCheckFieldNames: a request passes exactly when every key is a common
// field or one of the provider's own; otherwise the message names every bad
// key, says which provider owns a misplaced one, and lists the right fields.
func FuzzCheckFieldNames(f *testing.F) {
	f.Add(uint8(0), false, "provider,base_url,username,password")
	f.Add(uint8(0), false, "provider,username,password,api_token")
	f.Add(uint8(1), false, "email,password,passphrase,auth_url,verify_connection")
	f.Add(uint8(2), true, "connection,ttl,max_ttl,read_buckets,user_email")
	f.Add(uint8(3), true, "key_name_prefix,bogus")
	f.Add(uint8(4), false, "client_id,client_secret,api_key,rotation_period,")
	f.Fuzz(func(t *testing.T, sel uint8, role bool, keyList string) {
		r := defaultRegistry()
		p, _ := r.get(fuzzProviderNames[int(sel)%len(fuzzProviderNames)])
		fields, common := connectionFields, commonConfigFields
		if role {
			fields, common = roleFields, commonRoleFields
		}
		own := fields(p)
		data := map[string]any{}
		for _, k := range fuzzFieldKeys(keyList) {
			data[k] = "v"
		}
		err := checkFieldNames(data, common, own, r.fieldOwners(fields), p.Name())
		var bad []string
		for k := range data {
			if !common[k] && !slices.ContainsFunc(own, func(f provider.Field) bool { return f.Name == k }) {
				bad = append(bad, k)
			}
		}
		if (err == nil) != (len(bad) == 0) {
			t.Fatalf("checkFieldNames(%q) = %v; unknown keys %q", keyList, err, bad)
		}
		if err == nil {
			return
		}
		msg := err.Error()
		for _, k := range bad {
			if !strings.Contains(msg, k+" is ") {
				t.Fatalf("the message does not name %q: %s", k, msg)
			}
			if owners := r.fieldOwners(fields)[k]; len(owners) > 0 && !strings.Contains(msg, k+" is a field of provider "+strings.Join(owners, "/")) {
				t.Fatalf("the message does not say who owns %q: %s", k, msg)
			}
		}
		for _, f := range own {
			if !strings.Contains(msg, f.Name) {
				t.Fatalf("the message does not list field %s: %s", f.Name, msg)
			}
		}
	})
}

// fuzzValue builds a raw request value from a string: kind 0 a string, 1 a
// list of its comma-separated parts, 2 a number, 3 a bool, 4 a JSON number,
// 5 a list holding a number.
func fuzzValue(kind uint8, s string) any {
	switch kind % 6 {
	case 1:
		var l []any
		for _, item := range strings.Split(s, ",") {
			l = append(l, item)
		}
		return l
	case 2:
		return float64(len(s))
	case 3:
		return len(s)%2 == 0
	case 4:
		return json.Number(s)
	case 5:
		return []any{s, 1.0}
	}
	return s
}

// FuzzApplyFields: the provider fields of a request either all normalize or
// the request fails with a message that does not depend on any secret
// value; a success holds every required field, and applying the result to
// itself changes nothing.
func FuzzApplyFields(f *testing.F) {
	f.Add(uint8(0), false, true, "vault-bot", "correct horse battery", "", "", uint8(0))
	f.Add(uint8(0), false, true, "vault-bot", "", "", "", uint8(0))
	f.Add(uint8(1), false, true, "dev@example.com", "developer-password", "grant passphrase", "https://auth.storx.io", uint8(0))
	f.Add(uint8(1), true, true, "app@example.com", "App", "assets,logs", "", uint8(0x10))
	f.Add(uint8(1), true, false, "app@example.com", "", "", "p/", uint8(0))
	f.Add(uint8(2), false, true, "user-token-secret-0123456789", "acme", "uk-lon-1", "apitoken_USER000000000001", uint8(0))
	f.Add(uint8(2), true, true, "true", "false", "yes", "assets", uint8(0x15))
	f.Add(uint8(3), false, true, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", "", "", uint8(2))
	f.Add(uint8(4), false, true, "client-id", "client secret", "0123456789012345678901234567890123456789", "", uint8(0x40))
	f.Fuzz(func(t *testing.T, sel uint8, role, creating bool, v0, v1, v2, v3 string, kinds uint8) {
		p, _ := defaultRegistry().get(fuzzProviderNames[int(sel)%len(fuzzProviderNames)])
		fields := p.ConnectionFields()
		if role {
			fields = p.RoleFields()
		}
		raw := []string{v0, v1, v2, v3}
		build := func(rot bool) map[string]any {
			data := map[string]any{}
			for i, f := range fields {
				if i >= len(raw) || (kinds>>(i+4))&1 == 1 {
					continue // field not in the request
				}
				v := raw[i]
				if rot && f.Secret {
					v = testutil.Rot(v)
				}
				kind := uint8(0)
				if (kinds>>i)&1 == 1 {
					kind = uint8(len(v))
				}
				data[f.Name] = fuzzValue(kind, v)
			}
			return data
		}
		out, err := applyFields(fields, build(false), provider.Values{}, creating)
		_, errRot := applyFields(fields, build(true), provider.Values{}, creating)
		if (err == nil) != (errRot == nil) || (err != nil && err.Error() != errRot.Error()) {
			t.Fatalf("the outcome depends on a secret value: %v / %v", err, errRot)
		}
		if err != nil {
			return
		}
		for _, f := range fields {
			if f.Required && isEmpty(out[f.Name]) {
				t.Fatalf("required field %s is empty: %#v", f.Name, out)
			}
		}
		data := map[string]any{}
		for k, v := range out {
			data[k] = v
		}
		again, err := applyFields(fields, data, out, creating)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("applying %#v to itself gave %#v, %v", out, again, err)
		}
	})
}

// fuzzEngine is one backend shared by the inputs of a fuzz target; each
// input gets fresh storage. Its HTTP client fails every call, so any
// upstream call is seen.
type fuzzEngine struct {
	b        *backend
	upstream *countingTransport
}

type countingTransport struct{ calls int }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.calls++
	return nil, errors.New("fuzz: no upstream call is expected")
}

func newFuzzEngine(f *testing.F) *fuzzEngine {
	f.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.Logger = hclog.NewNullLogger()
	config.System = &testSystemView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
	b := newBackend(defaultRegistry())
	transport := &countingTransport{}
	b.httpClient = &http.Client{Transport: transport}
	if err := b.Setup(context.Background(), config); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Cleanup(context.Background()) })
	return &fuzzEngine{b: b, upstream: transport}
}

func (e *fuzzEngine) do(storage logical.Storage, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: storage, MountPoint: "apikeys/"})
}

// fuzzPathSegment makes s usable as the last segment of a request path:
// framework paths end with (?P<name>.*)$, which a line break would not match.
func fuzzPathSegment(s, fallback string) string {
	s = strings.NewReplacer("\n", "", "\r", "").Replace(s)
	if s == "" {
		return fallback
	}
	return s
}

// fuzzConfigSeeds are real connection writes of every provider, from the
// README and the upstream reference: provider, base_url, the provider's
// fields in declaration order.
var fuzzConfigSeeds = [][]string{
	{"storyden", "https://forum.example.com", "vault-bot", "correct-horse-battery", "", ""},
	{"storyden", "https://forum.example.com/api", "vault-bot", "short", "", ""},
	{"storx", "", "dev@example.com", "developer-password", "one fixed grant passphrase", "https://auth.storx.io"},
	{"storx", "https://storx.io", "dev@example.com", "developer-password", "passphrase", "https://auth.storx.io/?x=1"},
	{"katapult", "https://api.katapult.io/core/v1", "user-token-secret-0123456789", "acme", "uk-lon-1", "apitoken_USER000000000001"},
	{"katapult", "", "org-token-secret-0123456789", "org_ACME0000000000001", "", ""},
	{"katapult", "", "org-token-secret-0123456789", "org_bad-id", "", ""},
	{"dstor", "https://api.dstor.cloud/v1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", "", ""},
	{"dstor", "", "has a space", "", "", ""},
	{"storable", "https://api.storable.io", "client-id", "client secret", "0123456789012345678901234567890123456789", ""},
	{"storable", "", "client:id", "s", "k", ""},
}

// FuzzConfigWrite writes a connection with verify_connection=false: it must
// be stored or refused with a 400 (never a 500 nor an upstream call), the
// answer must not depend on the secret values, a stored connection must
// have a base_url that normalizes to itself, and reading it back must not
// show a secret.
func FuzzConfigWrite(f *testing.F) {
	for _, s := range fuzzConfigSeeds {
		f.Add("forum", s[0], s[1], s[1] != "", s[2], s[3], s[4], s[5], uint8(0), "", "")
	}
	f.Add("forum", "storyden", "https://forum.example.com", true, "vault-bot", "correct-horse-battery", "", "", uint8(0), "api_token", "*,app")
	f.Add("bad name", "storyden", "https://forum.example.com", true, "vault-bot", "correct-horse-battery", "", "", uint8(0), "", "")
	f.Add("forum", "nope", "", false, "", "", "", "", uint8(0), "", "")
	f.Add("forum", "storyden", "https://user:pw@forum.example.com", true, "vault-bot", "correct-horse-battery", "", "", uint8(0), "", "-bad")
	f.Add("forum", "katapult", "", false, "token", "acme", "", "", uint8(1), "rotation_period", "")
	e := newFuzzEngine(f)
	f.Fuzz(func(t *testing.T, name, providerName, baseURL string, baseURLSet bool, v0, v1, v2, v3 string, kinds uint8, extraKey, allowedRoles string) {
		name = fuzzPathSegment(name, "forum")
		p, known := e.b.providers.get(providerName)
		raw := []string{v0, v1, v2, v3}
		build := func(rot bool) map[string]any {
			data := map[string]any{"provider": providerName, "verify_connection": false}
			if baseURLSet {
				data["base_url"] = baseURL
			}
			if allowedRoles != "" {
				data["allowed_roles"] = allowedRoles
			}
			if extraKey != "" {
				data[extraKey] = "3600"
			}
			if !known {
				return data
			}
			for i, f := range p.ConnectionFields() {
				if i >= len(raw) || (kinds>>(i+4))&1 == 1 {
					continue
				}
				v := raw[i]
				if f.Secret && rot {
					v = testutil.Rot(v)
				}
				kind := uint8(0)
				if (kinds>>i)&1 == 1 {
					kind = 1
				}
				data[f.Name] = fuzzValue(kind, v)
			}
			return data
		}
		write := func(rot bool) (logical.Storage, string) {
			storage := &logical.InmemStorage{}
			before := e.upstream.calls
			resp, err := e.do(storage, logical.CreateOperation, "config/"+name, build(rot))
			if err != nil {
				t.Fatalf("config write failed with a Go error (a 500): %v (resp %v)", err, respError(resp))
			}
			if e.upstream.calls != before {
				t.Fatal("a write with verify_connection=false called the upstream")
			}
			if resp != nil && resp.IsError() {
				return nil, respError(resp)
			}
			return storage, ""
		}
		storage, msg := write(false)
		storageRot, msgRot := write(true)
		if msg != msgRot {
			t.Fatalf("the answer depends on a secret value:\n%s\n%s", msg, msgRot)
		}
		if storage == nil {
			if msg == "" {
				t.Fatal("an error response without a message")
			}
			return
		}
		entry, err := getConnection(context.Background(), storage, name)
		if err != nil || entry == nil {
			t.Fatalf("a successful write stored nothing: %v", err)
		}
		if again, err := provider.NormalizeURL(fieldBaseURL, "", entry.BaseURL); err != nil || again != entry.BaseURL {
			t.Fatalf("stored base_url %q normalizes to %q, %v", entry.BaseURL, again, err)
		}
		if _, err := p.Connect(provider.ConnectionConfig{Name: name, BaseURL: entry.BaseURL, Values: entry.Values}); err != nil {
			t.Fatalf("the stored connection does not connect: %v", err)
		}
		// A read must not depend on the secret values: the same write with
		// other secrets reads back the same, but for the random tag and the
		// next scheduled rotation, which follows the clock.
		read := func(s logical.Storage) map[string]any {
			resp, err := e.do(s, logical.ReadOperation, "config/"+name, nil)
			if err != nil || resp == nil {
				t.Fatalf("read back: %v", err)
			}
			delete(resp.Data, "object_name_tag")
			delete(resp.Data, "next_vault_rotation")
			return resp.Data
		}
		if shown, shownRot := read(storage), read(storageRot); !reflect.DeepEqual(shown, shownRot) {
			t.Fatalf("reading the connection shows a secret:\n%v\n%v", shown, shownRot)
		}
	})
}

// fuzzRoleConnections are valid connections, one per provider.
var fuzzRoleConnections = map[string]map[string]any{
	"storyden": {"provider": "storyden", "base_url": "https://forum.example.com", "username": "vault-bot", "password": "correct-horse-battery"},
	"storx":    {"provider": "storx", "email": "dev@example.com", "password": "developer-password", "passphrase": "grant passphrase"},
	"katapult": {"provider": "katapult", "api_token": "user-token-secret-0123456789", "organization": "acme"},
	"dstor":    {"provider": "dstor", "api_key": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	"storable": {"provider": "storable", "client_id": "client-id", "client_secret": "client secret", "api_key": "0123456789012345678901234567890123456789"},
	"storj":    {"provider": "storj", "access_grant": fixedStorjGrant()},
}

// fixedStorjGrant is a genuine access grant of a satellite that does not
// exist: connections in grant mode parse it without an upstream call.
func fixedStorjGrant() string {
	key, err := macaroon.NewAPIKey([]byte("fuzz-project-secret"))
	if err != nil {
		panic(err)
	}
	sat := storj.NodeURL{ID: storj.NodeID{1}, Address: "127.0.0.1:7777"}.String()
	serialized, err := (&grant.Access{SatelliteAddress: sat, APIKey: key, EncAccess: grant.NewEncryptionAccessWithDefaultKey(&storj.Key{})}).Serialize()
	if err != nil {
		panic(err)
	}
	return serialized
}

// FuzzRoleWrite writes a role on a valid connection: it must be stored or
// refused with a 400 (never a 500); a stored role must pass its provider's
// ValidateRole, keep ttl within max_ttl, and writing back what a read shows
// must store the same role.
func FuzzRoleWrite(f *testing.F) {
	f.Add(uint8(0), "app", "", "1h", "24h", "vault", "", "", "", "", "")
	f.Add(uint8(0), "app", "", "2h", "1h", "-x", "", "", "", "", "")
	f.Add(uint8(1), "app", "", "", "", "app@example.com", "App", "assets,logs", "", "download,list", "")
	f.Add(uint8(1), "app", "", "", "", "app@example.com", "", "assets,logs", "p/", "", "")
	f.Add(uint8(1), "app", "", "", "", "not-an-email", "", "all", "", "read", "")
	f.Add(uint8(2), "app", "", "3600", "0", "true", "false", "false", "assets", "logs,assets", "")
	f.Add(uint8(2), "app", "", "", "", "maybe", "", "", "Bad_Bucket", "", "")
	f.Add(uint8(3), "app", "", "", "", "", "", "", "", "", "username")
	f.Add(uint8(4), "app", "nope", "-5", "", "", "", "", "", "", "")
	e := newFuzzEngine(f)
	f.Fuzz(func(t *testing.T, sel uint8, name, connection, ttl, maxTTL, v0, v1, v2, v3, v4, extraKey string) {
		name = fuzzPathSegment(name, "app")
		providerName := fuzzProviderNames[int(sel)%len(fuzzProviderNames)]
		p, _ := e.b.providers.get(providerName)
		storage := &logical.InmemStorage{}
		conn := fuzzRoleConnections[providerName]
		connData := map[string]any{"verify_connection": false}
		for k, v := range conn {
			connData[k] = v
		}
		if resp, err := e.do(storage, logical.CreateOperation, "config/conn", connData); err != nil || (resp != nil && resp.IsError()) {
			t.Fatalf("the fixed %s connection is refused: %v %v", providerName, err, respError(resp))
		}
		if connection == "" {
			connection = "conn"
		}
		data := map[string]any{"connection": connection}
		if ttl != "" {
			data["ttl"] = ttl
		}
		if maxTTL != "" {
			data["max_ttl"] = maxTTL
		}
		if extraKey != "" {
			data[extraKey] = "x"
		}
		raw := []string{v0, v1, v2, v3, v4}
		for i, f := range p.RoleFields() {
			if i < len(raw) && raw[i] != "" {
				data[f.Name] = raw[i]
			}
		}
		resp, err := e.do(storage, logical.CreateOperation, "roles/"+name, data)
		if err != nil {
			t.Fatalf("role write failed with a Go error (a 500): %v (resp %v)", err, respError(resp))
		}
		if resp != nil && resp.IsError() {
			return
		}
		role, err := getRole(context.Background(), storage, name)
		if err != nil || role == nil {
			t.Fatalf("a successful write stored nothing: %v", err)
		}
		if err := p.ValidateRole(role.Values); err != nil {
			t.Fatalf("a stored role fails ValidateRole: %v", err)
		}
		if role.TTL < 0 || role.MaxTTL < 0 || (role.MaxTTL > 0 && role.TTL > role.MaxTTL) {
			t.Fatalf("stored ttl %s, max_ttl %s", role.TTL, role.MaxTTL)
		}
		read, err := e.do(storage, logical.ReadOperation, "roles/"+name, nil)
		if err != nil || read == nil {
			t.Fatalf("read back: %v", err)
		}
		if resp, err := e.do(storage, logical.UpdateOperation, "roles/"+name, read.Data); err != nil || (resp != nil && resp.IsError()) {
			t.Fatalf("writing back the role as read is refused: %v %v (%#v)", err, respError(resp), read.Data)
		}
		again, err := getRole(context.Background(), storage, name)
		if err != nil || !reflect.DeepEqual(again, role) {
			t.Fatalf("writing back the role as read changed it:\n%#v\n%#v", role, again)
		}
	})
}
