package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-apikeys/vault-plugin-secrets-apikeys/backend/provider"
)

func (b *backend) pathRotateRoot() []*framework.Path {
	return []*framework.Path{{
		Pattern:      "rotate-root/" + framework.MatchAllRegex(fieldName),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "root-credentials"},
		Fields: map[string]*framework.FieldSchema{
			fieldName: {Type: framework.TypeString, Required: true, Description: "Name of the connection."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: writeOperation(b.pathRotateRootWrite, "Rotate the connection's root credential upstream."),
		},
		HelpSynopsis: "Rotate a connection's root credential upstream and store the new one.",
		HelpDescription: `Replaces the root credential upstream (storyden: a new random password),
storing the new credential before the old one stops working, so a failure
at any point leaves the connection with a working root. Providers whose API
cannot rotate (dstor, storable) answer 400.`,
	}}
}

func (b *backend) pathRotateRootWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if err := validateName("connection", name); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	ctx, cancel := withRequestBudget(ctx)
	defer cancel()
	if err := b.rotateRoot(ctx, req.Storage, name); err != nil {
		return errorResponseFor(err)
	}
	return nil, nil
}

// rotateRoot replaces a connection's root credential, serialized with every
// other rotation of that connection.
func (b *backend) rotateRoot(ctx context.Context, s logical.Storage, name string) error {
	defer b.lockConnection(name)()
	return b.rotateRootLocked(ctx, s, name)
}

// rotateRootLocked does the rotation. The provider stages the new root
// (stored as pending_root) before the upstream switches to it; after the
// switch the new root becomes current. If anything fails in between,
// recoverPendingRootLocked later finds out which root works and keeps it.
func (b *backend) rotateRootLocked(ctx context.Context, s logical.Storage, name string) (err error) {
	entry, err := getConnection(ctx, s, name)
	if err != nil {
		return err
	}
	if entry == nil {
		return requestError(fmt.Sprintf("connection %q does not exist: write config/%s first", name, name))
	}
	if entry.PendingRoot != nil {
		if err := b.recoverPendingRootLocked(ctx, s, name, entry); err != nil {
			return fmt.Errorf("an earlier rotation of %q is unresolved: %w", name, err)
		}
	}
	conn, entry, err := b.liveConnection(ctx, s, name)
	if err != nil {
		return err
	}
	defer func() { b.metrics.countErr(opRotation, name, entry.Provider, "", err) }()
	stage := func(next provider.Values) error {
		entry.PendingRoot = next
		if err := putConnection(ctx, s, name, entry); err != nil {
			return err
		}
		// Requests during the rotation keep the live session instead of
		// signing in again with a root that is about to change.
		b.conns.put(name, entry.Generation, conn)
		return nil
	}
	newRoot, err := conn.RotateRoot(ctx, stage)
	if errors.Is(err, provider.ErrRotationUnsupported) {
		return requestError(fmt.Sprintf("provider %s cannot rotate its root credential through its API (%v); rotate it in the provider's console, then write config/%s", entry.Provider, err, name))
	}
	if err != nil {
		if entry.PendingRoot != nil {
			b.Logger().Warn("root rotation failed after the new root was staged; the periodic check resolves it", "connection", name, "error", err)
		}
		return err
	}
	for k, v := range newRoot {
		entry.Values[k] = v
	}
	entry.PendingRoot = nil
	entry.LastRotation = b.now().UTC()
	if err := b.scheduleAfterRotation(entry, entry.LastRotation); err != nil {
		return err
	}
	if err := putConnection(ctx, s, name, entry); err != nil {
		// The new root is still stored as pending; the periodic check promotes it.
		return fmt.Errorf("the root was rotated upstream but storing it failed (it stays staged and is promoted automatically): %w", err)
	}
	// The provider's connection already uses the new root and its session.
	b.conns.put(name, entry.Generation, conn)
	b.Logger().Info("rotated root credential", "connection", name, "provider", entry.Provider)
	b.sendEvent(ctx, eventRotateRoot, "connection", name, "provider", entry.Provider)
	return nil
}

// recoverPendingRootLocked keeps whichever root works upstream: the current
// one (the rotation never happened there) or the staged one (it did, and only
// the final store was lost). When neither can be checked now, the pending
// root stays for the next try.
func (b *backend) recoverPendingRootLocked(ctx context.Context, s logical.Storage, name string, entry *connectionEntry) error {
	current, err := b.verifyRoot(ctx, name, entry, entry.Values)
	if err == nil {
		entry.PendingRoot = nil
		b.Logger().Info("an interrupted rotation never reached the upstream; keeping the current root", "connection", name)
		return b.storeRecovered(ctx, s, name, entry, current)
	}
	if !errors.Is(err, provider.ErrRootRejected) {
		return fmt.Errorf("cannot tell which root works yet: %w", err)
	}
	staged := entry.Values.Clone()
	for k, v := range entry.PendingRoot {
		staged[k] = v
	}
	next, err := b.verifyRoot(ctx, name, entry, staged)
	if err != nil {
		return fmt.Errorf("neither the current nor the staged root works upstream: %w", err)
	}
	entry.Values, entry.PendingRoot, entry.LastRotation = staged, nil, b.now().UTC()
	if err := b.scheduleAfterRotation(entry, entry.LastRotation); err != nil {
		return err
	}
	b.Logger().Info("completed an interrupted root rotation", "connection", name)
	return b.storeRecovered(ctx, s, name, entry, next)
}

func (b *backend) verifyRoot(ctx context.Context, name string, entry *connectionEntry, values provider.Values) (provider.Connection, error) {
	conn, err := b.openConnection(name, entry, values)
	if err != nil {
		return nil, err
	}
	if err := conn.Verify(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (b *backend) storeRecovered(ctx context.Context, s logical.Storage, name string, entry *connectionEntry, conn provider.Connection) error {
	if err := putConnection(ctx, s, name, entry); err != nil {
		conn.Close()
		return err
	}
	b.conns.put(name, entry.Generation, conn)
	return nil
}
