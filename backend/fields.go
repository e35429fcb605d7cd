package backend

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

// namePattern is framework.GenericNameRegex anchored: the rule every
// connection and role name follows.
var namePattern = regexp.MustCompile(`^\w(([\w-.]+)?\w)?$`)

func validateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q is not valid: use letters, digits, '_', '-' and '.', starting and ending with a letter, digit or '_'", kind, name)
	}
	return nil
}

// checkFieldNames refuses request fields that are neither common nor the
// provider's own, saying which provider a misplaced field belongs to.
func checkFieldNames(data map[string]any, common map[string]bool, own []provider.Field, owners map[string][]string, providerName string) error {
	allowed := map[string]bool{}
	for k := range common {
		allowed[k] = true
	}
	for _, f := range own {
		allowed[f.Name] = true
	}
	var problems []string
	for _, key := range sortedKeys(data) {
		if allowed[key] {
			continue
		}
		if others := owners[key]; len(others) > 0 {
			problems = append(problems, fmt.Sprintf("%s is a field of provider %s, not %s", key, strings.Join(others, "/"), providerName))
			continue
		}
		problems = append(problems, fmt.Sprintf("%s is not a known field", key))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s; the fields for provider %s are: %s", strings.Join(problems, "; "), providerName, strings.Join(sortedKeys(allowed), ", "))
}

// applyFields sets the provider fields present in data on top of base (the
// stored values on update). On create, defaults fill what is missing. Required
// fields must end up non-empty.
func applyFields(fields []provider.Field, data map[string]any, base provider.Values, creating bool) (provider.Values, error) {
	out := base.Clone()
	for _, f := range fields {
		raw, given := data[f.Name]
		switch {
		case given:
			v, err := f.Normalize(raw)
			if err != nil {
				return nil, err
			}
			out[f.Name] = v
		case creating && f.Default != nil:
			out[f.Name] = f.Default
		}
		if f.Required && isEmpty(out[f.Name]) {
			return nil, fmt.Errorf("%s is required: %s", f.Name, f.Description)
		}
	}
	return out, nil
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []string:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// publicValues drops secret fields, for reads.
func publicValues(fields []provider.Field, values provider.Values) map[string]any {
	out := map[string]any{}
	for _, f := range fields {
		if f.Secret {
			continue
		}
		if v, ok := values[f.Name]; ok {
			out[f.Name] = v
		}
	}
	return out
}

// inputProblem parses the request's values as the framework will, field by
// field in name order, and describes the first that does not parse, without
// quoting it. The framework's own check quotes the value, which may be a
// secret (api_token=a api_token=b makes a list), and goes through the fields
// in random order, so two bad fields gave one of two answers.
func (b *backend) inputProblem(req *logical.Request) string {
	switch req.Operation {
	case logical.RenewOperation, logical.RevokeOperation, logical.RollbackOperation:
		return "" // they carry a lease's data, not fields
	}
	if len(req.Data) == 0 {
		return ""
	}
	path := b.Route(req.Path)
	if path == nil {
		return ""
	}
	fd := &framework.FieldData{Raw: req.Data, Schema: path.Fields}
	for _, name := range sortedKeys(req.Data) {
		schema, known := path.Fields[name]
		if !known {
			continue
		}
		if _, _, err := fd.GetOkErr(name); err != nil {
			return fmt.Sprintf("%s must be %s", name, expectedValue(schema.Type))
		}
	}
	return ""
}

// expectedValue describes the values a field of type t takes.
func expectedValue(t framework.FieldType) string {
	switch t {
	case framework.TypeBool:
		return "true or false"
	case framework.TypeInt, framework.TypeInt64:
		return "a whole number"
	case framework.TypeDurationSecond, framework.TypeSignedDurationSecond:
		return "a duration: a number of seconds or a value such as 90s, 15m or 24h"
	case framework.TypeCommaStringSlice, framework.TypeStringSlice:
		return "a list of strings, or one comma-separated string"
	case framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString:
		return "a single string: give it once, not as a list or an object"
	}
	return "a value of type " + t.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
