package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// readStored decodes the JSON entry at key into a new T; nil, nil when there
// is none. what names the entry in errors, e.g. `role "app"`.
func readStored[T any](ctx context.Context, s logical.Storage, key, what string) (*T, error) {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if entry == nil {
		return nil, nil
	}
	var v T
	if err := entry.DecodeJSON(&v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return &v, nil
}

// writeStored stores v as JSON at key. what names the entry in errors.
func writeStored(ctx context.Context, s logical.Storage, key, what string, v any) error {
	entry, err := logical.StorageEntryJSON(key, v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}
