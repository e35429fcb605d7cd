package backend

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/dstor"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/katapult"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storable"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storj"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storx"
	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/storyden"
)

// defaultRegistry lists every provider the plugin ships. Adding a provider is
// one line here plus its own folder.
func defaultRegistry() *registry {
	return newRegistry(
		storyden.New(),
		storx.New(),
		katapult.New(),
		dstor.New(),
		storable.New(),
		storj.New(),
	)
}

// registry holds the providers by name.
type registry struct {
	byName map[string]provider.Provider
	names  []string
}

func newRegistry(providers ...provider.Provider) *registry {
	r := &registry{byName: map[string]provider.Provider{}}
	for _, p := range providers {
		for _, f := range p.RoleFields() {
			if f.Secret {
				// Role values are copied into WAL entries and shown by role reads.
				panic(fmt.Sprintf("provider %s declares secret role field %q; roles cannot hold secrets", p.Name(), f.Name))
			}
		}
		r.byName[p.Name()] = p
		r.names = append(r.names, p.Name())
	}
	sort.Strings(r.names)
	return r
}

func (r *registry) get(name string) (provider.Provider, bool) {
	p, ok := r.byName[name]
	return p, ok
}

func (r *registry) list() string { return strings.Join(r.names, ", ") }

// fieldOwners maps each provider field name to the providers that declare it.
func (r *registry) fieldOwners(fields func(provider.Provider) []provider.Field) map[string][]string {
	owners := map[string][]string{}
	for _, name := range r.names {
		for _, f := range fields(r.byName[name]) {
			owners[f.Name] = append(owners[f.Name], name)
		}
	}
	return owners
}

// schema merges the providers' fields into Vault field schemas. Providers may
// share a field name only with the same type; each description says which
// providers use the field.
func (r *registry) schema(fields func(provider.Provider) []provider.Field) map[string]*framework.FieldSchema {
	merged := map[string]*framework.FieldSchema{}
	types := map[string]provider.FieldType{}
	for _, name := range r.names {
		for _, f := range fields(r.byName[name]) {
			desc := fmt.Sprintf("(%s) %s", name, f.Description)
			if existing, ok := merged[f.Name]; ok {
				if types[f.Name] != f.Type {
					panic(fmt.Sprintf("providers declare field %q with different types", f.Name))
				}
				existing.Description += " " + desc
				existing.DisplayAttrs.Sensitive = existing.DisplayAttrs.Sensitive || f.Secret
				continue
			}
			types[f.Name] = f.Type
			merged[f.Name] = &framework.FieldSchema{
				Type:         frameworkType(f.Type),
				Description:  desc,
				DisplayAttrs: &framework.DisplayAttributes{Name: f.Name, Sensitive: f.Secret},
			}
		}
	}
	return merged
}

func frameworkType(t provider.FieldType) framework.FieldType {
	switch t {
	case provider.TypeBool:
		return framework.TypeBool
	case provider.TypeStringList:
		return framework.TypeCommaStringSlice
	case provider.TypeInt:
		return framework.TypeInt
	}
	return framework.TypeString
}
