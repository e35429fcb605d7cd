package backend

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Event types, under the plugin's name as Vault's own engines do
// (ldap/rotate-root, database/creds-create).
const (
	eventCredsCreate  = "apikeys/creds-create"
	eventCredsRevoke  = "apikeys/creds-revoke"
	eventRotateRoot   = "apikeys/rotate-root"
	eventRotateStatic = "apikeys/rotate-role"
)

// sendEvent publishes an event with string metadata pairs (never a secret).
// Vault without events enabled is normal and not worth a warning, and so is
// OpenBao, whose plugin host has no events service (gRPC Unimplemented): the
// event is dropped with a debug line.
func (b *backend) sendEvent(ctx context.Context, eventType string, metadataPairs ...string) {
	err := logical.SendEvent(ctx, b, eventType, metadataPairs...)
	if err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.Logger().Debug("could not send event", "event", eventType, "error", err)
	}
}

// Vault's event delivery is best effort: an event is not persisted, not
// retried, and dropped when events are disabled or nobody subscribes, and a
// plugin's SendEvent is a gRPC round trip to Vault. The hot paths (issue,
// revoke) therefore hand their event and their debug log line to a bounded
// queue that one goroutine drains after the client has its answer. The
// guarantee stays Vault's: an event may be lost (a full queue drops it and
// counts it in vault_apikeys_events_dropped_total, as Vault drops one nobody
// reads), and every event queued before the backend's Cleanup is sent,
// since Cleanup drains the queue.

// eventQueueLen bounds the events waiting to be sent.
const eventQueueLen = 1024

// eventSendTimeout bounds one SendEvent of the drainer, which runs on its
// own context since the request's ends with the request.
const eventSendTimeout = 10 * time.Second

// afterWork is what a request left for after its answer: a log line and an
// event.
type afterWork struct {
	log       func()
	eventType string
	pairs     []string
}

// eventQueue is the bounded queue and its drainer.
type eventQueue struct {
	mu      sync.Mutex
	ch      chan afterWork
	done    chan struct{}
	started bool
	closed  bool
}

func newEventQueue() *eventQueue { return &eventQueue{ch: make(chan afterWork, eventQueueLen)} }

// afterResponse queues log (may be nil) and the event for the drainer; a
// full queue drops both and counts the event.
func (b *backend) afterResponse(log func(), eventType string, pairs ...string) {
	q := b.events
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if !q.started {
		q.started, q.done = true, make(chan struct{})
		go b.drainEvents(q.ch, q.done)
	}
	select {
	case q.ch <- afterWork{log: log, eventType: eventType, pairs: pairs}:
	default:
		b.metrics.eventDropped()
	}
}

func (b *backend) drainEvents(ch <-chan afterWork, done chan<- struct{}) {
	defer close(done)
	for w := range ch {
		if w.log != nil {
			w.log()
		}
		ctx, cancel := context.WithTimeout(context.Background(), eventSendTimeout)
		b.sendEvent(ctx, w.eventType, w.pairs...)
		cancel()
	}
}

// flushEvents sends everything queued and stops the drainer, for a backend
// being torn down; later events are dropped.
func (b *backend) flushEvents() {
	q := b.events
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	close(q.ch)
	started, done := q.started, q.done
	q.mu.Unlock()
	if started {
		<-done
	}
}
