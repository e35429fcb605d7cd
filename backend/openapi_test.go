package backend

import (
	"context"
	"sort"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Every operation of the engine has its own OpenAPI operation id: client
// generators name a method after it, and two operations with one id give one
// method (or none).
func TestOpenAPI_OperationIDsAreUnique(t *testing.T) {
	env := newTestEnv(t)
	// The root help names the Vault version the document is for.
	env.b.System().(*testSystemView).PluginEnvironment = &logical.PluginEnvironment{VaultVersion: "v1.21.0"}
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HelpOperation, Storage: env.storage})
	if err != nil {
		t.Fatal(err)
	}
	doc, ok := resp.Data["openapi"].(*framework.OASDocument)
	if !ok {
		t.Fatalf("no OpenAPI document in the help response: %#v", resp.Data)
	}
	owners := map[string][]string{}
	for path, item := range doc.Paths {
		for method, op := range map[string]*framework.OASOperation{"get": item.Get, "post": item.Post, "patch": item.Patch, "delete": item.Delete} {
			if op != nil {
				owners[op.OperationID] = append(owners[op.OperationID], method+" "+path)
			}
		}
	}
	for id, ops := range owners {
		if len(ops) > 1 {
			sort.Strings(ops)
			t.Errorf("operation id %q is shared by %v", id, ops)
		}
	}
	for id, want := range map[string]string{
		"apikeys-generate-credentials":                 "get /creds/{role}",
		"apikeys-generate-credentials-with-parameters": "post /creds/{role}",
	} {
		if got := owners[id]; len(got) != 1 || got[0] != want {
			t.Errorf("operation id %q belongs to %v, want %s", id, got, want)
		}
	}
}
