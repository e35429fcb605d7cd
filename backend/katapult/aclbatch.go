package katapult

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// aclBatcher group-commits the changes to each bucket's ACL.
//
// Katapult's PATCH replaces a bucket's key lists whole, so every change is a
// read-modify-write, and two of them on one bucket at once would overwrite
// each other's grant. Running them one after another makes every issue and
// revoke on a bucket wait for all the ones before it: two round trips per
// credential, whatever the concurrency. Instead at most one update of a
// bucket is in flight, and each carries every change that waits when its GET
// has answered: those asked for during the GET ride on its PATCH, those
// asked for during the PATCH on the next update. One GET and one PATCH
// serve them all, and nothing is written over: no other update of the
// bucket runs between the GET and the PATCH.
//
// Each caller returns once the update carrying its change is confirmed, or
// with that update's error, so a failed update reaches every caller it
// carried and the provider's rules apply to each: a failed grant fails the
// issue (the engine rolls the key back by name), a failed ungrant fails the
// revoke before the key is deleted (Vault retries it).
type aclBatcher struct {
	// read and write are the GET and the PATCH of a bucket's ACL.
	read  func(ctx context.Context, bucket string) (bucketACL, error)
	write func(ctx context.Context, bucket string, acl bucketACL) error
	// queued, when set, is told of each caller's change put in a queue, so
	// that tests know which update will carry it without timing anything.
	queued func(bucket string)

	mu sync.Mutex
	// queues holds the buckets whose updates are running.
	queues map[string]*aclQueue
}

// aclQueue is one bucket's changes waiting for an update to take them. It
// lives as long as the goroutine that runs the bucket's updates, which ends
// once an update finishes with nothing waiting.
type aclQueue struct {
	waiting []*aclRequest
}

// aclChange adds a key to a bucket's read list, write list or both, or
// removes it from both.
type aclChange struct {
	keyID       string
	read, write bool
	remove      bool
}

// aclRequest is one change on its way through the queue.
type aclRequest struct {
	change aclChange
	// done receives the result of the update that carried the change. It is
	// buffered and filled under the batcher's lock, so the update never
	// waits for a caller and leave can tell whether a result is there.
	done chan error
	// update is the update carrying the change; nil while it waits.
	update *aclUpdate
}

// aclUpdate is the PATCH of one update, once it has taken its changes.
type aclUpdate struct {
	// cancel ends the update once every caller it carries has left: their
	// changes then have nobody to confirm them to.
	cancel  context.CancelFunc
	callers int
}

func newACLBatcher(read func(ctx context.Context, bucket string) (bucketACL, error), write func(ctx context.Context, bucket string, acl bucketACL) error) *aclBatcher {
	return &aclBatcher{read: read, write: write, queues: map[string]*aclQueue{}}
}

// change queues ch for the bucket's update and waits until the update
// carrying it is confirmed or has failed, or ctx ends.
func (b *aclBatcher) change(ctx context.Context, bucket string, ch aclChange) error {
	req := &aclRequest{change: ch, done: make(chan error, 1)}
	b.mu.Lock()
	q, inFlight := b.queues[bucket]
	if !inFlight {
		q = &aclQueue{}
		b.queues[bucket] = q
	}
	q.waiting = append(q.waiting, req)
	b.mu.Unlock()
	if !inFlight {
		// The updates outlive the caller that started them: they carry
		// other callers' changes too.
		go b.run(context.WithoutCancel(ctx), bucket, q)
	}
	if b.queued != nil {
		b.queued(bucket)
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		if b.leave(q, req) {
			return <-req.done
		}
		return fmt.Errorf("katapult: waiting for the update of the ACL of bucket %s: %w", bucket, ctx.Err())
	}
}

// run makes the bucket's updates until no change waits. Each reads the ACL,
// then takes every change waiting by then, applies them in the order they
// were asked for, and writes the ACL back if that changed it. A read whose
// callers all left meanwhile is let finish (its answer then goes unused):
// it is one bounded GET, and changes asked for meanwhile can still use it.
func (b *aclBatcher) run(ctx context.Context, bucket string, q *aclQueue) {
	for {
		b.mu.Lock()
		if len(q.waiting) == 0 {
			delete(b.queues, bucket)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		updateCtx, cancel := context.WithCancel(ctx)
		acl, err := b.read(updateCtx, bucket)
		b.mu.Lock()
		reqs := q.waiting
		q.waiting = nil
		u := &aclUpdate{cancel: cancel, callers: len(reqs)}
		for _, req := range reqs {
			req.update = u
		}
		b.mu.Unlock()

		if err == nil {
			changed := false
			for _, req := range reqs {
				changed = req.change.apply(&acl) || changed
			}
			if changed {
				err = b.write(updateCtx, bucket, acl)
			}
		}
		cancel()
		b.mu.Lock()
		for _, req := range reqs {
			req.done <- err
		}
		b.mu.Unlock()
	}
}

// leave withdraws the change of a caller whose context ended, and reports
// whether its update had already finished, in which case its result is in
// done. A change still waiting is taken out of the queue. One already in
// flight may still land: an add is then undone by a remove queued behind
// it, because the caller reports the issue failed and the engine's
// rollback, listing keys by name, could run before the add lands and so
// miss it.
func (b *aclBatcher) leave(q *aclQueue, req *aclRequest) (finished bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case len(req.done) > 0:
		return true
	case req.update == nil:
		q.waiting = slices.DeleteFunc(q.waiting, func(r *aclRequest) bool { return r == req })
		return false
	}
	if req.update.callers--; req.update.callers == 0 {
		req.update.cancel()
	}
	if !req.change.remove {
		undo := aclChange{keyID: req.change.keyID, remove: true}
		q.waiting = append(q.waiting, &aclRequest{change: undo, done: make(chan error, 1)})
	}
	return false
}

// apply makes the change to acl and reports whether it changed anything.
func (ch aclChange) apply(acl *bucketACL) bool {
	if ch.remove {
		removed := removeID(&acl.ReadKeyIDs, ch.keyID)
		return removeID(&acl.WriteKeyIDs, ch.keyID) || removed
	}
	added := ch.read && addID(&acl.ReadKeyIDs, ch.keyID)
	return ch.write && addID(&acl.WriteKeyIDs, ch.keyID) || added
}
