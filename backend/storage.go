package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// Storage schema versions. Every stored entry (connection, role, static
// role, inventory, WAL) and every lease's internal data carries one, so a
// plugin that meets data written by a newer release refuses it instead of
// misreading it or overwriting what it does not know.
//
//   - 1: v0.1.0, which wrote no version; an entry without one is version 1.
//   - 2: the first release that writes schema_version. Its layout is
//     version 1's plus optional fields, so a version 1 entry needs no change.
//   - 3: an issue records its object in the inventory in state pending
//     before the upstream create, instead of a WAL entry. A version 2 reader
//     would take a pending entry for a live credential and never roll it
//     back. Version 2 entries (and their WAL entries) need no change.
//
// A new version is added here whenever an older reader would misread an
// entry; readers keep accepting every version ever released.
const (
	oldestSchemaVersion  = 1
	currentSchemaVersion = 3
)

// errNewerSchema marks data written by a newer plugin than this one.
var errNewerSchema = errors.New("written by a newer version of the plugin")

// newerSchemaError says which data is too new and what to do about it.
func newerSchemaError(what string, found int) error {
	return fmt.Errorf("%s was %w (storage schema %d; this plugin version %s reads schemas %d to %d): switch the mount back to the newer plugin version with vault secrets tune -plugin-version; nothing was changed",
		what, errNewerSchema, found, Version, oldestSchemaVersion, currentSchemaVersion)
}

// schemaHeader is embedded in every stored entry.
type schemaHeader struct {
	SchemaVersion int `json:"schema_version,omitempty"`
}

func (h *schemaHeader) header() *schemaHeader { return h }

// checkSchema accepts every released version; 0 is v0.1.0's missing field.
func (h *schemaHeader) checkSchema(what string) error {
	if h.SchemaVersion > currentSchemaVersion {
		return newerSchemaError(what, h.SchemaVersion)
	}
	return nil
}

// versioned is a stored entry: a pointer to a struct embedding schemaHeader.
type versioned[T any] interface {
	*T
	header() *schemaHeader
}

// readStored decodes the JSON entry at key into a new T; nil, nil when there
// is none. what names the entry in errors, e.g. `role "app"`. An entry of a
// newer schema than this plugin knows is refused, so that nothing built from
// it is ever written back.
func readStored[T any, PT versioned[T]](ctx context.Context, s logical.Storage, key, what string) (*T, error) {
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
	if err := PT(&v).header().checkSchema(what); err != nil {
		return nil, err
	}
	return &v, nil
}

// writeStored stores v as JSON at key, stamped with the current schema
// version. what names the entry in errors.
func writeStored[T any, PT versioned[T]](ctx context.Context, s logical.Storage, key, what string, v PT) error {
	v.header().SchemaVersion = currentSchemaVersion
	entry, err := logical.StorageEntryJSON(key, v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}
