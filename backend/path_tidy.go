package backend

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

const (
	fieldDryRun       = "dry_run"
	fieldSafetyBuffer = "safety_buffer"
)

func (b *backend) pathInventory() []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "inventory/" + framework.GenericNameRegex(fieldConnection) + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "inventory"},
			Fields: map[string]*framework.FieldSchema{
				fieldConnection: {Type: framework.TypeString, Required: true, Description: "Name of the connection."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathInventoryList, Summary: "List the names of the upstream objects the plugin created on a connection."},
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathInventoryRead, Summary: "Read every upstream object the plugin created on a connection."},
			},
			HelpSynopsis: "The upstream objects the plugin created on a connection and has not seen deleted.",
			HelpDescription: `Every object the plugin creates upstream is recorded with its id, role,
creation time and lease end (moved on by renewals), and dropped when revoke or
rollback deletes it. Providers that create nothing deletable upstream (dstor,
storable) record nothing.`,
		},
		{
			Pattern:      "tidy/" + framework.GenericNameRegex(fieldConnection),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "tidy", OperationSuffix: "connection"},
			Fields: map[string]*framework.FieldSchema{
				fieldConnection:   {Type: framework.TypeString, Required: true, Description: "Name of the connection."},
				fieldDryRun:       {Type: framework.TypeBool, Default: true, Description: "Only report; set false to delete what is expired or unknown upstream, and drop the inventory entries of objects gone upstream."},
				fieldSafetyBuffer: {Type: framework.TypeDurationSecond, Default: 3600, Description: "Leave alone anything whose lease ended, or that was created, less than this long ago."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: clusterWriteOperation(b.pathTidyWrite, "Compare the inventory with what the upstream lists, and optionally delete leftovers."),
			},
			HelpSynopsis: "Find (and with dry_run=false delete) upstream objects no live lease accounts for.",
			HelpDescription: `Lists the connection's objects upstream and sorts them against the
inventory: live (a lease holds them), expired (their lease ended but they are
still upstream: revoke never ran), unknown (upstream, named with this
connection's object_name_tag, but in no inventory: a lost WAL or a manual
copy), gone (in the inventory but no longer upstream: deleted by hand) and
foreign (named like the plugin's objects but with another connection's tag:
another mount sharing the upstream account; never deleted). With
dry_run=false it deletes the expired and unknown ones older than
safety_buffer, drops the gone ones whose lease ended more than
safety_buffer ago from the inventory, and says what it deleted (deleted)
and dropped (pruned). Objects still being issued are never touched.
Connections whose upstream cannot list what they created (StorX and Storj in
access-grant mode) are tidied from the inventory alone: the report says
upstream_listable=false, and with dry_run=false the entries whose lease
ended are revoked.`,
		},
	}
}

func (b *backend) pathInventoryList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, inventoryStoragePrefix+d.Get(fieldConnection).(string)+"/")
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathInventoryRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	entries, err := listInventory(ctx, req.Storage, d.Get(fieldConnection).(string))
	if err != nil {
		return nil, err
	}
	objects := make([]map[string]any, 0, len(entries))
	for _, e := range entries {
		objects = append(objects, e.view())
	}
	return &logical.Response{Data: map[string]any{"objects": objects, "count": len(objects)}}, nil
}

// tidyReport sorts what tidy saw; each item is an object's view.
type tidyReport struct {
	Live            []map[string]any
	ExpiredPresent  []map[string]any
	UnknownUpstream []map[string]any
	GoneUpstream    []map[string]any
	ForeignUpstream []map[string]any
	Deleted         []map[string]any
	// Pruned are the gone_upstream entries dropped from the inventory.
	Pruned []map[string]any
	Failed []map[string]any
}

func (b *backend) pathTidyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldConnection).(string)
	dryRun := d.Get(fieldDryRun).(bool)
	buffer := time.Duration(d.Get(fieldSafetyBuffer).(int)) * time.Second
	if buffer < 0 {
		return logical.ErrorResponse("safety_buffer must not be negative"), nil
	}
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	conn, entry, err := b.liveConnection(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if entry == nil {
		return logical.ErrorResponse("connection %q does not exist", name), nil
	}
	lister, ok := conn.(provider.Lister)
	if unlisted, isUnlisted := conn.(provider.Unlisted); !ok && isUnlisted {
		return b.tidyUnlisted(ctx, req.Storage, name, entry, conn, unlisted, dryRun, buffer)
	}
	if !ok {
		return logical.ErrorResponse("provider %s cannot list or delete its credentials through its API, so there is nothing to tidy on connection %q", entry.Provider, name), nil
	}
	report, err := b.tidy(ctx, req.Storage, name, entry, lister, conn, dryRun, buffer)
	if err != nil {
		return errorResponseFor(err)
	}
	return &logical.Response{Data: map[string]any{
		"dry_run":          dryRun,
		"safety_buffer":    int64(buffer.Seconds()),
		"live":             report.Live,
		"expired_present":  report.ExpiredPresent,
		"unknown_upstream": report.UnknownUpstream,
		"gone_upstream":    report.GoneUpstream,
		"foreign_upstream": report.ForeignUpstream,
		"deleted":          report.Deleted,
		"pruned":           report.Pruned,
		"failed":           report.Failed,
	}}, nil
}

// tidy reads the upstream first, then the WAL, then the inventory: an object
// being issued exists upstream only after its pending inventory entry (or,
// written by older versions, its WAL entry), which becomes the live entry
// in one write (the WAL entry was deleted only after the inventory entry
// existed), so in this order it is always found.
func (b *backend) tidy(ctx context.Context, s logical.Storage, name string, entry *connectionEntry, lister provider.Lister, conn provider.Connection, dryRun bool, buffer time.Duration) (*tidyReport, error) {
	roles, prefixes, err := b.rolesOf(ctx, s, name, entry)
	if err != nil {
		return nil, err
	}
	upstream, err := lister.ListObjects(ctx, roles)
	if err != nil {
		return nil, err
	}
	inFlight, err := walNames(ctx, s, name)
	if err != nil {
		return nil, err
	}
	known, err := listInventory(ctx, s, name)
	if err != nil {
		return nil, err
	}
	cluster, err := b.clusterTag(ctx, s)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	report := &tidyReport{}
	seen := map[string]bool{}
	for _, obj := range upstream {
		seen[obj.Name] = true
	}
	var doomed []leftover
	var stale []*inventoryEntry
	known = slices.DeleteFunc(known, func(e *inventoryEntry) bool {
		// Still being issued, or interrupted and the rollback's: in flight
		// as a WAL entry was, never tidy's to touch.
		if e.pending() {
			inFlight[e.Name] = true
		}
		return e.pending()
	})
	for _, e := range known {
		ended := e.LeaseExpiresAt.Add(buffer).Before(now)
		switch {
		case !seen[e.Name]:
			report.GoneUpstream = append(report.GoneUpstream, e.view())
			// Only once the lease ended: a listing can miss a live object
			// (pages shifted by a concurrent delete), and without its entry
			// the next tidy would take it for unknown and delete it.
			if ended {
				stale = append(stale, e)
			}
		case ended:
			report.ExpiredPresent = append(report.ExpiredPresent, e.view())
			doomed = append(doomed, leftover{name: e.Name, ref: e.Ref, view: e.view()})
		default:
			report.Live = append(report.Live, e.view())
		}
	}
	isKnown := map[string]bool{}
	for _, e := range known {
		isKnown[e.Name] = true
	}
	for _, obj := range upstream {
		if isKnown[obj.Name] || inFlight[obj.Name] || !hasAnyPrefix(obj.Name, prefixes) {
			continue
		}
		view := map[string]any{"name": obj.Name, "object_id": obj.ID, "created_at": provider.Timestamp(obj.CreatedAt)}
		if !entry.ownsObject(obj.Name, cluster) {
			// Named like the plugin's, but another connection or mount on the
			// same upstream account made it: never ours to delete.
			report.ForeignUpstream = append(report.ForeignUpstream, view)
			continue
		}
		report.UnknownUpstream = append(report.UnknownUpstream, view)
		if !obj.CreatedAt.IsZero() && obj.CreatedAt.Add(buffer).Before(now) {
			doomed = append(doomed, leftover{name: obj.Name, ref: obj.Ref, view: view})
		}
	}
	if !dryRun {
		b.deleteLeftovers(ctx, s, name, entry.Provider, conn, doomed, report)
		b.pruneInventory(ctx, s, name, stale, report)
	}
	return report, nil
}

// tidyUnlisted tidies a connection whose upstream cannot list what it
// holds: from the inventory alone, the entries whose lease ended more than
// buffer ago are revoked (dry_run=false) and dropped. The report says the
// upstream is not listable, so unknown and gone objects cannot be found.
func (b *backend) tidyUnlisted(ctx context.Context, s logical.Storage, name string, entry *connectionEntry, conn provider.Connection, unlisted provider.Unlisted, dryRun bool, buffer time.Duration) (*logical.Response, error) {
	known, err := listInventory(ctx, s, name)
	if err != nil {
		return nil, err
	}
	report := &tidyReport{}
	var doomed []leftover
	now := time.Now()
	for _, e := range known {
		if e.pending() {
			continue // in flight, or its rollback's to do: no lease has ended
		}
		if e.LeaseExpiresAt.Add(buffer).Before(now) {
			report.ExpiredPresent = append(report.ExpiredPresent, e.view())
			doomed = append(doomed, leftover{name: e.Name, ref: e.Ref, view: e.view()})
			continue
		}
		report.Live = append(report.Live, e.view())
	}
	if !dryRun {
		b.deleteLeftovers(ctx, s, name, entry.Provider, conn, doomed, report)
	}
	return &logical.Response{Data: map[string]any{
		"dry_run":           dryRun,
		"safety_buffer":     int64(buffer.Seconds()),
		"upstream_listable": false,
		"note": unlisted.NotListable() + ": expired_present lists the inventory's entries whose lease ended (revoke never confirmed); " +
			"unknown_upstream and gone_upstream cannot be known",
		"live":            report.Live,
		"expired_present": report.ExpiredPresent,
		"deleted":         report.Deleted,
		"failed":          report.Failed,
	}}, nil
}

// pruneInventory drops the entries of objects gone upstream.
func (b *backend) pruneInventory(ctx context.Context, s logical.Storage, connection string, stale []*inventoryEntry, report *tidyReport) {
	for _, e := range stale {
		if err := s.Delete(ctx, inventoryKey(connection, e.Name)); err != nil {
			report.Failed = append(report.Failed, map[string]any{"name": e.Name, "error": err.Error()})
			continue
		}
		b.live.forget(connection, e.Name)
		report.Pruned = append(report.Pruned, e.view())
	}
}

// leftover is an upstream object tidy may delete.
type leftover struct {
	name string
	ref  provider.Ref
	view map[string]any
}

// deleteLeftovers revokes doomed; a leftover belongs to no lease, so its
// deletions are counted under no role.
func (b *backend) deleteLeftovers(ctx context.Context, s logical.Storage, connection, providerName string, conn provider.Connection, doomed []leftover, report *tidyReport) {
	for _, obj := range doomed {
		err := conn.Revoke(ctx, obj.ref)
		b.metrics.countErr(opTidyDelete, connection, providerName, "", err)
		if err != nil {
			report.Failed = append(report.Failed, map[string]any{"name": obj.name, "error": err.Error()})
			continue
		}
		b.forgetInventory(ctx, s, connection, obj.name)
		report.Deleted = append(report.Deleted, obj.view)
		b.Logger().Info("tidy deleted an upstream object no live lease accounts for", "connection", connection, "object", obj.name)
	}
}

// rolesOf returns the values of the roles using a connection and the name
// prefixes of the objects they create.
func (b *backend) rolesOf(ctx context.Context, s logical.Storage, name string, entry *connectionEntry) ([]provider.Values, []string, error) {
	names, err := s.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, nil, err
	}
	var roles []provider.Values
	prefixes := []string{"vault-"}
	for _, roleName := range names {
		role, err := getRole(ctx, s, roleName)
		if err != nil {
			return nil, nil, err
		}
		if role == nil || role.Connection != name || role.Provider != entry.Provider {
			continue
		}
		roles = append(roles, role.Values)
		prefixes = append(prefixes, b.namePrefix(role)+"-"+roleName+"-")
	}
	sort.Strings(prefixes)
	return roles, prefixes, nil
}

func hasAnyPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// walNames returns the object names of the connection's issues in flight.
func walNames(ctx context.Context, s logical.Storage, connection string) (map[string]bool, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, id := range ids {
		wal, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return nil, fmt.Errorf("read WAL entry %s: %w", id, err)
		}
		if wal == nil || wal.Kind != walKindIssue {
			continue
		}
		if issue, err := decodeWAL(wal.Data); err == nil && issue.Connection == connection {
			names[issue.Name] = true
		}
	}
	return names, nil
}
