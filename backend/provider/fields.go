package provider

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FieldType is the type of a provider field's value.
type FieldType int

// Field types a provider may declare.
const (
	TypeString FieldType = iota
	TypeBool
	TypeStringList
	TypeInt
)

// Field is one connection or role field a provider accepts.
type Field struct {
	Name        string
	Type        FieldType
	Description string
	// Required fields must be set when the connection or role is created.
	Required bool
	// Secret fields are write-only: never returned by reads, Sensitive in the UI.
	Secret bool
	// Default applies when the field is omitted at create time.
	Default any
	// Allowed, when set, lists every value a string or each item of a list may take.
	Allowed []string
	// NamePrefix marks the role field whose value replaces "vault" at the
	// front of upstream object names.
	NamePrefix bool
	// URL marks a connection field holding an upstream address that
	// credentials are sent to; the engine holds it to base_url's rule:
	// https:// unless the connection sets allow_http.
	URL bool
	// Account marks a connection field that names the upstream account the
	// connection's credentials live in (with base_url). A lease is bound to
	// these values: a revoke through a connection whose account fields
	// changed would ask another account and could miss the credential.
	// Never set it on a Secret field: the values are hashed into a
	// fingerprint kept in the clear.
	Account bool
}

// Values holds field values as decoded from a request or from storage (after a
// JSON round trip lists are []any and numbers float64, so read them through
// the getters).
type Values map[string]any

// String returns a string value, "" when unset.
func (v Values) String(name string) string {
	s, _ := v[name].(string)
	return s
}

// Bool returns a bool value, false when unset.
func (v Values) Bool(name string) bool {
	b, _ := v[name].(bool)
	return b
}

// Int returns an integer value, 0 when unset.
func (v Values) Int(name string) int {
	switch n := v[name].(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	}
	return 0
}

// Strings returns a list value, nil when unset.
func (v Values) Strings(name string) []string {
	switch l := v[name].(type) {
	case []string:
		return l
	case []any:
		out := make([]string, 0, len(l))
		for _, item := range l {
			if s, ok := item.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Clone returns a shallow copy.
func (v Values) Clone() Values {
	out := make(Values, len(v))
	for k, val := range v {
		out[k] = val
	}
	return out
}

// Normalize converts a raw value to the field's type, the way Vault's framework
// does for its own field types, and checks Allowed.
func (f Field) Normalize(raw any) (any, error) {
	switch f.Type {
	case TypeString:
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s must be a string", ErrInvalidInput, f.Name)
		}
		s = strings.TrimSpace(s)
		if s != "" && len(f.Allowed) > 0 && !contains(f.Allowed, s) {
			return nil, fmt.Errorf("%w: %s=%q is not allowed; use one of %s", ErrInvalidInput, f.Name, s, strings.Join(f.Allowed, ", "))
		}
		return s, nil
	case TypeBool:
		return normalizeBool(f.Name, raw)
	case TypeInt:
		return normalizeInt(f.Name, raw)
	case TypeStringList:
		return f.normalizeList(raw)
	}
	return nil, fmt.Errorf("field %s has an unknown type", f.Name)
}

func normalizeBool(name string, raw any) (any, error) {
	switch b := raw.(type) {
	case bool:
		return b, nil
	case string:
		parsed, err := strconv.ParseBool(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s must be true or false", ErrInvalidInput, name)
		}
		return parsed, nil
	}
	return nil, fmt.Errorf("%w: %s must be true or false", ErrInvalidInput, name)
}

func normalizeInt(name string, raw any) (any, error) {
	switch n := raw.(type) {
	case int:
		return n, nil
	case float64:
		// The bounds keep int(n) defined: a float past them has no int.
		if n >= math.MinInt64 && n < math.MaxInt64 && n == math.Trunc(n) {
			return int(n), nil
		}
	case json.Number:
		// Vault hands a plugin every JSON number, from a request or from
		// storage, in this form.
		return normalizeInt(name, string(n))
	case string:
		if parsed, err := strconv.Atoi(n); err == nil {
			return parsed, nil
		}
	}
	return nil, fmt.Errorf("%w: %s must be a whole number", ErrInvalidInput, name)
}

func (f Field) normalizeList(raw any) (any, error) {
	var items []string
	switch l := raw.(type) {
	case string:
		items = strings.Split(l, ",")
	case []string:
		items = l
	case []any:
		for _, item := range l {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s must be a list of strings", ErrInvalidInput, f.Name)
			}
			items = append(items, s)
		}
	default:
		return nil, fmt.Errorf("%w: %s must be a list of strings", ErrInvalidInput, f.Name)
	}
	out := make([]string, 0, len(items))
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" || contains(out, item) {
			continue
		}
		if len(f.Allowed) > 0 && !contains(f.Allowed, item) {
			return nil, fmt.Errorf("%w: %s may not contain %q; use only %s", ErrInvalidInput, f.Name, item, strings.Join(f.Allowed, ", "))
		}
		out = append(out, item)
	}
	sort.Strings(out)
	return out, nil
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}

// Timestamp formats t as RFC 3339 UTC with second precision, the form every
// expires_at in a credential uses.
func Timestamp(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}
