package backend

// Issue 14, item 4: a lease is bound to the upstream account that issued it.
// A revoke through a connection whose base URL or account changed since
// would ask another account, where the credential is missing: Storyden and
// Katapult answer "not found", StorX answers 200 either way, and each of
// those reads as "revoked" while the credential lives on.

import (
	"context"
	"maps"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	katapultemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/sandbox"
	storxemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storx"
	storydenemu "github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/bootstrap/storyden"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/internal/testutil"
)

const (
	bindStorydenOther     = "second-service"
	bindStorydenOtherPass = "second-service-password"
	bindStorxOther        = "other-dev@example.com"
	bindStorxOtherPass    = "other-storx-developer-password"
	bindKatapultOtherOrg  = "globex"
	bindKatapultOther     = "binding-katapult-globex-token-0123"
)

// bindingProvider starts a revocable provider's emulators with a second
// account beside the connection's.
type bindingProvider struct {
	name string
	// start runs the emulators into e.servers and returns the connection's
	// fields, the role's, and the fields that point the connection at the
	// other account in the same emulators.
	start func(e *fmEnv) (config, role, other map[string]any)
	// moved are the fields that point the connection at another instance.
	moved []string
}

func bindingProviders() []bindingProvider {
	return []bindingProvider{
		{
			name: "storyden",
			start: func(e *fmEnv) (map[string]any, map[string]any, map[string]any) {
				srv := testutil.StartEmulator(e.t, storydenemu.New(storydenemu.Options{Accounts: []storydenemu.Account{
					{Handle: adminHandle, Password: adminPassword, Admin: true},
					{Handle: bindStorydenOther, Password: bindStorydenOtherPass, Permissions: []string{storydenemu.PermissionUsePersonalAccessKeys}},
				}}))
				e.servers["main"] = srv
				return map[string]any{"provider": "storyden", "base_url": srv.URL(), "username": adminHandle, "password": adminPassword},
					map[string]any{},
					map[string]any{"username": bindStorydenOther, "password": bindStorydenOtherPass}
			},
			moved: []string{"base_url"},
		},
		{
			name: "storx",
			start: func(e *fmEnv) (map[string]any, map[string]any, map[string]any) {
				sat := storxemu.New(storxemu.Options{
					Developers: []storxemu.Developer{{Email: fmStorxEmail, Password: fmStorxPassword}, {Email: bindStorxOther, Password: bindStorxOtherPass}},
					RateBurst:  1000,
				})
				e.servers["main"] = testutil.StartEmulator(e.t, sat)
				e.servers["auth"] = testutil.StartEmulator(e.t, storxemu.NewAuthService(sat, storxemu.AuthOptions{}))
				return map[string]any{
						"provider": "storx", "base_url": e.servers["main"].URL(), "auth_url": e.servers["auth"].URL(),
						"email": fmStorxEmail, "password": fmStorxPassword, "passphrase": fmStorxPassphrase,
					},
					map[string]any{"user_email": fmStorxUser},
					map[string]any{"email": bindStorxOther, "password": bindStorxOtherPass}
			},
			moved: []string{"base_url", "auth_url"},
		},
		{
			name: "katapult",
			start: func(e *fmEnv) (map[string]any, map[string]any, map[string]any) {
				srv := testutil.StartEmulator(e.t, katapultemu.New(katapultemu.Options{
					Organizations: []katapultemu.Organization{
						{SubDomain: "acme", Buckets: []string{"data"}},
						{SubDomain: bindKatapultOtherOrg, Buckets: []string{"data"}},
					},
					Tokens: []katapultemu.Token{
						{ID: fmKatapultTokenID, Secret: fmKatapultToken, Organization: "acme", User: "vault"},
						{ID: "apitoken_BINDING000000001", Secret: bindKatapultOther, Organization: bindKatapultOtherOrg, User: "vault-globex"},
					},
					ProvisioningDelay: -1,
					RateLimit:         1_000_000,
				}))
				e.servers["main"] = srv
				return map[string]any{"provider": "katapult", "base_url": srv.URL() + "/core/v1", "api_token": fmKatapultToken, "organization": "acme"},
					map[string]any{"read_buckets": "data"},
					map[string]any{"organization": bindKatapultOtherOrg, "api_token": bindKatapultOther}
			},
			moved: []string{"base_url"},
		},
	}
}

// TestRevokeBoundToIssuingAccount: for every revocable provider, with live
// leases, the connection moves to another emulator instance, to another
// account in the same emulator, or is deleted and written again for another
// account. Each revoke then fails, saying what changed and what to do, and
// the credential stays live upstream; nothing is reported revoked while it
// lives. Moving an existing connection needs confirm_account_change=true,
// and a write without it stores nothing. Once the connection points back
// (after a delete, under a new object_name_tag) every revoke succeeds and
// the credentials are gone upstream.
func TestRevokeBoundToIssuingAccount(t *testing.T) {
	changes := []string{"base_url moved", "account changed", "deleted and written again"}
	fm := map[string]*fmProvider{}
	for _, p := range fmProviders() {
		fm[p.name] = p
	}
	for _, bp := range bindingProviders() {
		for _, change := range changes {
			t.Run(bp.name+"/"+change, func(t *testing.T) {
				var config, other map[string]any
				p := *fm[bp.name]
				p.start = func(e *fmEnv) (map[string]any, map[string]any) {
					c, role, o := bp.start(e)
					config, other = c, o
					return maps.Clone(c), role
				}
				e := newFMEnv(t, &p, fmColumn{name: "binding"})
				prov, _ := e.b.providers.get(bp.name)
				for _, f := range prov.ConnectionFields() {
					if s := fmStr(other, f.Name); f.Secret && s != "" {
						e.secrets = append(e.secrets, s)
					}
				}
				ctx := context.Background()
				leases := []*logical.Response{e.mustIssue(), e.mustIssue()}
				issuedTag := e.connection().Tag

				// restore points the connection back at the issuing account.
				var target, restore map[string]any
				switch change {
				case "base_url moved":
					scratch := &fmEnv{t: t, servers: map[string]*sandbox.Server{}}
					elsewhere, _, _ := bp.start(scratch)
					target, restore = map[string]any{}, map[string]any{}
					for _, k := range bp.moved {
						target[k], restore[k] = elsewhere[k], config[k]
					}
				case "account changed", "deleted and written again":
					target, restore = other, map[string]any{}
					for k := range other {
						restore[k] = config[k]
					}
				}

				if change == "deleted and written again" {
					e.must(logical.DeleteOperation, "config/"+fmConn, nil)
					rewritten := maps.Clone(config)
					maps.Copy(rewritten, target)
					rewritten["allow_http"] = true
					e.must(logical.CreateOperation, "config/"+fmConn, rewritten)
				} else {
					before, err := e.storage.Get(ctx, configStoragePrefix+fmConn)
					if err != nil {
						t.Fatal(err)
					}
					resp, err := e.request(logical.UpdateOperation, "config/"+fmConn, target)
					msg := e.failure(resp, err)
					if err != nil || !resp.IsError() {
						t.Fatalf("moving a connection with live credentials without confirm_account_change: want a 400, got %v %v", resp, err)
					}
					for _, want := range []string{"2 credential", "confirm_account_change=true", "nothing was stored", "inventory/" + fmConn} {
						if !strings.Contains(msg, want) {
							t.Errorf("the refusal does not say %q: %s", want, msg)
						}
					}
					after, _ := e.storage.Get(ctx, configStoragePrefix+fmConn)
					if string(after.Value) != string(before.Value) {
						t.Fatal("a refused config write changed the stored connection")
					}
					confirmed := maps.Clone(target)
					confirmed[fieldConfirmAccountChange] = true
					e.must(logical.UpdateOperation, "config/"+fmConn, confirmed)
					if raw, _ := e.storage.Get(ctx, configStoragePrefix+fmConn); strings.Contains(string(raw.Value), fieldConfirmAccountChange) {
						t.Error("confirm_account_change was stored")
					}
				}

				for _, lease := range leases {
					msg := e.revoke(lease)
					if msg == "" {
						t.Fatalf("the revoke through the changed connection was reported done")
					}
					fingerprint := fmStr(roundTrip(t, lease.Secret).InternalData, internalFingerprint)
					wants := []string{errAccountMoved.Error(), "base_url", "config/" + fmConn, "vault lease revoke -force -prefix", fingerprint}
					if change == "deleted and written again" {
						wants = append(wants, "deleted and written again", issuedTag)
					}
					for _, want := range wants {
						if !strings.Contains(msg, want) {
							t.Errorf("the revoke error does not say %q: %s", want, msg)
						}
					}
					if !e.liveUpstream(lease) {
						t.Errorf("the credential is gone upstream though its revoke failed")
					}
				}

				restored := maps.Clone(restore)
				restored[fieldConfirmAccountChange] = true
				e.must(logical.UpdateOperation, "config/"+fmConn, restored)
				if change == "deleted and written again" && e.connection().Tag == issuedTag {
					t.Fatal("the connection written again kept its object_name_tag; the case proves nothing")
				}
				for _, lease := range leases {
					e.mustRevoke(lease)
					if e.liveUpstream(lease) {
						t.Errorf("the credential still lives upstream after its revoke succeeded")
					}
				}
				e.checkOrphans("after restoring the connection and revoking")
			})
		}
	}
}

// liveUpstream reports whether a lease's credential still grants access on
// the servers it was issued by.
func (e *fmEnv) liveUpstream(lease *logical.Response) bool {
	e.t.Helper()
	for _, o := range e.servers["main"].Objects() {
		if o.Live && e.p.accounts(e.t, "main", o, lease.Data) {
			return true
		}
	}
	return false
}

// TestRevokeWithNothingUpstreamIgnoresAccount: dStor and Storable delete
// nothing upstream on revoke, so a lease of theirs still ends after its
// connection moved, and a move needs no confirmation: their inventory is
// empty.
func TestRevokeWithNothingUpstreamIgnoresAccount(t *testing.T) {
	for _, p := range fmProviders() {
		if p.name != "dstor" && p.name != "storable" {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			e := newFMEnv(t, p, fmColumn{name: "binding"})
			lease := e.mustIssue()
			scratch := &fmEnv{t: t, servers: map[string]*sandbox.Server{}}
			elsewhere, _ := p.start(scratch)
			e.must(logical.UpdateOperation, "config/"+fmConn, map[string]any{"base_url": elsewhere["base_url"]})
			e.mustRevoke(lease)
		})
	}
}

// TestAccountFingerprint: the fingerprint moves with base_url and the
// provider's Account fields only, and is 16 hex characters.
func TestAccountFingerprint(t *testing.T) {
	b := newBackend(defaultRegistry())
	base := map[string]*connectionEntry{
		"storyden": {BaseURL: "https://forum.example.com", Values: map[string]any{"username": "vault", "password": "one-password"}},
		"storx":    {BaseURL: "https://storx.example.com", Values: map[string]any{"email": "dev@example.com", "password": "p", "passphrase": "q", "auth_url": "https://auth.example.com"}},
		"katapult": {BaseURL: "https://api.katapult.io/core/v1", Values: map[string]any{"organization": "acme", "api_token": "t", "region": "uk-lon"}},
		"storable": {BaseURL: "https://api.storable.io", Values: map[string]any{"client_id": "c", "client_secret": "s", "api_key": "k"}},
		"dstor":    {BaseURL: "https://api.dstor.cloud/v1", Values: map[string]any{"api_key": "k"}},
	}
	cases := []struct {
		provider, name string
		baseURL        string
		values         map[string]any
		moves          bool
	}{
		{"storyden", "new password", "", map[string]any{"password": "another-password"}, false},
		{"storyden", "host case and trailing slash", "https://Forum.Example.com/", nil, false},
		{"storyden", "other host", "https://forum2.example.com", nil, true},
		{"storyden", "other username", "", map[string]any{"username": "other"}, true},
		{"storx", "new auth_url", "", map[string]any{"auth_url": "https://auth2.example.com"}, false},
		{"storx", "new passphrase", "", map[string]any{"passphrase": "r"}, false},
		{"storx", "other email", "", map[string]any{"email": "other@example.com"}, true},
		{"katapult", "new token and region", "", map[string]any{"api_token": "u", "region": "nl-ams"}, false},
		{"katapult", "other organization", "", map[string]any{"organization": "globex"}, true},
		{"storable", "other client", "", map[string]any{"client_id": "d"}, true},
		{"storable", "new api_key", "", map[string]any{"api_key": "l"}, false},
		{"dstor", "new api_key", "", map[string]any{"api_key": "l"}, false},
		{"dstor", "other path", "https://api.dstor.cloud/v2", nil, true},
	}
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, tc := range cases {
		t.Run(tc.provider+"/"+tc.name, func(t *testing.T) {
			p, _ := b.providers.get(tc.provider)
			was := base[tc.provider]
			changed := &connectionEntry{BaseURL: was.BaseURL, Values: maps.Clone(was.Values)}
			if tc.baseURL != "" {
				changed.BaseURL = tc.baseURL
			}
			maps.Copy(changed.Values, tc.values)
			before, after := accountFingerprint(p, was), accountFingerprint(p, changed)
			if !hex16.MatchString(before) {
				t.Fatalf("fingerprint %q is not 16 hex characters", before)
			}
			if (before != after) != tc.moves {
				t.Errorf("fingerprint %s → %s; want a change: %v", before, after, tc.moves)
			}
			// A cached entry keeps its fingerprint; a copy of it changed
			// as a config write changes it must not answer from that.
			cached := *was
			cached.account = newAccountMemo(p, &cached)
			copied := cached
			copied.BaseURL, copied.Values = changed.BaseURL, changed.Values
			if got := cached.accountFingerprint(p); got != before {
				t.Errorf("the cached entry answers %s, want %s", got, before)
			}
			if got := copied.accountFingerprint(p); got != after {
				t.Errorf("a changed copy of the cached entry answers %s, want %s", got, after)
			}
		})
	}
	for _, name := range []string{"storyden", "storx", "katapult", "storable", "dstor"} {
		p, _ := b.providers.get(name)
		for _, f := range p.ConnectionFields() {
			if f.Account && f.Secret {
				t.Errorf("%s's %s is both Account and Secret: a secret would be hashed into every lease", name, f.Name)
			}
		}
	}
}
