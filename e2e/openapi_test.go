package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPI_EveryPathAndFieldIsDocumented reads Vault's own OpenAPI
// document for a mount of the plugin and fails on any path, operation,
// parameter or body field without a description, any operation outside the
// apikeys prefix, any secret field not marked sensitive, and any operation id
// the mount's operations share with each other or with the rest of the
// document.
func TestOpenAPI_EveryPathAndFieldIsDocumented(t *testing.T) {
	mount := newMount(t, "openapi")
	resp, err := vault.client.Logical().Read("sys/internal/specs/openapi")
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := resp.Data["paths"].(map[string]any)
	schemas, _ := resp.Data["components"].(map[string]any)["schemas"].(map[string]any)
	var problems, seen []string
	for path, raw := range paths {
		if !strings.HasPrefix(path, "/"+mount+"/") {
			continue
		}
		seen = append(seen, strings.TrimPrefix(path, "/"+mount))
		problems = append(problems, checkPathItem(path, raw.(map[string]any))...)
	}
	problems = append(problems, checkRequestSchemas(schemas)...)
	problems = append(problems, checkUniqueOperationIDs(paths, mount)...)
	sort.Strings(seen)
	want := []string{"/config/", "/config/{name}", "/creds/{role}", "/inventory/{connection}", "/inventory/{connection}/", "/metrics",
		"/roles/", "/roles/{name}", "/rotate-role/{name}", "/rotate-root/{name}", "/static-creds/{name}",
		"/static-roles/", "/static-roles/{name}", "/tidy/{connection}"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("paths in the OpenAPI document:\n got %v\nwant %v", seen, want)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

var secretFields = map[string]bool{"password": true, "passphrase": true, "api_key": true, "api_token": true, "client_secret": true, "client_key": true}

func checkPathItem(path string, item map[string]any) []string {
	var problems []string
	if desc, _ := item["description"].(string); strings.TrimSpace(desc) == "" {
		problems = append(problems, path+": no description")
	}
	for _, p := range asList(item["parameters"]) {
		param := p.(map[string]any)
		if desc, _ := param["description"].(string); desc == "" {
			problems = append(problems, fmt.Sprintf("%s: parameter %v has no description", path, param["name"]))
		}
	}
	for _, method := range []string{"get", "post", "delete"} {
		op, ok := item[method].(map[string]any)
		if !ok {
			continue
		}
		if id, _ := op["operationId"].(string); !strings.HasPrefix(id, "apikeys-") {
			problems = append(problems, fmt.Sprintf("%s %s: operationId %q lacks the apikeys prefix", method, path, id))
		}
		if summary, _ := op["summary"].(string); summary == "" {
			problems = append(problems, fmt.Sprintf("%s %s: no summary", method, path))
		}
	}
	return problems
}

// checkRequestSchemas checks every request body schema of the plugin
// (named after its operation ids, so Apikeys…).
func checkRequestSchemas(schemas map[string]any) []string {
	var problems []string
	found := 0
	for name, raw := range schemas {
		if !strings.HasPrefix(name, "Apikeys") {
			continue
		}
		found++
		props, _ := raw.(map[string]any)["properties"].(map[string]any)
		for field, rawProp := range props {
			prop := rawProp.(map[string]any)
			if desc, _ := prop["description"].(string); strings.TrimSpace(desc) == "" {
				problems = append(problems, fmt.Sprintf("%s: field %s has no description", name, field))
			}
			if secretFields[field] && dig(prop, "x-vault-displayAttrs", "sensitive") != true {
				problems = append(problems, fmt.Sprintf("%s: secret field %s is not marked sensitive", name, field))
			}
		}
	}
	if found == 0 {
		problems = append(problems, "no Apikeys request schemas in the OpenAPI document")
	}
	return problems
}

// checkUniqueOperationIDs requires each operation id of the mount to name
// one operation in the whole document: no other operation of the mount, of
// Vault or of another engine shares it. Other mounts of the plugin (other
// tests') repeat the mount's ids by nature, as two mounts of any engine do,
// so they are left out; ids Vault's own paths share among themselves (it has
// a few) are not the plugin's to fix.
func checkUniqueOperationIDs(paths map[string]any, mount string) []string {
	owners := map[string][]string{}
	ours := map[string]bool{}
	for path, raw := range paths {
		inMount := strings.HasPrefix(path, "/"+mount+"/")
		for _, method := range []string{"get", "post", "patch", "delete"} {
			id, _ := dig(raw, method, "operationId").(string)
			if id == "" || (!inMount && strings.HasPrefix(id, "apikeys-")) {
				continue
			}
			owners[id] = append(owners[id], method+" "+path)
			ours[id] = ours[id] || inMount
		}
	}
	var problems []string
	for id, ops := range owners {
		if ours[id] && len(ops) > 1 {
			sort.Strings(ops)
			problems = append(problems, fmt.Sprintf("operationId %q is shared by %v", id, ops))
		}
	}
	return problems
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
