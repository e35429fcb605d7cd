package backend

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestEvents_IssueRevokeAndRotate(t *testing.T) {
	env := newTestEnv(t)
	env.setup(nil)
	resp := env.issue()
	if err := env.revoke(resp); err != nil {
		t.Fatal(err)
	}
	env.mustOK(logical.UpdateOperation, "rotate-root/main", nil)
	// Issue and revoke send theirs after the response; Cleanup flushes them.
	env.b.Cleanup(context.Background())
	name := env.leaseName(resp)
	for eventType, want := range map[string]map[string]any{
		eventCredsCreate: {"connection": "main", "provider": "storyden", "role": "app", "object": name},
		eventCredsRevoke: {"connection": "main", "provider": "storyden", "role": "app", "object": name},
		eventRotateRoot:  {"connection": "main", "provider": "storyden"},
	} {
		got := env.events.of(eventType)
		if len(got) != 1 {
			t.Fatalf("%s sent %d times", eventType, len(got))
		}
		for k, v := range want {
			if got[0][k] != v {
				t.Errorf("%s %s = %v, want %v", eventType, k, got[0][k], v)
			}
		}
	}
}

// blockingSender holds every SendEvent until release is closed.
type blockingSender struct {
	eventRecorder
	arrived chan struct{}
	release chan struct{}
}

func (s *blockingSender) SendEvent(ctx context.Context, eventType logical.EventType, ev *logical.EventData) error {
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	<-s.release
	return s.eventRecorder.SendEvent(ctx, eventType, ev)
}

// TestEvents_QueueIsBoundedCountsDropsAndFlushesOnCleanup: while Vault's
// event bus holds one event, the queue takes eventQueueLen more and drops
// (and counts) the next; Cleanup sends every queued one.
func TestEvents_QueueIsBoundedCountsDropsAndFlushesOnCleanup(t *testing.T) {
	config := logical.TestBackendConfig()
	sender := &blockingSender{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	config.EventsSender = sender
	b := newBackend(defaultRegistry())
	if err := b.Setup(context.Background(), config); err != nil {
		t.Fatal(err)
	}
	b.afterResponse(nil, eventCredsCreate, "object", "held")
	<-sender.arrived
	for range eventQueueLen {
		b.afterResponse(nil, eventCredsCreate, "object", "queued")
	}
	if b.metrics.eventsDropped != 0 {
		t.Fatalf("%d events dropped before the queue was full", b.metrics.eventsDropped)
	}
	b.afterResponse(nil, eventCredsCreate, "object", "dropped")
	text := string(writeText(b.metrics.snapshot()))
	if !strings.Contains(text, metricPrefix+"events_dropped_total 1") {
		t.Fatalf("the dropped event is not counted:\n%s", text)
	}
	close(sender.release)
	b.Cleanup(context.Background())
	if got := len(sender.of(eventCredsCreate)); got != eventQueueLen+1 {
		t.Fatalf("%d events sent after Cleanup, want %d", got, eventQueueLen+1)
	}
}
